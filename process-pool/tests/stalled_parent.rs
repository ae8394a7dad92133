//! A parent stalled past a task's time limit (a machine under heavy load, a stopped
//! process): when it runs again, the task it could not stop in time has finished, and its
//! result waits. The task ran past its limit all the same: it fails as timed out.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use taskpool_process::{Pool, ProcessPool, TaskError};

#[test]
fn a_task_that_ran_past_its_limit_while_the_parent_was_stopped_times_out() {
    let scratch = Scratch::new("stalled-parent");
    let started = scratch.file("started");
    let limit = Duration::from_millis(500);
    let pool = ProcessPool::new(1).unwrap();
    let timed = pool.submit_timeout(SignalThenSleep { signal: started.clone() }, 1_000, limit);
    wait_for_file(&started);
    // Stops this whole process (its supervisors too) for two seconds from within the limit:
    // the worker, another process, runs on and answers a second after it started.
    let parent = std::process::id().to_string();
    let mut stopper = Command::new("sh")
        .args(["-c", "kill -STOP \"$0\"; sleep 2; kill -CONT \"$0\"", &parent])
        .spawn()
        .unwrap();
    match timed.join() {
        Err(TaskError::TimedOut { limit: l, still_running: false }) => assert_eq!(l, limit),
        other => panic!("a task that slept 1 s under a 500 ms limit gave {other:?}"),
    }
    assert!(stopper.wait().unwrap().success());
    assert_eq!(pool.stats().timeouts, 1);
}
