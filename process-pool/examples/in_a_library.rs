//! taskpool-process built into a shared library, as in a plugin or a Python extension
//! module: workers are the program's executable started again, which here is the host
//! program, so a pool and a one-off fail with `TaskError::WorkerStart` saying why, and start
//! no process. `tests/not_the_executable.rs` loads this library into a program and calls
//! [`start_in_a_library`].

use taskpool_process::{Pool, ProcessPool, TaskError, spawn};

fn square(x: u64) -> u64 {
    x * x
}

/// Whether `result` is the refusal this library should get.
fn refused<T>(result: Result<T, TaskError>) -> bool {
    matches!(result, Err(TaskError::WorkerStart { reason }) if reason.contains("shared library"))
}

/// Tries a pool and a one-off: 0 if both were refused as they should be, 1 otherwise.
#[unsafe(no_mangle)]
pub extern "C" fn start_in_a_library() -> i32 {
    let pool = ProcessPool::new(1).and_then(|pool| pool.apply(square, 3));
    let one_off = spawn(square, 4).and_then(|child| child.join());
    if refused(pool) && refused(one_off) { 0 } else { 1 }
}
