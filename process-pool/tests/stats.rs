//! The pool's counters: every task counted once, as completed or failed, by the time its
//! caller sees the outcome.

mod common;

use common::*;
use taskpool_process::{Config, Exit, NextTimeout, Pool, ProcessConfig, ProcessPool, TaskError};

fn fail_odd(x: u64) -> u64 {
    assert!(x.is_multiple_of(2), "{x} is odd");
    x
}

#[test]
fn a_batch_is_counted_by_the_time_it_returns() {
    let pool = ProcessPool::new(2).unwrap();
    let outcomes = pool.map_results(fail_odd, 0..100);
    assert_eq!(outcomes.len(), 100);
    for (x, outcome) in (0..).zip(&outcomes) {
        match outcome {
            Ok(v) => assert!(*v == x && x % 2 == 0, "item {x} gave {v}"),
            Err(TaskError::Panicked(report)) => assert_eq!(report.message, format!("{x} is odd")),
            Err(e) => panic!("item {x}: unexpected {e:?}"),
        }
    }
    let stats = pool.stats();
    assert_eq!((stats.completed, stats.failed), (50, 50));
    let streamed = pool.imap_unordered(fail_odd, 0..10).filter(Result::is_ok).count();
    assert_eq!(streamed, 5);
    let stats = pool.stats();
    assert_eq!((stats.completed, stats.failed), (55, 55));
}

#[test]
fn cancelled_and_refused_tasks_count_as_failed_once() {
    let dir = Scratch::new("stats-cancel");
    let signal = dir.file("running");
    let pool = ProcessPool::new(1).unwrap();
    let running = pool.submit(SignalThenSleep { signal: signal.clone() }, 60_000);
    let queued = pool.submit(square, 3);
    let behind = pool.submit(square, 4);
    wait_for_file(&signal);
    assert!(queued.cancel());
    assert!(running.cancel());
    assert_eq!(pool.stats().failed, 2, "counted when cancelled");
    assert_eq!(behind.join().unwrap(), 16);
    assert!(matches!(running.join(), Err(TaskError::Cancelled)));
    assert!(matches!(queued.join(), Err(TaskError::Cancelled)));
    pool.shutdown();
    assert!(matches!(pool.apply(square, 2), Err(TaskError::ShutDown)));
    let stats = pool.stats();
    assert_eq!((stats.completed, stats.failed), (1, 3), "{stats:?}");
}

#[test]
fn crashes_and_replacements_are_counted() {
    let pool = ProcessPool::new(1).unwrap();
    for _ in 0..3 {
        assert_eq!(crashed(pool.apply(abort, 0)), Exit::Signal(6));
    }
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
    let stats = pool.stats();
    assert_eq!(stats.crashes, 3);
    assert_eq!(stats.workers_started, 4);
    assert_eq!((stats.completed, stats.failed), (1, 3));
}

