//! The conformance suite: one set of behaviours every backend must show.
//!
//! A backend runs the whole suite with one line in an integration test:
//!
//! ```text
//! taskpool_core::conformance_suite!(|config| my_backend::MyPool::with_config(config).unwrap());
//! ```
//!
//! Each behaviour is a public function taking a pool factory, so a failing test names the
//! behaviour. The tasks are plain functions in this module; they live in the test binary, so a
//! process backend runs them in its workers like any user function.
//!
//! [`chaos`] is the large run with injected faults that each backend drives with the faults it
//! survives.

use std::cell::Cell;
use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Config, Pool, Spawned, Task, TaskError};

mod cannot_unwind;
pub mod cgroup;
pub mod chaos;
mod next_timeout;
mod results;
mod shapes;
mod streams;

pub use cannot_unwind::{panic_twice_on_odd, sort_with_c_comparator};
pub use next_timeout::{
    GatedTouch, dropping_imap_after_a_timeout_cancels_the_rest, next_timeout_keeps_the_item,
};
pub use results::{
    awaited_handles, half_or_fail, progress_arrives_while_items_run, progress_counts_every_item,
    try_map_is_flat, wait_for_file,
};
pub use shapes::serde_shapes;
pub use streams::streamed_input_yields_while_it_waits;

/// Squares its input.
pub fn square(x: u64) -> u64 {
    x * x
}

/// Adds one.
pub fn add_one(x: u64) -> u64 {
    x + 1
}

/// Adds two numbers (a tuple-argument task).
pub fn add(a: u64, b: u64) -> u64 {
    a + b
}

/// Panics with a fixed message when `x` is 3, otherwise returns it.
pub fn panic_on_three(x: u64) -> u64 {
    assert!(x != 3, "three is not allowed");
    x
}

/// Sleeps `ms` milliseconds and returns it.
pub fn sleep_ms(ms: u64) -> u64 {
    thread::sleep(Duration::from_millis(ms));
    ms
}

/// A struct task carrying state.
#[derive(Debug, Serialize, Deserialize)]
pub struct Affine {
    /// Multiplier.
    pub mul: u64,
    /// Addend.
    pub add: u64,
}

impl Task for Affine {
    type Input = u64;
    type Output = u64;

    fn run(&self, x: u64) -> u64 {
        x * self.mul + self.add
    }
}

/// How long any single wait in the suite may take before the suite calls it a hang.
const HANG: Duration = Duration::from_secs(60);

thread_local! {
    /// How many times [`count_initializer`] ran on this thread (a worker process runs its
    /// tasks on its main thread).
    static INITIALIZED: Cell<u64> = const { Cell::new(0) };
}

/// An initializer that counts its runs on the worker that runs it.
pub fn count_initializer() {
    INITIALIZED.with(|c| c.set(c.get() + 1));
}

/// How many times [`count_initializer`] ran on the worker running this task.
pub fn initializer_runs(_: u64) -> u64 {
    INITIALIZED.with(Cell::get)
}

/// An initializer that always fails.
pub fn failing_initializer() {
    panic!("the initializer cannot reach its database");
}

/// A panic payload whose `Drop` panics too.
#[derive(Debug)]
pub struct PanickingPayload;

impl Drop for PanickingPayload {
    fn drop(&mut self) {
        panic!("the panic payload's drop panics too");
    }
}

/// Panics with a [`PanickingPayload`].
pub fn panic_with_a_panicking_payload(_: u64) -> u64 {
    std::panic::panic_any(PanickingPayload)
}

/// Creates the file named by its input in `dir`, then sleeps `ms` milliseconds.
#[derive(Debug, Serialize, Deserialize)]
pub struct Touch {
    /// Where the files go.
    pub dir: String,
    /// How long each item sleeps after its file exists.
    pub ms: u64,
}

impl Task for Touch {
    type Input = u64;
    type Output = u64;

    fn run(&self, x: u64) -> u64 {
        std::fs::write(Path::new(&self.dir).join(x.to_string()), "").expect("the task's file");
        sleep_ms(self.ms);
        x
    }
}

