//! Overhead: what it costs to start workers and to move a task through them, with no work in
//! the task. Every pool has 2 workers (fewer on a 1-CPU machine) and, except in `startup`, is
//! started when its benchmark first runs and kept warm across all its samples and iterations
//! (criterion calls a benchmark's closure once per sample, so no pool is started in it).
//!
//! | group | what one iteration does | variants | parameter |
//! |---|---|---|---|
//! | `spawn` | start a one-off worker that runs a no-op, join it | `threads`, `processes` (taskpool `spawn`), `std-thread` (`std::thread::spawn`), `procspawn` (`procspawn::spawn`) | `noop` |
//! | `startup` | `new` a pool up to the result of its first no-op (the drop is not timed) | `threads`, `processes`, `rayon` (`ThreadPoolBuilder` + `install`), `procspawn` (`Pool`) | workers |
//! | `round_trip` | submit one no-op to a warm pool and wait for it | `threads`, `processes`, `rayon` (`spawn` + a channel), `procspawn`, `pipe-floor` | `noop` |
//! | `in_flight` | submit 1000 no-ops, then join them all | `threads`, `processes`, `rayon`, `procspawn` | tasks |
//! | `map` | `map` a no-op over 100,000 items, automatic chunks | `threads`, `processes`, `rayon` (`par_iter().map().collect()`) | items |
//! | `payload` | send a byte buffer to a task that returns it, one task in flight | `processes-bytebuf` (`serde_bytes::ByteBuf`), `processes-vec` (plain `Vec<u8>`, which serde moves byte by byte), `threads` (`ByteBuf`), `pipe-floor`, `procspawn` (`Vec<u8>`, up to 1 MiB) | bytes: 0, 1 KiB, 64 KiB, 1 MiB, 16 MiB |
//!
//! `pipe-floor` is the per-task floor of any process pool: a length-prefixed ping-pong of
//! 8 bytes (or the payload) over raw pipes with a child process, no serialization at all.
//! procspawn's peer joins in submission order and keeps one large payload in flight, to stay
//! clear of its known deadlocks (see `taskpool_bench::peers::procspawn`); its `in_flight` row
//! is skipped when the open-files limit is under 3,100 (it holds 3 descriptors per queued
//! task). Throughput counts tasks (`in_flight`), items (`map`) or the payload once (`payload`).
//!
//! Run with `cargo bench -p taskpool-bench --bench overhead` (add `-- round_trip` to run one
//! group, `-- --quick` for a fast pass). The taskpool rows follow the crate features:
//! `--no-default-features --features thread-pool` (or `process-pool`) measures one backend.

use std::hint::black_box;
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[cfg(any(feature = "thread-pool", feature = "process-pool"))]
use criterion::BatchSize;
use criterion::{BenchmarkId, Criterion, Throughput};
#[cfg(any(feature = "thread-pool", feature = "process-pool"))]
use serde_bytes::ByteBuf;
use taskpool_bench::fixtures::{self, RunMode};
use taskpool_bench::peers::pipe_floor::PipeFloor;
use taskpool_bench::peers::procspawn::{self as procspawn_peer, ProcspawnPeer};
use taskpool_bench::tasks;
#[cfg(any(feature = "thread-pool", feature = "process-pool"))]
use taskpool_core::Pool;

/// Tasks submitted at once in `in_flight`.
const IN_FLIGHT: usize = 1000;
/// Items of the `map` benchmark.
const MAP_ITEMS: u64 = 100_000;
/// The payload sizes, in bytes.
const PAYLOADS: [usize; 5] = [0, 1 << 10, 64 << 10, 1 << 20, 16 << 20];
/// procspawn's payload rows stop here.
const PROCSPAWN_MAX_PAYLOAD: usize = 1 << 20;
/// Payloads from this size on get fewer samples, so that slow variants finish in time.
const LARGE_PAYLOAD: usize = 1 << 20;

fn main() {
    taskpool_bench::init();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    if RunMode::current() == RunMode::Bench {
        println!("overhead: pools of {} workers", fixtures::small_pool());
    }
    spawn(&mut c);
    startup(&mut c);
    round_trip(&mut c);
    in_flight(&mut c);
    map(&mut c);
    payload(&mut c);
    c.final_summary();
}

fn rayon_pool(workers: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(workers).build().expect("rayon: building a pool")
}

