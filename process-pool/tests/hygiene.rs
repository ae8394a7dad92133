//! Resource hygiene: descriptors, memory and child processes are counted for the whole test
//! process, so this binary holds a single test and nothing else runs beside it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use taskpool_process::{Exit, Pool, ProcessPool, TaskError};

/// Bytes the parent may grow by over 1 000 respawns: generous against allocator noise, far
/// below what a leaked buffer, thread or pipe buffer per respawn would cost.
const RSS_GROWTH: u64 = 8 << 20;

/// Waits until every slot of `pool` holds a worker: no start is in progress and every worker
/// that crashed has been reaped. A slot holds no worker from the moment its crashed worker is
/// detached for reaping until its replacement is spawned.
fn settle(pool: &ProcessPool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while pool.pids().len() < pool.workers() {
        assert!(Instant::now() < deadline, "the pool never got all its workers back");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn all_aborted(outcomes: &[Result<u64, TaskError>]) -> bool {
    outcomes.iter().all(|o| matches!(o, Err(TaskError::Crashed(Exit::Signal(6)))))
}

#[test]
fn a_thousand_respawns_leak_no_descriptors_memory_or_zombies() {
    // The program's first child starts its undertaker, whose pipe it keeps open for good.
    assert_eq!(taskpool_process::spawn(square, 3).unwrap().join().unwrap(), 9);
    let before = open_fds();
    let pool = ProcessPool::new(2).unwrap();
    // Warm up: the first respawns size the allocator's and the threads' working set.
    assert!(all_aborted(&pool.map_results(abort, 0..100)));
    settle(&pool);
    let with_pool = open_fds();
    let rss = resident_bytes();

    assert!(all_aborted(&pool.map_results(abort, 0..1000)));
    settle(&pool);
    assert_eq!(pool.stats().workers_started, 2 + 100 + 1000);
    assert_eq!(open_fds(), with_pool, "descriptors leaked over 1000 respawns");
    assert!(zombie_children().is_empty(), "zombies: {:?}", zombie_children());
    let grown = resident_bytes().saturating_sub(rss);
    assert!(grown < RSS_GROWTH, "the parent grew by {grown} bytes over 1000 respawns");
    assert_eq!(pool.map(square, 0..100).unwrap().len(), 100);

    let pids = pool.pids();
    drop(pool);
    assert_eq!(open_fds(), before, "the dropped pool left descriptors open");
    assert!(zombie_children().is_empty(), "zombies: {:?}", zombie_children());
    assert!(pids.iter().all(|&p| !alive(p)), "workers outlived the pool");
}
