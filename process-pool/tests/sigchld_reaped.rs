//! A program that reaps every child itself (a SIGCHLD handler that calls `waitpid(-1)`, as
//! process supervisors and a container's first process do) still gets exact crash reports:
//! where the handler reaps a worker or one-off before the pool does, the pool reads its exit
//! status from its pidfd (as with SIGCHLD ignored). Every test in this binary installs
//! the handler first, so the binary holds nothing else.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use taskpool_process::ProcessPool;

/// Children the handler reaped.
static REAPED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn reap_every_child(_: libc::c_int) {
    // SAFETY: `waitpid` is async-signal-safe; a null status pointer is allowed.
    while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {
        REAPED.fetch_add(1, Ordering::Relaxed);
    }
}

fn reap_children_in_a_handler() {
    let handler = reap_every_child as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only calls async-signal-safe functions and touches an atomic.
    unsafe { libc::signal(libc::SIGCHLD, handler) };
}

#[test]
fn crashes_are_exact_in_a_program_that_reaps_every_child() {
    reap_children_in_a_handler();
    within("a pool and one-offs beside a reaping handler", || {
        let pool = ProcessPool::new(1).unwrap();
        pool_crashes_are_exact(&pool);
        one_off_crashes_are_exact();
        assert_eq!(pool.stats().crashes, 2);
        // The handler is at work: it reaps a child of the program's own, which nothing else
        // waits for. (Whether it or the pool reaps a worker first varies from run to run.)
        #[expect(clippy::zombie_processes, reason = "the handler under test reaps it")]
        let own = std::process::Command::new("true").spawn().unwrap();
        let proc_dir = format!("/proc/{}", own.id());
        while std::path::Path::new(&proc_dir).exists() {
            std::thread::yield_now();
        }
        assert!(REAPED.load(Ordering::Relaxed) >= 1);
    });
}
