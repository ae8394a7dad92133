//! Panics that end the worker in an unwinding build: one in a callback a C library calls (an
//! `extern "C"` function, which a panic cannot leave: `qsort`'s comparator here), and one a
//! `Drop` raises while the task unwinds from another. The runtime aborts the worker after its
//! own last panic ("cannot unwind"); the task still fails with `Panicked`, the message and
//! the line of the panic that could not unwind, and a new worker serves the tasks after it.

mod common;

use std::cmp::Ordering;
use std::ffi::c_void;

use common::square;
use taskpool_process::{Config, PanicReport, Pool, ProcessConfig, ProcessPool, TaskError, spawn};

fn one_worker() -> ProcessPool {
    ProcessPool::with_config(ProcessConfig::new(Config::new().workers(1))).unwrap()
}

/// A comparator for `qsort` that panics when it compares two equal numbers.
extern "C" fn compare_distinct(a: *const c_void, b: *const c_void) -> i32 {
    // SAFETY: qsort passes pointers to two elements of the `u64` slice it sorts.
    let (a, b) = unsafe { (*a.cast::<u64>(), *b.cast::<u64>()) };
    match a.cmp(&b) {
        Ordering::Less => -1,
        Ordering::Greater => 1,
        Ordering::Equal => panic!("duplicate {a} in the input"),
    }
}

/// Sorts `[3, x, 1]` with the C library's `qsort`: fails (in the comparator) for 1 and 3.
fn sort_with_qsort(x: u64) -> u64 {
    let mut numbers = [3, x, 1];
    // SAFETY: a valid slice of `u64`, its length and element size, and a comparator of two
    // such elements.
    unsafe {
        libc::qsort(
            numbers.as_mut_ptr().cast(),
            numbers.len(),
            size_of::<u64>(),
            Some(compare_distinct),
        )
    };
    numbers.iter().sum()
}

/// Panics in its `drop`.
struct PanicsWhenDropped(u64);

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        panic!("cleanup of {} failed", self.0);
    }
}

/// Panics for odd `x` while holding a value whose `drop` then panics too.
fn panic_twice_on_odd(x: u64) -> u64 {
    let guard = PanicsWhenDropped(x);
    if x % 2 == 1 {
        panic!("odd input {x}");
    }
    std::mem::forget(guard);
    x
}

fn worker_pid(_: u64) -> u64 {
    u64::from(std::process::id())
}

fn report(outcome: Result<u64, TaskError>) -> PanicReport {
    match outcome {
        Err(TaskError::Panicked(report)) => *report,
        other => panic!("expected a panic, got {other:?}"),
    }
}

/// Checks that `report` has `message` and a location in this file.
fn reported(report: &PanicReport, message: &str) {
    assert_eq!(report.message, message);
    let location = report.location.as_deref().unwrap_or_default();
    assert!(location.contains("panics_that_cannot_unwind.rs:"), "{report:?}");
}

#[test]
fn a_panic_in_a_callback_from_c_fails_its_task_with_its_message() {
    let pool = one_worker();
    let first = pool.apply(worker_pid, 0).unwrap();
    reported(&report(pool.apply(sort_with_qsort, 3)), "duplicate 3 in the input");
    assert_ne!(pool.apply(worker_pid, 0).unwrap(), first, "the worker aborted; another serves");
    assert_eq!(pool.apply(sort_with_qsort, 2).unwrap(), 6);
    let outcomes = pool.map_results(sort_with_qsort, 0..6);
    for (x, outcome) in (0..).zip(outcomes) {
        match x {
            1 | 3 => reported(&report(outcome), &format!("duplicate {x} in the input")),
            _ => assert_eq!(outcome.unwrap(), 4 + x),
        }
    }
    assert_eq!(pool.apply(square, 7).unwrap(), 49);
}

#[test]
fn a_panic_in_a_drop_while_a_task_unwinds_fails_the_task_with_that_panic() {
    let pool = one_worker();
    reported(&report(pool.apply(panic_twice_on_odd, 5)), "cleanup of 5 failed");
    let outcomes = pool.map_results(panic_twice_on_odd, 0..6);
    for (x, outcome) in (0..).zip(outcomes) {
        match x % 2 {
            1 => reported(&report(outcome), &format!("cleanup of {x} failed")),
            _ => assert_eq!(outcome.unwrap(), x),
        }
    }
    assert_eq!(pool.apply(square, 8).unwrap(), 64);
}

#[test]
fn a_one_off_process_reports_a_panic_in_a_callback_from_c() {
    let outcome = spawn(sort_with_qsort, 1).unwrap().join();
    reported(&report(outcome), "duplicate 1 in the input");
}
