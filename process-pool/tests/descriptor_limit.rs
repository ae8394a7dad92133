//! Out of descriptors, a pool cannot start workers: the tasks waiting fail with the OS's own
//! reason (said once), a new pool fails to start with it, and the pool recovers when
//! descriptors are free again. The limit is
//! the whole process's, so this binary holds a single test.

mod common;

use std::time::{Duration, Instant};

use common::*;
use taskpool_process::{Exit, Pool, ProcessPool, TaskError};

fn set_descriptor_limit(limit: u64) -> u64 {
    // SAFETY: rlimit is a plain struct that getrlimit fills, and setrlimit reads.
    unsafe {
        let mut old: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut old);
        let new = libc::rlimit { rlim_cur: limit, rlim_max: old.rlim_max };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &new), 0);
        old.rlim_cur
    }
}

#[test]
fn out_of_descriptors_the_reason_is_the_os_error_and_the_pool_recovers() {
    let pool = ProcessPool::new(1).unwrap();
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
    let before = set_descriptor_limit(open_fds() as u64);
    let crashed = within("a crash", {
        let pool = std::sync::Arc::new(pool);
        let p = pool.clone();
        move || (p.apply(abort, 0), p.apply(square, 3), pool)
    });
    let (crash, refused, pool) = crashed;
    assert!(matches!(crash, Err(TaskError::Crashed(Exit::Signal(6)))), "{crash:?}");
    match refused {
        Err(TaskError::WorkerStart { reason }) => {
            assert!(reason.contains("os error 24"), "{reason}");
            assert!(!reason.contains("worker failed to start"), "{reason}");
        }
        other => panic!("expected a start failure, got {other:?}"),
    }
    // A new pool says the same, as the start failure its documentation names.
    match ProcessPool::new(4096) {
        Err(TaskError::WorkerStart { reason }) => {
            assert!(reason.contains("os error 24"), "{reason}")
        }
        other => panic!("expected a start failure, got {:?}", other.map(|p| p.pids())),
    }
    set_descriptor_limit(before);
    let deadline = Instant::now() + HANG;
    loop {
        match pool.apply(square, 4) {
            Ok(16) => break,
            Err(TaskError::WorkerStart { .. }) => {
                assert!(Instant::now() < deadline, "the pool never recovered");
                std::thread::sleep(Duration::from_millis(20));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
