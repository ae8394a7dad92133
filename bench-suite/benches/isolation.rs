//! Isolation: what a failure costs on the process backend, in time until work is served again.
//!
//! | group | what one iteration does | variants | parameter |
//! |---|---|---|---|
//! | `crash` | a task segfaults (`tasks::segfault`), then a no-op runs; timed from submitting the crash to the no-op's result | `processes` (`ProcessPool`), `procspawn` (`procspawn::Pool`) | workers: 1, 2 |
//! | `beyond_timeout_20ms` | a task hangs (`tasks::hang`) in a pool with a 20 ms timeout and is killed, then a no-op runs; **the time reported is the time beyond the 20 ms limit** (kill, reap, respawn, next task; the no-op gets a 10 s limit of its own) | `processes` | workers: 1, 2 |
//! | `recycle` | a no-op in a pool with `max_tasks_per_worker(1)`, so every task needs a fresh worker | `processes` | workers: 1, 2 |
//!
//! With one worker, the next task always waits for the replacement worker; with two it may
//! run on the survivor while the replacement starts. Every crash is checked to be reported as
//! SIGSEGV and every timeout as a kill (`still_running: false`). procspawn's pool has no
//! pool-wide timeout and no per-worker task quota, so the last two groups have no procspawn
//! row; it reports a crash only as a closed connection, without the signal.
//!
//! Process backend only: a thread cannot survive any of these. A segfault in a thread kills
//! the whole program, a hung thread cannot be stopped, and a thread has no fresh address
//! space to recycle into (the `crash` example shows the first as a measured fact).
//!
//! Run with `cargo bench -p taskpool-bench --bench isolation`. Without the `process-pool`
//! feature only the procspawn rows run.

use std::hint::black_box;
use std::time::Duration;
#[cfg(feature = "process-pool")]
use std::time::Instant;

use criterion::{BenchmarkId, Criterion};
use taskpool_bench::fixtures;
use taskpool_bench::peers::procspawn::ProcspawnPeer;
use taskpool_bench::tasks;
#[cfg(feature = "process-pool")]
use taskpool_process::{Config, Pool, ProcessPool, TaskError};

/// How long the procspawn rows wait for a respawned worker before dropping their pool.
const PROCSPAWN_SETTLE: Duration = Duration::from_millis(300);
/// SIGSEGV on Linux.
#[cfg(feature = "process-pool")]
const SIGSEGV: i32 = 11;
/// The time limit of the `timeout` benchmark.
#[cfg(feature = "process-pool")]
const TIMEOUT: Duration = Duration::from_millis(20);
/// The time limit of the no-op that follows the timed-out task.
#[cfg(feature = "process-pool")]
const NEXT_TASK_LIMIT: Duration = Duration::from_secs(10);

fn main() {
    taskpool_bench::init();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    crash(&mut c);
    #[cfg(feature = "process-pool")]
    timeout(&mut c);
    #[cfg(feature = "process-pool")]
    recycle(&mut c);
    c.final_summary();
}

/// Worker counts: 1 and 2, capped at the CPU count.
fn worker_counts() -> Vec<usize> {
    (1..=fixtures::small_pool()).collect()
}

/// A segfaulting task, then a no-op.
fn crash(c: &mut Criterion) {
    let mut group = c.benchmark_group("crash");
    group.sample_size(20);
    for workers in worker_counts() {
        #[cfg(feature = "process-pool")]
        {
            let mut pool = None;
            group.bench_with_input(BenchmarkId::new("processes", workers), &workers, |b, &w| {
                let pool = pool.get_or_insert_with(|| process_pool(Config::new().workers(w)));
                b.iter(|| {
                    let err = pool.apply(tasks::segfault, 0).expect_err("the segfault returned");
                    assert_eq!(err.signal(), Some(SIGSEGV), "unexpected failure: {err}");
                    black_box(pool.apply(tasks::noop, 1).expect("the task after a crash"))
                });
            });
        }
        let mut peer = None;
        group.bench_with_input(BenchmarkId::new("procspawn", workers), &workers, |b, &w| {
            let peer = peer.get_or_insert_with(|| ProcspawnPeer::new(w));
            b.iter(|| {
                let outcome = peer.crash_then_next(tasks::segfault, None);
                assert!(outcome.next_ok, "procspawn: no task after a crash: {outcome:?}");
                black_box(outcome)
            });
        });
        if let Some(peer) = peer {
            // procspawn respawns a crashed worker in the background, and a worker still
            // connecting when its pool is dropped panics ("could not bootstrap ipc
            // connection"): let the last respawn finish before the pool goes.
            std::thread::sleep(PROCSPAWN_SETTLE);
            drop(peer);
        }
    }
    group.finish();
}

/// A hung task killed at a 20 ms limit, then a no-op; reports the time beyond the limit.
#[cfg(feature = "process-pool")]
fn timeout(c: &mut Criterion) {
    let mut group = c.benchmark_group(format!("beyond_timeout_{}ms", TIMEOUT.as_millis()));
    group.sample_size(10);
    for workers in worker_counts() {
        let mut pool = None;
        group.bench_with_input(BenchmarkId::new("processes", workers), &workers, |b, &w| {
            let pool =
                pool.get_or_insert_with(|| process_pool(Config::new().workers(w).timeout(TIMEOUT)));
            b.iter_custom(|iters| {
                let mut beyond = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    match pool.apply(tasks::hang, 0) {
                        Err(TaskError::TimedOut { still_running: false, .. }) => {}
                        other => panic!("expected the hung task to be killed, got {other:?}"),
                    }
                    // The no-op gets a limit of its own: on a loaded machine a task sent to
                    // a worker that has just started can now and then miss 20 ms.
                    let next = pool.submit_timeout(tasks::noop, 1, NEXT_TASK_LIMIT);
                    black_box(next.join().expect("the task after a timeout"));
                    beyond += start.elapsed().saturating_sub(TIMEOUT);
                }
                beyond
            });
        });
    }
    group.finish();
}

/// A no-op on a pool whose workers each serve one task.
#[cfg(feature = "process-pool")]
fn recycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("recycle");
    group.sample_size(20);
    for workers in worker_counts() {
        let mut pool = None;
        group.bench_with_input(BenchmarkId::new("processes", workers), &workers, |b, &w| {
            let pool = pool.get_or_insert_with(|| {
                process_pool(Config::new().workers(w).max_tasks_per_worker(1))
            });
            b.iter(|| black_box(pool.apply(tasks::noop, 1).expect("no-op")));
        });
    }
    group.finish();
}

#[cfg(feature = "process-pool")]
fn process_pool(config: Config) -> ProcessPool {
    ProcessPool::with_config(config).expect("starting a process pool")
}