/// Ends the test's process, saying what hung, unless dropped within [`HANG`]: for a
/// behaviour whose failure is a hang, which no assertion after it would report.
struct HangGuard {
    _dropped: std::sync::mpsc::Sender<()>,
}

impl HangGuard {
    fn new(what: &'static str) -> Self {
        let (dropped, wait) = std::sync::mpsc::channel::<()>();
        thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(HANG) {
                eprintln!("hung: {what} did not finish within {HANG:?}");
                std::process::abort();
            }
        });
        HangGuard { _dropped: dropped }
    }
}

/// A scratch directory, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let unique = format!("taskpool-conformance-{}-{name}", std::process::id());
        let dir = std::env::temp_dir().join(unique);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        Scratch(dir)
    }

    fn path(&self) -> String {
        self.0.to_string_lossy().into_owned()
    }

    fn count(&self) -> usize {
        std::fs::read_dir(&self.0).map_or(0, Iterator::count)
    }
}

impl Drop for Scratch {
    /// Removes the directory, again while a task still running elsewhere (a cluster agent
    /// runs a cancelled task it had started) adds a file as it is emptied; once it is gone,
    /// such a task's write fails instead.
    fn drop(&mut self) {
        for _ in 0..100 {
            if std::fs::remove_dir_all(&self.0).is_ok() || !self.0.exists() {
                return;
            }
        }
    }
}

/// Results come back in input order from `map`, `imap` and `starmap`; `imap_unordered`
/// yields the same set.
pub fn ordering<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(3));
    let expected: Vec<u64> = (0..2000).map(square).collect();
    assert_eq!(pool.map(square, 0..2000).unwrap(), expected);
    let lazy: Vec<u64> = pool.imap(square, 0..2000).map(Result::unwrap).collect();
    assert_eq!(lazy, expected);
    let mut unordered: Vec<u64> =
        pool.imap_unordered(square, 0..2000).map(Result::unwrap).collect();
    unordered.sort_unstable();
    assert_eq!(unordered, expected);
    assert_eq!(
        pool.starmap(add, (0..100).map(|i| (i, 2 * i))).unwrap(),
        (0..100).map(|i| 3 * i).collect::<Vec<_>>()
    );
    assert_eq!(pool.map(Affine { mul: 2, add: 1 }, 0..5).unwrap(), [1, 3, 5, 7, 9]);
}

/// Empty input gives empty output from every batch method.
pub fn empty_input<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2));
    assert!(pool.map(square, Vec::new()).unwrap().is_empty());
    assert!(pool.map_results(square, Vec::new()).is_empty());
    assert_eq!(pool.imap(square, Vec::new()).count(), 0);
    assert_eq!(pool.imap_unordered(square, Vec::new()).count(), 0);
}

/// One million items go through `map` with every result right.
pub fn million_items<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2));
    let out = pool.map(add_one, 0..1_000_000).unwrap();
    assert_eq!(out.len(), 1_000_000);
    assert!(out.iter().enumerate().all(|(i, &v)| v == i as u64 + 1));
}

/// `imap` over an endless iterator pulls no more than the pool's own `imap_window` ahead of
/// the consumer, from the first result on.
pub fn endless_imap_is_bounded<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2));
    let window = pool.imap_window();
    assert!(window >= pool.workers(), "a window of {window} starves the workers");
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let endless = (0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    for (i, result) in pool.imap(square, endless).take(5000).enumerate() {
        assert_eq!(result.unwrap(), square(i as u64));
        let ahead = pulled.load(Ordering::Relaxed) - (i + 1);
        assert!(
            ahead <= window,
            "imap pulled {ahead} items ahead of the consumer; window {window}"
        );
    }
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let endless = (0u64..).inspect(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
    });
    for (i, result) in pool.imap_unordered(square, endless).take(5000).enumerate() {
        result.unwrap();
        let ahead = pulled.load(Ordering::Relaxed) - (i + 1);
        assert!(
            ahead <= window,
            "imap_unordered pulled {ahead} ahead of the consumer; window {window}"
        );
    }
}

