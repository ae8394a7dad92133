//! A task with a time limit when no thread can be started (a container's pids limit reached):
//! the pool's watchdog, which keeps time limits, starts with the first of them; if it cannot
//! start, that task fails at once with `WorkerStart` rather than run with nothing to end its
//! caller's wait at the limit.
//!
//! The test makes a pids cgroup of its own under this process's, which takes root; where
//! that cannot be done it says why and passes.

use std::fs;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use taskpool_core::conformance::cgroup::{Cgroup, own_cgroup};
use taskpool_thread::{Config, Pool, TaskError, ThreadPool};

/// How long the test waits for an event before it calls it a hang.
const HANG: Duration = Duration::from_secs(60);

static RELEASED: Mutex<bool> = Mutex::new(false);
static RELEASE: Condvar = Condvar::new();

/// Blocks until [`release`] is called.
fn block(x: u64) -> u64 {
    drop(RELEASE.wait_while(RELEASED.lock().unwrap(), |released| !*released).unwrap());
    x
}

fn release() {
    *RELEASED.lock().unwrap() = true;
    RELEASE.notify_all();
}

/// Run by the test below, inside a pids cgroup of its own.
#[test]
#[ignore = "run in a copy of this binary, in a pids cgroup, by the test after it"]
fn submit_a_timed_task_when_no_thread_can_start() {
    let pool =
        ThreadPool::with_config(Config::new().workers(1).timeout(Duration::from_secs(1))).unwrap();
    let cgroup = own_cgroup("pids").unwrap();
    let current = fs::read_to_string(cgroup.join("pids.current")).unwrap();
    // No thread or process more from here on.
    fs::write(cgroup.join("pids.max"), current.trim()).unwrap();
    let mut handle = pool.submit(block, 7);
    // Before, the task ran, and nothing ended the wait at its limit.
    let result = handle.join_timeout(HANG);
    release();
    fs::write(cgroup.join("pids.max"), "max").unwrap();
    match result {
        Err(TaskError::WorkerStart { reason }) => {
            assert!(reason.contains("Resource temporarily unavailable"), "{reason}");
        }
        other => panic!("expected WorkerStart, got {other:?}"),
    }
    // Threads can start again: time limits are kept again.
    assert_eq!(pool.apply(|x: u64| x * 2, 4).unwrap(), 8);
}

/// Run by the test below, inside a pids cgroup of its own.
#[test]
#[ignore = "run in a copy of this binary, in a pids cgroup, by the test after it"]
fn start_a_pool_and_a_one_off_when_no_thread_can_start() {
    let cgroup = own_cgroup("pids").unwrap();
    let current = fs::read_to_string(cgroup.join("pids.current")).unwrap();
    fs::write(cgroup.join("pids.max"), current.trim()).unwrap();
    let pool = ThreadPool::new(2).map(drop);
    let one_off = taskpool_thread::spawn(block, 1).map(drop);
    fs::write(cgroup.join("pids.max"), "max").unwrap();
    // Before, the OS's words alone.
    let said = "Resource temporarily unavailable";
    match pool {
        Err(TaskError::WorkerStart { reason }) => {
            assert_eq!(reason, format!("cannot start a worker thread: {said} (os error 11)"));
        }
        other => panic!("expected WorkerStart, got {other:?}"),
    }
    match one_off {
        Err(TaskError::WorkerStart { reason }) => {
            assert_eq!(reason, format!("cannot start a thread: {said} (os error 11)"));
        }
        other => panic!("expected WorkerStart, got {other:?}"),
    }
}

/// Runs the test `name` in a copy of this binary, in a pids cgroup of its own; says why
/// not, and passes, where no such cgroup can be made.
fn run_in_a_pids_cgroup(name: &str) {
    let cgroup = match Cgroup::with("pids", name, "pids.max", "max") {
        Ok(cgroup) => cgroup,
        Err(why) => {
            println!("skipped: no pids cgroup of this test's own: {why}");
            return;
        }
    };
    cgroup.run_test(name);
}

#[test]
fn a_timed_task_fails_with_worker_start_when_no_thread_can_keep_its_limit() {
    run_in_a_pids_cgroup("submit_a_timed_task_when_no_thread_can_start");
}

#[test]
fn a_pool_or_one_off_that_cannot_start_a_thread_says_so() {
    run_in_a_pids_cgroup("start_a_pool_and_a_one_off_when_no_thread_can_start");
}
