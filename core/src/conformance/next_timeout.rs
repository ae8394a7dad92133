//! `NextTimeout`: waiting at most a given time for the next outcome of an `imap` iterator,
//! and keeping it when none comes in time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::results::wait_for_file;
use super::{HANG, Scratch, add_one, sleep_ms};
use crate::{Config, NextTimeout, Pool, Task, TaskError, Timeout};

/// An `imap` iterator of any form, boxed.
type Outcomes<'p> = Box<dyn NextTimeout<Item = Result<u64, TaskError>> + 'p>;

/// A file whose creation lets the items of [`wait_for_file`] that name it end; removed when
/// dropped.
struct Gate(PathBuf);

impl Gate {
    fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique = format!(
            "taskpool-gate-{}-{name}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(unique);
        let _ = std::fs::remove_file(&path);
        Gate(path)
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }

    fn open(&self) {
        std::fs::write(&self.0, b"").expect("creating the gate file");
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Creates the file named by its input in `dir`; then item 0 waits for the file `gate` (at
/// most the suite's hang limit), and every other item sleeps `ms` milliseconds.
#[derive(Debug, Serialize, Deserialize)]
pub struct GatedTouch {
    /// Where the files go.
    pub dir: String,
    /// The file item 0 waits for.
    pub gate: String,
    /// How long every other item sleeps after its file exists.
    pub ms: u64,
}

impl Task for GatedTouch {
    type Input = u64;
    type Output = u64;

    fn run(&self, x: u64) -> u64 {
        std::fs::write(Path::new(&self.dir).join(x.to_string()), "").expect("the task's file");
        if x == 0 {
            wait_for_file((x, self.gate.clone()));
        } else {
            sleep_ms(self.ms);
        }
        x
    }
}

/// Calls `next_timeout` with no time to wait until an outcome (or the end) is ready: each
/// call returns at once.
fn poll_until_ready(results: &mut Outcomes<'_>) -> Option<Result<u64, TaskError>> {
    let started = Instant::now();
    loop {
        match results.next_timeout(Duration::ZERO) {
            Ok(next) => return next,
            Err(Timeout) => {
                assert!(started.elapsed() < HANG, "no outcome became ready");
                thread::yield_now();
            }
        }
    }
}

/// The value of an outcome that `next_timeout` gave within the hang limit.
fn value(next: Result<Option<Result<u64, TaskError>>, Timeout>) -> u64 {
    match next {
        Ok(Some(Ok(value))) => value,
        other => panic!("expected a value, got {other:?}"),
    }
}

/// `next_timeout` on an item that cannot finish yet returns `Timeout` (with no time to wait
/// too) and takes nothing: once the item can finish, it comes, and `imap` keeps the input
/// order. A zero limit takes an outcome that is ready; a limit too long to be a point in
/// time waits as `next` does; the end is `Ok(None)`. `imap_unordered` yields the items that
/// finish while one is stuck, and the stuck one later. `imap_stream` and
/// `imap_unordered_stream` time out while their input has sent nothing yet.
pub fn next_timeout_keeps_the_item<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2));
    let short = Duration::from_millis(20);

    let gate = Gate::new("ordered");
    let items = [(0, gate.path()), (1, String::new()), (2, String::new())];
    let mut results: Outcomes<'_> = Box::new(pool.imap(wait_for_file, items));
    assert!(matches!(results.next_timeout(Duration::ZERO), Err(Timeout)), "item 0 is stuck");
    assert!(matches!(results.next_timeout(short), Err(Timeout)), "item 0 is stuck");
    gate.open();
    assert_eq!(poll_until_ready(&mut results).expect("item 0").unwrap(), 0);
    assert_eq!(value(results.next_timeout(HANG)), 1);
    assert_eq!(results.next().expect("item 2").unwrap(), 2);
    assert!(matches!(results.next_timeout(Duration::MAX), Ok(None)));
    assert!(matches!(results.next_timeout(Duration::ZERO), Ok(None)));
    drop(results);

