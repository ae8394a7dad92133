//! Work given to the pool while a `map` (or its kin) runs on every thread starts between the
//! map's items, not after the whole map: the threads running the map look at the pool's
//! queue between chunks of items and run what waits there.
//!
//! The map's first item waits until the test has given the other work; every later item waits
//! until that work ran. Before the map's threads took turns with the queue, the other work
//! waited for the whole map, which waited for it: the test's deadline (30 s) ends the wait,
//! opens the gate and fails.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use taskpool_thread::{IntoTask, NextTimeout, Pool, TaskError, ThreadPool};

/// The map's items.
const ITEMS: u64 = 64;

/// The gate's state.
struct Gate {
    /// The map's first item started.
    started: bool,
    /// The test gave the other work.
    given: bool,
    /// The other work ran (or the test gave up on it): the map's items may go on.
    open: bool,
}

static GATE: Mutex<Gate> = Mutex::new(Gate { started: false, given: false, open: false });
static GATE_CHANGED: Condvar = Condvar::new();

/// Tests here share the gate: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn gate() -> MutexGuard<'static, Gate> {
    GATE.lock().unwrap_or_else(PoisonError::into_inner)
}

fn change(f: impl FnOnce(&mut Gate)) {
    f(&mut gate());
    GATE_CHANGED.notify_all();
}

fn wait_for(done: impl Fn(&Gate) -> bool) {
    let guard = gate();
    drop(GATE_CHANGED.wait_while(guard, |g| !done(g)).unwrap_or_else(PoisonError::into_inner));
}

/// An item of the map: the first says it started and waits until the other work was given,
/// the others wait until it ran.
fn gated(x: u64) -> u64 {
    if x == 0 {
        change(|g| g.started = true);
        wait_for(|g| g.given);
    } else {
        wait_for(|g| g.open);
    }
    x
}

/// The other work: opens the gate.
fn open(x: u64) -> u64 {
    change(|g| g.open = true);
    x
}

/// Runs `map` on a pool of `workers` threads from another thread and, once its first item
/// started, `other`, which gives the pool other work and waits for it with a deadline; opens
/// the gate if the wait failed, so that the map ends, then checks both.
fn beside_a_map<T: std::fmt::Debug + PartialEq>(
    workers: usize,
    map: impl FnOnce(&ThreadPool) -> Vec<u64> + Send,
    other: impl FnOnce(&ThreadPool) -> Result<T, String>,
    expected: T,
) {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    *gate() = Gate { started: false, given: false, open: false };
    let pool = ThreadPool::new(workers).unwrap();
    std::thread::scope(|s| {
        let mapping = s.spawn(|| map(&pool));
        wait_for(|g| g.started);
        let outcome = other(&pool);
        if outcome.is_err() {
            change(|g| g.open = true);
        }
        let mapped = mapping.join().unwrap();
        assert_eq!(outcome, Ok(expected), "the other work waited for the whole map");
        assert_eq!(mapped, (0..ITEMS).collect::<Vec<_>>());
    });
}

/// Submits [`open`] and gives the map's first item leave to return; then joins it.
fn submit_and_join(pool: &ThreadPool) -> Result<u64, String> {
    let mut handle = pool.submit(open, 7);
    change(|g| g.given = true);
    handle.join_timeout(Duration::from_secs(30)).map_err(|e| format!("{e:?}"))
}

fn map(pool: &ThreadPool) -> Vec<u64> {
    pool.map(gated, 0..ITEMS).unwrap()
}

fn map_results(pool: &ThreadPool) -> Vec<u64> {
    pool.map_results(gated, 0..ITEMS).into_iter().map(Result::unwrap).collect()
}

fn map_with_progress(pool: &ThreadPool) -> Vec<u64> {
    pool.map_with_progress(gated, 0..ITEMS, |_, _| {}).unwrap()
}

#[test]
fn a_task_submitted_while_a_map_runs_starts_before_the_map_ends() {
    for workers in [1, 2] {
        beside_a_map(workers, map, submit_and_join, 7);
    }
}

#[test]
fn a_task_submitted_while_map_results_runs_starts_before_it_ends() {
    for workers in [1, 2] {
        beside_a_map(workers, map_results, submit_and_join, 7);
    }
}

