//! `shutdown` waits for every task accepted before it, whichever thread submitted the task
//! and whichever of the pool's threads ran it.

use std::sync::Barrier;
use std::time::Duration;

use taskpool_thread::{Pool, ThreadPool};

/// Returns `x * x` after a short sleep, and the name of the thread that ran it.
fn sleep_then_square(x: u64) -> (u64, String) {
    std::thread::sleep(Duration::from_micros(200));
    (x * x, std::thread::current().name().unwrap_or_default().to_owned())
}

#[test]
fn shutdown_returns_only_once_every_task_submitted_before_it_has_settled() {
    const SUBMITTERS: u64 = 3;
    const EACH: u64 = 200;
    let pool = ThreadPool::new(4).unwrap();
    let submitted = Barrier::new(SUBMITTERS as usize + 1);
    std::thread::scope(|s| {
        let submitters: Vec<_> = (0..SUBMITTERS)
            .map(|t| {
                let (pool, submitted) = (&pool, &submitted);
                s.spawn(move || {
                    let handles: Vec<_> = (t * EACH..(t + 1) * EACH)
                        .map(|x| (x, pool.submit(sleep_then_square, x)))
                        .collect();
                    submitted.wait();
                    handles
                })
            })
            .collect();
        submitted.wait();
        pool.shutdown();
        let mut ran_on = std::collections::HashSet::new();
        for submitter in submitters {
            for (x, handle) in submitter.join().unwrap() {
                assert!(handle.is_finished(), "task {x} had not settled when shutdown returned");
                let (square, thread) = handle.join().unwrap();
                assert_eq!(square, x * x);
                ran_on.insert(thread);
            }
        }
        assert!(ran_on.len() > 1, "the tasks ran on several of the pool's threads: {ran_on:?}");
    });
}
