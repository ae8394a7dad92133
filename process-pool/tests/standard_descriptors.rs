//! A program whose standard output and error are closed (a daemon that closes 0, 1 and 2),
//! or are close-on-exec, starts workers with those numbers free. A worker opens `/dev/null`
//! on them, as the Rust runtime does before `main`, so that a file or queue a task opens
//! never takes descriptor 1 or 2 and the task's prints never land in it. The binary holds
//! this one test: it changes the test process's own standard output for a moment.

mod common;

use std::os::fd::AsRawFd;

use common::*;
use taskpool_process::{Pool, ProcessPool, Queue, spawn};

/// Whether each of descriptors 0, 1 and 2 is open, and the number a new file gets.
fn descriptors(_: u64) -> (Vec<bool>, i32) {
    // SAFETY: F_GETFD only reads a descriptor's flags; a closed one makes it fail.
    let open = (0..3).map(|fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0).collect();
    let file = std::fs::File::open("/dev/null").unwrap();
    (open, file.as_raw_fd())
}

/// Prints after making a queue, then reports whether the queue still works.
fn print_beside_a_queue(x: u64) -> u64 {
    let queue = Queue::<u64>::new().unwrap();
    println!("a line for standard output");
    eprintln!("a line for standard error");
    queue.put(x).unwrap();
    queue.get().unwrap()
}

/// Sets or clears close-on-exec on descriptors 1 and 2 of this process.
fn close_standard_output_on_exec(on: bool) {
    for fd in 1..=2 {
        // SAFETY: F_SETFD only changes the close-on-exec flag of this process's descriptor.
        assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, i32::from(on)) }, 0);
    }
}

#[test]
fn workers_started_without_standard_output_reopen_it_on_dev_null() {
    within("workers started with descriptors 1 and 2 closed", || {
        // Close-on-exec: the workers start with 1 and 2 closed, while this process keeps
        // them (closing them here would let the pool's own descriptors take their numbers).
        close_standard_output_on_exec(true);
        let pool = ProcessPool::new(1);
        let one_off = spawn(descriptors, 0);
        let worker = pool.as_ref().ok().map(|pool| pool.apply(descriptors, 0));
        close_standard_output_on_exec(false);
        let pool = pool.unwrap();
        let (open, fd) = worker.unwrap().unwrap();
        assert_eq!(open, [true, true, true]);
        assert!(fd > 2, "a file opened in a task took descriptor {fd}");
        let (open, fd) = one_off.unwrap().join().unwrap();
        assert_eq!(open, [true, true, true]);
        assert!(fd > 2, "a file opened in a one-off took descriptor {fd}");
        assert_eq!(pool.map(print_beside_a_queue, 1..=3).unwrap(), [1, 2, 3]);
    });
}
