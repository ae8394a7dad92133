//! A program that forks after it started a pool, as a server that daemonizes or pre-forks
//! does: the copy inherits the pool's memory, not its threads, and the pool's workers go on
//! serving the original. In the copy the inherited pool takes no work (every task fails at
//! once with `ShutDown`) and dropping it stops nothing; the original's pool never notices.
//! The copy can start pools of its own.

mod common;

use std::io::{Read, Write};
use std::panic::AssertUnwindSafe;

use common::*;
use taskpool_process::{Pool, ProcessPool, TaskError};

/// Runs `check` in a copy of this process made by `fork()` and returns its verdict. The copy
/// dies of `SIGALRM` if it hangs, and a panic there counts as a failed check.
fn in_a_copy(check: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let (mut verdict, mut report) = std::io::pipe().unwrap();
    // SAFETY: the copy runs `check` on its only thread, then `_exit`s; the test's other
    // threads hold no lock that `check` takes (the allocator's survive a fork).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        drop(verdict);
        // SAFETY: sets this copy's alarm; no memory effects.
        unsafe { libc::alarm(HANG.as_secs() as u32) };
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(check))
            .unwrap_or_else(|_| Err("the check panicked".into()));
        let _ = report.write_all(outcome.err().as_deref().unwrap_or("ok").as_bytes());
        drop(report);
        // SAFETY: ends the copy without running the test harness's exit.
        unsafe { libc::_exit(0) };
    }
    drop(report);
    let mut text = String::new();
    verdict.read_to_string(&mut text).unwrap();
    let mut status = 0;
    // SAFETY: waits for the copy just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "the copy ended with status {status}");
    if text == "ok" { Ok(()) } else { Err(text) }
}

/// `Ok` if `result` is [`TaskError::ShutDown`].
fn shut_down<T: std::fmt::Debug>(what: &str, result: Result<T, TaskError>) -> Result<(), String> {
    match result {
        Err(TaskError::ShutDown) => Ok(()),
        other => Err(format!("{what}: expected ShutDown, got {other:?}")),
    }
}

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