#[cfg(feature = "thread-pool")]
fn thread_pool(workers: usize) -> taskpool_thread::ThreadPool {
    taskpool_thread::ThreadPool::new(workers).expect("starting a thread pool")
}

#[cfg(feature = "process-pool")]
fn process_pool(workers: usize) -> taskpool_process::ProcessPool {
    taskpool_process::ProcessPool::new(workers).expect("starting a process pool")
}

/// One-off spawn and join of a no-op.
fn spawn(c: &mut Criterion) {
    let mut group = c.benchmark_group("spawn");
    group.sample_size(30);
    #[cfg(feature = "thread-pool")]
    group.bench_function(BenchmarkId::new("threads", "noop"), |b| {
        b.iter(|| {
            let child = taskpool_thread::spawn(tasks::noop, black_box(1)).expect("spawn");
            black_box(child.join().expect("join"))
        });
    });
    #[cfg(feature = "process-pool")]
    group.bench_function(BenchmarkId::new("processes", "noop"), |b| {
        b.iter(|| {
            let child = taskpool_process::spawn(tasks::noop, black_box(1)).expect("spawn");
            black_box(child.join().expect("join"))
        });
    });
    group.bench_function(BenchmarkId::new("std-thread", "noop"), |b| {
        b.iter(|| {
            let x = black_box(1);
            black_box(std::thread::spawn(move || tasks::noop(x)).join().expect("join"))
        });
    });
    group.bench_function(BenchmarkId::new("procspawn", "noop"), |b| {
        b.iter(|| {
            let child = procspawn::spawn(black_box(1u64), tasks::noop);
            black_box(child.join().expect("procspawn: join"))
        });
    });
    group.finish();
}

/// A pool of `small_pool()` workers from `new` to its first result.
fn startup(c: &mut Criterion) {
    let workers = fixtures::small_pool();
    let mut group = c.benchmark_group("startup");
    group.sample_size(20);
    #[cfg(feature = "thread-pool")]
    group.bench_with_input(BenchmarkId::new("threads", workers), &workers, |b, &n| {
        b.iter_custom(|iters| {
            time_each(iters, || {
                let pool = thread_pool(n);
                black_box(pool.apply(tasks::noop, 1).expect("first no-op"));
                pool
            })
        });
    });
    #[cfg(feature = "process-pool")]
    group.bench_with_input(BenchmarkId::new("processes", workers), &workers, |b, &n| {
        b.iter_custom(|iters| {
            time_each(iters, || {
                let pool = process_pool(n);
                black_box(pool.apply(tasks::noop, 1).expect("first no-op"));
                pool
            })
        });
    });
    group.bench_with_input(BenchmarkId::new("rayon", workers), &workers, |b, &n| {
        b.iter_custom(|iters| {
            time_each(iters, || {
                let pool = rayon_pool(n);
                black_box(pool.install(|| tasks::noop(black_box(1))));
                pool
            })
        });
    });
    group.bench_with_input(BenchmarkId::new("procspawn", workers), &workers, |b, &n| {
        b.iter_custom(|iters| (0..iters).map(|_| procspawn_peer::pool_startup(n)).sum());
    });
    group.finish();
}

/// Times `iters` calls of `run`, leaving out the drop of what each call returns (a pool,
/// whose shutdown is not part of its start-up).
fn time_each<T>(iters: u64, mut run: impl FnMut() -> T) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        let kept = run();
        total += start.elapsed();
        drop(kept);
    }
    total
}

fn start_floor() -> PipeFloor {
    PipeFloor::start().expect("starting the pipe floor")
}

