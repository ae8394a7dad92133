//! Pools inside tasks: a task may make a pool of its own (workers that start workers) or a
//! one-off, and what it started dies with its worker.

mod common;

use common::*;
use serde::{Deserialize, Serialize};
use taskpool_process::{Pool, ProcessPool, Task, TaskError};
use taskpool_thread::ThreadPool;

/// Squares `0..n` on a pool it makes, and with a one-off.
fn squares_inside(n: u64) -> (Vec<u64>, u64) {
    let pool = ProcessPool::new(2).unwrap();
    let squares = pool.map(square, 0..n).unwrap();
    let one_off = taskpool_process::spawn(square, n).unwrap().join().unwrap();
    (squares, one_off)
}

#[test]
fn a_task_makes_and_uses_a_pool_and_a_one_off_of_its_own() {
    let expected = |n: u64| ((0..n).map(|x| x * x).collect::<Vec<_>>(), n * n);
    within("pools inside tasks", move || {
        let outer = ProcessPool::new(2).unwrap();
        let results = outer.map(squares_inside, [3, 5, 8]).unwrap();
        assert_eq!(results, [expected(3), expected(5), expected(8)]);
        // The same from a thread pool's task.
        let threads = ThreadPool::new(2).unwrap();
        assert_eq!(threads.map(squares_inside, [4]).unwrap(), [expected(4)]);
    });
}

/// Makes a pool of its own, sends its workers' pids (a line each) to `signal`, and waits for
/// a task of it that never ends.
#[derive(Serialize, Deserialize)]
struct HoldInnerPool {
    signal: String,
}

impl Task for HoldInnerPool {
    type Input = u64;
    type Output = u64;

    fn run(&self, _: u64) -> u64 {
        let pool = ProcessPool::new(2).unwrap();
        let stuck = pool.submit(sleep_ms, u64::MAX / 2);
        let pids: Vec<String> = pool.pids().iter().map(u32::to_string).collect();
        let partial = format!("{}.partial", self.signal);
        std::fs::write(&partial, pids.join("\n")).unwrap();
        std::fs::rename(&partial, &self.signal).unwrap();
        stuck.join().unwrap()
    }
}

#[test]
fn the_workers_of_a_tasks_own_pool_die_when_the_task_is_cancelled() {
    let scratch = Scratch::new("nested-cancel");
    let signal = scratch.file("inner-pids");
    within("cancelling a task that holds a pool", move || {
        let outer = ProcessPool::new(1).unwrap();
        let handle = outer.submit(HoldInnerPool { signal: signal.clone() }, 0);
        wait_for_file(&signal);
        let inner: Vec<u32> =
            std::fs::read_to_string(&signal).unwrap().lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(inner.len(), 2);
        assert!(handle.cancel());
        assert!(matches!(handle.join(), Err(TaskError::Cancelled)));
        for pid in inner {
            wait_gone(pid);
        }
        assert_eq!(outer.apply(square, 3).unwrap(), 9);
    });
}
