//! What a task's C code prints with `printf` reaches the program's standard output when the
//! task's result goes back, not when its worker exits. On a pipe or a file, the C library
//! buffers standard output by blocks; a worker holding it would lose it when a later task
//! crashed that worker, or when it was killed at a time limit. The tests run in copies of
//! this binary whose standard output is a pipe, to read it.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use taskpool_process::{Config, Exit, Pool, ProcessPool, TaskError};

/// Prints a line through the C library's `printf`, as a native library does.
fn c_print(n: u64) -> u64 {
    let line = std::ffi::CString::new(format!("c stdio line {n}\n")).unwrap();
    // SAFETY: the format is a NUL-terminated string with no conversions.
    unsafe { libc::printf(line.as_ptr()) };
    n
}

/// The lines printed after each result came back, so the copy's output shows what came
/// before it.
const AFTER_FIRST: &str = "the parent has the first result";
const AFTER_SECOND: &str = "the parent has the second result";
const AFTER_THIRD: &str = "the parent has the third result";

#[test]
#[ignore = "run by the tests after it, in a copy whose output is a pipe"]
fn c_output_then_a_crash() {
    let pool = ProcessPool::new(1).unwrap();
    assert_eq!(pool.apply(c_print, 1).unwrap(), 1);
    println!("{AFTER_FIRST}");
    assert_eq!(crashed(pool.apply(segfault, 0)), Exit::Signal(11));
    let pool = ProcessPool::with_config(Config::new().workers(1)).unwrap();
    assert_eq!(pool.apply(c_print, 2).unwrap(), 2);
    println!("{AFTER_SECOND}");
    let late = pool.submit_timeout(sleep_ms, 60_000, Duration::from_millis(50));
    assert!(matches!(late.join(), Err(TaskError::TimedOut { still_running: false, .. })));
    // One batch: the first item prints and returns, the second crashes the worker before
    // the batch's results went back.
    let pool = ProcessPool::with_config(Config::new().workers(1).chunk_size(2)).unwrap();
    let outcomes = pool.map_results(print_then_crash, [3, 0]);
    assert_eq!(outcomes[0].as_ref().ok(), Some(&3));
    assert_eq!(crashed(outcomes[1].clone()), Exit::Signal(11));
    println!("{AFTER_THIRD}");
}

/// Prints its line through the C library, or crashes on 0.
fn print_then_crash(n: u64) -> u64 {
    if n == 0 {
        segfault(0);
    }
    c_print(n)
}

/// Runs [`c_output_then_a_crash`] in a copy, with `transport` for its workers' frames, and
/// checks that each C line came out before the parent had the result of its task.
fn c_output_comes_out_before(transport: &str) {
    let mut copy = Command::new(std::env::current_exe().unwrap());
    copy.arg("--ignored").env("TASKPOOL_TRANSPORT", transport);
    let how = format!("with its output on a pipe, over {transport}");
    let out = run_test_in(copy, "c_output_then_a_crash", &how).unwrap();
    let at = |text: &str| out.find(text).unwrap_or_else(|| panic!("no {text:?} in:\n{out}"));
    assert!(at("c stdio line 1") < at(AFTER_FIRST), "{out}");
    assert!(at("c stdio line 2") < at(AFTER_SECOND), "{out}");
    assert!(at("c stdio line 3") < at(AFTER_THIRD), "{out}");
}

/// Makes a pipe, full, and gives it to the workers of a new pool of one as their standard
/// output (this process's descriptor 1 is its own again on return). Returns the pool, and
/// the pipe's read end, which must live as long as the test needs the pipe full.
fn pool_with_a_full_standard_output(config: Config) -> (ProcessPool, std::fs::File) {
    use std::os::fd::FromRawFd;
    let mut ends = [0; 2];
    // SAFETY: `ends` has room for the two descriptors pipe2 writes; the calls after it only
    // change this process's descriptors 1 and the pipe's, each checked.
    unsafe {
        assert_eq!(libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC), 0);
        let saved = libc::dup(1);
        assert!(saved >= 0);
        assert_eq!(libc::dup2(ends[1], 1), 1);
        let pool = ProcessPool::with_config(config).unwrap();
        let started = pool.apply(square, 2);
        assert_eq!(libc::dup2(saved, 1), 1);
        libc::close(saved);
        assert_eq!(started.unwrap(), 4);
        // Fill the pipe: non-blocking while this process writes, then blocking again, for
        // the worker that shares the open pipe.
        let flags = libc::fcntl(ends[1], libc::F_GETFL);
        assert_eq!(libc::fcntl(ends[1], libc::F_SETFL, flags | libc::O_NONBLOCK), 0);
        let block = [b'x'; 4096];
        while libc::write(ends[1], block.as_ptr().cast(), block.len()) > 0 {}
        let _ = libc::write(ends[1], block.as_ptr().cast(), 1);
        assert_eq!(libc::fcntl(ends[1], libc::F_SETFL, flags), 0);
        libc::close(ends[1]);
        (pool, std::fs::File::from_raw_fd(ends[0]))
    }
}

/// A task whose C output cannot be written (its standard output is a full pipe nobody
/// reads) is stopped at its time limit, as a task that blocks in its own write is; the
/// pool goes on.
#[test]
#[ignore = "run by the test after it, in a copy: it changes the process's standard output"]
fn c_output_to_a_full_pipe() {
    let config = Config::new().workers(1).timeout(Duration::from_millis(300));
    let (pool, _reader) = pool_with_a_full_standard_output(config);
    let outcome = pool.apply(c_print, 1);
    assert!(
        matches!(outcome, Err(TaskError::TimedOut { still_running: false, .. })),
        "{outcome:?}"
    );
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
}

#[test]
fn c_output_that_cannot_be_written_runs_into_the_time_limit() {
    let mut copy = Command::new(std::env::current_exe().unwrap());
    copy.arg("--ignored");
    run_test_in(copy, "c_output_to_a_full_pipe", "with a full pipe for its workers").unwrap();
}

#[test]
fn c_output_comes_out_with_the_result() {
    c_output_comes_out_before("rings");
}

#[test]
fn c_output_comes_out_with_the_result_over_pipes() {
    c_output_comes_out_before("pipes");
}