/// Submit one no-op to a warm pool and wait for its result.
fn round_trip(c: &mut Criterion) {
    let workers = fixtures::small_pool();
    let mut group = c.benchmark_group("round_trip");
    #[cfg(feature = "thread-pool")]
    {
        let mut pool = None;
        group.bench_function(BenchmarkId::new("threads", "noop"), |b| {
            let pool = pool.get_or_insert_with(|| thread_pool(workers));
            b.iter(|| black_box(pool.apply(tasks::noop, black_box(1)).expect("no-op")));
        });
    }
    #[cfg(feature = "process-pool")]
    {
        let mut pool = None;
        group.bench_function(BenchmarkId::new("processes", "noop"), |b| {
            let pool = pool.get_or_insert_with(|| process_pool(workers));
            b.iter(|| black_box(pool.apply(tasks::noop, black_box(1)).expect("no-op")));
        });
    }
    let mut rayon = None;
    group.bench_function(BenchmarkId::new("rayon", "noop"), |b| {
        let (pool, tx, rx) = rayon.get_or_insert_with(|| rayon_rig(workers));
        b.iter(|| {
            let tx = tx.clone();
            let x = black_box(1);
            pool.spawn(move || {
                let _ = tx.send(tasks::noop(x));
            });
            black_box(rx.recv().expect("rayon: result"))
        });
    });
    let mut peer = None;
    group.bench_function(BenchmarkId::new("procspawn", "noop"), |b| {
        let peer = peer.get_or_insert_with(|| ProcspawnPeer::new(workers));
        b.iter_custom(|iters| (0..iters).map(|_| peer.round_trip()).sum());
    });
    let mut floor = None;
    group.bench_function(BenchmarkId::new("pipe-floor", "noop"), |b| {
        let floor = floor.get_or_insert_with(start_floor);
        b.iter(|| floor.round_trip(black_box(&[0; 8])).expect("pipe floor round trip"));
    });
    group.finish();
}

/// A rayon pool with a channel its tasks send their results on.
type RayonRig = (rayon::ThreadPool, mpsc::Sender<u64>, mpsc::Receiver<u64>);

fn rayon_rig(workers: usize) -> RayonRig {
    let (tx, rx) = mpsc::channel();
    (rayon_pool(workers), tx, rx)
}

/// Submit 1000 no-ops at once, then join them all.
fn in_flight(c: &mut Criterion) {
    let workers = fixtures::small_pool();
    let mut group = c.benchmark_group("in_flight");
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    #[cfg(feature = "thread-pool")]
    {
        let mut pool = None;
        group.bench_with_input(BenchmarkId::new("threads", IN_FLIGHT), &IN_FLIGHT, |b, &n| {
            let pool = pool.get_or_insert_with(|| thread_pool(workers));
            b.iter(|| submit_then_join(pool, n));
        });
    }
    #[cfg(feature = "process-pool")]
    {
        let mut pool = None;
        group.bench_with_input(BenchmarkId::new("processes", IN_FLIGHT), &IN_FLIGHT, |b, &n| {
            let pool = pool.get_or_insert_with(|| process_pool(workers));
            b.iter(|| submit_then_join(pool, n));
        });
    }
    let mut rayon = None;
    group.bench_with_input(BenchmarkId::new("rayon", IN_FLIGHT), &IN_FLIGHT, |b, &n| {
        let (pool, tx, rx) = rayon.get_or_insert_with(|| rayon_rig(workers));
        b.iter(|| {
            for i in 0..n as u64 {
                let tx = tx.clone();
                pool.spawn(move || {
                    let _ = tx.send(tasks::noop(i));
                });
            }
            for _ in 0..n {
                black_box(rx.recv().expect("rayon: result"));
            }
        });
    });
    let needed = 3 * IN_FLIGHT as u64 + 100;
    match fixtures::open_files_limit() {
        Some(limit) if limit < needed => eprintln!(
            "in_flight/procspawn skipped: it needs about {needed} open files, the limit is {limit} \
             (raise it with `ulimit -n {needed}`)"
        ),
        _ => {
            let mut peer = None;
            group.bench_with_input(
                BenchmarkId::new("procspawn", IN_FLIGHT),
                &IN_FLIGHT,
                |b, &n| {
                    let peer = peer.get_or_insert_with(|| ProcspawnPeer::new(workers));
                    b.iter_custom(|iters| (0..iters).map(|_| peer.in_flight(n)).sum());
                },
            );
        }
    }
    group.finish();
}

/// Submits `n` no-ops, then joins every handle.
#[cfg(any(feature = "thread-pool", feature = "process-pool"))]
fn submit_then_join(pool: &impl Pool, n: usize) {
    let handles: Vec<_> = (0..n as u64).map(|i| pool.submit(tasks::noop, i)).collect();
    for handle in handles {
        black_box(handle.join().expect("no-op"));
    }
}

