//! A program that forks after it started a pool, as a server that daemonizes or pre-forks
//! does: the copy inherits the pool's memory, not its threads, and the pool's workers go on
//! serving the original. In the copy the inherited pool takes no work (every task fails at
//! once with `ShutDown`) and dropping it stops nothing; the original's pool never notices.
//! The copy can start pools of its own.

mod common;
#[path = "common/copies.rs"]
mod copies;

use common::*;
use copies::{in_a_copy, polled_shut_down, shut_down};
use taskpool_process::{Pool, ProcessPool, TaskError};

#[test]
fn a_copy_of_the_program_cannot_use_or_stop_the_pool_it_inherited() {
    within("a pool in a program that forked", || {
        let pool = ProcessPool::new(2).unwrap();
        assert_eq!(pool.map(square, 0..100).unwrap().len(), 100);
        let workers = pool.pids();
        let copy = in_a_copy(|| {
            shut_down("apply", pool.apply(square, 3))?;
            shut_down("submit", pool.submit(square, 4).join())?;
            shut_down("map", pool.map(square, 0..1000))?;
            for item in pool.imap(square, 0..3) {
                shut_down("imap", item)?;
            }
            pool.shutdown();
            // SAFETY: this process is the copy, which `_exit`s after the check: its `pool`
            // is never used or dropped again, so this is the copy's one owner of it.
            drop(unsafe { std::ptr::read(&pool) });
            Ok(())
        });
        assert_eq!(copy, Ok(()));
        assert_eq!(pool.pids(), workers, "the copy stopped none of the workers");
        assert_eq!(
            pool.map(square, 0..1000).unwrap(),
            (0..1000).map(|x| x * x).collect::<Vec<_>>()
        );
        assert_eq!(pool.apply(square, 9).unwrap(), 81);
        assert_eq!(pool.stats().crashes, 0);
    });
}

#[test]
fn a_copy_of_the_program_starts_pools_of_its_own() {
    within("a new pool in a program that forked", || {
        let pool = ProcessPool::new(1).unwrap();
        assert_eq!(pool.apply(square, 2).unwrap(), 4);
        let copy = in_a_copy(|| {
            let own = ProcessPool::new(2).map_err(|e| format!("new: {e}"))?;
            let squares = own.map(square, 0..100).map_err(|e| format!("map: {e}"))?;
            if squares != (0..100).map(|x| x * x).collect::<Vec<_>>() {
                return Err(format!("wrong squares: {squares:?}"));
            }
            // And a copy of the copy.
            in_a_copy(|| {
                shut_down("the copy's pool in its copy", own.apply(square, 3))?;
                let third = ProcessPool::new(1).map_err(|e| format!("new: {e}"))?;
                match third.apply(square, 5) {
                    Ok(25) => Ok(()),
                    other => Err(format!("apply in the copy's copy: {other:?}")),
                }
            })?;
            own.apply(square, 6).map_err(|e| format!("apply after: {e}")).map(drop)
        });
        assert_eq!(copy, Ok(()));
        assert_eq!(pool.apply(square, 7).unwrap(), 49);
    });
}

/// Handles of tasks that were running when the program forked: in the copy, which has none
/// of the pool's threads or workers, nobody could ever settle them, so joining one fails at
/// once with `ShutDown` (it waited forever before); in the original they get their values.
#[test]
fn a_copy_does_not_wait_for_tasks_that_were_running_when_it_was_made() {
    let scratch = Scratch::new("forks-pending");
    let (started, go) = (scratch.file("started"), scratch.file("go"));
    within("a copy that joins a task sent before the fork", move || {
        let pool = ProcessPool::new(1).unwrap();
        let task = SignalThenWait { signal: started.clone(), go: go.clone() };
        let mut running = pool.submit(task, 1);
        let queued = pool.submit(square, 5);
        let mut awaited = pool.submit(square, 7);
        wait_for_file(&started);
        let copy = in_a_copy(|| {
            match running.join_timeout(std::time::Duration::from_secs(30)) {
                Err(TaskError::ShutDown) => {}
                other => return Err(format!("join_timeout of the running task: {other:?}")),
            }
            polled_shut_down("a queued task, awaited", &mut awaited)?;
            shut_down("join of the queued task", queued.join())
        });
        assert_eq!(copy, Ok(()));
        std::fs::write(&go, "").unwrap();
        assert_eq!(running.join().unwrap(), 1);
        assert_eq!(awaited.join().unwrap(), 49);
        assert_eq!(pool.apply(square, 6).unwrap(), 36);
        assert_eq!(pool.stats().crashes, 0);
    });
}
