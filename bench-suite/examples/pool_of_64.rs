//! What the pool that 64 waits at once need costs: its start-up (from `new` to the first
//! result) and its memory per worker once every worker has run a task, with threads and with
//! processes (the report's rows on the pool of 64).
//!
//! Memory is the growth of the proportional set size (PSS) of this program and of the
//! processes it started, summed: a page shared by k processes counts 1/k in each, so the sum
//! is what the pool adds to the machine, counted the same way for threads and processes.
//! Read it from `/proc/PID/smaps_rollup`, as `ps` and `smem` do.
//!
//! Output lines start with the backend, `[threads]` or `[processes]`. Run with
//! `cargo run --release -p taskpool-bench --example pool_of_64`; add
//! `--no-default-features --features process-pool` (or `thread-pool`) for one backend.
// Built with neither feature (the cluster's alone, as CI checks it), it has nothing to run.
#![cfg_attr(
    not(any(feature = "thread-pool", feature = "process-pool")),
    allow(dead_code, unused_imports, unused_variables)
)]

use std::time::Instant;

use taskpool_bench::tasks;
use taskpool_core::{Pool, TaskError};

const WORKERS: usize = 64;

/// The PSS of process `pid` in KiB, if it can be read.
fn pss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Pss:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// This program's direct children (the pool's worker processes), from every thread's
/// `/proc/self/task/TID/children`.
fn children() -> Vec<u32> {
    let Ok(threads) = std::fs::read_dir("/proc/self/task") else { return Vec::new() };
    threads
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>()
        })
        .collect()
}

/// The summed PSS of this program and its children, in KiB.
fn program_pss_kib() -> u64 {
    std::iter::once(std::process::id()).chain(children()).filter_map(pss_kib).sum()
}

/// Starts a pool of 64 with `start`, times it to the first result, runs four sleeping tasks
/// per worker, and prints what the pool added to the program.
fn measure<P: Pool>(
    backend: &str,
    start: impl FnOnce() -> Result<P, TaskError>,
) -> Result<(), TaskError> {
    let before = program_pss_kib();
    let clock = Instant::now();
    let pool = start()?;
    pool.apply(tasks::noop, 1)?;
    let startup = clock.elapsed();
    let handles: Vec<_> = (0..4 * WORKERS).map(|_| pool.submit(tasks::nap, 10_000)).collect();
    for handle in handles {
        handle.join()?;
    }
    let grown = program_pss_kib().saturating_sub(before);
    println!(
        "[{backend}] pool of {WORKERS}: start-up {:.2} ms; memory {grown} KiB, {} KiB per worker; {} worker processes",
        startup.as_secs_f64() * 1e3,
        grown / WORKERS as u64,
        children().len()
    );
    Ok(())
}

fn main() -> Result<(), TaskError> {
    taskpool_bench::init();

    #[cfg(feature = "thread-pool")]
    measure("threads", || taskpool_thread::ThreadPool::new(WORKERS))?;

    #[cfg(feature = "process-pool")]
    measure("processes", || taskpool_process::ProcessPool::new(WORKERS))?;
    Ok(())
}
