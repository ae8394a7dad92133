//! A program that can start no more threads (its process limit reached, or its memory):
//! `ProcessPool::new` fails with `TaskError::WorkerStart` saying that a supervisor thread
//! could not start, in the OS's words, rather than the OS's words alone.

mod common;

use std::process::Command;

use common::*;
use taskpool_process::{ProcessPool, TaskError};

/// Set in the copy of this binary that can start no thread.
const NO_THREADS: &str = "TASKPOOL_TEST_NO_THREADS";

#[test]
fn a_pool_that_cannot_start_its_threads_says_so() {
    let name = "a_pool_that_cannot_start_its_threads_says_so";
    if std::env::var_os(NO_THREADS).is_some() {
        // Every thread asks for a stack larger than any address space: none starts (and the
        // test harness runs this test on its main thread).
        assert!(std::thread::Builder::new().spawn(|| ()).is_err(), "a thread started");
        match ProcessPool::new(1) {
            Err(TaskError::WorkerStart { reason }) => {
                assert!(reason.starts_with("cannot start a supervisor thread: "), "{reason}");
            }
            other => panic!("expected a start failure, got {other:?}"),
        }
        return;
    }
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env(NO_THREADS, "1").env("RUST_MIN_STACK", (1u64 << 60).to_string());
    run_test_in(command, name, "without threads").unwrap();
}