/// An `imap` over an endless input, consumed as a service consumes it, ends once the pool is
/// shut down: the items in flight yield their outcomes, in order for `imap`, those the pool
/// refused fail with `ShutDown`, and no more items are pulled.
pub fn imap_ends_after_shutdown<P: Pool>(make: impl Fn(Config) -> P) {
    for unordered in [false, true] {
        let pool = make(Config::new().workers(2));
        let window = pool.imap_window();
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let endless = (0u64..).inspect(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let mut outcomes: Box<dyn Iterator<Item = Result<u64, TaskError>>> = if unordered {
            Box::new(pool.imap_unordered(square, endless))
        } else {
            Box::new(pool.imap(square, endless))
        };
        for _ in 0..10 {
            outcomes.next().unwrap().unwrap();
        }
        pool.shutdown();
        let at_shutdown = pulled.load(Ordering::Relaxed);
        // Bounded, so that an iterator that never ends fails rather than hangs.
        let after: Vec<_> = outcomes.by_ref().take(at_shutdown + 100 * window).collect();
        assert!(
            outcomes.next().is_none(),
            "unordered {unordered}: the iterator went on past {} outcomes after shutdown",
            after.len()
        );
        let refused = after.iter().filter(|o| matches!(o, Err(TaskError::ShutDown))).count();
        assert!(refused >= 1, "unordered {unordered}: it ended with no outcome saying why");
        let pulled = pulled.load(Ordering::Relaxed);
        assert!(
            pulled - at_shutdown <= window,
            "unordered {unordered}: {pulled} items pulled, {at_shutdown} at the shutdown"
        );
        if !unordered {
            // Those pulled before the shutdown ran, in order; those after it were refused.
            let ran: Vec<u64> = after.iter().map_while(|o| o.as_ref().ok().copied()).collect();
            let expected: Vec<u64> = (10..).map(square).take(ran.len()).collect();
            assert_eq!(ran, expected);
            assert_eq!(ran.len() + refused, after.len(), "an outcome after the refusals");
        }
    }
}

/// An input iterator that panics part-way through a batch: the panic reaches the caller of
/// `map`, `map_results` and every `imap` as it is (from the thread that pulls a streamed
/// input too), and the pool serves the next batch whole.
pub fn panicking_input_iterator<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2));
    // Past the first run of items a batch sends while it still pulls the rest.
    let items = || (0..20_000u64).inspect(|&i| assert!(i != 10_000, "item 10000 is bad"));
    let message = |caught: Result<usize, Box<dyn std::any::Any + Send>>| match caught {
        Ok(n) => panic!("the batch returned {n} outcomes past the iterator's panic"),
        Err(payload) => match payload.downcast_ref::<&str>() {
            Some(text) => (*text).to_owned(),
            None => payload.downcast_ref::<String>().cloned().unwrap_or_default(),
        },
    };
    let caught =
        catch_unwind(AssertUnwindSafe(|| pool.map(square, items()).map_or(0, |v| v.len())));
    assert_eq!(message(caught), "item 10000 is bad", "map");
    let caught = catch_unwind(AssertUnwindSafe(|| pool.map_results(square, items()).len()));
    assert_eq!(message(caught), "item 10000 is bad", "map_results");
    let caught = catch_unwind(AssertUnwindSafe(|| pool.imap(square, items()).count()));
    assert_eq!(message(caught), "item 10000 is bad", "imap");
    let caught = catch_unwind(AssertUnwindSafe(|| pool.imap_stream(square, items()).count()));
    assert_eq!(message(caught), "item 10000 is bad", "imap_stream");
    let caught =
        catch_unwind(AssertUnwindSafe(|| pool.imap_unordered_stream(square, items()).count()));
    assert_eq!(message(caught), "item 10000 is bad", "imap_unordered_stream");
    let expected: Vec<u64> = (0..20_000).map(square).collect();
    assert_eq!(pool.map(square, 0..20_000).unwrap(), expected);
    assert_eq!(pool.apply(square, 7).unwrap(), 49);
}

