//! A program that sets its own panic hook after its pool started (the hook is the whole
//! process's, so this test has a binary of its own): the first panic in a task after that goes
//! to the program's hook and fails with its message; from then on the pool's hook is back in
//! front of the program's, so panics in tasks report their location again, and panics
//! anywhere else still reach the program's hook.

use std::sync::atomic::{AtomicUsize, Ordering};

use taskpool_thread::{PanicReport, Pool, TaskError, ThreadPool};

/// Panics the program's hook saw.
static SEEN: AtomicUsize = AtomicUsize::new(0);

fn add_one(x: u64) -> u64 {
    x + 1
}

fn fail(x: u64) -> u64 {
    panic!("failure {x}")
}

fn report(outcome: Result<u64, TaskError>) -> PanicReport {
    match outcome {
        Err(TaskError::Panicked(report)) => *report,
        other => panic!("expected a panic, got {other:?}"),
    }
}

#[test]
fn tasks_keep_their_location_and_the_program_its_hook() {
    let pool = ThreadPool::new(1).unwrap();
    assert_eq!(pool.apply(add_one, 1).unwrap(), 2, "the pool runs");
    std::panic::set_hook(Box::new(|_| {
        SEEN.fetch_add(1, Ordering::SeqCst);
    }));
    assert_eq!(report(pool.apply(fail, 1)).message, "failure 1");
    assert_eq!(SEEN.load(Ordering::SeqCst), 1, "the program's hook saw the first");
    for x in 2..5 {
        let r = report(pool.apply(fail, x));
        assert_eq!(r.message, format!("failure {x}"));
        let location = r.location.as_deref().unwrap_or_default();
        assert!(location.contains("panic_hooks.rs:"), "{r:?}");
    }
    assert_eq!(SEEN.load(Ordering::SeqCst), 1, "the pool's hook is back for tasks");
    let outside = std::thread::spawn(|| panic!("outside any task")).join();
    assert!(outside.is_err());
    assert_eq!(SEEN.load(Ordering::SeqCst), 2, "the program's hook still sees the rest");
    drop(std::panic::take_hook());
}
