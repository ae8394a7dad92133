//! Resource hygiene: descriptors and child processes are counted for the whole test process,
//! so this binary holds a single test and nothing else runs beside it.

mod common;

use common::*;
use taskpool_process::{Pool, ProcessPool};

#[test]
fn respawns_and_drops_leak_no_descriptors_and_leave_no_zombies() {
    let before = open_fds();
    let pool = ProcessPool::new(2).unwrap();
    assert_eq!(pool.apply(square, 1).unwrap(), 1);
    let with_pool = open_fds();
    for _ in 0..200 {
        assert!(pool.apply(abort, 0).is_err());
    }
    assert_eq!(pool.map(square, 0..100).unwrap().len(), 100);
    // The last crashed worker may still be being replaced: its new pipes exist only while
    // the spawn is under way. Wait for the count to settle, then check it.
    settle(|| open_fds() == with_pool);
    assert_eq!(open_fds(), with_pool, "descriptors leaked over 200 respawns");
    assert!(zombie_children().is_empty(), "zombies: {:?}", zombie_children());
    let pids = pool.pids();
    drop(pool);
    assert_eq!(open_fds(), before, "the dropped pool left descriptors open");
    assert!(zombie_children().is_empty(), "zombies: {:?}", zombie_children());
    assert!(pids.iter().all(|&p| !alive(p)), "workers outlived the pool");
}

/// Waits (up to a minute) until `done` holds: the pool finishing background work.
fn settle(done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
