//! An initializer that installs a panic hook of its own, as one that sets up logging may (the
//! hook is the whole process's, so this test has a binary of its own): the pool's hook goes
//! back in front of it, so even the first panic in a task reports its location, and panics
//! anywhere else still reach the hook the initializer set.

use std::sync::atomic::{AtomicUsize, Ordering};

use taskpool_thread::{Config, Pool, TaskError, ThreadPool};

/// Panics the initializer's hook saw.
static SEEN: AtomicUsize = AtomicUsize::new(0);

fn install_a_logger() {
    std::panic::set_hook(Box::new(|_| {
        SEEN.fetch_add(1, Ordering::SeqCst);
    }));
}

fn fail(x: u64) -> u64 {
    panic!("failure {x}")
}

#[test]
fn the_first_panic_after_the_initializer_set_a_hook_has_its_location() {
    let pool = ThreadPool::with_config(Config::new().workers(1).initializer(install_a_logger));
    let pool = pool.unwrap();
    for x in 0..3 {
        let report = match pool.apply(fail, x) {
            Err(TaskError::Panicked(report)) => *report,
            other => panic!("expected a panic, got {other:?}"),
        };
        assert_eq!(report.message, format!("failure {x}"));
        let location = report.location.as_deref().unwrap_or_default();
        assert!(location.contains("initializer_hook.rs:"), "{report:?}");
    }
    assert_eq!(SEEN.load(Ordering::SeqCst), 0, "the pool's hook took the tasks' panics");
    let outside = std::thread::spawn(|| panic!("outside any task")).join();
    assert!(outside.is_err());
    assert_eq!(SEEN.load(Ordering::SeqCst), 1, "the initializer's hook sees the rest");
    drop(std::panic::take_hook());
}
