//! A task past its time limit keeps its thread (a thread cannot be stopped), and a relief
//! thread takes its place until it returns: the pool's other tasks still run, and none waits
//! for a task that may never end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use taskpool_thread::{Config, Pool, TaskError, ThreadPool};

/// A gate tasks wait at until a test opens it.
struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    const fn new() -> Self {
        Gate { open: Mutex::new(false), changed: Condvar::new() }
    }

    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.changed.wait(open).unwrap();
        }
    }

    /// Waits at most `limit`; returns whether the gate opened.
    fn wait_up_to(&self, limit: Duration) -> bool {
        let open = self.open.lock().unwrap();
        *self.changed.wait_timeout_while(open, limit, |open| !*open).unwrap().0
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.changed.notify_all();
    }
}

static ONE: Gate = Gate::new();
static TWO: Gate = Gate::new();
static DROPPED: Gate = Gate::new();
static MAPPED: Gate = Gate::new();
static NESTED: Gate = Gate::new();
static SHUT: Gate = Gate::new();
static SHUTTING_STARTED: Gate = Gate::new();

fn stuck_at_one(_: u64) -> u64 {
    ONE.wait();
    1
}

fn stuck_at_two(_: u64) -> u64 {
    TWO.wait();
    2
}

fn stuck_at_dropped(_: u64) -> u64 {
    DROPPED.wait();
    3
}

fn stuck_at_mapped(_: u64) -> u64 {
    MAPPED.wait();
    4
}

fn stuck_at_nested(_: u64) -> u64 {
    NESTED.wait();
    5
}

/// Set by [`stuck_at_shut`] as it returns.
static SHUT_RETURNED: AtomicBool = AtomicBool::new(false);

fn stuck_at_shut(_: u64) -> u64 {
    SHUT.wait();
    SHUT_RETURNED.store(true, Ordering::SeqCst);
    6
}

fn square(x: u64) -> u64 {
    x * x
}

/// The name of the thread that runs it.
fn thread_name(_: u64) -> String {
    std::thread::current().name().unwrap_or_default().to_owned()
}

/// The names of this process's threads that start with `prefix`.
fn threads_named(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|comm| comm.trim().to_owned())
        .filter(|comm| comm.starts_with(prefix))
        .collect()
}

/// Waits until no thread of this process is named `name`: a relief thread that left.
fn until_gone(name: &str) {
    let deadline = Instant::now() + HANG;
    while threads_named(name).contains(&name.to_owned()) {
        assert!(Instant::now() < deadline, "{name} is still there after {HANG:?}");
        std::thread::yield_now();
    }
}

/// How long a test waits for an event before it calls it a hang.
const HANG: Duration = Duration::from_secs(60);

/// The name of the thread that runs the pool's next task; fails rather than waits for ever.
fn next_thread(pool: &ThreadPool) -> String {
    match pool.submit(thread_name, 0).join_timeout(HANG) {
        Ok(name) => name,
        Err(e) => panic!("the next task: {e}"),
    }
}

fn timed_pool(prefix: &str, workers: usize) -> ThreadPool {
    let config =
        Config::new().workers(workers).timeout(Duration::from_millis(50)).name_prefix(prefix);
    ThreadPool::with_config(config).unwrap()
}

#[test]
fn a_relief_thread_runs_the_tasks_while_a_timed_out_task_keeps_the_only_thread() {
    let pool = timed_pool("tp-one", 1);
    let stuck = pool.apply(stuck_at_one, 0);
    assert!(matches!(stuck, Err(TaskError::TimedOut { still_running: true, .. })), "{stuck:?}");
    // The pool's only thread still runs it; the next tasks do not wait for it.
    assert_eq!(next_thread(&pool), "tp-one-relief");
    // Once it returns, the relief leaves and the pool's thread takes the tasks again.
    ONE.open();
    until_gone("tp-one-relief");
    assert_eq!(next_thread(&pool), "tp-one-0");
    pool.shutdown();
}

#[test]
fn tasks_run_while_every_thread_of_the_pool_is_stuck_past_its_limit() {
    let pool = timed_pool("tp-two", 2);
    let stuck: Vec<_> = (0..2).map(|i| pool.submit(stuck_at_two, i)).collect();
    for mut handle in stuck {
        let outcome = handle.join_timeout(Duration::from_secs(60));
        assert!(matches!(outcome, Err(TaskError::TimedOut { still_running: true, .. })));
    }
    let names: Vec<String> = (0..20).map(|_| next_thread(&pool)).collect();
    assert!(names.iter().all(|n| n == "tp-two-relief"), "{names:?}");
    TWO.open();
    pool.shutdown();
}

#[test]
fn dropping_the_pool_ends_its_idle_relief_threads() {
    let pool = timed_pool("tp-drop", 1);
    let stuck = pool.apply(stuck_at_dropped, 0);
    assert!(matches!(stuck, Err(TaskError::TimedOut { still_running: true, .. })), "{stuck:?}");
    assert_eq!(next_thread(&pool), "tp-drop-relief");
    drop(pool);
    // The timed-out task still runs, and its relief thread, asleep, is gone.
    until_gone("tp-drop-relief");
    DROPPED.open();
}

