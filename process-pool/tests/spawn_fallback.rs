//! Where `clone3` is refused (an old kernel, or a seccomp filter), workers are started with
//! `posix_spawn` and watched through `pidfd_open`. Each test here runs again in a copy of
//! this binary with `TASKPOOL_SPAWN_FALLBACK=1`, which selects that path, and checks there
//! what the rest of the suite checks on the `clone3` path.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use taskpool_process::{Config, Exit, Pool, ProcessPool, TaskError, spawn};

const SWITCH: &str = "TASKPOOL_SPAWN_FALLBACK";

/// Runs `test` in a copy of this binary on the fallback path; true if this is that copy.
fn on_fallback(test: &str) -> bool {
    if std::env::var_os(SWITCH).is_some() {
        return true;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--test-threads=1"])
        .env(SWITCH, "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("1 passed"), "{text}");
    false
}

fn start_sleeper(_: u64) -> u32 {
    start("sleep", &["600"])
}

#[test]
fn crashes_and_timeouts_on_the_fallback_path() {
    if !on_fallback("crashes_and_timeouts_on_the_fallback_path") {
        return;
    }
    within("the fallback pool", || {
        let limit = Duration::from_millis(200);
        let pool = ProcessPool::with_config(Config::new().workers(1).timeout(limit)).unwrap();
        let sleeper = pool.apply(start_sleeper, 0).unwrap();
        assert!(matches!(pool.apply(segfault, 0), Err(TaskError::Crashed(Exit::Signal(11)))));
        wait_gone(sleeper);
        assert!(matches!(pool.apply(sleep_ms, 600_000), Err(TaskError::TimedOut { .. })));
        assert!(matches!(pool.apply(exit_3, 0), Err(TaskError::Crashed(Exit::Code(3)))));
        assert_eq!(pool.map(square, 0..100).unwrap().len(), 100);
        assert!(matches!(
            spawn(abort, 0).unwrap().join(),
            Err(TaskError::Crashed(Exit::Signal(6)))
        ));
    });
}

#[test]
fn sigchld_ignored_on_the_fallback_path() {
    if !on_fallback("sigchld_ignored_on_the_fallback_path") {
        return;
    }
    // SAFETY: sets SIGCHLD's disposition to SIG_IGN in this copy of the binary.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
    within("the fallback pool with SIGCHLD ignored", || {
        let pool = ProcessPool::new(1).unwrap();
        assert!(matches!(pool.apply(segfault, 0), Err(TaskError::Crashed(Exit::Signal(11)))));
        assert_eq!(pool.apply(square, 4).unwrap(), 16);
    });
}
