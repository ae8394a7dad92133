//! An initializer that fails is tried again, up to `Config::start_attempts` times in a row,
//! before a task fails with `WorkerStart`: a flaky one (a service it reaches that is slow to
//! answer at first) costs no task, as on processes, where a worker whose initializer failed
//! is replaced. Past that, tasks fail for a second, and then the pool tries again, as a
//! process pool goes on starting workers: it recovers once the initializer can succeed.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

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
fn an_initializer_that_keeps_failing_is_tried_start_attempts_times_then_paused() {
    let config = Config::new().workers(1).initializer(failing).start_attempts(2);
    let pool = ThreadPool::with_config(config).unwrap();
    let started = Instant::now();
    for _ in 0..3 {
        match pool.apply(double, 1) {
            Err(TaskError::WorkerStart { reason }) => {
                assert!(reason.contains("no licence server"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let calls = FAILING_CALLS.load(Ordering::SeqCst);
    if started.elapsed() < PAUSE {
        assert_eq!(calls, 2, "tried twice, then not again within the pause");
    } else {
        // A machine that stalled this thread for the whole pause: one more try at most.
        assert!((2..=3).contains(&calls), "{calls} tries");
    }
}

/// Whether the service [`needs_service`] reaches is down.
static DOWN: AtomicBool = AtomicBool::new(true);

fn needs_service() {
    assert!(!DOWN.load(Ordering::SeqCst), "the service is down");
}

/// The pause after which a pool that gave up on its initializer tries it again (a second).
const PAUSE: Duration = Duration::from_secs(1);

#[test]
fn a_pool_whose_initializer_gave_up_tries_again_after_a_pause_and_recovers() {
    let config = Config::new().workers(1).initializer(needs_service).start_attempts(2);
    let pool = ThreadPool::with_config(config).unwrap();
    match pool.apply(double, 1) {
        Err(TaskError::WorkerStart { reason }) => assert!(reason.contains("down"), "{reason}"),
        other => panic!("unexpected {other:?}"),
    }
    DOWN.store(false, Ordering::SeqCst);
    // The service is back: within the pause tasks still fail, then one tries again.
    let deadline = Instant::now() + Duration::from_secs(60);
    let recovered = loop {
        match pool.apply(double, 2) {
            Ok(value) => break value,
            Err(TaskError::WorkerStart { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => panic!("the pool did not recover: {other:?}"),
        }
    };
    assert_eq!(recovered, 4);
    assert_eq!(pool.map(double, 1..=3).unwrap(), [2, 4, 6]);
}
