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
    assert_eq!(open_fds(), with_pool, "descriptors leaked over 200 respawns");
    assert!(zombie_children().is_empty(), "zombies: {:?}", zombie_children());
    let pids = pool.pids();
    drop(pool);
    assert_eq!(open_fds(), before, "the dropped pool left descriptors open");
    assert!(zombie_children().is_empty(), "zombies: {:?}", zombie_children());
    assert!(pids.iter().all(|&p| !alive(p)), "workers outlived the pool");
}