/// A panicking task gives a typed error with message and location, fails alone, and the pool
/// keeps working.
pub fn panic_is_typed_and_isolated<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2));
    match pool.apply(panic_on_three, 3) {
        Err(TaskError::Panicked(report)) => {
            assert_eq!(report.message, "three is not allowed");
            let at = report.location.expect("a panic location");
            assert!(at.contains("conformance.rs:"), "{at}");
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
    let outcomes = pool.map_results(panic_on_three, 0..6);
    assert_eq!(outcomes.len(), 6);
    for (i, outcome) in (0..).zip(outcomes) {
        match outcome {
            Ok(v) => assert!(v == i && i != 3, "item {i} gave {v}"),
            Err(TaskError::Panicked(report)) => {
                assert_eq!(i, 3);
                assert_eq!(report.message, "three is not allowed");
            }
            Err(e) => panic!("item {i}: unexpected {e:?}"),
        }
    }
    assert!(matches!(pool.map(panic_on_three, 0..6), Err(TaskError::Panicked(_))));
    assert_eq!(pool.map(square, 1..=5).unwrap(), [1, 4, 9, 16, 25]);
}

/// Many threads submit at once; every handle gets its own result.
pub fn submit_from_many_threads<P: Pool + Sync>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2));
    thread::scope(|s| {
        for t in 0..8u64 {
            let pool = &pool;
            s.spawn(move || {
                let handles: Vec<_> =
                    (0..200).map(|i| (i, pool.submit(square, t * 1000 + i))).collect();
                for (i, h) in handles {
                    assert_eq!(h.join().unwrap(), square(t * 1000 + i));
                }
            });
        }
    });
}

/// Handles may be joined in any order.
pub fn handles_join_out_of_order<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2));
    let mut handles: Vec<_> = (0..300).map(|i| (i, pool.submit(square, i))).collect();
    handles.reverse();
    for (i, h) in handles.into_iter().step_by(2) {
        assert_eq!(h.join().unwrap(), i * i);
    }
}

/// `join_timeout` returns a timed-out error while the task runs, and the handle stays usable.
pub fn join_timeout_reports_and_keeps_handle<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(1));
    let mut slow = pool.submit(sleep_ms, 3000);
    match slow.join_timeout(Duration::from_millis(20)) {
        Err(TaskError::TimedOut { limit, still_running: true }) => {
            assert_eq!(limit, Duration::from_millis(20));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(!slow.is_finished());
    assert!(slow.cancel());
    assert!(matches!(slow.join(), Err(TaskError::Cancelled)));
    let mut quick = pool.submit(square, 6);
    assert_eq!(quick.join_timeout(HANG).unwrap(), 36);
}

/// `wait_timeout` says whether a task has settled, waiting at most its limit, and leaves the
/// outcome, a value or a failure, in the handle.
pub fn wait_timeout_keeps_the_result<P: Pool>(make: impl Fn(Config) -> P) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let pool = make(Config::new().workers(2));
    let gate = std::env::temp_dir().join(format!(
        "taskpool-wait-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let gated = pool.submit(results::wait_for_file, (7, gate.display().to_string()));
    assert!(!gated.wait_timeout(Duration::from_millis(20)), "settled before its gate opened");
    assert!(!gated.wait_timeout(Duration::ZERO));
    assert!(!gated.is_finished());
    std::fs::write(&gate, b"").expect("creating the gate file");
    let settled = gated.wait_timeout(HANG);
    let _ = std::fs::remove_file(&gate);
    assert!(settled && gated.is_finished());
    assert!(gated.wait_timeout(Duration::ZERO), "settled stays settled");
    assert_eq!(gated.join().unwrap(), 7);

    let mut panicked = pool.submit(panic_on_three, 3);
    assert!(panicked.wait_timeout(Duration::MAX));
    match panicked.try_join() {
        Some(Err(TaskError::Panicked(report))) => {
            assert_eq!(report.message, "three is not allowed");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert!(panicked.wait_timeout(Duration::ZERO), "a taken result is still settled");
    assert!(matches!(panicked.try_join(), Some(Err(TaskError::AlreadyJoined))));
}

/// Cancelling a queued task settles it as cancelled and it never delivers a result.
pub fn cancel_queued_task<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(1));
    let blocker = pool.submit(sleep_ms, 2000);
    let queued: Vec<_> = (0..4).map(|i| pool.submit(square, i)).collect();
    for h in &queued {
        assert!(h.cancel());
    }
    for h in queued {
        assert!(matches!(h.join(), Err(TaskError::Cancelled)));
    }
    assert!(blocker.cancel());
    assert!(!blocker.cancel(), "a second cancel has nothing to do");
}

/// Dropping a pool while tasks run neither hangs nor loses a handle: each one settles.
pub fn drop_while_running<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2).shutdown_grace(Duration::from_millis(100)));
    let handles: Vec<_> = (0..6).map(|_| pool.submit(sleep_ms, 150)).collect();
    let guard = HangGuard::new("a drop while tasks run, and the joins after it");
    drop(pool);
    for h in handles {
        match h.join() {
            Ok(150) | Err(TaskError::ShutDown | TaskError::Cancelled) => {}
            other => panic!("unexpected outcome after drop: {other:?}"),
        }
    }
    drop(guard);
}

