//! A program that forks after it started a pool: the copy inherits the pool's memory, not its
//! threads. In the copy the inherited pool takes no work (every task fails at once with
//! `ShutDown`, and so does the join or await of a task sent before the fork) and `shutdown` and
//! dropping return at once; the original's pool never notices, and the copy can start pools
//! of its own.

#[path = "../../process-pool/tests/common/copies.rs"]
mod copies;

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use copies::{in_a_copy, polled_shut_down, shut_down};
use taskpool_thread::{Pool, TaskError, ThreadPool};

fn square(x: u64) -> u64 {
    x * x
}

/// Where [`hold`] is: it has not started, has `STARTED`, or may return (`RELEASED`).
static GATE: (Mutex<u8>, Condvar) = (Mutex::new(0), Condvar::new());
const STARTED: u8 = 1;
const RELEASED: u8 = 2;

/// Moves the gate on to `to`, never back: the second `hold` may start after the release.
fn open_gate(to: u8) {
    let mut state = GATE.0.lock().unwrap();
    *state = (*state).max(to);
    GATE.1.notify_all();
}

fn gate_reaches(at: u8) {
    let mut state = GATE.0.lock().unwrap();
    while *state < at {
        state = GATE.1.wait(state).unwrap();
    }
}

/// Says it started, then waits until released.
fn hold(_: u64) -> u64 {
    open_gate(STARTED);
    gate_reaches(RELEASED);
    0
}

#[test]
fn a_copy_of_the_program_cannot_use_or_stop_the_pool_it_inherited_and_starts_its_own() {
    let pool = ThreadPool::new(2).unwrap();
    assert_eq!(pool.map(square, 0..100).unwrap().len(), 100);
    // Tasks still running (or queued) at the fork: the copy's `shutdown` must not wait for
    // them, and joining them there fails at once (nothing in the copy could ever run them).
    let mut busy = pool.submit(hold, 0);
    let other = pool.submit(hold, 1);
    let mut awaited = pool.submit(square, 5);
    gate_reaches(STARTED);
    // Items of an iterator queued behind the held tasks: in the copy they fail at once as
    // they are waited for; in the original they arrive once the held tasks return.
    let mut unordered = pool.imap_unordered(square, 0..4);
    let copy = in_a_copy(|| {
        match busy.join_timeout(Duration::from_secs(30)) {
            Err(TaskError::ShutDown) => {}
            joined => return Err(format!("join_timeout of a task sent before: {joined:?}")),
        }
        shut_down("join of a task sent before", other.join())?;
        polled_shut_down("a task sent before, awaited", &mut awaited)?;
        shut_down("apply", pool.apply(square, 3))?;
        shut_down("submit", pool.submit(square, 4).join())?;
        shut_down("map", pool.map(square, 0..1000))?;
        let results = pool.map_results(square, 0..3);
        results.into_iter().try_for_each(|r| shut_down("map_results", r))?;
        for item in pool.imap(square, 0..3) {
            shut_down("imap", item)?;
        }
        let carried: Vec<_> = unordered.by_ref().collect();
        if carried.len() != 4 {
            return Err(format!("imap_unordered carried into the copy: {carried:?}"));
        }
        carried.into_iter().try_for_each(|item| shut_down("imap_unordered carried", item))?;
        pool.shutdown();
        let own = ThreadPool::new(2).map_err(|e| format!("new: {e}"))?;
        match own.map(square, 0..100) {
            Ok(squares) if squares == (0..100).map(|x| x * x).collect::<Vec<_>>() => Ok(()),
            other => Err(format!("a new pool in the copy: {other:?}")),
        }
    });
    assert_eq!(copy, Ok(()));
    open_gate(RELEASED);
    assert_eq!(busy.join_timeout(Duration::from_secs(60)).unwrap(), 0);
    assert_eq!(awaited.join().unwrap(), 25);
    let mut squares: Vec<u64> = unordered.map(Result::unwrap).collect();
    squares.sort_unstable();
    assert_eq!(squares, [0, 1, 4, 9]);
    assert_eq!(pool.map(square, 0..1000).unwrap(), (0..1000).map(|x| x * x).collect::<Vec<_>>());
    pool.shutdown();
}
