//! Checks run in a copy of the test process made by `fork()`, for the tests of a program
//! that forks after it started a pool. The thread and cluster backends' tests include this
//! file too (`#[path]`): it needs only `libc` and the core's `TaskError`.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::panic::AssertUnwindSafe;

use taskpool_core::{TaskError, TaskHandle};

/// Runs `check` in a copy of this process made by `fork()` and returns its verdict. The copy
/// dies of `SIGALRM` if it hangs, and a panic there counts as a failed check.
pub fn in_a_copy(check: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
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

/// `Ok` if `result` is [`TaskError::ShutDown`], else what it was instead.
pub fn shut_down<T: std::fmt::Debug>(
    what: &str,
    result: Result<T, TaskError>,
) -> Result<(), String> {
    match result {
        Err(TaskError::ShutDown) => Ok(()),
        other => Err(format!("{what}: expected ShutDown, got {other:?}")),
    }
}

/// `Ok` if `handle`, polled once as a future (as an executor in the copy would first poll
/// it), is ready with [`TaskError::ShutDown`], else what it was instead.
pub fn polled_shut_down<R: std::fmt::Debug>(
    what: &str,
    handle: &mut TaskHandle<R>,
) -> Result<(), String> {
    use std::future::Future;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::Pin::new(handle).poll(&mut cx) {
        std::task::Poll::Ready(result) => shut_down(what, result),
        std::task::Poll::Pending => Err(format!("{what}: still pending")),
    }
}
