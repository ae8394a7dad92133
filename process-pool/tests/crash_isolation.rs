//! A crash costs one task: the exact signal or exit code, the worker replaced, every other
//! task run exactly once.

mod common;

use common::*;
use taskpool_process::{Config, Exit, Pool, ProcessPool, TaskError};

const SIGSEGV: i32 = 11;
const SIGABRT: i32 = 6;
const SIGKILL: i32 = 9;

#[test]
fn segfault_is_sigsegv_and_the_pool_goes_on() {
    let pool = ProcessPool::new(2).unwrap();
    let err = pool.apply(segfault, 0).unwrap_err();
    assert_eq!(err.signal(), Some(SIGSEGV));
    assert!(err.to_string().contains("SIGSEGV"), "{err}");
    assert_eq!(pool.map(square, 1..=3).unwrap(), [1, 4, 9]);
}

#[test]
fn abort_is_sigabrt() {
    let pool = ProcessPool::new(1).unwrap();
    assert_eq!(crashed(pool.apply(abort, 0)), Exit::Signal(SIGABRT));
    assert_eq!(pool.apply(square, 4).unwrap(), 16);
}

#[test]
fn stack_overflow_is_sigsegv() {
    let pool = ProcessPool::new(1).unwrap();
    assert_eq!(crashed(pool.apply(overflow_stack, 0)), Exit::Signal(SIGSEGV));
    assert_eq!(pool.apply(square, 5).unwrap(), 25);
    assert_eq!(
        crashed(taskpool_process::spawn(overflow_stack, 0).unwrap().join()),
        Exit::Signal(SIGSEGV)
    );
}

/// A worker's crash handler replaces the Rust runtime's, which says when a thread overflowed
/// its stack: the worker says it instead, once per overflow, and not for another segfault.
/// Runs the two tests above in copies of this binary, to read their standard error.
#[test]
fn a_worker_says_when_its_task_overflowed_its_stack() {
    let copy = || std::process::Command::new(std::env::current_exe().unwrap());
    let (_, said) = run_test_with_stderr(copy(), "stack_overflow_is_sigsegv", "alone").unwrap();
    let overflowed = "taskpool worker: the task has overflowed its stack";
    assert_eq!(said.matches(overflowed).count(), 2, "a pool's worker and a one-off:\n{said}");
    let name = "segfault_is_sigsegv_and_the_pool_goes_on";
    let (_, said) = run_test_with_stderr(copy(), name, "alone").unwrap();
    assert!(!said.contains(overflowed), "a null write is no overflow:\n{said}");
}

#[test]
fn exit_code_is_reported() {
    let pool = ProcessPool::new(1).unwrap();
    assert_eq!(crashed(pool.apply(exit_3, 0)), Exit::Code(3));
    assert_eq!(pool.apply(square, 6).unwrap(), 36);
}

#[test]
fn sigkill_from_outside_fails_only_the_running_task() {
    let dir = Scratch::new("sigkill");
    let signal = dir.file("running");
    let pool = ProcessPool::new(1).unwrap();
    let task = SignalThenSleep { signal: signal.clone() };
    let victim = pool.submit(task, 60_000);
    let queued = pool.submit(square, 7);
    wait_for_file(&signal);
    let pid = std::fs::read_to_string(&signal).unwrap();
    let status = std::process::Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    assert!(status.success());
    assert_eq!(crashed(victim.join()), Exit::Signal(SIGKILL));
    assert_eq!(queued.join().unwrap(), 49, "the queued task runs on the new worker");
    assert_ne!(pool.apply(worker_pid, 0).unwrap().to_string(), pid);
}

/// Runs a 300-item map, in batches, whose item 137 crashes in the way given; checks that it
/// alone fails and every other item ran exactly once.
fn exactly_once(crash: Crash, name: &str) -> TaskError {
    let dir = Scratch::new(name);
    let log = dir.file("log");
    let pool = ProcessPool::with_config(Config::new().workers(2).chunk_size(16)).unwrap();
    let task = Logged { log: log.clone(), crash_at: 137, crash };
    let outcomes = pool.map_results(task, 0..300);
    assert_eq!(outcomes.len(), 300);
    let mut failure = None;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(v) => assert_eq!(v, i as u64 * 10),
            Err(e) => {
                assert_eq!(i, 137, "item {i} failed: {e}");
                failure = Some(e);
            }
        }
    }
    let runs = runs_in(&log, 300);
    for (i, &n) in runs.iter().enumerate() {
        let expected = usize::from(i != 137);
        assert_eq!(n, expected, "item {i} ran {n} times");
    }
    assert_eq!(pool.map(square, 0..4).unwrap(), [0, 1, 4, 9]);
    failure.expect("item 137 failed")
}

#[test]
fn batch_with_a_segfault_runs_every_other_item_exactly_once() {
    let err = exactly_once(Crash::Segfault, "once-segv");
    assert_eq!(err.signal(), Some(SIGSEGV));
}

#[test]
fn batch_with_an_abort_runs_every_other_item_exactly_once() {
    let err = exactly_once(Crash::Abort, "once-abort");
    assert_eq!(err.signal(), Some(SIGABRT));
}

#[test]
fn batch_with_a_panic_runs_every_other_item_exactly_once() {
    match exactly_once(Crash::Panic, "once-panic") {
        TaskError::Panicked(report) => assert_eq!(report.message, "item 137 panics"),
        other => panic!("expected a panic, got {other:?}"),
    }
}