/// `shutdown` finishes what was submitted, is idempotent, and refuses later work, item by
/// item: a batch of no items has nothing to refuse and is an empty success, as on an open pool.
pub fn shutdown_twice<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2));
    let handles: Vec<_> = (0..50).map(|i| pool.submit(square, i)).collect();
    pool.shutdown();
    pool.shutdown();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), square(i as u64));
    }
    assert!(matches!(pool.apply(square, 2), Err(TaskError::ShutDown)));
    assert!(matches!(pool.map(square, 0..3), Err(TaskError::ShutDown)));
    assert!(matches!(pool.map_with_progress(square, 0..3, |_, _| {}), Err(TaskError::ShutDown)));
    assert!(pool.map(square, 0..0).unwrap().is_empty(), "map of no items");
    assert!(pool.map_with_progress(square, 0..0, |_, _| {}).unwrap().is_empty());
    assert!(pool.map_results(square, 0..0).is_empty());
    assert_eq!(pool.imap(square, 0..0).count(), 0);
}

/// `shutdown` from one thread while others submit: the tasks submitted before it was called
/// run; each handle settles, with its value or `ShutDown`; a submitting thread sees its tasks
/// run up to a point and refused after it (never one refused and a later one run); nothing
/// hangs; later work is refused.
pub fn shutdown_while_others_submit<P: Pool + Sync>(make: impl Fn(Config) -> P) {
    const THREADS: u64 = 4;
    const BEFORE: u64 = 20;
    const EACH: u64 = 300;
    let pool = make(Config::new().workers(2));
    // Learnt fast first, as a program's single tasks are after a while.
    let warm: Vec<_> = (0..200).map(|i| pool.submit(square, i)).collect();
    warm.into_iter().for_each(|h| assert!(h.join().is_ok()));
    let guard = HangGuard::new("a shutdown while others submit");
    let go = std::sync::Barrier::new(THREADS as usize + 1);
    thread::scope(|s| {
        let submitters: Vec<_> = (0..THREADS)
            .map(|t| {
                let (pool, go) = (&pool, &go);
                s.spawn(move || {
                    let submit = |i| (t * 1000 + i, pool.submit(square, t * 1000 + i));
                    // These return before `shutdown` is called.
                    let before: Vec<_> = (0..BEFORE).map(submit).collect();
                    go.wait();
                    let racing: Vec<_> = (BEFORE..EACH).map(submit).collect();
                    for (x, h) in before {
                        assert_eq!(h.join().ok(), Some(square(x)), "task {x} was submitted before");
                    }
                    let mut refused = false;
                    for (x, h) in racing {
                        match h.join() {
                            Ok(v) => {
                                assert_eq!(v, square(x));
                                assert!(
                                    !refused,
                                    "a task ran after one submitted before it was refused"
                                );
                            }
                            Err(TaskError::ShutDown) => refused = true,
                            Err(e) => panic!("task {x}: unexpected {e:?}"),
                        }
                    }
                })
            })
            .collect();
        go.wait();
        pool.shutdown();
        submitters.into_iter().for_each(|t| t.join().unwrap());
    });
    drop(guard);
    assert!(matches!(pool.apply(square, 2), Err(TaskError::ShutDown)));
}

