//! A task past its time limit keeps its thread (a thread cannot be stopped), and a relief
//! thread takes its place until it returns: the pool's other tasks still run, and none waits
//! for a task that may never end.

use std::sync::{Condvar, Mutex};
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

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.changed.notify_all();
    }
}

static ONE: Gate = Gate::new();
static TWO: Gate = Gate::new();
static DROPPED: Gate = Gate::new();
static MAPPED: Gate = Gate::new();

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
    assert!(pool.apply(stuck_at_dropped, 0).is_err());
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
