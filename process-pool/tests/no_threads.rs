//! A program that can start no more threads (its process limit reached, or its memory):
//! `ProcessPool::new` fails with `TaskError::WorkerStart` saying that a supervisor thread
//! could not start, in the OS's words, rather than the OS's words alone; and a one-off fails
//! to start, saying that the thread that starts processes could not start, rather than start
//! as a child of the calling thread, whose end would kill it (but for the main thread, whose
//! end ends the program).

mod common;

use std::process::Command;

use common::*;
use taskpool_process::{ProcessPool, TaskError, spawn};

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
    run_without_threads(name);
}

#[test]
fn a_one_off_that_cannot_have_its_launcher_thread_says_so() {
    let name = "a_one_off_that_cannot_have_its_launcher_thread_says_so";
    if std::env::var_os(NO_THREADS).is_some() {
        // A thread of the program's own, with a stack it sets, starts the one-off and ends.
        // A worker dies with the thread that spawned it: the one-off must not be that
        // thread's child.
        let starter = std::thread::Builder::new().stack_size(256 << 10);
        let spawned = starter.spawn(|| spawn(square, 7)).unwrap().join().unwrap();
        match spawned.map(|one_off| one_off.join()) {
            Err(TaskError::WorkerStart { reason }) => {
                let said = "cannot start a worker process: the launcher thread, which starts \
                            every worker and one-off, cannot start: ";
                assert!(reason.starts_with(said), "{reason}");
            }
            other => panic!("expected a start failure, got {other:?}"),
        }
        // The main thread (the harness runs this test there), whose end ends the program,
        // starts its one-offs itself.
        assert_eq!(spawn(square, 6).unwrap().join().unwrap(), 36);
        return;
    }
    run_without_threads(name);
}

/// Runs the test `name` in a copy of this binary whose threads cannot start unless they
/// set their own stack size.
fn run_without_threads(name: &str) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env(NO_THREADS, "1").env("RUST_MIN_STACK", (1u64 << 60).to_string());
    run_test_in(command, name, "without threads").unwrap();
}
