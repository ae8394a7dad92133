//! What a pool costs before any work: its start-up (from `new` to the first result) and the
//! round trip of one task that does nothing, with threads and with processes (the homework
//! table's "overhead" row).
//!
//! In a release build, a thread pool starts in well under a millisecond and moves a task in
//! under a microsecond; a process pool starts its workers by running this program again
//! (milliseconds) and moves a task through shared memory (a microsecond or two). A debug
//! build, or a machine busy with other work, takes several times longer.
//!
//! Output lines start with the backend, `[threads]` or `[processes]`. Run with
//! `cargo run --release -p taskpool-bench --example overhead`; add
//! `--no-default-features --features process-pool` (or `thread-pool`) for one backend.
// Built with neither feature (the cluster's alone, as CI checks it), it has nothing to run.
#![cfg_attr(
    not(any(feature = "thread-pool", feature = "process-pool")),
    allow(dead_code, unused_imports, unused_variables)
)]

use std::time::{Duration, Instant};

use taskpool_bench::{cores, tasks};
use taskpool_core::{Pool, TaskError};

const ROUND_TRIPS: usize = 1000;

/// Starts a pool with `start`, times it to the first result, then times round trips.
fn measure<P: Pool>(
    backend: &str,
    start: impl FnOnce() -> Result<P, TaskError>,
) -> Result<(), TaskError> {
    let clock = Instant::now();
    let pool = start()?;
    pool.apply(tasks::noop, 1)?;
    let startup = clock.elapsed();
    let mut times: Vec<Duration> = (0..ROUND_TRIPS)
        .map(|i| {
            let clock = Instant::now();
            pool.apply(tasks::noop, i as u64).map(|_| clock.elapsed())
        })
        .collect::<Result<_, _>>()?;
    times.sort();
    println!(
        "[{backend}] pool of {}: start-up {:.3} ms; round trip of a no-op: median {:.2} µs over {ROUND_TRIPS}",
        pool.workers(),
        startup.as_secs_f64() * 1e3,
        times[ROUND_TRIPS / 2].as_secs_f64() * 1e6
    );
    Ok(())
}

fn main() -> Result<(), TaskError> {
    taskpool_bench::init();

    #[cfg(feature = "thread-pool")]
    measure("threads", || taskpool_thread::ThreadPool::new(cores()))?;

    #[cfg(feature = "process-pool")]
    measure("processes", || taskpool_process::ProcessPool::new(cores()))?;
    Ok(())
}
