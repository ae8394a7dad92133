//! The comparison report: what threads and processes cost on this machine.

use std::time::Instant;

use taskpool_bench::peers::pipe_floor::PipeFloor;
use taskpool_bench::tasks;
use taskpool_process::{Pool, ProcessPool};

fn main() {
    taskpool_bench::init();
    let mut floor = PipeFloor::start().unwrap();
    let mut f = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        floor.round_trip(&[0u8; 8]).unwrap();
        f.push(t.elapsed().as_secs_f64() * 1e6);
    }
    f.sort_by(f64::total_cmp);
    println!("floor rt median {:.1} us", f[1000]);

    let t = Instant::now();
    let pool = ProcessPool::new(2).unwrap();
    pool.apply(tasks::noop, 1).unwrap();
    println!("startup {:.2} ms", t.elapsed().as_secs_f64() * 1e3);
    let mut r = Vec::new();
    for i in 0..2000 {
        let t = Instant::now();
        pool.apply(tasks::noop, i).unwrap();
        r.push(t.elapsed().as_secs_f64() * 1e6);
    }
    r.sort_by(f64::total_cmp);
    println!("process rt median {:.1} us", r[1000]);
    for _ in 0..3 {
        let t = Instant::now();
        let hs: Vec<_> = (0..1000).map(|i| pool.submit(tasks::noop, i)).collect();
        for h in hs {
            h.join().unwrap();
        }
        println!("1000 in flight: {:.0} tasks/s", 1000.0 / t.elapsed().as_secs_f64());
    }
    for _ in 0..3 {
        let t = Instant::now();
        let v = pool.map(tasks::noop, 0..1_000_000).unwrap();
        assert_eq!(v.len(), 1_000_000);
        println!("map 1M: {:.2} M items/s", 1.0 / t.elapsed().as_secs_f64());
    }
    for _ in 0..3 {
        let buf = serde_bytes::ByteBuf::from(vec![1u8; 1 << 20]);
        let t = Instant::now();
        pool.apply(tasks::echo, buf).unwrap();
        println!("1 MiB rt: {:.2} ms", t.elapsed().as_secs_f64() * 1e3);
    }
}
