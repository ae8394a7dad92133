//! An initializer that fails is tried again, up to `Config::start_attempts` times in a row,
//! before a task fails with `WorkerStart`: a flaky one (a service it reaches that is slow to
//! answer at first) costs no task, as on processes, where a worker whose initializer failed
//! is replaced.

use std::sync::atomic::{AtomicU32, Ordering};

use taskpool_thread::{Config, Pool, TaskError, ThreadPool};

fn double(x: u64) -> u64 {
    2 * x
}

static FLAKY_CALLS: AtomicU32 = AtomicU32::new(0);

/// Fails its first two runs, then succeeds.
fn flaky() {
    let call = FLAKY_CALLS.fetch_add(1, Ordering::SeqCst);
    assert!(call >= 2, "the service is not up yet (call {call})");
}

#[test]
fn an_initializer_that_fails_fewer_times_than_the_attempts_costs_no_task() {
    let pool = ThreadPool::with_config(Config::new().workers(1).initializer(flaky)).unwrap();
    assert_eq!(pool.apply(double, 1).unwrap(), 2);
    assert_eq!(FLAKY_CALLS.load(Ordering::SeqCst), 3);
    assert_eq!(pool.map(double, 1..=3).unwrap(), [2, 4, 6]);
    assert_eq!(FLAKY_CALLS.load(Ordering::SeqCst), 3, "a thread initializes once");
}

static FAILING_CALLS: AtomicU32 = AtomicU32::new(0);

fn failing() {
    FAILING_CALLS.fetch_add(1, Ordering::SeqCst);
    panic!("no licence server");
}

#[test]
fn an_initializer_that_keeps_failing_is_tried_start_attempts_times_then_given_up() {
    let config = Config::new().workers(1).initializer(failing).start_attempts(2);
    let pool = ThreadPool::with_config(config).unwrap();
    for _ in 0..3 {
        match pool.apply(double, 1) {
            Err(TaskError::WorkerStart { reason }) => {
                assert!(reason.contains("no licence server"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(FAILING_CALLS.load(Ordering::SeqCst), 2, "tried twice, then never again");
}
