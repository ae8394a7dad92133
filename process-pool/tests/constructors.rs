//! A worker serves from a constructor of the program, before `main`; the constructors the
//! linker placed after it (a C or C++ library's, the runtime of `-C instrument-coverage`,
//! which writes the coverage of tasks when the worker exits) run in the worker too, as they
//! do before `main`.

// Named before `taskpool_process`, so that rustc hands its objects to the linker after that
// crate's, and its constructor comes after the worker hook.
use late_constructor::ran;

mod common;

use common::*;
use taskpool_process::{Pool, ProcessPool, spawn};

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
