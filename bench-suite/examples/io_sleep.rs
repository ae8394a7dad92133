//! Many tasks that mostly wait, the simplest kind: 256 tasks that each sleep 10 ms, on a pool
//! of 64 workers, with threads and with processes (the report's "tasks that each sleep
//! 10 ms" rows).
//!
//! A waiting task needs a worker but no CPU, so 64 workers finish 256 such tasks in four
//! waves of 10 ms: at most 6,400 tasks per second, on a machine with any number of CPUs.
//! What a pool falls short of that is its own overhead. The tasks return the pid they ran in:
//! one pid, the caller's, on threads; the worker processes' on processes.
//!
//! Output lines start with the backend, `[threads]` or `[processes]`. Run with
//! `cargo run --release -p taskpool-bench --example io_sleep`; add
//! `--no-default-features --features process-pool` (or `thread-pool`) for one backend.
// Built with neither feature (the cluster's alone, as CI checks it), it has nothing to run.
#![cfg_attr(
    not(any(feature = "thread-pool", feature = "process-pool")),
    allow(dead_code, unused_imports, unused_variables)
)]

use std::collections::BTreeSet;
use std::time::Instant;

use taskpool_bench::tasks;
use taskpool_core::{Pool, TaskError};

const WORKERS: usize = 64;
const TASKS: usize = 4 * WORKERS;
const SLEEP_US: u64 = 10_000;

/// Runs the waits on `pool` (once untimed, so that every worker is up) and prints what it took.
fn waits(backend: &str, pool: &impl Pool) -> Result<(), TaskError> {
    let run = || -> Result<Vec<u32>, TaskError> {
        let handles: Vec<_> = (0..TASKS).map(|_| pool.submit(tasks::nap, SLEEP_US)).collect();
        handles.into_iter().map(|h| h.join()).collect()
    };
    run()?;
    let start = Instant::now();
    let pids: BTreeSet<u32> = run()?.into_iter().collect();
    let took = start.elapsed();
    let ideal = WORKERS as f64 * 1e6 / SLEEP_US as f64;
    println!(
        "[{backend}] {TASKS} tasks that each sleep 10 ms on {WORKERS} workers: {:.1} ms, {:.0} \
         tasks/s (at most {ideal:.0}); they ran in {} pid(s), the caller is pid {}",
        took.as_secs_f64() * 1e3,
        TASKS as f64 / took.as_secs_f64(),
        pids.len(),
        std::process::id()
    );
    println!("[{backend}] pids: {:?}", pids.iter().collect::<Vec<_>>());
    Ok(())
}

fn main() -> Result<(), TaskError> {
    taskpool_bench::init();

    #[cfg(feature = "thread-pool")]
    waits("threads", &taskpool_thread::ThreadPool::new(WORKERS)?)?;

    #[cfg(feature = "process-pool")]
    waits("processes", &taskpool_process::ProcessPool::new(WORKERS)?)?;
    Ok(())
}
