//! Four workers, each printing a different number with its pid, then all joined: the seed
//! documents' Q6,
//!
//! ```python
//! def print_number(num):
//!     print(f"Process {num}: {num}")
//!
//! processes = []
//! for i in range(4):
//!     process = multiprocessing.Process(target=print_number, args=(i,))
//!     processes.append(process)
//!     process.start()
//! for process in processes:
//!     process.join()
//! ```
//!
//! with four processes (`taskpool_process::spawn`: four different pids) and with four threads
//! (`taskpool_thread::spawn`: one pid, the parent's). The lines of one backend come in any
//! order, as in Python. Output lines start with the backend, `[processes]` or `[threads]`.
//!
//! Run with `cargo run -p taskpool-bench --example four_processes`; add
//! `--no-default-features --features process-pool` (or `thread-pool`) for one backend.
// Built with neither feature (the cluster's alone, as CI checks it), it has nothing to run.
#![cfg_attr(
    not(any(feature = "thread-pool", feature = "process-pool")),
    allow(dead_code, unused_imports, unused_variables)
)]

use taskpool_core::{Spawned, TaskError};

/// The task: prints its number and the pid it runs in, and returns that pid.
fn print_number(backend: String, n: u32) -> u32 {
    let pid = std::process::id();
    let who = if backend == "threads" { "Thread" } else { "Process" };
    println!("[{backend}] {who} {n}: {n} (pid {pid})");
    pid
}

/// Joins every child in order and returns the pids they ran in.
fn join_all(children: Vec<Spawned<u32>>) -> Result<Vec<u32>, TaskError> {
    children.into_iter().map(Spawned::join).collect()
}

fn main() -> Result<(), TaskError> {
    taskpool_bench::init();
    let parent = std::process::id();

    #[cfg(feature = "process-pool")]
    {
        let children = (0..4)
            .map(|n| taskpool_process::spawn(print_number, ("processes".to_string(), n)))
            .collect::<Result<Vec<_>, _>>()?;
        let pids = join_all(children)?;
        println!("[processes] joined all 4: pids {pids:?}, parent pid {parent}");
    }

    #[cfg(feature = "thread-pool")]
    {
        let children = (0..4)
            .map(|n| taskpool_thread::spawn(print_number, ("threads".to_string(), n)))
            .collect::<Result<Vec<_>, _>>()?;
        let pids = join_all(children)?;
        println!("[threads] joined all 4: pids {pids:?}, parent pid {parent}");
    }
    Ok(())
}