/// `map` of a no-op over 100,000 items with automatic chunks.
fn map(c: &mut Criterion) {
    let workers = fixtures::small_pool();
    let items: Vec<u64> = (0..MAP_ITEMS).collect();
    let mut group = c.benchmark_group("map");
    group.throughput(Throughput::Elements(MAP_ITEMS));
    #[cfg(feature = "thread-pool")]
    {
        let mut pool = None;
        group.bench_with_input(BenchmarkId::new("threads", MAP_ITEMS), &items, |b, items| {
            let pool = pool.get_or_insert_with(|| thread_pool(workers));
            b.iter(|| black_box(pool.map(tasks::noop, items.iter().copied()).expect("map")));
        });
    }
    #[cfg(feature = "process-pool")]
    {
        let mut pool = None;
        group.bench_with_input(BenchmarkId::new("processes", MAP_ITEMS), &items, |b, items| {
            let pool = pool.get_or_insert_with(|| process_pool(workers));
            b.iter(|| black_box(pool.map(tasks::noop, items.iter().copied()).expect("map")));
        });
    }
    let mut rayon = None;
    group.bench_with_input(BenchmarkId::new("rayon", MAP_ITEMS), &items, |b, items| {
        use rayon::prelude::*;
        let pool = rayon.get_or_insert_with(|| rayon_pool(workers));
        b.iter(|| {
            pool.install(|| {
                black_box(items.par_iter().map(|&x| tasks::noop(x)).collect::<Vec<u64>>())
            })
        });
    });
    group.finish();
}

/// A byte buffer to a task that returns it, and back; one task in flight.
fn payload(c: &mut Criterion) {
    let workers = fixtures::small_pool();
    let mut group = c.benchmark_group("payload");
    // Started on first use and shared by the sizes; a filter that skips them starts nothing.
    #[cfg(feature = "thread-pool")]
    let mut threads = None;
    #[cfg(feature = "process-pool")]
    let mut processes = None;
    let mut floor = None;
    let mut procspawn = None;
    for size in PAYLOADS {
        group.throughput(Throughput::Bytes(size as u64));
        if size >= LARGE_PAYLOAD {
            group.sample_size(10);
        }
        let bytes = vec![0xA5_u8; size];
        #[cfg(feature = "process-pool")]
        {
            let buf = ByteBuf::from(bytes.clone());
            group.bench_with_input(BenchmarkId::new("processes-bytebuf", size), &buf, |b, buf| {
                let pool = processes.get_or_insert_with(|| process_pool(workers));
                b.iter_batched(
                    || buf.clone(),
                    |p| echoed(pool.apply(tasks::echo, p).expect("echo"), size),
                    BatchSize::PerIteration,
                );
            });
            group.bench_with_input(BenchmarkId::new("processes-vec", size), &bytes, |b, bytes| {
                let pool = processes.get_or_insert_with(|| process_pool(workers));
                b.iter_batched(
                    || bytes.clone(),
                    |p| echoed(pool.apply(tasks::echo_vec, p).expect("echo_vec"), size),
                    BatchSize::PerIteration,
                );
            });
        }
        #[cfg(feature = "thread-pool")]
        {
            let buf = ByteBuf::from(bytes.clone());
            group.bench_with_input(BenchmarkId::new("threads", size), &buf, |b, buf| {
                let pool = threads.get_or_insert_with(|| thread_pool(workers));
                b.iter_batched(
                    || buf.clone(),
                    |p| echoed(pool.apply(tasks::echo, p).expect("echo"), size),
                    BatchSize::PerIteration,
                );
            });
        }
        group.bench_with_input(BenchmarkId::new("pipe-floor", size), &bytes, |b, bytes| {
            let floor = floor.get_or_insert_with(start_floor);
            b.iter(|| floor.round_trip(black_box(bytes)).expect("pipe floor round trip"));
        });
        if size <= PROCSPAWN_MAX_PAYLOAD {
            group.bench_with_input(BenchmarkId::new("procspawn", size), &size, |b, &size| {
                let peer = procspawn.get_or_insert_with(|| ProcspawnPeer::new(workers));
                b.iter_custom(|iters| (0..iters).map(|_| peer.payload_round_trip(size)).sum());
            });
        }
    }
    group.finish();
}

/// Checks an echoed payload's length and hands it back for criterion to drop untimed.
#[cfg(any(feature = "thread-pool", feature = "process-pool"))]
fn echoed<T: AsRef<[u8]>>(payload: T, size: usize) -> T {
    assert_eq!(payload.as_ref().len(), size, "the echo has the wrong length");
    payload
}