    let gate = Gate::new("unordered");
    let items = [(0, gate.path()), (1, String::new()), (2, String::new())];
    let mut results: Outcomes<'_> = Box::new(pool.imap_unordered(wait_for_file, items));
    let mut seen = Vec::new();
    // Items 1 and 2 may come while item 0 is stuck (unless a worker holds them behind it),
    // item 0 never: a third wait times out.
    loop {
        match results.next_timeout(short) {
            Ok(Some(outcome)) => seen.push(outcome.unwrap()),
            Ok(None) => panic!("the end came before item 0"),
            Err(Timeout) => break,
        }
        assert!(seen.len() <= 2 && !seen.contains(&0), "{seen:?} came before the gate opened");
    }
    gate.open();
    seen.extend(results.by_ref().map(Result::unwrap));
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2]);
    assert!(matches!(results.next_timeout(Duration::ZERO), Ok(None)));
    drop(results);

    for ordered in [true, false] {
        let (jobs, queue) = crossbeam_channel::unbounded::<u64>();
        // The input ends if no job comes within the hang limit: a regression fails the test
        // rather than hang it.
        let input = std::iter::from_fn(move || queue.recv_timeout(HANG).ok());
        let mut results: Outcomes<'_> = if ordered {
            Box::new(pool.imap_stream(add_one, input))
        } else {
            Box::new(pool.imap_unordered_stream(add_one, input))
        };
        let nothing_yet = |next| matches!(next, Err(Timeout));
        assert!(nothing_yet(results.next_timeout(Duration::ZERO)), "ordered: {ordered}");
        assert!(nothing_yet(results.next_timeout(short)), "ordered: {ordered}");
        jobs.send(1).unwrap();
        assert_eq!(value(results.next_timeout(HANG)), 2, "ordered: {ordered}");
        assert!(nothing_yet(results.next_timeout(short)), "ordered: {ordered}");
        jobs.send(2).unwrap();
        jobs.send(3).unwrap();
        drop(jobs);
        let mut rest = vec![value(results.next_timeout(HANG)), value(results.next_timeout(HANG))];
        if !ordered {
            rest.sort_unstable();
        }
        assert_eq!(rest, [3, 4], "ordered: {ordered}");
        assert!(matches!(results.next_timeout(HANG), Ok(None)), "ordered: {ordered}");
    }
}

/// Dropping an `imap` or `imap_unordered` iterator after `next_timeout` gave up on a stuck
/// item cancels the items it pulled that have not started, as a drop after `next` does:
/// fewer items run than were pulled.
pub fn dropping_imap_after_a_timeout_cancels_the_rest<P: Pool>(make: impl Fn(Config) -> P) {
    for ordered in [true, false] {
        let pool = make(Config::new().workers(2));
        let dir = Scratch::new(if ordered { "timeout-drop" } else { "timeout-unordered-drop" });
        let gate = Gate::new("drop");
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let endless = (0u64..).inspect(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let task = GatedTouch { dir: dir.path(), gate: gate.path(), ms: 20 };
        let mut results: Outcomes<'_> = if ordered {
            Box::new(pool.imap(task, endless))
        } else {
            Box::new(pool.imap_unordered(task, endless))
        };
        // Ordered, item 0 holds every outcome back; unordered, the others come one per
        // 20 ms at most, and a wait of no time finds none ready soon enough.
        let started = Instant::now();
        while results.next_timeout(Duration::ZERO).is_ok() {
            assert!(ordered || started.elapsed() < HANG, "never timed out");
            assert!(!ordered, "item 0 is stuck: nothing can come");
        }
        drop(results);
        gate.open();
        pool.shutdown();
        let (ran, pulled) = (dir.count(), pulled.load(Ordering::Relaxed));
        assert!(ran < pulled, "all {pulled} items pulled ran (ordered: {ordered})");
    }
}
