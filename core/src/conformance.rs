//! The conformance suite: one set of behaviours every backend must show.
//!
//! A backend runs the whole suite with one line in an integration test:
//!
//! ```text
//! taskpool_core::conformance_suite!(|config| my_backend::MyPool::with_config(config).unwrap());
//! ```
//!
//! Each behaviour is a public function taking a pool factory, so a failing test names the
//! behaviour. The tasks are plain functions in this module; they live in the test binary, so a
//! process backend runs them in its workers like any user function.
//!
//! [`chaos`] is the large run with injected faults that each backend drives with the faults it
//! survives.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{Config, Pool, Task, TaskError};

pub mod chaos;
mod results;
mod shapes;

pub use results::{
    awaited_handles, half_or_fail, progress_arrives_while_items_run, progress_counts_every_item,
    try_map_is_flat, wait_for_file,
};
pub use shapes::serde_shapes;

/// Squares its input.
pub fn square(x: u64) -> u64 {
    x * x
}

/// Adds one.
pub fn add_one(x: u64) -> u64 {
    x + 1
}

/// Adds two numbers (a tuple-argument task).
pub fn add(a: u64, b: u64) -> u64 {
    a + b
}

/// Panics with a fixed message when `x` is 3, otherwise returns it.
pub fn panic_on_three(x: u64) -> u64 {
    assert!(x != 3, "three is not allowed");
    x
}

/// Sleeps `ms` milliseconds and returns it.
pub fn sleep_ms(ms: u64) -> u64 {
    thread::sleep(Duration::from_millis(ms));
    ms
}

/// A struct task carrying state.
#[derive(Debug, Serialize, Deserialize)]
pub struct Affine {
    /// Multiplier.
    pub mul: u64,
    /// Addend.
    pub add: u64,
}

impl Task for Affine {
    type Input = u64;
    type Output = u64;

    fn run(&self, x: u64) -> u64 {
        x * self.mul + self.add
    }
}

/// How long any single wait in the suite may take before the suite calls it a hang.
const HANG: Duration = Duration::from_secs(60);

/// Results come back in input order from `map`, `imap` and `starmap`; `imap_unordered`
/// yields the same set.
pub fn ordering<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(3));
    let expected: Vec<u64> = (0..2000).map(square).collect();
    assert_eq!(pool.map(square, 0..2000).unwrap(), expected);
    let lazy: Vec<u64> = pool.imap(square, 0..2000).map(Result::unwrap).collect();
    assert_eq!(lazy, expected);
    let mut unordered: Vec<u64> =
        pool.imap_unordered(square, 0..2000).map(Result::unwrap).collect();
    unordered.sort_unstable();
    assert_eq!(unordered, expected);
    assert_eq!(
        pool.starmap(add, (0..100).map(|i| (i, 2 * i))).unwrap(),
        (0..100).map(|i| 3 * i).collect::<Vec<_>>()
    );
    assert_eq!(pool.map(Affine { mul: 2, add: 1 }, 0..5).unwrap(), [1, 3, 5, 7, 9]);
}

/// Empty input gives empty output from every batch method.
pub fn empty_input<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2));
    assert!(pool.map(square, Vec::new()).unwrap().is_empty());
    assert!(pool.map_results(square, Vec::new()).is_empty());
    assert_eq!(pool.imap(square, Vec::new()).count(), 0);
    assert_eq!(pool.imap_unordered(square, Vec::new()).count(), 0);
}

/// One million items go through `map` with every result right.
pub fn million_items<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2));
    let out = pool.map(add_one, 0..1_000_000).unwrap();
    assert_eq!(out.len(), 1_000_000);
    assert!(out.iter().enumerate().all(|(i, &v)| v == i as u64 + 1));
}

/// `imap` over an endless iterator pulls only a bounded window ahead of the consumer.
pub fn endless_imap_is_bounded<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2));
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let endless = (0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    for (i, result) in pool.imap(square, endless).take(5000).enumerate() {
        assert_eq!(result.unwrap(), square(i as u64));
        let ahead = pulled.load(Ordering::Relaxed) - (i + 1);
        assert!(ahead <= 20_000, "imap pulled {ahead} items ahead of the consumer");
    }
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let endless = (0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    for (i, result) in pool.imap_unordered(square, endless).take(5000).enumerate() {
        result.unwrap();
        let ahead = pulled.load(Ordering::Relaxed) - (i + 1);
        assert!(ahead <= 20_000, "imap_unordered pulled {ahead} items ahead of the consumer");
    }
}

/// A panicking task gives a typed error with message and location, fails alone, and the pool
/// keeps working.
pub fn panic_is_typed_and_isolated<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2));
    match pool.apply(panic_on_three, 3) {
        Err(TaskError::Panicked(report)) => {
            assert_eq!(report.message, "three is not allowed");
            let at = report.location.expect("a panic location");
            assert!(at.contains("conformance.rs:"), "{at}");
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
    let outcomes = pool.map_results(panic_on_three, 0..6);
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(v) => assert_eq!(v, i as u64),
            Err(TaskError::Panicked(_)) => assert_eq!(i, 3),
            Err(e) => panic!("item {i}: unexpected {e:?}"),
        }
    }
    assert!(matches!(pool.map(panic_on_three, 0..6), Err(TaskError::Panicked(_))));
    assert_eq!(pool.map(square, 1..=5).unwrap(), [1, 4, 9, 16, 25]);
}

