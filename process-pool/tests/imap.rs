//! `imap` holds a bounded window of items, from the first result on, and dropping it cancels
//! what it pulled and did not send; a `map` that a panic leaves cancels what it did not send
//! too; `imap_stream` of slow items keeps a small window.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use serde::{Deserialize, Serialize};
use taskpool_process::{Pool, ProcessPool, Task, TaskError};

/// Creates the file named by its input in `dir`, then sleeps a little.
#[derive(Serialize, Deserialize)]
struct Touch {
    dir: String,
}

impl Task for Touch {
    type Input = u64;
    type Output = u64;

    fn run(&self, x: u64) -> u64 {
        std::fs::write(std::path::Path::new(&self.dir).join(x.to_string()), "").unwrap();
        sleep_ms(5)
    }
}

#[test]
fn a_fresh_pool_pulls_a_window_and_dropping_imap_cancels_the_rest() {
    let dir = Scratch::new("imap-window");
    let files = dir.file("");
    let pool = ProcessPool::new(2).unwrap();
    // Items not measured yet: a window of 16 per batch the two workers may hold.
    let window = 2 * 2 * 16;
    assert_eq!(pool.imap_window(), 2 * 2 * 1024, "the most it grows to");
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let endless = (0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let mut results = pool.imap(Touch { dir: files.clone() }, endless);
    assert_eq!(results.next().unwrap().unwrap(), 5);
    let ahead = pulled.load(Ordering::Relaxed);
    // Results that came back before the first one wait behind it, and do not count against
    // the window: each of their items ran (and created its file) before it was pulled past.
    let ran = std::fs::read_dir(&files).unwrap().count();
    assert!(
        ahead <= window + ran,
        "pulled {ahead} before the first result; window {window}, {ran} items ran"
    );
    drop(results);
    within("shutdown after the dropped imap", move || pool.shutdown());
    let ran = std::fs::read_dir(&files).unwrap().count();
    let pulled = pulled.load(Ordering::Relaxed);
    assert!(ran < pulled, "all {pulled} items pulled ran: none was cancelled");
}

#[test]
fn a_map_whose_progress_callback_panics_runs_nothing_more_for_it() {
    let pool = ProcessPool::new(2).unwrap();
    let left = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.map_with_progress(sleep_ms, vec![2; 2000], |done, _| {
            assert!(done <= 100, "the caller's callback gives up");
        })
    }));
    assert!(left.is_err(), "the callback's panic reaches the caller");
    // Queued behind the abandoned items, this waited for all of them to run (2,000 of them,
    // every one for nobody); now only those workers had taken.
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    let stats = pool.stats();
    assert!(stats.completed < 1000, "{} items ran after their map was left", stats.completed);
}

/// The length of its input.
fn length(bytes: Vec<u8>) -> u64 {
    bytes.len() as u64
}

#[test]
fn an_imap_of_large_items_keeps_the_small_window() {
    let pool = ProcessPool::new(2).unwrap();
    // A mebibyte each: an item takes far longer to copy than the task takes to run, so the
    // window holds one per batch the two workers may hold (a mebibyte of items per batch),
    // however fast the workers say the task ran.
    let window = 2 * 2;
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let items = (0..300).map(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
        vec![7u8; 1 << 20]
    });
    let mut most = 0;
    for (yielded, length) in pool.imap(length, items).enumerate() {
        assert_eq!(length.unwrap(), 1 << 20);
        most = most.max(pulled.load(Ordering::Relaxed) - yielded);
    }
    assert_eq!(pulled.load(Ordering::Relaxed), 300);
    assert!(
        most <= window,
        "{most} items of a mebibyte pulled and not yet yielded; window {window}"
    );
}

/// `imap_stream` and `imap_unordered_stream` send each item as a task of its own, whose size
/// nothing bounds: while the items are slow, they keep 4 per batch a worker may hold in
/// flight, and as many pulled ahead by the input's thread (and one it holds), not the whole
/// `imap_window()` and as many more.
#[test]
fn a_stream_of_slow_items_keeps_a_small_window() {
    let pool = ProcessPool::new(2).unwrap();
    let window = 4 * 2 * 2;
    for ordered in [true, false] {
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let items = (0..200).map(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
            2
        });
        let outcomes: Box<dyn Iterator<Item = Result<u64, TaskError>>> = if ordered {
            Box::new(pool.imap_stream(sleep_ms, items))
        } else {
            Box::new(pool.imap_unordered_stream(sleep_ms, items))
        };
        let mut most = 0;
        for (yielded, outcome) in outcomes.enumerate() {
            assert_eq!(outcome.unwrap(), 2);
            most = most.max(pulled.load(Ordering::Relaxed) - yielded);
        }
        assert_eq!(pulled.load(Ordering::Relaxed), 200);
        assert!(most <= 2 * window + 1, "ordered {ordered}: {most} pulled and not yet yielded");
    }
}