/// The pool reports the worker count it was given.
pub fn reports_workers<P: Pool>(make: impl Fn(Config) -> P) {
    assert_eq!(make(Config::new().workers(3)).workers(), 3);
}

/// Creates the file named by its input in `dir`, failing if it exists: an item that runs a
/// second time panics.
#[derive(Debug, Serialize, Deserialize)]
pub struct TouchOnce {
    /// Where the files go.
    pub dir: String,
}

impl Task for TouchOnce {
    type Input = u64;
    type Output = u64;

    fn run(&self, x: u64) -> u64 {
        let path = Path::new(&self.dir).join(x.to_string());
        let created = std::fs::OpenOptions::new().write(true).create_new(true).open(path);
        assert!(created.is_ok(), "item {x} ran twice: {created:?}");
        x + 1
    }
}

/// Items of one `map` are distinct and each runs exactly once.
pub fn each_item_once<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2).chunk_size(7));
    let out = pool.map(add_one, 0..10_000).unwrap();
    let distinct: HashSet<u64> = out.iter().copied().collect();
    assert_eq!(distinct.len(), 10_000);
    assert_eq!(out, (1..=10_000).collect::<Vec<_>>());
    let dir = Scratch::new("each-item-once");
    let out = pool.map(TouchOnce { dir: dir.path() }, 0..10_000).unwrap();
    assert_eq!(out, (1..=10_000).collect::<Vec<_>>());
    assert_eq!(dir.count(), 10_000, "every item ran");
}

/// Dropping an `imap` or `imap_unordered` iterator cancels the items it pulled that have
/// not started: fewer items run than were pulled.
pub fn dropping_imap_cancels_the_rest<P: Pool>(make: impl Fn(Config) -> P) {
    for ordered in [true, false] {
        let pool = make(Config::new().workers(2));
        let dir = Scratch::new(if ordered { "imap-drop" } else { "imap-unordered-drop" });
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let endless = (0u64..).inspect(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let task = Touch { dir: dir.path(), ms: 20 };
        if ordered {
            assert_eq!(pool.imap(task, endless).next().unwrap().unwrap(), 0);
        } else {
            assert!(pool.imap_unordered(task, endless).next().unwrap().is_ok());
        }
        pool.shutdown();
        let (ran, pulled) = (dir.count(), pulled.load(Ordering::Relaxed));
        assert!(ran < pulled, "all {pulled} items pulled ran (ordered: {ordered})");
    }
}

/// The initializer runs once on each worker, before the worker's first task.
pub fn initializer_runs_once_per_worker<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2).initializer(count_initializer));
    let runs = pool.map(initializer_runs, 0..200).unwrap();
    assert!(runs.iter().all(|&n| n == 1), "{runs:?}");
    assert_eq!(pool.apply(initializer_runs, 0).unwrap(), 1);
}

/// A failing initializer fails tasks with `WorkerStart` naming its panic, and keeps doing so.
pub fn failing_initializer_is_typed<P: Pool>(make: impl Fn(Config) -> P) {
    let config = Config::new().workers(1).initializer(failing_initializer).start_attempts(2);
    let pool = make(config);
    for attempt in 0..3 {
        match pool.apply(square, 2) {
            Err(TaskError::WorkerStart { reason }) => {
                assert!(reason.contains("cannot reach its database"), "{attempt}: {reason}");
                // The initializer panicked, not a task.
                assert!(reason.starts_with("the initializer panicked at "), "{reason}");
            }
            other => panic!("attempt {attempt}: expected a start failure, got {other:?}"),
        }
    }
}

