//! What tasks cost, as their workers measure it: per task with `submit_with_usage`, summed in
//! the pool's stats.

mod common;

use std::time::Duration;

use common::*;
use taskpool_process::{Exit, Pool, ProcessPool};

/// Allocates and touches `mib` mebibytes.
fn fill(mib: u64) -> u64 {
    let block = vec![1u8; usize::try_from(mib << 20).unwrap()];
    std::hint::black_box(&block).len() as u64 >> 20
}

#[test]
fn a_task_reports_its_cpu_time_and_its_worker_peak_memory() {
    let pool = ProcessPool::new(1).unwrap();
    let (ms, spun) = pool.submit_with_usage(spin, 200).join().unwrap();
    assert_eq!(ms, 200);
    let cpu = spun.user_cpu + spun.system_cpu;
    // The task counted 200 ms in clock ticks; the kernel's figure is finer.
    assert!(cpu >= Duration::from_millis(190), "{spun:?}");
    assert!(spun.elapsed >= Duration::from_millis(190), "{spun:?}");

    let (mib, filled) = pool.submit_with_usage(fill, 64).join().unwrap();
    assert_eq!(mib, 64);
    assert!(filled.peak_rss >= 64 << 20, "{filled:?}");

    // The stats sum the two tasks, each counted once, and keep the highest peak.
    let usage = pool.stats().usage;
    assert_eq!(usage.user_cpu, spun.user_cpu + filled.user_cpu);
    assert_eq!(usage.system_cpu, spun.system_cpu + filled.system_cpu);
    assert_eq!(usage.elapsed, spun.elapsed + filled.elapsed);
    assert_eq!(usage.peak_rss, filled.peak_rss.max(spun.peak_rss));
}

/// The worker's own peak resident memory, as `/proc/self/status` says it.
fn own_peak(_: u64) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap();
    line.trim().strip_suffix("kB").unwrap().trim().parse::<u64>().unwrap() << 10
}

#[test]
fn the_peak_memory_is_the_workers_own_not_what_its_parent_held_when_it_started_it() {
    // The kernel carries `getrusage`'s peak across `execve`: a worker started by a program
    // that holds 96 MiB read a peak of at least 96 MiB, whatever it used itself.
    let held = vec![1u8; 96 << 20];
    let pool = ProcessPool::new(1).unwrap();
    let (own, usage) = pool.submit_with_usage(own_peak, 0).join().unwrap();
    drop(std::hint::black_box(held));
    assert!(own < 48 << 20, "a worker that ran a no-op holds {own} bytes");
    assert!(usage.peak_rss >= own && usage.peak_rss < 48 << 20, "{usage:?}, own {own}");
    // Above what it inherited, `getrusage`'s figure is its own again.
    let (_, filled) = pool.submit_with_usage(fill, 128).join().unwrap();
    assert!(filled.peak_rss >= 128 << 20, "{filled:?}");
    assert_eq!(pool.stats().usage.peak_rss, filled.peak_rss);
}

#[test]
fn usage_goes_on_after_a_crash_and_counts_whole_batches() {
    let pool = ProcessPool::new(1).unwrap();
    assert_eq!(crashed(pool.submit_with_usage(abort, 0).join()), Exit::Signal(6));
    let (_, usage) = pool.submit_with_usage(spin, 50).join().unwrap();
    assert!(usage.user_cpu + usage.system_cpu >= Duration::from_millis(40), "{usage:?}");
    let outcomes = pool.map_results(spin, [30; 10]);
    assert!(outcomes.iter().all(|o| matches!(o, Ok(30))));
    let stats = pool.stats();
    let cpu = stats.usage.user_cpu + stats.usage.system_cpu;
    assert!(cpu >= Duration::from_millis(330), "a batch's CPU time is all counted: {stats:?}");
}

fn double(x: u64) -> u64 {
    x * 2
}

#[test]
fn each_of_a_quick_stream_of_tasks_with_usage_reports_its_own_cpu_time() {
    let pool = ProcessPool::new(1).unwrap();
    // Tasks without usage in between: their worker need not read its CPU time after each.
    assert_eq!(pool.map(double, 0..100u64).unwrap().len(), 100);
    let mut counted = Duration::ZERO;
    for i in 0..50 {
        assert_eq!(pool.apply(double, i).unwrap(), 2 * i);
        let (value, usage) = pool.submit_with_usage(double, i).join().unwrap();
        assert_eq!(value, 2 * i);
        // Read right after the task, though the last reading was microseconds before.
        let cpu = usage.user_cpu + usage.system_cpu;
        assert!(cpu > Duration::ZERO, "task {i} reported no CPU time: {usage:?}");
        counted += cpu;
    }
    let stats = pool.stats().usage;
    assert!(stats.user_cpu + stats.system_cpu >= counted, "{stats:?} < {counted:?}");
}
