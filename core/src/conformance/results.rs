//! How a user receives results besides `join` and `map`: awaiting a handle, progress while a
//! batch runs, and the flat result of tasks that return `Result`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use super::{HANG, square};
use crate::{Config, Pool, TaskError, TryError};

/// Halves an even number; an odd one is the task's own error; 13 panics.
pub fn half_or_fail(x: u64) -> Result<u64, String> {
    assert!(x != 13, "thirteen");
    if x.is_multiple_of(2) { Ok(x / 2) } else { Err(format!("{x} is odd")) }
}

/// Returns `value` once the file at `path` exists (at once for an empty path), or `u64::MAX`
/// if it does not appear within the suite's hang limit.
pub fn wait_for_file((value, path): (u64, String)) -> u64 {
    let started = Instant::now();
    while !path.is_empty() && !Path::new(&path).exists() {
        if started.elapsed() > HANG {
            return u64::MAX;
        }
        thread::sleep(Duration::from_millis(1));
    }
    value
}

/// Runs a future to completion on this thread: the smallest executor, so that the suite
/// needs no async runtime.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(Thread);

    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }

    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        thread::park();
    }
}

/// A handle awaited resolves to the same value or typed failure that `join` gives.
pub fn awaited_handles<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2));
    let handles: Vec<_> = (0..200).map(|i| pool.submit(square, i)).collect();
    let odd = pool.submit(half_or_fail, 3);
    let panicked = pool.submit(half_or_fail, 13);
    let (sum, odd, panicked) = block_on(async {
        let mut sum = 0;
        for handle in handles {
            sum += handle.await.unwrap();
        }
        (sum, odd.await, panicked.await)
    });
    assert_eq!(sum, (0..200).map(square).sum::<u64>());
    assert_eq!(odd.unwrap(), Err("3 is odd".to_string()));
    match panicked {
        Err(TaskError::Panicked(report)) => assert_eq!(report.message, "thirteen"),
        other => panic!("expected a panic, got {other:?}"),
    }
}

/// Progress starts when the items are sent, only grows, counts every item once and ends at
/// the total, whatever the outcomes.
pub fn progress_counts_every_item<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2));
    let mut calls = Vec::new();
    let squares = pool.map_with_progress(square, 0..5000, |done, total| calls.push((done, total)));
    assert_eq!(squares.unwrap(), (0..5000).map(square).collect::<Vec<_>>());
    assert_eq!(calls.first(), Some(&(0, 5000)));
    assert_eq!(calls.last(), Some(&(5000, 5000)));
    assert!(calls.iter().all(|&(_, total)| total == 5000));
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0), "progress went back: {calls:?}");

    let mut last = None;
    let outcomes = pool.map_results_with_progress(half_or_fail, 10..20, |done, total| {
        last = Some((done, total));
    });
    assert_eq!(last, Some((10, 10)), "a failed item is done too");
    assert!(matches!(outcomes[3], Err(TaskError::Panicked(_))));
    assert_eq!(outcomes[0].as_ref().unwrap(), &Ok(5));

    let mut calls = Vec::new();
    assert!(
        pool.map_with_progress(square, Vec::new(), |d, t| calls.push((d, t))).unwrap().is_empty()
    );
    assert_eq!(calls, [(0, 0)]);
}

/// Progress is reported while items still run, not only at the end: the last item waits
/// for a file that the progress callback creates once it has seen a finished item.
pub fn progress_arrives_while_items_run<P: Pool>(make: impl Fn(Config) -> P) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let pool = make(Config::new().workers(2).chunk_size(1));
    let gate: PathBuf = std::env::temp_dir().join(format!(
        "taskpool-progress-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let items: Vec<(u64, String)> = (0..20)
        .map(|i| (i, if i == 19 { gate.display().to_string() } else { String::new() }))
        .collect();
    let mut opened = false;
    let values = pool.map_with_progress(wait_for_file, items, |done, _| {
        if done >= 1 && !opened {
            std::fs::write(&gate, b"").expect("creating the gate file");
            opened = true;
        }
    });
    let _ = std::fs::remove_file(&gate);
    assert_eq!(values.unwrap(), (0..20).collect::<Vec<u64>>(), "no progress before the end");
}

/// `try_map` gives the values, or the first failure in input order told apart: the task's
/// own error or a [`TaskError`].
pub fn try_map_is_flat<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2));
    assert_eq!(pool.try_map(half_or_fail, [2, 4, 6]).unwrap(), [1, 2, 3]);
    match pool.try_map(half_or_fail, [2, 5, 13, 7]) {
        Err(TryError::Returned(e)) => assert_eq!(e, "5 is odd"),
        other => panic!("expected the task's error, got {other:?}"),
    }
    match pool.try_map(half_or_fail, [2, 13, 5]) {
        Err(TryError::Failed(TaskError::Panicked(report))) => {
            assert_eq!(report.message, "thirteen");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert!(pool.try_map(half_or_fail, Vec::new()).unwrap().is_empty());
}
