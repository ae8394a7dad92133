//! One-off processes, like `multiprocessing.Process`.

mod common;

use std::time::Duration;

use common::*;
use taskpool_process::{Exit, Side, TaskError, spawn};

#[test]
fn spawn_runs_in_another_process_and_returns_the_value() {
    let child = spawn(worker_pid, 0).unwrap();
    let pid = u32::try_from(child.id()).unwrap();
    assert_ne!(pid, std::process::id());
    assert_eq!(child.join().unwrap(), pid);
}

#[test]
fn a_crash_is_reported_with_its_signal() {
    let child = spawn(segfault, 0).unwrap();
    assert!(matches!(child.join(), Err(TaskError::Crashed(Exit::Signal(11)))));
    let child = spawn(exit_3, 0).unwrap();
    assert!(matches!(child.join(), Err(TaskError::Crashed(Exit::Code(3)))));
}

#[test]
fn an_ended_child_gives_its_outcome_to_a_wait_of_no_time() {
    let mut child = spawn(exit_3, 0).unwrap();
    while child.is_alive() {
        std::thread::yield_now();
    }
    let outcome = child.join_timeout(Duration::ZERO);
    assert!(matches!(outcome, Err(TaskError::Crashed(Exit::Code(3)))), "{outcome:?}");
    let mut child = spawn(worker_pid, 0).unwrap();
    let pid = u32::try_from(child.id()).unwrap();
    while child.is_alive() {
        std::thread::yield_now();
    }
    assert_eq!(child.join_timeout(Duration::ZERO).unwrap(), pid);
}

#[test]
fn kill_ends_a_running_process() {
    let mut child = spawn(sleep_ms, 60_000).unwrap();
    assert!(child.is_alive());
    let mut early = child.join_timeout(Duration::from_millis(10));
    assert!(matches!(early, Err(TaskError::TimedOut { still_running: true, .. })));
    child.kill().unwrap();
    early = child.join_timeout(Duration::from_secs(60));
    assert!(matches!(early, Err(TaskError::Cancelled)), "{early:?}");
    assert!(!child.is_alive());
}

/// What a caller killed through the handle is not told as a crash: the error says the
/// caller's own handle ended it.
#[test]
fn a_one_off_the_caller_killed_is_cancelled_not_crashed() {
    let mut child = spawn(sleep_ms, 60_000).unwrap();
    child.kill().unwrap();
    let err = child.join().unwrap_err();
    assert!(matches!(err, TaskError::Cancelled), "{err:?}");
    assert_eq!(err.to_string(), "task cancelled");
}

/// A SIGKILL sent from elsewhere is a crash by that signal, as before.
#[test]
fn a_one_off_killed_from_outside_crashed_by_sigkill() {
    let child = spawn(sleep_ms, 60_000).unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: `kill(2)` with a valid signal number is sound whatever the pid; this one is
    // the child's, kept from being reused as a zombie until `join` reaps it.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let err = child.join().unwrap_err();
    assert!(matches!(err, TaskError::Crashed(Exit::Signal(9))), "{err:?}");
}

#[test]
fn a_killed_process_is_no_longer_alive_once_kill_returns() {
    for _ in 0..20 {
        let mut child = spawn(sleep_ms, 60_000).unwrap();
        assert!(child.is_alive());
        child.kill().unwrap();
        assert!(!child.is_alive());
        let outcome = child.join();
        assert!(matches!(outcome, Err(TaskError::Cancelled)), "{outcome:?}");
    }
}

#[test]
fn dropping_an_unjoined_child_kills_and_reaps_it() {
    let child = spawn(sleep_ms, 60_000).unwrap();
    let pid = u32::try_from(child.id()).unwrap();
    drop(child);
    assert!(!alive(pid));
    assert!(!zombie_children().contains(&pid));
}

/// A one-off's result of megabytes, one byte string: it crosses in a bulk frame, and comes
/// back whole.
#[test]
fn a_large_byte_string_comes_back_whole() {
    let child = spawn(numbered, 6 << 20).unwrap();
    let back = child.join().unwrap();
    assert_eq!(back.len(), 6 << 20);
    assert!(back.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
}

/// `len` bytes, numbered.
fn numbered(len: u64) -> serde_bytes::ByteBuf {
    (0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into()
}

/// A one-off's argument of megabytes (more than a pipe holds): it reaches the task whole,
/// as a byte string and as a plain `Vec<u8>`.
#[test]
fn a_large_argument_arrives_whole() {
    let sent = numbered(12 << 20);
    let child = spawn(check_numbered, sent).unwrap();
    assert_eq!(child.join().unwrap(), 12 << 20);
    let plain: Vec<u8> = numbered(3 << 20).into_vec();
    let child = spawn(sum_bytes, plain.clone()).unwrap();
    assert_eq!(child.join().unwrap(), plain.iter().map(|&b| u64::from(b)).sum::<u64>());
}

/// The length of `bytes` if they are numbered as [`numbered`] makes them, else 0.
fn check_numbered(bytes: serde_bytes::ByteBuf) -> u64 {
    let whole = bytes.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8);
    if whole { bytes.len() as u64 } else { 0 }
}

fn sum_bytes(bytes: Vec<u8>) -> u64 {
    bytes.iter().map(|&b| u64::from(b)).sum()
}

/// A one-off's argument or result over the frame limit (1 GiB) fails with `TooLarge` naming
/// its side; the child is not left behind.
#[test]
fn an_argument_or_result_over_the_frame_limit_fails_as_too_large() {
    const OVER: usize = (1 << 30) + 1;
    let refused = spawn(length, serde_bytes::ByteBuf::from(vec![7u8; OVER]));
    assert!(
        matches!(
            refused,
            Err(TaskError::TooLarge { side: Side::Argument, limit: 1_073_741_824, .. })
        ),
        "{refused:?}"
    );
    let child = spawn(zeros, OVER as u64).unwrap();
    let pid = u32::try_from(child.id()).unwrap();
    let outcome = child.join();
    assert!(
        matches!(
            outcome,
            Err(TaskError::TooLarge { side: Side::Result, limit: 1_073_741_824, .. })
        ),
        "{outcome:?}"
    );
    assert!(!alive(pid));
}

fn length(bytes: serde_bytes::ByteBuf) -> u64 {
    bytes.len() as u64
}

fn zeros(len: u64) -> serde_bytes::ByteBuf {
    vec![0u8; len as usize].into()
}
