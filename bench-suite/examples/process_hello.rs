//! One worker that says hello, then is joined: the seed documents' Q3,
//!
//! ```python
//! def worker():
//!     print("Worker process")
//!
//! process = multiprocessing.Process(target=worker)
//! process.start()
//! process.join()
//! ```
//!
//! `taskpool_process::spawn` starts a process (it prints its own pid, which differs from the
//! parent's); `taskpool_thread::spawn` starts a thread with the same handle API (same pid as
//! the parent). `join` returns what the task returned. Output lines start with the backend,
//! `[processes]` or `[threads]`.
//!
//! Run with `cargo run -p taskpool-bench --example process_hello`; add
//! `--no-default-features --features process-pool` (or `thread-pool`) for one backend.
// Built with neither feature (the cluster's alone, as CI checks it), it has nothing to run.
#![cfg_attr(
    not(any(feature = "thread-pool", feature = "process-pool")),
    allow(dead_code, unused_imports, unused_variables)
)]

use taskpool_core::TaskError;

/// The task: greets from wherever it runs and returns the pid it ran in.
fn greet(backend: String, parent: u32) -> u32 {
    let pid = std::process::id();
    let thread = std::thread::current();
    let name = thread.name().map(|n| format!(" (thread {n})")).unwrap_or_default();
    println!("[{backend}] hello from pid {pid}{name}, parent pid {parent}");
    pid
}

fn main() -> Result<(), TaskError> {
    taskpool_bench::init();
    let parent = std::process::id();

    #[cfg(feature = "process-pool")]
    {
        let child = taskpool_process::spawn(greet, ("processes".to_string(), parent))?;
        let id = child.id();
        let pid = child.join()?;
        println!(
            "[processes] joined process {id}: it ran in pid {pid}, the parent is pid {parent}"
        );
    }

    #[cfg(feature = "thread-pool")]
    {
        let child = taskpool_thread::spawn(greet, ("threads".to_string(), parent))?;
        let id = child.id();
        let pid = child.join()?;
        println!("[threads] joined thread {id}: it ran in pid {pid}, the parent is pid {parent}");
    }
    Ok(())
}