/// A per-task time limit (`submit_timeout`) and the pool's (`Config::timeout`) both give
/// `TimedOut` with the limit that was exceeded, for that task alone.
pub fn per_task_timeouts<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2));
    let limit = Duration::from_millis(50);
    match pool.submit_timeout(sleep_ms, 10_000, limit).join() {
        Err(TaskError::TimedOut { limit: l, .. }) => assert_eq!(l, limit),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(pool.submit_timeout(square, 3, HANG).join().unwrap(), 9);
    let limit = Duration::from_millis(200);
    let pool = make(Config::new().workers(2).timeout(limit));
    let outcomes = pool.map_results(sleep_ms, [1, 10_000, 2]);
    assert_eq!(outcomes[0].as_ref().unwrap(), &1);
    assert!(matches!(outcomes[1], Err(TaskError::TimedOut { limit: l, .. }) if l == limit));
    assert_eq!(outcomes[2].as_ref().unwrap(), &2);
}

/// `Duration::MAX` (a common way to say "no limit") as the pool's timeout, a task's timeout, a
/// join's limit and the grace on drop: every task runs to its end and the pool drops.
pub fn limits_too_long_to_reach_are_no_limits<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2).timeout(Duration::MAX).shutdown_grace(Duration::MAX));
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    assert_eq!(pool.map(sleep_ms, [1, 2]).unwrap(), [1, 2]);
    assert_eq!(pool.submit_timeout(square, 4, Duration::MAX).join().unwrap(), 16);
    let mut handle = pool.submit(square, 5);
    assert_eq!(handle.join_timeout(Duration::MAX).unwrap(), 25);
    drop(pool);
}

/// A panic whose payload panics again when dropped fails its task alone.
pub fn panicking_panic_payload<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2));
    match pool.apply(panic_with_a_panicking_payload, 0) {
        Err(TaskError::Panicked(report)) => {
            assert_eq!(report.message, "non-string panic payload");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    let outcomes = pool.map_results(panic_with_a_panicking_payload, 0..4);
    assert!(outcomes.iter().all(|o| matches!(o, Err(TaskError::Panicked(_)))));
    assert_eq!(pool.map(square, 1..=3).unwrap(), [1, 4, 9]);
}

/// A struct task whose every copy panics as it is dropped: the caller's, once the pool has
/// it, and the copy a worker decodes.
#[derive(Debug, Serialize, Deserialize)]
pub struct PanicsWhenDropped;

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        if !thread::panicking() {
            panic!("a task value panicked as it was dropped");
        }
    }
}

impl Task for PanicsWhenDropped {
    type Input = u64;
    type Output = u64;

    fn run(&self, x: u64) -> u64 {
        x + 1
    }
}

/// A task value whose `Drop` panics, given to the pool with `submit` or `apply`, is dropped by
/// the pool where that panic goes no further (printed, as any panic outside a task): its
/// task's value arrives, the caller goes on, and so does the pool. On a thread pool such a
/// drop on a pool's thread aborted the program; a process worker that decoded it aborted.
pub fn task_values_that_panic_when_dropped<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2));
    assert_eq!(pool.submit(PanicsWhenDropped, 1).join().unwrap(), 2);
    assert_eq!(pool.apply(PanicsWhenDropped, 2).unwrap(), 3);
    assert_eq!(pool.submit_timeout(PanicsWhenDropped, 3, HANG).join().unwrap(), 4);
    let handles: Vec<_> = (0..8).map(|x| pool.submit(PanicsWhenDropped, x)).collect();
    let values: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(values, (1..=8).collect::<Vec<_>>());
    assert_eq!(pool.map(square, 1..=3).unwrap(), [1, 4, 9]);
}

/// The tasks [`spawned`] runs, for the backend's `spawn` to start.
#[derive(Debug, Clone, Copy)]
pub enum Spawnable {
    /// [`square`].
    Square,
    /// [`panic_on_three`].
    PanicOnThree,
    /// [`sleep_ms`].
    SleepMs,
}