#[test]
fn a_task_submitted_while_a_map_with_progress_runs_starts_before_it_ends() {
    for workers in [1, 2] {
        beside_a_map(workers, map_with_progress, submit_and_join, 7);
    }
}

#[test]
fn an_imap_given_while_a_map_runs_starts_before_the_map_ends() {
    for workers in [1, 2] {
        let imap = |pool: &ThreadPool| {
            // Its items go to the queue in groups of 8 as it pulls them, the first before it
            // pulls the ninth item, which gives the first item of the map leave to return.
            let items = (0..20).inspect(|&x| {
                if x == 8 {
                    change(|g| g.given = true);
                }
            });
            let mut results = pool.imap(open, items);
            let mut got = Vec::new();
            loop {
                match results.next_timeout(Duration::from_secs(30)) {
                    Ok(Some(next)) => got.push(next.map_err(|e| format!("{e:?}"))?),
                    Ok(None) => break,
                    Err(e) => return Err(format!("{e:?}")),
                }
            }
            Ok(got)
        };
        beside_a_map(workers, map, imap, (0..20).collect());
    }
}

/// Opens the gate, then panics.
fn opens_and_panics(x: u64) -> u64 {
    open(x);
    panic!("a task's panic")
}

#[test]
fn a_task_that_panics_between_a_maps_items_fails_alone() {
    let panicking = |pool: &ThreadPool| {
        let mut failing = pool.submit(opens_and_panics, 1);
        change(|g| g.given = true);
        match failing.join_timeout(Duration::from_secs(30)) {
            Err(TaskError::Panicked(report)) => Ok(report.message),
            other => Err(format!("{other:?}")),
        }
    };
    for workers in [1, 2] {
        beside_a_map(workers, map, panicking, "a task's panic".to_owned());
    }
}

/// The pool the tasks below use.
static POOL: Mutex<Option<&'static ThreadPool>> = Mutex::new(None);

fn the_pool() -> &'static ThreadPool {
    POOL.lock().unwrap_or_else(PoisonError::into_inner).expect("the pool is set")
}

fn square(x: u64) -> u64 {
    x * x
}

/// Maps, submits and joins on its own pool, then opens the gate.
fn maps_and_joins(x: u64) -> u64 {
    let pool = the_pool();
    let squares = pool.map(square, 0..100).unwrap();
    let joined = pool.submit(square, x).join().unwrap();
    open(squares.iter().sum::<u64>() + joined)
}

/// Shuts its own pool down, then opens the gate.
fn shuts_down(x: u64) -> u64 {
    the_pool().shutdown();
    open(x)
}

#[test]
fn a_task_run_between_a_maps_items_may_map_join_and_shut_the_pool_down() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    for workers in [1, 2] {
        beside_a_map_on_the_pool(workers, maps_and_joins, 3, (0..100).map(square).sum::<u64>() + 9);
        beside_a_map_on_the_pool(workers, shuts_down, 5, 5);
    }
}

/// [`beside_a_map`] with `map`, where the other work is `task`, which finds the pool in
/// [`POOL`].
fn beside_a_map_on_the_pool<M, T>(workers: usize, task: T, input: u64, expected: u64)
where
    T: IntoTask<M, Input = u64, Output = u64>,
{
    let pool: &'static ThreadPool = Box::leak(Box::new(ThreadPool::new(workers).unwrap()));
    *POOL.lock().unwrap_or_else(PoisonError::into_inner) = Some(pool);
    *gate() = Gate { started: false, given: false, open: false };
    std::thread::scope(|s| {
        let mapping = s.spawn(|| pool.map(gated, 0..ITEMS));
        wait_for(|g| g.started);
        let mut handle = pool.submit(task, input);
        change(|g| g.given = true);
        let outcome = handle.join_timeout(Duration::from_secs(30));
        if outcome.is_err() {
            change(|g| g.open = true);
        }
        let mapped = mapping.join().unwrap().map_err(|e| format!("{e:?}"));
        assert_eq!(mapped, Ok((0..ITEMS).collect::<Vec<_>>()));
        let outcome = outcome.map_err(|e| format!("{e:?}"));
        assert_eq!(outcome, Ok(expected), "{workers} threads");
    });
}

