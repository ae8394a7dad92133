//! Panics in a task that end the program in an unwinding build, as they end a program without
//! a pool: one in a callback a C library calls (an `extern "C"` function, which a panic cannot
//! leave: a sort's comparator with the C ABI here, as `qsort` calls it back), and one a `Drop`
//! raises while the task unwinds from another (core's `conformance::cannot_unwind` tasks).
//! The pool keeps the panics of its tasks off standard error, since their reports go to the
//! caller; these never reach the caller, so they are printed before the runtime aborts, with
//! their message and line, as without a pool.
//!
//! Each test runs its pool in a copy of this test binary (the copy aborts) and reads what the
//! copy printed.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use taskpool_core::conformance::{panic_twice_on_odd, sort_with_c_comparator};
use taskpool_thread::{Pool, TaskError, ThreadPool};

/// Set in the copy of the test binary that runs the pool and aborts.
const COPY: &str = "TASKPOOL_TEST_ABORTING_COPY";

/// In the copy: runs `fatal` on a pool, which ends the program. Elsewhere: runs test `name`
/// in a copy, checks that it died of SIGABRT, and returns what it printed on standard error.
fn in_an_aborting_copy(
    name: &str,
    fatal: impl FnOnce(&ThreadPool) -> Result<u64, TaskError>,
) -> String {
    if std::env::var_os(COPY).is_some() {
        let outcome = fatal(&ThreadPool::new(2).unwrap());
        panic!("the program went on after a panic that cannot unwind: {outcome:?}");
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(COPY, "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{}\n{stderr}", out.status);
    stderr
}

/// Checks that `stderr` holds a panic of a pool thread with `message` at a line of the file
/// of the tasks.
fn printed(stderr: &str, message: &str) {
    let at = stderr
        .find(&format!("\n{message}\n"))
        .unwrap_or_else(|| panic!("no {message:?}:\n{stderr}"));
    let before = &stderr[..at];
    let line = &before[before.rfind('\n').map_or(0, |i| i + 1)..];
    assert!(line.starts_with("thread 'taskpool-"), "{line}");
    assert!(line.contains(" panicked at core/src/conformance/cannot_unwind.rs:"), "{line}");
}

#[test]
fn a_panic_in_a_callback_from_c_is_printed_before_the_program_aborts() {
    let name = "a_panic_in_a_callback_from_c_is_printed_before_the_program_aborts";
    let stderr = in_an_aborting_copy(name, |pool| {
        assert_eq!(pool.apply(sort_with_c_comparator, 2).unwrap(), 6);
        pool.apply(sort_with_c_comparator, 3)
    });
    printed(&stderr, "duplicate 3 in the input");
    assert!(stderr.contains("panic in a function that cannot unwind"), "{stderr}");
}

#[test]
fn both_panics_are_printed_when_a_drop_panics_while_a_task_unwinds() {
    let name = "both_panics_are_printed_when_a_drop_panics_while_a_task_unwinds";
    let stderr = in_an_aborting_copy(name, |pool| {
        assert_eq!(pool.apply(panic_twice_on_odd, 4).unwrap(), 4);
        pool.apply(panic_twice_on_odd, 5)
    });
    printed(&stderr, "odd input 5");
    printed(&stderr, "cleanup of 5 failed");
    assert!(stderr.find("odd input 5") < stderr.find("cleanup of 5 failed"), "{stderr}");
    assert!(stderr.contains("panic in a destructor during cleanup"), "{stderr}");
}
