//! A program run under a file-size limit (`ulimit -f`, `RLIMIT_FSIZE`, as batch systems and
//! sandboxes set) writes no file larger than the limit, and a pool must not change that:
//! growing a shared-memory file past the limit would raise SIGXFSZ, whose default action
//! ends the program. Pools serve over their pipes instead, and queues and shared bytes that
//! do not fit fail with an error. The limit is the whole process's, so this binary holds a
//! single test.

mod common;

use std::io::ErrorKind;

use common::*;
use taskpool_process::{Pool, ProcessPool, Queue, SharedBytes, spawn};

/// Sets the soft file-size limit of this process to `bytes`.
fn limit_file_size(bytes: u64) {
    // SAFETY: rlimit is a plain struct that getrlimit fills and setrlimit reads.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        assert_eq!(libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit), 0);
        limit.rlim_cur = bytes.min(limit.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
}

#[test]
fn a_pool_under_a_file_size_limit_serves_without_shared_memory_files() {
    within("pools, queues and shared bytes under a 64 KiB file-size limit", || {
        limit_file_size(64 << 10);
        let pool = ProcessPool::new(2).unwrap();
        assert_eq!(pool.map(square, 1..=1000).unwrap().len(), 1000);
        assert_eq!(spawn(square, 7).unwrap().join().unwrap(), 49);
        let too_large = |e: std::io::Error| assert_eq!(e.kind(), ErrorKind::FileTooLarge, "{e}");
        too_large(Queue::<u64>::with_limits(1 << 20, None).unwrap_err());
        too_large(SharedBytes::copy_from_slice(&[1; 1 << 20]).unwrap_err());
        // The same limit on the workers' side: a task's shared bytes fail alone.
        assert_eq!(pool.apply(shared_bytes_of, 1 << 20).unwrap(), None);
        limit_file_size(libc::RLIM_INFINITY);
        assert_eq!(pool.apply(square, 3).unwrap(), 9);
    });
}

/// Makes shared bytes of `len` bytes in the worker: their length, or `None` if refused.
fn shared_bytes_of(len: usize) -> Option<usize> {
    match SharedBytes::copy_from_slice(&vec![1; len]) {
        Ok(bytes) => Some(bytes.len()),
        Err(e) if e.kind() == ErrorKind::FileTooLarge => None,
        Err(e) => panic!("refused for another reason: {e}"),
    }
}
