//! A worker serves from a constructor of the program, before `main`; the constructors the
//! linker placed after it (a C or C++ library's, the runtime of `-C instrument-coverage`,
//! which writes the coverage of tasks when the worker exits) run in the worker too, as they
//! do before `main`.

// Named before `taskpool_process`, so that rustc hands its objects to the linker after that
// crate's, and its constructor comes after the worker hook.
use late_constructor::ran;

mod common;

use common::*;
use taskpool_process::{Config, Exit, Pool, ProcessPool, TaskError, spawn};

fn constructor_ran(_: ()) -> bool {
    ran()
}

#[test]
fn constructors_after_the_worker_hook_run_in_workers() {
    assert!(ran(), "the constructor did not run in the program");
    let pool = ProcessPool::new(1).unwrap();
    assert!(pool.apply(constructor_ran, ()).unwrap(), "it did not run in a worker");
    assert!(spawn(constructor_ran, ()).unwrap().join().unwrap(), "nor in a one-off");
    drop(pool);
    assert!(zombie_children().is_empty());
}

/// Set in the copy of this binary whose workers abort in the constructor.
const ABORTING: &str = "TASKPOOL_TEST_ABORTING_CONSTRUCTOR";

#[test]
fn a_worker_that_dies_in_a_constructor_fails_its_start_by_its_signal() {
    let name = "a_worker_that_dies_in_a_constructor_fails_its_start_by_its_signal";
    if std::env::var_os(ABORTING).is_none() {
        let mut command = std::process::Command::new(std::env::current_exe().unwrap());
        command.env(ABORTING, "1").env(late_constructor::ABORT_IN_WORKERS, "1");
        run_test_in(command, name, "with workers that abort in a constructor").unwrap();
        return;
    }
    // The worker dies as soon as it starts, often before the pool has written its first
    // request: either way its start fails by its signal, not by the pipe it closed, and a
    // one-off crashes by it.
    for _ in 0..20 {
        let pool = ProcessPool::with_config(Config::new().workers(1).start_attempts(1))
            .expect("the pool starts, and counts its worker's death as a failed start");
        match pool.apply(square, 2) {
            Err(TaskError::WorkerStart { reason }) => {
                assert!(reason.contains("SIGABRT"), "{reason}");
            }
            other => panic!("expected a failed start, got {other:?}"),
        }
    }
    for _ in 0..20 {
        let outcome = spawn(square, 2).and_then(|child| child.join());
        assert!(matches!(outcome, Err(TaskError::Crashed(Exit::Signal(6)))), "{outcome:?}");
    }
    assert!(zombie_children().is_empty());
}
