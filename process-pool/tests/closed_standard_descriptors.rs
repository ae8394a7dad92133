//! A program that closed its descriptors 0, 1 and 2 (a daemon that does not reopen them)
//! and then starts a pool: the pool's own descriptors (pipes, shared memory, doorbells,
//! process handles) never take those numbers, or the program's next `println!` would write
//! into a worker's channel. The binary holds this one test: it closes the test process's own
//! standard descriptors for a moment.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use common::*;
use taskpool_process::{Pool, ProcessPool, Queue, SharedBytes, spawn};

fn double(x: u64) -> u64 {
    2 * x
}

/// The length of `bytes`, read in the worker.
fn length(bytes: SharedBytes) -> usize {
    bytes.len()
}

/// Which of descriptors 0, 1 and 2 are open in this process.
fn open_standard() -> Vec<i32> {
    // SAFETY: F_GETFD only reads a descriptor's flags; a closed one makes it fail.
    (0..3).filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0).collect()
}

#[test]
fn a_pool_started_with_standard_descriptors_closed_leaves_their_numbers_free() {
    within("a pool started with descriptors 0, 1 and 2 closed", || {
        // SAFETY: F_DUPFD_CLOEXEC makes new descriptors that only these owners close.
        let saved: Vec<OwnedFd> = (0..3)
            .map(|fd| unsafe { OwnedFd::from_raw_fd(libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10)) })
            .collect();
        for fd in 0..3 {
            // SAFETY: closes this process's standard descriptors; copies are kept in `saved`.
            unsafe { libc::close(fd) };
        }
        let run = || -> Result<(Vec<i32>, u64, usize), String> {
            let pool = ProcessPool::new(2).map_err(|e| e.to_string())?;
            let doubled: u64 = pool.map(double, 1..=100).map_err(|e| e.to_string())?.iter().sum();
            let queue = Queue::<u64>::new().map_err(|e| e.to_string())?;
            queue.put(3).map_err(|e| e.to_string())?;
            let bytes = SharedBytes::copy_from_slice(&[7; 4096]).map_err(|e| e.to_string())?;
            let len = pool.apply(length, bytes).map_err(|e| e.to_string())?;
            let one_off = spawn(double, 4).map_err(|e| e.to_string())?;
            let four = one_off.join().map_err(|e| e.to_string())?;
            let taken = open_standard();
            Ok((taken, doubled + four + queue.get().map_err(|e| e.to_string())?, len))
        };
        let outcome = run();
        for (fd, copy) in saved.iter().enumerate() {
            // SAFETY: puts the saved standard descriptors back in place.
            unsafe { libc::dup2(copy.as_raw_fd(), fd as i32) };
        }
        let (taken, sum, len) = outcome.unwrap();
        assert_eq!(taken, Vec::<i32>::new(), "the pool took standard descriptor numbers");
        assert_eq!((sum, len), (10_100 + 8 + 3, 4096));
    });
}
