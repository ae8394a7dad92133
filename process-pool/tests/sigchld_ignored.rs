//! A program that sets SIGCHLD to `SIG_IGN` (common in servers, so that children are reaped
//! by the kernel) still gets exact crash reports: workers are started so that the kernel
//! neither reaps them on its own nor signals their end. Every test in this binary ignores
//! SIGCHLD first, so the binary holds nothing else.

mod common;

use common::*;
use taskpool_process::{Pool, ProcessPool};

fn ignore_sigchld() {
    // SAFETY: sets SIGCHLD's disposition to SIG_IGN; no handler code is involved.
    unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
}

/// Runs a shell that exits 7, from inside a worker, and returns its exit code.
fn shell_exit_code(_: u64) -> i32 {
    std::process::Command::new("sh").args(["-c", "exit 7"]).status().unwrap().code().unwrap()
}

#[test]
fn crashes_in_a_pool_are_exact_with_sigchld_ignored() {
    ignore_sigchld();
    within("a pool with SIGCHLD ignored", || {
        let pool = ProcessPool::new(1).unwrap();
        pool_crashes_are_exact(&pool);
        // Workers do not inherit the ignored SIGCHLD: their tasks can wait on programs.
        assert_eq!(pool.apply(shell_exit_code, 0).unwrap(), 7);
    });
}

#[test]
fn one_off_crashes_are_exact_with_sigchld_ignored() {
    ignore_sigchld();
    within("one-offs with SIGCHLD ignored", || {
        one_off_crashes_are_exact();
    });
}
