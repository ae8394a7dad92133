//! Shared bytes a task returns that its caller cannot open (the caller out of descriptors):
//! the task fails with `Serialization`, and once the caller can open files again, the worker
//! that sent them is told that they will never be received, and lets go of them. Before, it
//! kept their descriptors and pages until it exited, so that a worker whose caller ran out of
//! descriptors a few dozen times ran out of its own.
//!
//! The limit is set in a copy of this binary.

mod common;

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::process::Command;

use common::*;
use taskpool_process::{Pool, ProcessPool, SharedBytes, TaskError};

const LOW_LIMIT: &str = "TASKPOOL_TEST_LOW_DESCRIPTOR_LIMIT";

/// New shared bytes of `len` bytes.
fn make(len: u64) -> SharedBytes {
    SharedBytes::copy_from_slice(&vec![7; len as usize]).unwrap()
}

/// Makes and drops shared bytes (which lets go of those whose copies all arrived or were
/// given up), then counts the worker's open descriptors.
fn worker_descriptors(_: u64) -> u64 {
    drop(make(4096));
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

#[test]
fn shared_bytes_their_receiver_could_not_open_are_let_go_by_their_sender() {
    let name = "shared_bytes_their_receiver_could_not_open_are_let_go_by_their_sender";
    if std::env::var_os(LOW_LIMIT).is_some() {
        let pool = ProcessPool::new(1).unwrap();
        let before = pool.apply(worker_descriptors, 0).unwrap();
        for _ in 0..5 {
            // Every descriptor this process may have is taken.
            let mut files = Vec::new();
            while let Ok(file) = File::open("/dev/null") {
                files.push(file);
            }
            match pool.apply(make, 1 << 20) {
                Err(TaskError::Serialization { message, .. }) => {
                    assert!(message.contains("os error 24"), "{message}")
                }
                other => panic!("expected a serialization error, got {other:?}"),
            }
            drop(files);
        }
        // The next result decoded tells the sender of those that never were received.
        assert_eq!(pool.apply(square, 3).unwrap(), 9);
        assert_eq!(pool.apply(worker_descriptors, 0).unwrap(), before);
        return;
    }
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env(LOW_LIMIT, "1");
    // SAFETY: the hook only calls getrlimit and setrlimit, which are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let mut limit: libc::rlimit = std::mem::zeroed();
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
            limit.rlim_cur = 256.min(limit.rlim_max);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
    };
    run_test_in(command, name, "with 256 descriptors").unwrap();
}