/// A pool without a time limit of its own, whose only thread holds a task past the limit it
/// was submitted with: a `map` (rayon's parallel iterator, which relief threads do not
/// serve) goes through the queue instead, and finishes.
#[test]
fn a_map_finishes_while_the_only_thread_holds_a_task_past_its_own_limit() {
    let pool = ThreadPool::with_config(Config::new().workers(1).name_prefix("tp-map")).unwrap();
    let stuck = pool.submit_timeout(stuck_at_mapped, 0, Duration::from_millis(50)).join();
    assert!(matches!(stuck, Err(TaskError::TimedOut { still_running: true, .. })), "{stuck:?}");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| tx.send((pool.map(square, 0..100), pool.map_results(square, 0..10))));
        let Ok((mapped, results)) = rx.recv_timeout(HANG) else {
            // Let the stuck task and the maps end, so that the test fails rather than hangs.
            MAPPED.open();
            panic!("the maps waited {HANG:?} for a task past its limit");
        };
        assert_eq!(mapped.unwrap(), (0..100).map(|x| x * x).collect::<Vec<_>>());
        assert_eq!(results.into_iter().map(Result::unwrap).sum::<u64>(), 285);
    });
    MAPPED.open();
    pool.shutdown();
}

/// The pools whose tasks use them from inside, by test.
static NESTING: OnceLock<ThreadPool> = OnceLock::new();
static SHUTTING: OnceLock<ThreadPool> = OnceLock::new();

/// The name of its thread, and the sum of the squares below 20, each squared by a task it
/// submits to its own pool and joins.
fn sum_of_squares_inside(_: u64) -> (String, u64) {
    let pool = NESTING.get().expect("the test starts the pool first");
    let handles: Vec<_> = (0..20).map(|i| pool.submit(square, i)).collect();
    let name = std::thread::current().name().unwrap_or_default().to_owned();
    (name, handles.into_iter().map(|h| h.join().unwrap()).sum())
}

/// Shuts its own pool down; returns the name of its thread and whether the task past its
/// limit had returned by the time the shutdown did.
fn shut_down_inside(_: u64) -> (String, bool) {
    SHUTTING_STARTED.open();
    SHUTTING.get().expect("the test starts the pool first").shutdown();
    let name = std::thread::current().name().unwrap_or_default().to_owned();
    (name, SHUT_RETURNED.load(Ordering::SeqCst))
}

/// A pool of one whose thread holds a task past the limit it was submitted with, so that a
/// relief thread runs the next tasks.
fn stuck_pool<F>(cell: &'static OnceLock<ThreadPool>, prefix: &str, stuck: F) -> &'static ThreadPool
where
    F: Fn(u64) -> u64 + Copy + Send + Sync + 'static,
{
    let pool = cell.get_or_init(|| {
        ThreadPool::with_config(Config::new().workers(1).name_prefix(prefix)).unwrap()
    });
    let outcome = pool.submit_timeout(stuck, 0, Duration::from_millis(50)).join();
    assert!(matches!(outcome, Err(TaskError::TimedOut { still_running: true, .. })), "{outcome:?}");
    pool
}

/// A task that a relief thread runs may submit tasks to its pool and join them: the relief
/// runs them itself while it waits.
#[test]
fn a_task_on_a_relief_thread_joins_tasks_it_submits_to_its_own_pool() {
    let pool = stuck_pool(&NESTING, "tp-nest", stuck_at_nested);
    let outcome = pool.submit(sum_of_squares_inside, 0).join_timeout(HANG);
    NESTED.open();
    assert_eq!(outcome.unwrap(), ("tp-nest-relief".to_owned(), 2470));
    pool.shutdown();
}

/// A task that a relief thread runs may shut its pool down: the shutdown waits for the task
/// past its limit, as one from any other thread does, and returns once that task has.
#[test]
fn a_task_on_a_relief_thread_shuts_its_pool_down_once_the_stuck_task_returns() {
    let pool = stuck_pool(&SHUTTING, "tp-shut", stuck_at_shut);
    let mut shutting = pool.submit(shut_down_inside, 0);
    // The stuck task returns only once the shutdown has begun on the relief thread: once the
    // pool refuses new tasks. Those submitted before that are queued, and run.
    let started = SHUTTING_STARTED.wait_up_to(HANG);
    let deadline = Instant::now() + HANG;
    let mut queued = Vec::new();
    let mut refused = None;
    while started && refused.is_none() && Instant::now() < deadline {
        let submitted = pool.submit(square, 3);
        if !submitted.is_finished() {
            queued.push(submitted);
            continue;
        }
        // Settled at once: refused, or run already by the shutdown that began meanwhile.
        match submitted.join() {
            Ok(9) => {}
            other => refused = Some(other),
        }
    }
    SHUT.open();
    assert!(started, "the task that shuts the pool down did not start in {HANG:?}");
    assert!(matches!(refused, Some(Err(TaskError::ShutDown))), "{refused:?}");
    assert_eq!(shutting.join_timeout(HANG).unwrap(), ("tp-shut-relief".to_owned(), true));
    for mut submitted in queued {
        assert_eq!(submitted.join_timeout(HANG).unwrap(), 9);
    }
    assert!(matches!(pool.apply(square, 2), Err(TaskError::ShutDown)));
}
