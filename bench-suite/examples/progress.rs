//! A long `map` that reports its progress: 400 items of about a millisecond of CPU each (the
//! primes in a range), with a live `done/total` line on stderr while it runs, on a
//! `ProcessPool` and on a `ThreadPool`. On processes, items travel to the workers in batches
//! and their results stream back one by one, so the count moves item by item all the same.
//! Output lines start with the backend, `[processes]` or `[threads]`.
//!
//! A terminal progress bar plugs into the same callback; with `indicatif`:
//! `|done, total| { bar.set_length(total as u64); bar.set_position(done as u64) }`.
//!
//! Run with `cargo run --release -p taskpool-bench --example progress`; add
//! `--no-default-features --features process-pool` (or `thread-pool`) for one backend.
// Built with neither feature (the cluster's alone, as CI checks it), it has nothing to run.
#![cfg_attr(
    not(any(feature = "thread-pool", feature = "process-pool")),
    allow(dead_code, unused_imports, unused_variables)
)]

use std::io::Write;

use taskpool_bench::kernels::count_primes;
use taskpool_core::{Pool, TaskError};

/// Items of the map.
const ITEMS: u64 = 400;
/// Numbers tested per item.
const SPAN: u64 = 20_000;

/// The primes among the `SPAN` numbers from `first`.
fn primes_from(first: u64) -> u64 {
    count_primes(first, SPAN)
}

/// Maps [`primes_from`] over the items with a progress line; returns the number of primes
/// and how many times progress was reported.
fn run(pool: &impl Pool, backend: &str) -> Result<(u64, usize), TaskError> {
    let mut reports = 0;
    let mut last = 0;
    let starts = (0..ITEMS).map(|i| i * SPAN);
    let counts = pool.map_with_progress(primes_from, starts, |done, total| {
        assert!(done >= last, "progress went back from {last} to {done}");
        last = done;
        reports += 1;
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r[{backend}] {done}/{total} items");
        let _ = err.flush();
    })?;
    eprintln!();
    Ok((counts.into_iter().sum(), reports))
}

fn main() -> Result<(), TaskError> {
    taskpool_bench::init();
    let expected = count_primes(0, ITEMS * SPAN);

    #[cfg(feature = "process-pool")]
    {
        let pool = taskpool_process::ProcessPool::new(2)?;
        let (primes, reports) = run(&pool, "processes")?;
        assert_eq!(primes, expected);
        println!("[processes] {ITEMS}/{ITEMS} items, {primes} primes, {reports} progress reports");
    }

    #[cfg(feature = "thread-pool")]
    {
        let pool = taskpool_thread::ThreadPool::new(2)?;
        let (primes, reports) = run(&pool, "threads")?;
        assert_eq!(primes, expected);
        println!("[threads] {ITEMS}/{ITEMS} items, {primes} primes, {reports} progress reports");
    }
    Ok(())
}
