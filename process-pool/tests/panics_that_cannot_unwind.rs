//! Panics that end the worker in an unwinding build: one in a callback a C library calls (an
//! `extern "C"` function, which a panic cannot leave: a sort's comparator with the C ABI
//! here, as `qsort` calls it back), and one a `Drop` raises while the task unwinds from
//! another. The runtime aborts the worker after its own last panic ("cannot unwind"); the
//! task still fails with `Panicked`, the message and the line of the panic that could not
//! unwind, and a new worker serves the tasks after it. The tasks are core's
//! (`conformance::cannot_unwind`), which the thread backend's tests use too.

mod common;

use common::square;
use taskpool_core::conformance::{panic_twice_on_odd, sort_with_c_comparator};
use taskpool_process::{Config, PanicReport, Pool, ProcessConfig, ProcessPool, TaskError, spawn};

fn one_worker() -> ProcessPool {
    ProcessPool::with_config(ProcessConfig::new(Config::new().workers(1))).unwrap()
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

/// Checks that `report` has `message` and a location in the file of the tasks.
fn reported(report: &PanicReport, message: &str) {
    assert_eq!(report.message, message);
    let location = report.location.as_deref().unwrap_or_default();
    assert!(location.contains("conformance/cannot_unwind.rs:"), "{report:?}");
}

#[test]
fn a_panic_in_a_callback_from_c_fails_its_task_with_its_message() {
    let pool = one_worker();
    let first = pool.apply(worker_pid, 0).unwrap();
    reported(&report(pool.apply(sort_with_c_comparator, 3)), "duplicate 3 in the input");
    assert_ne!(pool.apply(worker_pid, 0).unwrap(), first, "the worker aborted; another serves");
    assert_eq!(pool.apply(sort_with_c_comparator, 2).unwrap(), 6);
    let outcomes = pool.map_results(sort_with_c_comparator, 0..6);
    assert_eq!(outcomes.len(), 6);
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
    assert_eq!(outcomes.len(), 6);
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
    let outcome = spawn(sort_with_c_comparator, 1).unwrap().join();
    reported(&report(outcome), "duplicate 1 in the input");
}
