//! CPU-bound work with no GIL: the same primes counted sequentially and on a pool of one
//! worker per CPU, with threads and with processes (the homework table's "GIL" and "best for"
//! rows, where Python's threads stay at 1× and its processes speed up).
//!
//! Rust threads run in parallel like processes do: both speed up by about the number of
//! CPUs, and every result is checked against the sequential count. Each figure is the median
//! of several rounds, and each round runs the sequential count and every pool's in turn, so
//! that other work on the machine slows them alike; a single timing of each, on a busy
//! machine, can show either backend faster than the other, or a speed-up above the number of
//! CPUs.
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

/// 64 tasks of 5,000 numbers each from 1,000,000: about half a millisecond each in a release
/// build, twice that in a debug one.
const TASKS: u64 = 64;
const LEN: u64 = 5_000;
/// Rounds, each timing the sequential count and every pool's once.
const ROUNDS: usize = 5;

fn inputs() -> impl Iterator<Item = (u64, u64)> {
    (0..TASKS).map(|i| (1_000_000 + i * LEN, LEN))
}

/// One timed count: the number of primes and how long counting them took.
type Run<'a> = Box<dyn FnMut() -> Result<(u64, Duration), TaskError> + 'a>;

/// A timed count on `pool`, after a first untimed `map` that starts every worker.
fn on_pool<'a>(pool: &'a impl Pool) -> Result<Run<'a>, TaskError> {
    pool.map(tasks::primes, inputs().take(pool.workers()))?;
    Ok(Box::new(move || {
        let start = Instant::now();
        let count: u64 = pool.map(tasks::primes, inputs())?.into_iter().sum();
        Ok((count, start.elapsed()))
    }))
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(time: Duration) -> f64 {
    time.as_secs_f64() * 1e3
}

fn main() -> Result<(), TaskError> {
    taskpool_bench::init();
    #[cfg(feature = "thread-pool")]
    let threads = taskpool_thread::ThreadPool::new(cores())?;
    #[cfg(feature = "process-pool")]
    let processes = taskpool_process::ProcessPool::new(cores())?;

    // The variants, timed in turn in each round: a label, the workers, the run.
    let sequential: Run<'_> = Box::new(|| {
        let start = Instant::now();
        let count: u64 = inputs().map(|(s, l)| tasks::primes(s, l)).sum();
        Ok((count, start.elapsed()))
    });
    let mut variants: Vec<(&str, usize, Run<'_>)> = vec![("sequential", 1, sequential)];
    #[cfg(feature = "thread-pool")]
    variants.push(("threads", threads.workers(), on_pool(&threads)?));
    #[cfg(feature = "process-pool")]
    variants.push(("processes", processes.workers(), on_pool(&processes)?));

    let mut times = vec![Vec::new(); variants.len()];
    let mut counts = vec![0; variants.len()];
    for _ in 0..ROUNDS {
        for (i, (_, _, run)) in variants.iter_mut().enumerate() {
            let (count, took) = run()?;
            counts[i] = count;
            times[i].push(took);
        }
    }
    let medians: Vec<Duration> = times.into_iter().map(median).collect();
    let count = counts[0];
    println!("[sequential] {count} primes: {:.1} ms (median of {ROUNDS} rounds)", ms(medians[0]));
    for (i, (backend, workers, _)) in variants.iter().enumerate().skip(1) {
        assert_eq!(counts[i], count, "the pool counted differently");
        println!(
            "[{backend}] {count} primes on {workers} workers: {:.1} ms, {:.2}× the sequential speed",
            ms(medians[i]),
            medians[0].as_secs_f64() / medians[i].as_secs_f64()
        );
    }
    Ok(())
}
