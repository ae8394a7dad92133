//! A program that forks after it started a cluster pool: the copy inherits the pool's memory,
//! not its runtime's threads. In the copy the inherited pool takes no work (every task fails
//! at once with `ShutDown`), and `shutdown` and dropping return at once without touching the
//! streams, whose work is the original's; the original's pool never notices.

mod common;

use std::io::{Read, Write};
use std::panic::AssertUnwindSafe;

use common::Fixture;
use taskpool_cluster::{Config, Pool, TaskError};

fn square(x: u64) -> u64 {
    x * x
}

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
        unsafe { libc::alarm(60) };
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
    let config = common::config(Config::new().workers(2));
    let Some(fixture) = Fixture::start("program_forks", 1, config) else { return };
    let pool = &fixture.pool;
    let squares: Vec<u64> = (0..100).map(|x| x * x).collect();
    assert_eq!(pool.map(square, 0..100).unwrap(), squares);
    let copy = in_a_copy(|| {
        shut_down("apply", pool.apply(square, 3))?;
        shut_down("submit", pool.submit(square, 4).join())?;
        shut_down("map", pool.map(square, 0..100))?;
        for item in pool.imap(square, 0..3) {
            shut_down("imap", item)?;
        }
        pool.shutdown();
        // SAFETY: this process is the copy, which `_exit`s after the check: its `pool` is
        // never used or dropped again, so this is the copy's one owner of it.
        drop(unsafe { std::ptr::read(pool) });
        Ok(())
    });
    assert_eq!(copy, Ok(()));
    assert_eq!(pool.map(square, 0..100).unwrap(), squares);
    assert_eq!(pool.apply(square, 9).unwrap(), 81);
}