#[test]
fn a_map_given_while_another_runs_takes_turns_with_it() {
    for workers in [1, 2] {
        let other_map = |pool: &ThreadPool| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::scope(|s| {
                s.spawn(move || {
                    // Its first count comes once it is queued: the map's first item may go.
                    let opened = pool.map_with_progress(open, 0..4, |done, _| {
                        if done == 0 {
                            change(|g| g.given = true);
                        }
                    });
                    let _ = tx.send(opened.map_err(|e| format!("{e:?}")));
                });
                let outcome = rx.recv_timeout(Duration::from_secs(30));
                if outcome.is_err() {
                    // Let the first map end, so that this one can.
                    change(|g| g.open = true);
                }
                outcome.map_err(|e| format!("{e:?}"))?
            })
        };
        beside_a_map(workers, map, other_map, vec![0, 1, 2, 3]);
    }
}

/// A little work: enough that many callers' `map`s overlap.
fn busy(x: u64) -> u64 {
    (0..2_000u64).fold(x, |acc, i| std::hint::black_box(acc.wrapping_mul(31).wrapping_add(i)))
}

#[test]
fn many_maps_given_at_once_do_not_nest_without_bound() {
    // Each `map` given while another runs is queued and taken between that one's items, on
    // its thread's stack: without a bound, 256 callers nested deep enough to overflow it.
    let pool = ThreadPool::new(2).unwrap();
    let expected: Vec<u64> = (0..200).map(busy).collect();
    std::thread::scope(|s| {
        for _ in 0..256 {
            s.spawn(|| {
                for _ in 0..3 {
                    assert_eq!(pool.map(busy, 0..200).unwrap(), expected);
                }
            });
        }
    });
}

/// Whether [`hangs`] started, and whether it may return.
static HANG: Mutex<(bool, bool)> = Mutex::new((false, false));
static HANG_CHANGED: Condvar = Condvar::new();

/// Says it started, then waits until the test lets it return.
fn hangs(x: u64) -> u64 {
    let mut hang = HANG.lock().unwrap_or_else(PoisonError::into_inner);
    hang.0 = true;
    HANG_CHANGED.notify_all();
    while !hang.1 {
        hang = HANG_CHANGED.wait(hang).unwrap_or_else(PoisonError::into_inner);
    }
    x
}

#[test]
fn a_map_queued_behind_another_does_not_hold_the_relief_thread() {
    // The only thread hangs in a task with a time limit; two maps wait for it, the second
    // in the pool's queue, behind the first. Once the task is past its limit, a relief
    // thread runs the queued tasks: the queued map must not hold it while it waits for the
    // pool's thread, or the next task waits for the hung one too.
    let pool = ThreadPool::new(1).unwrap();
    let hung = pool.submit_timeout(hangs, 1, Duration::from_secs(2));
    drop(HANG_CHANGED.wait_while(HANG.lock().unwrap(), |h| !h.0).unwrap());
    let pool = &pool;
    std::thread::scope(|s| {
        let (given_tx, given) = std::sync::mpsc::channel();
        let first = s.spawn(move || {
            // Its first count comes once it is counted among the batches that run.
            pool.map_with_progress(square, 0..4, |done, _| {
                if done == 0 {
                    let _ = given_tx.send(());
                }
            })
        });
        given.recv().unwrap();
        let (queued_tx, queued) = std::sync::mpsc::channel();
        let second = s.spawn(move || {
            // Its first count comes once it is queued (or, past the limit, at once).
            pool.map_with_progress(square, 0..4, |done, _| {
                if done == 0 {
                    let _ = queued_tx.send(());
                }
            })
        });
        queued.recv().unwrap();
        match hung.join() {
            Err(TaskError::TimedOut { still_running, .. }) => assert!(still_running),
            other => panic!("expected a timeout, got {other:?}"),
        }
        let next = pool.submit(square, 5).join_timeout(Duration::from_secs(30));
        *HANG.lock().unwrap() = (true, true);
        HANG_CHANGED.notify_all();
        assert_eq!(next.map_err(|e| format!("{e:?}")), Ok(25), "the next task waited");
        let squares = vec![0, 1, 4, 9];
        assert_eq!(first.join().unwrap().map_err(|e| format!("{e:?}")), Ok(squares.clone()));
        assert_eq!(second.join().unwrap().map_err(|e| format!("{e:?}")), Ok(squares));
    });
}