#[test]
fn an_imap_whose_items_turn_large_shrinks_its_window() {
    let pool = ProcessPool::new(2).unwrap();
    let window = 2 * 2;
    let small = 20_000;
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    // Tiny items first, which grow the window to thousands, then items of a mebibyte.
    let items = (0..small + 300).map(move |i| {
        counter.fetch_add(1, Ordering::Relaxed);
        vec![7u8; if i < small { 8 } else { 1 << 20 }]
    });
    let mut most = 0;
    for (yielded, length) in pool.imap(length, items).enumerate() {
        length.unwrap();
        // Large items pulled and not yet yielded.
        let large = pulled.load(Ordering::Relaxed).saturating_sub(small.max(yielded));
        most = most.max(large);
    }
    // The window, and the one that ended the batch pulled as they turned large.
    assert!(most <= window + 1, "{most} items of a mebibyte pulled and not yet yielded");
}

/// A mebibyte of bytes.
fn mebibyte(x: u64) -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from(vec![x as u8; 1 << 20])
}

#[test]
fn an_imap_of_large_results_keeps_the_small_window() {
    let pool = ProcessPool::new(2).unwrap();
    // Small items whose results take a mebibyte each: once results come back, the window
    // holds one per batch the two workers may hold, as for items of that size.
    let (first, window) = (2 * 2 * 16, 2 * 2);
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let items = (0..300u64).inspect(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let mut most = 0;
    for (yielded, result) in pool.imap(mebibyte, items).enumerate() {
        assert_eq!(result.unwrap().len(), 1 << 20);
        if yielded >= first {
            // Past the items pulled before any result was back.
            most = most.max(pulled.load(Ordering::Relaxed) - yielded);
        }
    }
    assert!(most <= window + 1, "{most} results of a mebibyte held; window {window}");
}

/// Tiny items measured fast grow the window past the first 16 per batch a worker may hold,
/// so that they travel many to a batch (a window topped up item by item sent each alone).
#[test]
fn an_imap_of_tiny_items_grows_its_window_past_the_first() {
    let pool = ProcessPool::new(2).unwrap();
    let first = 2 * 2 * 16;
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let endless = (0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    let mut most_ahead = 0;
    for (i, result) in pool.imap(square, endless).take(50_000).enumerate() {
        assert_eq!(result.unwrap(), square(i as u64));
        let ahead = pulled.load(Ordering::Relaxed) - (i + 1);
        assert!(ahead <= pool.imap_window(), "{ahead} ahead");
        most_ahead = most_ahead.max(ahead);
    }
    assert!(most_ahead > first, "the window never grew past {first}: {most_ahead} at most");
}

/// Items of a millisecond, but for every hundredth, which creates the file named by its index
/// in `dir` and waits (up to a bound) until every slow item's file exists: it returns whether
/// the slow items met, running at once.
#[derive(Serialize, Deserialize)]
struct Meet {
    dir: String,
    slow: Vec<u64>,
}

impl Task for Meet {
    type Input = u64;
    type Output = bool;

    fn run(&self, x: u64) -> bool {
        if !self.slow.contains(&x) {
            sleep_ms(1);
            return true;
        }
        let dir = std::path::Path::new(&self.dir);
        std::fs::write(dir.join(x.to_string()), "").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !self.slow.iter().all(|k| dir.join(k.to_string()).exists()) {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        true
    }
}

/// Slow items further apart than the window of items measured slow (16 per batch the two
/// workers may hold) run at once on the two workers, in an ordered `imap` as in an unordered
/// one: the results that wait behind the first do not hold the window shut, so the workers
/// reach the second while the first runs. (They ran one after the other, each waiting for
/// the one before to be yielded.)
#[test]
fn slow_items_further_apart_than_the_window_run_at_once() {
    for ordered in [true, false] {
        let dir = Scratch::new(if ordered { "imap-meet-ordered" } else { "imap-meet" });
        let files = dir.file("");
        let pool = ProcessPool::new(2).unwrap();
        let window = 2 * 2 * 16;
        let slow = vec![99, 199];
        assert!(slow[1] - slow[0] > window);
        let task = Meet { dir: files.clone(), slow: slow.clone() };
        let results: Vec<bool> = if ordered {
            pool.imap(task, 0..300).map(Result::unwrap).collect()
        } else {
            pool.imap_unordered(task, 0..300).map(Result::unwrap).collect()
        };
        assert_eq!(results.len(), 300);
        let met = results.iter().filter(|&&met| met).count();
        assert_eq!(met, 300, "ordered: {ordered}: the slow items ran one after the other");
    }
}
