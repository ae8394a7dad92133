//! Results nobody takes, whose `Drop` panics: a task's value that arrives after its handle was
//! dropped, after its timeout, or after it was cancelled is dropped on the pool's thread. A
//! panic there must not end the program (rayon aborts on a panic that leaves a pool's job):
//! it is printed, and the pool goes on.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use taskpool_thread::{Config, Pool, TaskError, ThreadPool};

/// A value whose `drop` panics.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Bomb;

/// How many [`Bomb`]s were dropped.
static DROPPED: AtomicUsize = AtomicUsize::new(0);

impl Drop for Bomb {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::SeqCst);
        panic!("a result's drop panicked");
    }
}

/// How many [`bomb_when_released`] calls started.
static STARTED: AtomicUsize = AtomicUsize::new(0);

/// Whether [`bomb_when_released`] may return.
static RELEASE: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

fn release() {
    *RELEASE.0.lock().unwrap() = true;
    RELEASE.1.notify_all();
}

/// Returns a [`Bomb`] once released.
fn bomb_when_released(_: u64) -> Bomb {
    STARTED.fetch_add(1, Ordering::SeqCst);
    let mut released = RELEASE.0.lock().unwrap();
    while !*released {
        released = RELEASE.1.wait(released).unwrap();
    }
    Bomb
}

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn results_that_panic_when_dropped_unread_do_not_end_the_program() {
    let pool =
        ThreadPool::with_config(Config::new().workers(3).timeout(Duration::from_secs(60))).unwrap();
    // Its handle dropped before it returns; one timed out; one cancelled (each on a thread
    // of its own, all held until released).
    drop(pool.submit(bomb_when_released, 0));
    let mut timed_out = pool.submit_timeout(bomb_when_released, 1, Duration::from_millis(1));
    let cancelled = pool.submit(bomb_when_released, 2);
    let deadline = Instant::now() + Duration::from_secs(60);
    while STARTED.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "the three tasks never all started");
        std::thread::yield_now();
    }
    assert!(matches!(
        timed_out.join_timeout(Duration::from_secs(60)),
        Err(TaskError::TimedOut { still_running: true, .. })
    ));
    assert!(cancelled.cancel());
    release();
    // All three ran and dropped their results once `shutdown` returns.
    pool.shutdown();
    assert_eq!(DROPPED.load(Ordering::SeqCst), 3, "every result nobody took was dropped");
    let pool = ThreadPool::new(1).unwrap();
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
}

/// A value whose `drop` panics, made by [`bomb_unless_last`] (so every value of the map's).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Counted(u64);

impl Drop for Counted {
    fn drop(&mut self) {
        panic!("the drop of value {} panicked", self.0);
    }
}

/// A [`Counted`] for every item but the last of 20, which panics.
fn bomb_unless_last(i: u64) -> Counted {
    assert!(i < 19, "item {i} failed");
    Counted(i)
}

#[test]
fn a_map_that_fails_drops_the_values_it_made_without_ending_the_program() {
    let pool = ThreadPool::new(2).unwrap();
    // The failure stops the map while the values made before it are dropped, each drop
    // panicking: printed, never a panic during the unwind that would abort the program.
    match pool.map(bomb_unless_last, 0..20) {
        Err(TaskError::Panicked(report)) => assert!(report.message.contains("item 19 failed")),
        other => panic!("expected the last item's panic, got {:?}", other.map(|v| v.len())),
    }
    assert_eq!(pool.apply(square, 4).unwrap(), 16);
}
