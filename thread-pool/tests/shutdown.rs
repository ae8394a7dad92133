//! `shutdown` waits for every task accepted before it, whichever thread submitted the task
//! and whichever of the pool's threads ran it; called from the pool's own tasks, it waits for
//! the others and never for itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::time::Duration;

use taskpool_thread::{Pool, TaskError, ThreadPool};

/// Returns `x * x` after a short sleep, and the name of the thread that ran it.
fn sleep_then_square(x: u64) -> (u64, String) {
    std::thread::sleep(Duration::from_micros(200));
    (x * x, std::thread::current().name().unwrap_or_default().to_owned())
}

#[test]
fn shutdown_returns_only_once_every_task_submitted_before_it_has_settled() {
    const SUBMITTERS: u64 = 3;
    const EACH: u64 = 200;
    let pool = ThreadPool::new(4).unwrap();
    let submitted = Barrier::new(SUBMITTERS as usize + 1);
    std::thread::scope(|s| {
        let submitters: Vec<_> = (0..SUBMITTERS)
            .map(|t| {
                let (pool, submitted) = (&pool, &submitted);
                s.spawn(move || {
                    let handles: Vec<_> = (t * EACH..(t + 1) * EACH)
                        .map(|x| (x, pool.submit(sleep_then_square, x)))
                        .collect();
                    submitted.wait();
                    handles
                })
            })
            .collect();
        submitted.wait();
        pool.shutdown();
        let mut ran_on = std::collections::HashSet::new();
        for submitter in submitters {
            for (x, handle) in submitter.join().unwrap() {
                assert!(handle.is_finished(), "task {x} had not settled when shutdown returned");
                let (square, thread) = handle.join().unwrap();
                assert_eq!(square, x * x);
                ran_on.insert(thread);
            }
        }
        assert!(ran_on.len() > 1, "the tasks ran on several of the pool's threads: {ran_on:?}");
    });
}

/// The pool the tasks below reach from inside, and what they count.
static POOL: Mutex<Option<Arc<ThreadPool>>> = Mutex::new(None);
static DONE: AtomicU64 = AtomicU64::new(0);

/// The pool in [`POOL`].
fn the_pool() -> Arc<ThreadPool> {
    POOL.lock().unwrap().clone().expect("a pool in POOL")
}

/// Counts itself done.
fn count(x: u64) -> u64 {
    DONE.fetch_add(1, Ordering::SeqCst);
    x
}

/// Submits `n` counting tasks to its own pool, shuts the pool down from inside, and returns
/// how many of them had finished when `shutdown` returned.
fn submit_then_shut_down(n: u64) -> u64 {
    let pool = the_pool();
    let handles: Vec<_> = (0..n).map(|x| pool.submit(count, x)).collect();
    pool.shutdown();
    let done = DONE.load(Ordering::SeqCst);
    assert!(handles.iter().all(|h| h.is_finished()), "settled when shutdown returned");
    done
}

/// Whether the tasks of [`shut_down`] may shut their pool down: once the test has queued
/// the tasks they must wait for (a task submitted after a `shutdown` began is refused).
static MAY_SHUT_DOWN: Mutex<bool> = Mutex::new(false);
static MAY_SHUT_DOWN_CHANGED: Condvar = Condvar::new();

/// Shuts its own pool down from inside, once the test allows it.
fn shut_down(x: u64) -> u64 {
    let mut may = MAY_SHUT_DOWN.lock().unwrap();
    while !*may {
        may = MAY_SHUT_DOWN_CHANGED.wait(may).unwrap();
    }
    drop(may);
    the_pool().shutdown();
    x
}

/// Runs `f` on a thread of its own and returns its value, or fails after a minute.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("hung: {what}"))
}

