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

#[test]
fn c_output_comes_out_with_the_result() {
    c_output_comes_out_before("rings");
}

#[test]
fn c_output_comes_out_with_the_result_over_pipes() {
    c_output_comes_out_before("pipes");
}
