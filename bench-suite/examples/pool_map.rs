//! A pool of 4 maps `square` over 1..=5 and gets `[1, 4, 9, 16, 25]`, in order: the seed
//! documents' Q4/Q5,
//!
//! ```python
//! def square(x):
//!     return x * x
//!
//! with multiprocessing.Pool(processes=4) as pool:
//!     results = pool.map(square, [1, 2, 3, 4, 5])
//! print(results)  # [1, 4, 9, 16, 25]
//! ```
//!
//! on a `ProcessPool` and on a `ThreadPool`: the same code through the shared `Pool` trait.
//! Output lines start with the backend, `[processes]` or `[threads]`.
//!
//! Run with `cargo run -p taskpool-bench --example pool_map`; add
//! `--no-default-features --features process-pool` (or `thread-pool`) for one backend.
// Built with neither feature (the cluster's alone, as CI checks it), it has nothing to run.
#![cfg_attr(
    not(any(feature = "thread-pool", feature = "process-pool")),
    allow(dead_code, unused_imports, unused_variables)
)]

use taskpool_core::{Pool, TaskError};

fn square(x: u64) -> u64 {
    x * x
}

/// What this example does, on any backend.
fn squares(pool: &impl Pool) -> Result<Vec<u64>, TaskError> {
    let squares = pool.map(square, 1..=5)?;
    assert_eq!(squares, [1, 4, 9, 16, 25]);
    Ok(squares)
}

fn main() -> Result<(), TaskError> {
    taskpool_bench::init();

    #[cfg(feature = "process-pool")]
    {
        let pool = taskpool_process::ProcessPool::new(4)?;
        println!("[processes] {:?}", squares(&pool)?);
    }

    #[cfg(feature = "thread-pool")]
    {
        let pool = taskpool_thread::ThreadPool::new(4)?;
        println!("[threads] {:?}", squares(&pool)?);
    }
    Ok(())
}
