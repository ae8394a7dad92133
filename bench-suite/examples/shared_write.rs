//! Shared memory or separate memory: four tasks each add one to a global counter, then the
//! caller reads its own counter, with threads and with processes (the homework table's
//! "memory" row).
//!
//! On threads the tasks write the caller's memory: the caller's counter reads 4. In worker
//! processes each worker writes its own copy: the tasks see their worker's count, and the
//! caller's counter stays 0. A value crosses a process boundary only as a task's argument or
//! result.
//!
//! Output lines start with the backend, `[threads]` or `[processes]`. Run with
//! `cargo run -p taskpool-bench --example shared_write`; add
//! `--no-default-features --features process-pool` (or `thread-pool`) for one backend.
// Built with neither feature (the cluster's alone, as CI checks it), it has nothing to run.
#![cfg_attr(
    not(any(feature = "thread-pool", feature = "process-pool")),
    allow(dead_code, unused_imports, unused_variables)
)]

use taskpool_bench::tasks;
use taskpool_core::{Pool, TaskError};

/// Runs four writes on `pool` and prints what the tasks and the caller saw.
fn writes(backend: &str, pool: &impl Pool) -> Result<(), TaskError> {
    let before = tasks::global_writes();
    let seen = pool.map(tasks::write_global, 0..4)?;
    let caller = tasks::global_writes() - before;
    let shared = if caller == 4 { "shared memory" } else { "separate memory" };
    println!(
        "[{backend}] the tasks saw the counter at {seen:?}; the caller's counter: {caller} ({shared})"
    );
    Ok(())
}

fn main() -> Result<(), TaskError> {
    taskpool_bench::init();

    #[cfg(feature = "thread-pool")]
    writes("threads", &taskpool_thread::ThreadPool::new(2)?)?;

    #[cfg(feature = "process-pool")]
    writes("processes", &taskpool_process::ProcessPool::new(2)?)?;
    Ok(())
}
