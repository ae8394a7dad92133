//! Many tasks that block on a socket read: 256 tasks that each ask a slow local service for
//! an answer it sends after 10 ms, on a pool of 64 workers, with threads and with processes
//! (the report's "tasks that each read a local server's answer" rows).
//!
//! The service (`SlowService`) is a server thread of this program on a local Unix socket; a
//! task connects, asks, and blocks reading the answer, as a task blocks on a slow database or
//! web service. The service answers every request after the delay it asks for, however many
//! wait at once, so 64 workers finish 256 tasks in four waves of 10 ms: at most 6,400 tasks
//! per second. Worker processes reach the service as the threads do: it is named, not
//! inherited.
//!
//! Output lines start with the backend, `[threads]` or `[processes]`. Run with
//! `cargo run --release -p taskpool-bench --example io_socket`; add
//! `--no-default-features --features process-pool` (or `thread-pool`) for one backend.
// Built with neither feature (the cluster's alone, as CI checks it), it has nothing to run.
#![cfg_attr(
    not(any(feature = "thread-pool", feature = "process-pool")),
    allow(dead_code, unused_imports, unused_variables)
)]

use std::error::Error;
use std::time::Instant;

use taskpool_bench::{SlowService, tasks};
use taskpool_core::Pool;

const WORKERS: usize = 64;
const TASKS: usize = 4 * WORKERS;
const DELAY_US: u64 = 10_000;

/// Runs the reads on `pool` (once untimed, so that every worker is up) and prints what they
/// took.
fn reads(backend: &str, pool: &impl Pool, service: &SlowService) -> Result<(), Box<dyn Error>> {
    let run = || -> Result<(), Box<dyn Error>> {
        let ask = |_| pool.submit(tasks::ask, (service.name().to_owned(), DELAY_US));
        let handles: Vec<_> = (0..TASKS).map(ask).collect();
        for handle in handles {
            handle.join()??;
        }
        Ok(())
    };
    run()?;
    let (answered, start) = (service.answered(), Instant::now());
    run()?;
    let took = start.elapsed();
    println!(
        "[{backend}] {TASKS} tasks that each read an answer sent after 10 ms, on {WORKERS} \
         workers: {:.1} ms, {:.0} tasks/s (at most {:.0}); the service answered {} of them",
        took.as_secs_f64() * 1e3,
        TASKS as f64 / took.as_secs_f64(),
        WORKERS as f64 * 1e6 / DELAY_US as f64,
        service.answered() - answered
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    taskpool_bench::init();
    let service = SlowService::start()?;

    #[cfg(feature = "thread-pool")]
    reads("threads", &taskpool_thread::ThreadPool::new(WORKERS)?, &service)?;

    #[cfg(feature = "process-pool")]
    reads("processes", &taskpool_process::ProcessPool::new(WORKERS)?, &service)?;
    Ok(())
}