/// A one-off (`spawn`) joins with its task's value, reports a panic typed, has an id, is
/// alive while it runs, and `join_timeout` leaves it running and joinable, and gives the
/// outcome of one that has ended even with no time to wait.
///
/// `spawn` starts the task named on the input given, with the backend's `spawn`.
pub fn spawned(spawn: impl Fn(Spawnable, u64) -> Result<Spawned<u64>, TaskError>) {
    let child = spawn(Spawnable::Square, 7).unwrap();
    assert!(child.id() > 0);
    assert_eq!(child.join().unwrap(), 49);
    // A one-off that has ended gives its outcome to a wait of no time: the polling form
    // of a join.
    let mut ended = spawn(Spawnable::Square, 8).unwrap();
    while ended.is_alive() {
        thread::yield_now();
    }
    assert_eq!(ended.join_timeout(Duration::ZERO).unwrap(), 64);
    match spawn(Spawnable::PanicOnThree, 3).unwrap().join() {
        Err(TaskError::Panicked(report)) => assert_eq!(report.message, "three is not allowed"),
        other => panic!("expected a panic, got {other:?}"),
    }
    let mut slow = spawn(Spawnable::SleepMs, 300).unwrap();
    match slow.join_timeout(Duration::from_millis(10)) {
        Err(TaskError::TimedOut { still_running: true, .. }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(slow.is_alive());
    assert_eq!(slow.join_timeout(HANG).unwrap(), 300);
}

/// Generates one `#[test]` per behaviour of the conformance suite.
///
/// `$make` is any expression that turns a [`Config`] into a pool. A backend with one-offs
/// adds `spawn: path::to::spawn` to run [`spawned`] too.
///
/// A backend whose tests need their own set-up around each behaviour (a server to start, a
/// reason to skip) takes the list of behaviours instead, so that it cannot fall behind the
/// suite: `conformance_suite!(each: my_macro)` expands to `my_macro!(ordering, empty_input,
/// ...)`, one name per behaviour, each a function of `taskpool_core::conformance`.
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr, spawn: $spawn:path) => {
        $crate::conformance_suite!($make);

        #[test]
        fn spawned() {
            use $crate::conformance::{self, Spawnable};
            conformance::spawned(|task, x| match task {
                Spawnable::Square => $spawn(conformance::square, x),
                Spawnable::PanicOnThree => $spawn(conformance::panic_on_three, x),
                Spawnable::SleepMs => $spawn(conformance::sleep_ms, x),
            });
        }
    };
    (each: $callback:path $(; $($before:tt)*)?) => {
        $callback!($($($before)*;)?
            ordering, empty_input, million_items, endless_imap_is_bounded, imap_ends_after_shutdown,
            streamed_input_yields_while_it_waits, next_timeout_keeps_the_item,
            dropping_imap_after_a_timeout_cancels_the_rest, dropping_imap_cancels_the_rest, panicking_input_iterator, panic_is_typed_and_isolated,
            panicking_panic_payload, submit_from_many_threads, handles_join_out_of_order,
            join_timeout_reports_and_keeps_handle, wait_timeout_keeps_the_result,
            cancel_queued_task, drop_while_running,
            shutdown_twice, shutdown_while_others_submit, reports_workers, each_item_once,
            awaited_handles, progress_counts_every_item, progress_arrives_while_items_run,
            try_map_is_flat, serde_shapes, initializer_runs_once_per_worker,
            failing_initializer_is_typed, per_task_timeouts,
            limits_too_long_to_reach_are_no_limits, task_values_that_panic_when_dropped);
    };
    ($make:expr) => {
        $crate::conformance_suite!(each: $crate::__conformance_tests; $make);
    };
}

/// One `#[test]` per name, each running that behaviour with `$make`: the body of
/// [`conformance_suite!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($make:expr; $($name:ident),+) => {$(
        #[test]
        fn $name() {
            $crate::conformance::$name($make);
        }
    )+};
}