/// Tasks cancelled while their results arrive: each is counted once, as what its caller
/// got, and no count ever goes down, for a reader that exports them as counters.
#[test]
fn cancellations_racing_results_count_each_task_once_and_counts_never_go_down() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    within("bursts cancelled as they complete", || {
        let pool = Arc::new(ProcessPool::new(2).unwrap());
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (pool, done) = (pool.clone(), done.clone());
            std::thread::spawn(move || {
                let mut last = pool.stats();
                while !done.load(Ordering::Acquire) {
                    let now = pool.stats();
                    assert!(
                        now.completed >= last.completed && now.failed >= last.failed,
                        "a count went down: {last:?} then {now:?}"
                    );
                    last = now;
                }
            })
        };
        let (mut values, mut errors) = (0, 0);
        for round in 0..300u64 {
            let handles: Vec<_> = (0..1_000).map(|i| pool.submit(square, round + i)).collect();
            // Last first: the earliest tasks complete as their cancellations come.
            for handle in handles.iter().rev() {
                handle.cancel();
            }
            for handle in handles {
                match handle.join() {
                    Ok(_) => values += 1,
                    Err(TaskError::Cancelled) => errors += 1,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        done.store(true, Ordering::Release);
        reader.join().unwrap();
        let stats = pool.stats();
        assert_eq!((stats.completed, stats.failed), (values, errors), "{stats:?}");
    });
}

/// What a service exports besides the counts: how many tasks wait for a worker, and how many
/// workers are busy.
#[test]
fn the_queue_depth_and_the_busy_workers_are_reported() {
    let scratch = Scratch::new("stats-gauges");
    let (started, go) = (scratch.file("started"), scratch.file("go"));
    within("tasks queued behind a held worker", move || {
        // One batch per worker: what the held worker is not running waits in the pool.
        let config = ProcessConfig::new(Config::new().workers(2)).in_flight(1);
        let pool = ProcessPool::with_config(config).unwrap();
        let idle = pool.stats();
        assert_eq!((idle.queued, idle.busy_workers), (0, 0), "{idle:?}");
        let held: Vec<_> = (0..2)
            .map(|i| {
                let signal = format!("{started}-{i}");
                pool.submit(SignalThenWait { signal: signal.clone(), go: go.clone() }, i)
            })
            .collect();
        (0..2).for_each(|i| wait_for_file(format!("{started}-{i}")));
        let waiting: Vec<_> = (0..3).map(|i| pool.submit(square, i)).collect();
        let busy = pool.stats();
        assert_eq!((busy.queued, busy.busy_workers), (3, 2), "{busy:?}");
        std::fs::write(&go, "").unwrap();
        for handle in held.into_iter().chain(waiting) {
            handle.join().unwrap();
        }
        let done = pool.stats();
        assert_eq!((done.queued, done.busy_workers, done.completed), (0, 0, 5), "{done:?}");
    });
}

/// An `imap` dropped part-way: the items it had pulled and no worker ran are discarded,
/// which is not a failure (nobody was told of an error); the counts still add up to every
/// item the pool was given.
#[test]
fn items_of_a_dropped_imap_are_discarded_not_failed() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let scratch = Scratch::new("stats-discarded");
    let (started, go) = (scratch.file("started"), scratch.file("go"));
    within("an imap dropped behind a held worker", move || {
        // One batch per worker: the imap's items wait in the pool while the worker is held.
        let config = ProcessConfig::new(Config::new().workers(1)).in_flight(1);
        let pool = ProcessPool::with_config(config).unwrap();
        let held = pool.submit(SignalThenWait { signal: started.clone(), go: go.clone() }, 0);
        wait_for_file(&started);
        let pulled = Arc::new(AtomicU64::new(0));
        let counted = pulled.clone();
        let items = (0..1000).inspect(move |_| {
            counted.fetch_add(1, Ordering::Relaxed);
        });
        let mut stream = pool.imap(square, items);
        // The worker is held: nothing can come yet, but the first items are sent to the pool.
        assert!(stream.next_timeout(std::time::Duration::ZERO).is_err());
        let queued = pool.stats().queued;
        assert_eq!(queued, pulled.load(Ordering::Relaxed), "all wait behind the held task");
        assert!(queued > 0);
        drop(stream);
        let dropped = pool.stats();
        assert_eq!((dropped.queued, dropped.failed, dropped.discarded), (0, 0, queued));
        std::fs::write(&go, "").unwrap();
        assert_eq!(held.join().unwrap(), 0);
        let stats = pool.stats();
        assert_eq!((stats.completed, stats.failed, stats.discarded), (1, 0, queued), "{stats:?}");
    });
}

/// `requeued` counts items sent again after a worker held them: a cancelled item its killed
/// worker held goes back to the queue only to be dropped there, and is not one of them.
#[test]
fn only_items_sent_again_count_as_requeued() {
    let scratch = Scratch::new("stats-requeued");
    let (started, go) = (scratch.file("started"), scratch.file("go"));
    within("tasks held by a worker killed for a cancellation", move || {
        let config = ProcessConfig::new(Config::new().workers(1)).in_flight(4);
        let pool = ProcessPool::with_config(config).unwrap();
        let held = pool.submit(SignalThenWait { signal: started.clone(), go }, 0);
        wait_for_file(&started);
        let kept = pool.submit(square, 3);
        let dropped = pool.submit(square, 4);
        let sent = pool.stats();
        assert_eq!((sent.queued, sent.busy_workers), (0, 1), "the worker holds all three");
        assert!(dropped.cancel());
        // Its worker runs it: killed, and the two tasks behind it are taken back.
        assert!(held.cancel());
        assert_eq!(kept.join().unwrap(), 9);
        assert!(matches!(dropped.join(), Err(TaskError::Cancelled)));
        assert!(matches!(held.join(), Err(TaskError::Cancelled)));
        let stats = pool.stats();
        assert_eq!((stats.requeued, stats.workers_started), (1, 2), "{stats:?}");
    });
}
