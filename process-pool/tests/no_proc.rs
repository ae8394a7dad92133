//! Workers and one-offs are the program's executable started again through `/proc/self/exe`.
//! A program that loses `/proc` after its first pool (it moved into a `chroot`, as a
//! privilege-separated service does after setting up) can start no more of them: a pool and
//! a one-off fail with `WorkerStart`, saying which file could not be started and why, rather
//! than a bare "No such file or directory"; and shared bytes or a queue that a worker
//! started before hands to it cannot be opened, which says so too. Checked when the tests run
//! as root, in a copy of this test that moves into an empty directory.

mod common;

use std::process::Command;

use common::*;
use taskpool_process::{
    Config, Exit, Pool, ProcessConfig, ProcessPool, SharedBytes, Side, TaskError, spawn,
};

/// Set in the copy of this test that loses `/proc`.
const LOSES_PROC: &str = "TASKPOOL_TEST_LOSES_PROC";

/// Asserts that `result` is a start failure that names `/proc/self/exe` and `/proc`'s absence.
fn says_proc_is_gone<T: std::fmt::Debug>(result: Result<T, TaskError>) {
    match result {
        Err(TaskError::WorkerStart { reason }) => {
            assert!(reason.contains("/proc/self/exe"), "the reason names no file: {reason}");
            assert!(reason.contains("/proc is not mounted"), "the reason says not why: {reason}");
        }
        other => panic!("expected a start failure, got {other:?}"),
    }
}

fn shared(len: usize) -> SharedBytes {
    SharedBytes::new(len, |bytes| bytes.fill(1)).unwrap()
}

#[test]
fn a_program_that_loses_proc_says_that_workers_start_through_it() {
    let name = "a_program_that_loses_proc_says_that_workers_start_through_it";
    if let Some(dir) = std::env::var_os(LOSES_PROC) {
        let config = Config::new().workers(1).start_attempts(1);
        let pool = ProcessPool::with_config(ProcessConfig::new(config)).unwrap();
        assert_eq!(pool.apply(square, 3).unwrap(), 9);
        let dir = std::ffi::CString::new(dir.into_encoded_bytes()).unwrap();
        // SAFETY: chroot and chdir only take a valid path; every thread of this process
        // moves, which is the point.
        unsafe {
            assert_eq!(libc::chroot(dir.as_ptr()), 0, "{}", std::io::Error::last_os_error());
            assert_eq!(libc::chdir(c"/".as_ptr()), 0);
        }
        // The worker started before the move serves on, but its shared bytes cannot be
        // opened here: through /proc, which is gone.
        match pool.apply(shared, 100) {
            Err(TaskError::Serialization { side: Side::Result, message, .. }) => {
                assert!(message.contains("/proc is not mounted"), "says not why: {message}");
            }
            other => panic!("expected a result that cannot be decoded, got {other:?}"),
        }
        // Its replacement, once it crashed, cannot start; nor can a new pool or a one-off.
        assert!(matches!(pool.apply(segfault, 0), Err(TaskError::Crashed(Exit::Signal(11)))));
        says_proc_is_gone(pool.apply(square, 4));
        says_proc_is_gone(ProcessPool::new(1).and_then(|pool| pool.apply(square, 5)));
        says_proc_is_gone(spawn(square, 6).and_then(|child| child.join()));
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: moving into a chroot needs root");
        return;
    }
    let dir = Scratch::new("no-proc");
    let empty = dir.file("empty");
    std::fs::create_dir(&empty).unwrap();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env(LOSES_PROC, &empty);
    run_test_in(command, name, "after losing /proc").unwrap();
}
