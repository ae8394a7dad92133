//! A pool whose workers cannot start fails what waits with `WorkerStart`, saying why once,
//! and recovers by itself as soon as workers can start again.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use taskpool_process::{Config, Pool, ProcessConfig, ProcessPool, TaskError};

/// The file whose presence makes [`gated`] fail, named for the parent (the test process).
fn gate(parent: u32) -> PathBuf {
    std::env::temp_dir().join(format!("taskpool-test-{parent}-start-gate"))
}

/// An initializer that fails while the gate of its parent exists.
fn gated() {
    // SAFETY: getppid cannot fail and has no memory effects.
    let parent = unsafe { libc::getppid() }.unsigned_abs();
    assert!(!gate(parent).exists(), "the gate is closed");
}

fn start_error(result: Result<u64, TaskError>) -> String {
    match result {
        Err(TaskError::WorkerStart { reason }) => reason,
        other => panic!("expected a start failure, got {other:?}"),
    }
}

#[test]
fn a_pool_that_cannot_start_workers_recovers_by_itself() {
    let gate = gate(std::process::id());
    std::fs::write(&gate, "").unwrap();
    let config = Config::new().workers(1).initializer(gated).start_attempts(2);
    let pool = ProcessPool::with_config(config).unwrap();
    let reason = within("a task on a pool that cannot start", {
        let pool_ref = std::sync::Arc::new(pool);
        let p = pool_ref.clone();
        move || (start_error(p.apply(square, 2)), pool_ref)
    });
    let (reason, pool) = reason;
    assert!(reason.contains("the gate is closed"), "{reason}");
    assert!(!reason.contains("worker failed to start"), "said twice: {reason}");
    let err = TaskError::WorkerStart { reason: reason.clone() }.to_string();
    assert_eq!(err.matches("worker failed to start").count(), 1, "{err}");

    std::fs::remove_file(&gate).unwrap();
    let deadline = Instant::now() + HANG;
    loop {
        match pool.apply(square, 3) {
            Ok(9) => break,
            Err(TaskError::WorkerStart { .. }) => {
                assert!(Instant::now() < deadline, "the pool never recovered");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(pool.map(square, 0..10).unwrap().len(), 10);
}

/// An initializer that writes through a null pointer, as a native library's setup may.
fn crashing_initializer() {
    segfault(0);
}

/// An initializer that ends the process, as a native library's setup may.
fn exiting_initializer() {
    exit_3(0);
}

#[test]
fn an_initializer_that_kills_its_worker_says_how_in_a_sentence() {
    let config = Config::new().workers(1).initializer(crashing_initializer).start_attempts(1);
    let pool = ProcessPool::with_config(config).unwrap();
    let reason = start_error(pool.apply(square, 2));
    assert_eq!(reason, "the worker was killed by signal SIGSEGV (11) before it was ready");
    let config = Config::new().workers(1).initializer(exiting_initializer).start_attempts(1);
    let pool = ProcessPool::with_config(config).unwrap();
    let reason = start_error(pool.apply(square, 2));
    assert_eq!(reason, "the worker exited with code 3 before it was ready");
}

/// An initializer that takes longer than the start limit below.
fn slow_initializer() {
    std::thread::sleep(Duration::from_secs(5));
}

#[test]
fn an_initializer_slower_than_the_start_limit_fails_the_start_saying_which() {
    let limit = Duration::from_millis(300);
    let config = Config::new().workers(1).initializer(slow_initializer).start_attempts(1);
    let pool = ProcessPool::with_config(ProcessConfig::new(config).start_limit(limit)).unwrap();
    let reason = within("a task on a pool whose workers start too slowly", move || {
        start_error(pool.apply(square, 2))
    });
    assert!(reason.contains("not ready after 300ms"), "{reason}");
    assert!(reason.contains("ProcessConfig::start_limit"), "{reason}");
}

#[test]
fn a_pool_without_a_start_limit_serves() {
    let config = ProcessConfig::new(Config::new().workers(1)).start_limit(Duration::MAX);
    let pool = ProcessPool::with_config(config).unwrap();
    assert_eq!(pool.apply(square, 7).unwrap(), 49);
}