/// Many threads submit at once; every handle gets its own result.
pub fn submit_from_many_threads<P: Pool + Sync>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2));
    thread::scope(|s| {
        for t in 0..8u64 {
            let pool = &pool;
            s.spawn(move || {
                let handles: Vec<_> =
                    (0..200).map(|i| (i, pool.submit(square, t * 1000 + i))).collect();
                for (i, h) in handles {
                    assert_eq!(h.join().unwrap(), square(t * 1000 + i));
                }
            });
        }
    });
}

/// Handles may be joined in any order.
pub fn handles_join_out_of_order<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2));
    let mut handles: Vec<_> = (0..300).map(|i| (i, pool.submit(square, i))).collect();
    handles.reverse();
    for (i, h) in handles.into_iter().step_by(2) {
        assert_eq!(h.join().unwrap(), i * i);
    }
}

/// `join_timeout` returns a timed-out error while the task runs, and the handle stays usable.
pub fn join_timeout_reports_and_keeps_handle<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(1));
    let mut slow = pool.submit(sleep_ms, 3000);
    match slow.join_timeout(Duration::from_millis(20)) {
        Err(TaskError::TimedOut { limit, still_running: true }) => {
            assert_eq!(limit, Duration::from_millis(20));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(!slow.is_finished());
    assert!(slow.cancel());
    assert!(matches!(slow.join(), Err(TaskError::Cancelled)));
    let mut quick = pool.submit(square, 6);
    assert_eq!(quick.join_timeout(HANG).unwrap(), 36);
}

/// Cancelling a queued task settles it as cancelled and it never delivers a result.
pub fn cancel_queued_task<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(1));
    let blocker = pool.submit(sleep_ms, 2000);
    let queued: Vec<_> = (0..4).map(|i| pool.submit(square, i)).collect();
    for h in &queued {
        assert!(h.cancel());
    }
    for h in queued {
        assert!(matches!(h.join(), Err(TaskError::Cancelled)));
    }
    assert!(blocker.cancel());
    assert!(!blocker.cancel(), "a second cancel has nothing to do");
}

/// Dropping a pool while tasks run neither hangs nor loses a handle: each one settles.
pub fn drop_while_running<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2).shutdown_grace(Duration::from_millis(100)));
    let handles: Vec<_> = (0..6).map(|_| pool.submit(sleep_ms, 150)).collect();
    let started = Instant::now();
    drop(pool);
    for h in handles {
        match h.join() {
            Ok(150) | Err(TaskError::ShutDown | TaskError::Cancelled) => {}
            other => panic!("unexpected outcome after drop: {other:?}"),
        }
    }
    assert!(started.elapsed() < HANG);
}

/// `shutdown` finishes what was submitted, is idempotent, and refuses later work.
pub fn shutdown_twice<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2));
    let handles: Vec<_> = (0..50).map(|i| pool.submit(square, i)).collect();
    pool.shutdown();
    pool.shutdown();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), square(i as u64));
    }
    assert!(matches!(pool.apply(square, 2), Err(TaskError::ShutDown)));
    assert!(matches!(pool.map(square, 0..3), Err(TaskError::ShutDown)));
}

/// The pool reports the worker count it was given.
pub fn reports_workers<P: Pool>(make: impl Fn(Config) -> P) {
    assert_eq!(make(Config::new().workers(3)).workers(), 3);
}

/// Items of one `map` are distinct and each runs exactly once.
pub fn each_item_once<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2).chunk_size(7));
    let out = pool.map(add_one, 0..10_000).unwrap();
    let distinct: HashSet<u64> = out.iter().copied().collect();
    assert_eq!(distinct.len(), 10_000);
}

/// Generates one `#[test]` per behaviour of the conformance suite.
///
/// `$make` is any expression that turns a [`Config`] into a pool.
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@tests $make;
            ordering, empty_input, million_items, endless_imap_is_bounded,
            panic_is_typed_and_isolated, submit_from_many_threads, handles_join_out_of_order,
            join_timeout_reports_and_keeps_handle, cancel_queued_task, drop_while_running,
            shutdown_twice, reports_workers, each_item_once, awaited_handles,
            progress_counts_every_item, progress_arrives_while_items_run, try_map_is_flat,
            serde_shapes);
    };
    (@tests $make:expr; $($name:ident),+) => {$(
        #[test]
        fn $name() {
            $crate::conformance::$name($make);
        }
    )+};
}
