//! CPU-bound work with no GIL: the same primes counted sequentially and on a pool of one
//! worker per CPU, with threads and with processes (the homework table's "GIL" and "best for"
//! rows, where Python's threads stay at 1× and its processes speed up).
//!
//! Rust threads run in parallel like processes do: both speed up by about the number of
//! CPUs, and every result is checked against the sequential count.
//!
//! Output lines start with the backend, `[threads]` or `[processes]` (and `[sequential]`).
//! Run with `cargo run --release -p taskpool-bench --example cpu_bound`; add
//! `--no-default-features --features process-pool` (or `thread-pool`) for one backend.
// Built with neither feature (the cluster's alone, as CI checks it), it has nothing to run.
#![cfg_attr(
    not(any(feature = "thread-pool", feature = "process-pool")),
    allow(dead_code, unused_imports, unused_variables)
)]

use std::time::{Duration, Instant};

use taskpool_bench::{cores, tasks};
use taskpool_core::{Pool, TaskError};

/// 64 tasks of 5,000 numbers each from 1,000,000: a few milliseconds each in release builds.
const TASKS: u64 = 64;
const LEN: u64 = 5_000;

fn inputs() -> impl Iterator<Item = (u64, u64)> {
    (0..TASKS).map(|i| (1_000_000 + i * LEN, LEN))
}

/// Counts on `pool`, checks the count, and prints the speed-up over `sequential`.
fn parallel(backend: &str, pool: &impl Pool, sequential: (u64, Duration)) -> Result<(), TaskError> {
    pool.map(tasks::primes, inputs().take(pool.workers()))?;
    let start = Instant::now();
    let count: u64 = pool.map(tasks::primes, inputs())?.into_iter().sum();
    let took = start.elapsed();
    assert_eq!(count, sequential.0, "the pool counted differently");
    println!(
        "[{backend}] {count} primes on {} workers: {:.1} ms, {:.2}× the sequential time",
        pool.workers(),
        took.as_secs_f64() * 1e3,
        sequential.1.as_secs_f64() / took.as_secs_f64()
    );
    Ok(())
}

fn main() -> Result<(), TaskError> {
    taskpool_bench::init();
    let start = Instant::now();
    let count: u64 = inputs().map(|(s, l)| tasks::primes(s, l)).sum();
    let sequential = (count, start.elapsed());
    println!("[sequential] {count} primes: {:.1} ms", sequential.1.as_secs_f64() * 1e3);

    #[cfg(feature = "thread-pool")]
    parallel("threads", &taskpool_thread::ThreadPool::new(cores())?, sequential)?;

    #[cfg(feature = "process-pool")]
    parallel("processes", &taskpool_process::ProcessPool::new(cores())?, sequential)?;
    Ok(())
}
