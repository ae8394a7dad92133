//! A program whose threads get signals more often than a time limit (a timer, `SIGCHLD` from
//! its own children, `SIGWINCH`): a pool's timeout and a one-off process's `join_timeout`
//! still fire on time. A signal interrupts a wait; the wait must go on for what is left of
//! its limit, not start the limit again. The signals go to every thread of this process, so
//! this binary holds a single test.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use taskpool_process::{Config, Pool, ProcessPool, TaskError, spawn};

extern "C" fn ignore(_: libc::c_int) {}

/// Sends SIGUSR2 (handled, as a program's own signal would be) to every other thread of
/// this process every 10 ms until `stop`.
fn storm(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    // SAFETY: a handler that does nothing is async-signal-safe; `action` is fully set.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR2, &action, std::ptr::null_mut()), 0);
    }
    std::thread::spawn(move || {
        // SAFETY: gettid has no memory effects.
        let me = unsafe { libc::gettid() };
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) {
            for entry in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
                let Ok(tid) = entry.file_name().to_string_lossy().parse::<libc::pid_t>() else {
                    continue;
                };
                if tid != me {
                    // SAFETY: tgkill has no memory effects; a thread gone meanwhile is ESRCH.
                    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGUSR2) };
                    sent += 1;
                }
            }
            // The pace of the stressor, not a wait for an event.
            std::thread::sleep(Duration::from_millis(10));
        }
        sent
    })
}

#[test]
fn time_limits_fire_while_the_program_gets_signals_more_often_than_the_limit() {
    let stop = Arc::new(AtomicBool::new(false));
    let signals = storm(stop.clone());
    within("time limits under a storm of signals", || {
        let limit = Duration::from_millis(200);
        let pool = ProcessPool::with_config(Config::new().workers(1).timeout(limit)).unwrap();
        match pool.apply(sleep_ms, 20_000) {
            Err(TaskError::TimedOut { limit: l, still_running: false }) => assert_eq!(l, limit),
            other => panic!("a pool's timeout: {other:?}"),
        }
        assert_eq!(pool.apply(square, 3).unwrap(), 9);
        let mut child = spawn(sleep_ms, 20_000).unwrap();
        match child.join_timeout(limit) {
            Err(TaskError::TimedOut { limit: l, still_running: true }) => assert_eq!(l, limit),
            other => panic!("a one-off's join_timeout: {other:?}"),
        }
        child.kill().unwrap();
    });
    stop.store(true, Ordering::Relaxed);
    assert!(signals.join().unwrap() > 0);
}
