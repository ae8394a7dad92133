//! A pool with more workers than CPUs, for tasks that wait: every task that waits gets a
//! worker of its own, also those of a function measured tiny, which travel several to a frame
//! while every worker is busy, behind a task that may wait for them.

mod common;

use common::*;
use taskpool_process::{Pool, ProcessPool};

/// Tasks that meet: as many as [`meet`] waits for, the workers' count.
const MEETING: usize = 32;

/// Returns 0 at once for an empty `dir`; otherwise marks its arrival in `dir` (the file
/// `arrived-i`) and waits until [`MEETING`] tasks arrived, which they do only if each runs
/// on a worker of its own at the same time. One function per `PHASE` of a test, each
/// measured on its own: a function whose tasks met lately counts as one whose calls vary,
/// and its tiny tasks are not stacked until it has run many tiny ones since.
fn meet<const PHASE: u8>((dir, i): (String, usize)) -> usize {
    if dir.is_empty() {
        return 0;
    }
    std::fs::write(format!("{dir}/arrived-{i}"), "").unwrap();
    loop {
        let arrived = std::fs::read_dir(&dir).unwrap().count();
        if arrived >= MEETING {
            return arrived;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Submits [`MEETING`] meeting tasks of `PHASE` and checks that every one of them met the
/// others.
fn all_meet<const PHASE: u8>(pool: &ProcessPool, scratch: &Scratch, name: &str) {
    let dir = scratch.file(name);
    std::fs::create_dir(&dir).unwrap();
    let handles: Vec<_> =
        (0..MEETING).map(|i| pool.submit(meet::<PHASE>, (dir.clone(), i))).collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap(), MEETING);
    }
}

/// Runs bursts of tiny tasks of `PHASE` until it is measured tiny.
fn measure_tiny<const PHASE: u8>(pool: &ProcessPool) {
    for _ in 0..5 {
        let handles: Vec<_> =
            (0..1_000).map(|_| pool.submit(meet::<PHASE>, (String::new(), 0))).collect();
        assert!(handles.into_iter().all(|h| h.join().unwrap() == 0));
    }
}

/// Submits a burst of 1,000 tiny tasks of `PHASE` and, right behind it, [`MEETING`] meeting
/// tasks of `PHASE`, which wait behind the burst, joined in frames (or stacked).
fn meet_after_a_burst<const PHASE: u8>(pool: &ProcessPool, scratch: &Scratch, name: &str) {
    let burst: Vec<_> =
        (0..1_000).map(|_| pool.submit(meet::<PHASE>, (String::new(), 0))).collect();
    all_meet::<PHASE>(pool, scratch, name);
    assert!(burst.into_iter().all(|h| h.join().unwrap() == 0));
}

#[test]
fn tasks_that_wait_for_each_other_all_run_at_once_also_when_measured_tiny() {
    let scratch = Scratch::new("oversubscribed-meet");
    within("32 tasks that wait for each other", move || {
        let pool = ProcessPool::new(MEETING).unwrap();
        // Never measured: sent to a worker each, as slow tasks are.
        all_meet::<0>(&pool, &scratch, "fresh");
        // Measured tiny: while every worker is busy, they travel several to a frame.
        measure_tiny::<1>(&pool);
        all_meet::<1>(&pool, &scratch, "tiny");
        // And right after a burst of them: they wait behind it, joined in frames.
        measure_tiny::<2>(&pool);
        meet_after_a_burst::<2>(&pool, &scratch, "after-a-burst");
        // Of a function whose tasks just met (ran long), again right after a burst.
        meet_after_a_burst::<1>(&pool, &scratch, "after-long-calls");
    });
}