// One test: the tasks share `POOL` and `DONE`.
#[test]
fn shutdown_from_a_task_waits_for_the_other_tasks_and_not_for_itself() {
    // A pool of one thread: the tasks the caller submits can only run inside its shutdown.
    let pool = Arc::new(ThreadPool::new(1).unwrap());
    *POOL.lock().unwrap() = Some(pool.clone());
    let caller = pool.submit(submit_then_shut_down, 50);
    let done = within("shutdown in the only thread's task", move || caller.join().unwrap());
    assert_eq!(done, 50, "every task submitted before shutdown had finished");
    assert!(matches!(pool.submit(count, 0).join(), Err(TaskError::ShutDown)), "the pool is closed");

    // Every thread of a pool of two in shutdown, with tasks queued behind them: all finish.
    DONE.store(0, Ordering::SeqCst);
    let pool = Arc::new(ThreadPool::new(2).unwrap());
    *POOL.lock().unwrap() = Some(pool.clone());
    let waiters: Vec<_> = (0..2).map(|x| pool.submit(shut_down, x)).collect();
    let queued: Vec<_> = (0..20).map(|x| pool.submit(count, x)).collect();
    *MAY_SHUT_DOWN.lock().unwrap() = true;
    MAY_SHUT_DOWN_CHANGED.notify_all();
    let outcomes = within("shutdown in both threads' tasks", move || {
        let waited: Vec<_> = waiters.into_iter().map(|h| h.join().unwrap()).collect();
        let counted: Vec<_> = queued.into_iter().map(|h| h.join().unwrap()).collect();
        (waited, counted)
    });
    assert_eq!(outcomes, (vec![0, 1], (0..20).collect::<Vec<_>>()));
    assert_eq!(DONE.load(Ordering::SeqCst), 20);
    // The caller's own shutdown waits for everything, the waiting tasks included.
    pool.shutdown();
    *POOL.lock().unwrap() = None;
}

/// Drops what [`POOL`] holds, the last reference to its pool, from inside one of its tasks.
fn drop_the_pool(x: u64) -> u64 {
    drop(POOL_TO_DROP.lock().unwrap().take());
    x
}

static POOL_TO_DROP: Mutex<Option<Arc<ThreadPool>>> = Mutex::new(None);

#[test]
fn a_task_that_drops_the_last_reference_to_its_pool_returns() {
    let pool = Arc::new(ThreadPool::new(2).unwrap());
    *POOL_TO_DROP.lock().unwrap() = Some(pool.clone());
    let handle = pool.submit(drop_the_pool, 7);
    drop(pool);
    assert_eq!(within("a drop inside a task", move || handle.join().unwrap()), 7);
    assert!(POOL_TO_DROP.lock().unwrap().is_none());
}

/// The pool the items of [`shut_down_in_a_map`] shut down.
static MAP_POOL: Mutex<Option<Arc<ThreadPool>>> = Mutex::new(None);

/// Shuts [`MAP_POOL`]'s pool down from an item of a `map`; returns `x`.
fn shut_down_in_a_map(x: u64) -> u64 {
    let pool = MAP_POOL.lock().unwrap().clone().expect("the pool is set");
    pool.shutdown();
    x
}

// One test: the items share `MAP_POOL`.
#[test]
fn shutdown_from_an_item_of_a_map_given_from_outside_the_pool_returns() {
    // Run by rayon's threads as one batch: the items run and return; the pool is closed.
    for workers in [1, 2] {
        let pool = Arc::new(ThreadPool::new(workers).unwrap());
        *MAP_POOL.lock().unwrap() = Some(pool.clone());
        let mapped = pool.clone();
        let values =
            within("shutdown in an item of a map", move || mapped.map(shut_down_in_a_map, 0..4));
        assert_eq!(values.unwrap(), [0, 1, 2, 3], "{workers} workers");
        let refused = pool.submit(shut_down_in_a_map, 0).join();
        assert!(matches!(refused, Err(TaskError::ShutDown)), "the pool is closed");
    }
    // With a time limit, each item a task of its own: none waits for the map it is part of
    // (it timed out as it waited, before). An item started after the first closed the pool
    // is refused.
    for workers in [1, 2] {
        let config =
            taskpool_thread::Config::new().workers(workers).timeout(Duration::from_secs(60));
        let pool = Arc::new(ThreadPool::with_config(config).unwrap());
        *MAP_POOL.lock().unwrap() = Some(pool.clone());
        let mapped = pool.clone();
        let outcomes = within("shutdown in an item of a timed map", move || {
            mapped.map_results(shut_down_in_a_map, 0..4)
        });
        for (i, outcome) in outcomes.into_iter().enumerate() {
            assert!(
                matches!(outcome, Ok(x) if x == i as u64)
                    || matches!(outcome, Err(TaskError::ShutDown)),
                "{workers} workers, item {i}: {outcome:?}"
            );
        }
    }
    *MAP_POOL.lock().unwrap() = None;
}
