//! The pool's queue of submitted tasks: every task runs once, whoever submits it; a task
//! that blocks one thread holds up nothing queued behind it while another thread is free; and
//! a task that joins tasks it submitted to its own pool runs them itself if no thread is free;
//! two tasks submitted at once run at once on a pool of two, whatever its threads were doing;
//! an `imap`'s items queued together with a blocked one run on the other thread, and an `imap`
//! of slow items keeps its first, small window, and goes on past a slow item; and tasks of
//! different types share the queue.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Barrier, Condvar, Mutex, OnceLock};
use std::time::Duration;

use taskpool_thread::{Config, NextTimeout, Pool, TaskError, ThreadPool};

/// Whether the blocking task started, and whether it may return.
static GATE: Mutex<(bool, bool)> = Mutex::new((false, false));
static GATE_CHANGED: Condvar = Condvar::new();

/// Says it started, then waits until the test lets it return.
fn wait_at_the_gate(x: u64) -> String {
    let mut gate = GATE.lock().unwrap();
    gate.0 = true;
    GATE_CHANGED.notify_all();
    while !gate.1 {
        gate = GATE_CHANGED.wait(gate).unwrap();
    }
    format!("{x}")
}

/// `2 * x`, and the name of the thread that ran it.
fn double(x: u64) -> (u64, String) {
    (2 * x, std::thread::current().name().unwrap_or_default().to_owned())
}

#[test]
fn tasks_queued_behind_a_blocked_task_run_on_the_pools_other_thread() {
    let pool = ThreadPool::new(2).unwrap();
    let mut blocked = pool.submit(wait_at_the_gate, 7);
    drop(GATE_CHANGED.wait_while(GATE.lock().unwrap(), |gate| !gate.0).unwrap());
    let handles: Vec<_> = (0..200).map(|x| pool.submit(double, x)).collect();
    let mut threads = std::collections::HashSet::new();
    for (x, mut handle) in (0..200).zip(handles) {
        // A task stuck behind the blocked one fails here rather than hangs.
        match handle.join_timeout(Duration::from_secs(30)) {
            Ok((doubled, thread)) => {
                assert_eq!(doubled, 2 * x);
                threads.insert(thread);
            }
            Err(TaskError::TimedOut { .. }) => panic!("task {x} waited behind the blocked one"),
            Err(e) => panic!("task {x} failed: {e}"),
        }
    }
    // The blocked task holds one of the two threads: the other ran them all.
    assert_eq!(threads.len(), 1, "{threads:?}");
    *GATE.lock().unwrap() = (true, true);
    GATE_CHANGED.notify_all();
    assert_eq!(blocked.join_timeout(Duration::from_secs(30)).unwrap(), "7");
}

/// Whether item 0 of [`hold_item_zero`] started, and whether it may return.
static HOLD: Mutex<(bool, bool)> = Mutex::new((false, false));
static HOLD_CHANGED: Condvar = Condvar::new();

/// Item 0 waits until the test lets it return; the others return at once.
fn hold_item_zero(x: u64) -> u64 {
    if x == 0 {
        let mut hold = HOLD.lock().unwrap();
        hold.0 = true;
        HOLD_CHANGED.notify_all();
        while !hold.1 {
            hold = HOLD_CHANGED.wait(hold).unwrap();
        }
    }
    x
}

/// An `imap` queues its items in groups that every idle thread takes items from: the items
/// queued with one that blocks its thread run on the other.
#[test]
fn imap_items_queued_with_a_blocked_one_run_on_the_pools_other_thread() {
    let pool = ThreadPool::new(2).unwrap();
    let mut outcomes = pool.imap_unordered(hold_item_zero, 0..40);
    let mut got = Vec::new();
    for _ in 1..40 {
        // An item stuck behind the blocked one fails here rather than hangs.
        match outcomes.next_timeout(Duration::from_secs(30)) {
            Ok(Some(outcome)) => got.push(outcome.unwrap()),
            Ok(None) => panic!("the input ended early"),
            Err(_) => panic!("items waited behind the blocked one: {} came", got.len()),
        }
    }
    assert!(HOLD.lock().unwrap().0, "item 0 started");
    *HOLD.lock().unwrap() = (true, true);
    HOLD_CHANGED.notify_all();
    got.push(outcomes.next().unwrap().unwrap());
    assert!(outcomes.next().is_none());
    got.sort_unstable();
    assert_eq!(got, (0..40).collect::<Vec<_>>());
}

/// How many items of [`slow`] finished.
static SLOW_DONE: AtomicU64 = AtomicU64::new(0);

/// Takes two milliseconds: an item far slower than the 10 µs under which an `imap` grows.
fn slow(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(2));
    SLOW_DONE.fetch_add(1, Ordering::SeqCst);
    x
}

/// An `imap`'s window grows only while its items prove fast: one of slow items keeps at
/// most 16 per thread pulled and not finished, as it started (an ordered one may hold a few
/// finished ones more behind a head that is slower than the rest).
#[test]
fn an_imap_of_slow_items_keeps_its_first_window() {
    let pool = ThreadPool::new(2).unwrap();
    for ordered in [true, false] {
        SLOW_DONE.store(0, Ordering::SeqCst);
        let pulled = AtomicU64::new(0);
        let most_running = AtomicU64::new(0);
        let items = (0..300).inspect(|_| {
            let running =
                pulled.fetch_add(1, Ordering::SeqCst) + 1 - SLOW_DONE.load(Ordering::SeqCst);
            most_running.fetch_max(running, Ordering::SeqCst);
        });
        let outcomes: Box<dyn Iterator<Item = Result<u64, TaskError>>> = if ordered {
            Box::new(pool.imap(slow, items))
        } else {
            Box::new(pool.imap_unordered(slow, items))
        };
        let mut most_ahead = 0;
        for (taken, outcome) in (1..).zip(outcomes) {
            outcome.unwrap();
            let ahead = pulled.load(Ordering::SeqCst) - taken;
            most_ahead = most_ahead.max(ahead);
        }
        let most_running = most_running.into_inner();
        assert!(most_running <= 2 * 16, "ordered {ordered}: {most_running} running");
        assert!(most_ahead >= 8, "ordered {ordered}: only {most_ahead} ahead");
    }
}

/// The items of [`meet_at_0_and_150`] that arrived, waiting for each other.
static MET: Mutex<u32> = Mutex::new(0);
static MET_CHANGED: Condvar = Condvar::new();

/// Items 0 and 150 wait for each other (30 s at most); the others return at once. Whether the
/// item did not wait in vain.
fn meet_at_0_and_150(x: u64) -> bool {
    if x != 0 && x != 150 {
        return true;
    }
    let mut met = MET.lock().unwrap();
    *met += 1;
    MET_CHANGED.notify_all();
    let limit = Duration::from_secs(30);
    let (met, _) = MET_CHANGED.wait_timeout_while(met, limit, |met| *met < 2).unwrap();
    *met >= 2
}

/// An ordered `imap` goes on past a slow item as far as its largest window reaches, whatever
/// the window it keeps while its items are slow: the outcomes finished behind the slow one do
/// not count against that. So two slow items further apart than that window run side by
/// side, rather than one after the other.
#[test]
fn slow_items_of_an_ordered_imap_further_apart_than_its_window_run_side_by_side() {
    let pool = ThreadPool::new(2).unwrap();
    assert!(pool.imap_window() > 150);
    let outcomes: Vec<bool> = pool.imap(meet_at_0_and_150, 0..300).map(Result::unwrap).collect();
    assert_eq!(outcomes.len(), 300);
    assert!(outcomes[0] && outcomes[150], "the two items did not run side by side");
}

/// Item 0 and item 800 take a few milliseconds; the others return at once.
fn slow_at_0_and_800(x: u64) -> u64 {
    if x == 0 || x == 800 {
        std::thread::sleep(Duration::from_millis(if x == 0 { 3 } else { 20 }));
    }
    x
}

/// An ordered `imap` that went on past a slow head, then grew its window to the most while
/// its items proved fast, and then met another slow head among the items pulled meanwhile,
/// still yields every item (it waited for a note the second slow item sent elsewhere).
#[test]
fn an_ordered_imap_goes_past_a_second_slow_head_after_its_window_grew() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let pool = ThreadPool::new(2).unwrap();
        let got: Vec<u64> = pool.imap(slow_at_0_and_800, 0..2_000).map(Result::unwrap).collect();
        let _ = tx.send(got);
    });
    let got = rx.recv_timeout(Duration::from_secs(30)).expect("the imap hung");
    assert_eq!(got, (0..2_000).collect::<Vec<u64>>());
}

#[test]
fn every_task_of_bursts_from_several_threads_runs_once_with_its_own_result() {
    const SUBMITTERS: u64 = 4;
    const EACH: u64 = 5_000;
    let pool = ThreadPool::new(2).unwrap();
    std::thread::scope(|s| {
        for t in 0..SUBMITTERS {
            let pool = &pool;
            s.spawn(move || {
                for round in 0..3 {
                    let first = (t * 3 + round) * EACH;
                    let handles: Vec<_> =
                        (first..first + EACH).map(|x| (x, pool.submit(double, x))).collect();
                    for (x, handle) in handles {
                        assert_eq!(handle.join().unwrap().0, 2 * x);
                    }
                }
            });
        }
    });
    pool.shutdown();
}

/// The pools the recursive tasks below submit to, by size.
static POOLS: [OnceLock<ThreadPool>; 2] = [OnceLock::new(), OnceLock::new()];

/// Fibonacci number `n` of a pool of `workers`, each call above the smallest submitting
/// both halves to the same pool and joining them: every thread of the pool ends up joining.
fn fib_on((workers, n): (usize, u64)) -> u64 {
    if n < 2 {
        return n;
    }
    let pool = POOLS[workers - 1].get().expect("the test starts the pool first");
    let left = pool.submit(fib_on, (workers, n - 1));
    let right = pool.submit(fib_on, (workers, n - 2));
    left.join().unwrap() + right.join().unwrap()
}

#[test]
fn a_task_that_joins_tasks_it_submitted_to_its_own_pool_finishes_on_one_thread_and_on_two() {
    for workers in [1, 2] {
        let pool = POOLS[workers - 1].get_or_init(|| ThreadPool::new(workers).unwrap());
        let mut handle = pool.submit(fib_on, (workers, 16));
        // Without help the pool's threads would all wait on each other: fail rather than hang.
        match handle.join_timeout(Duration::from_secs(60)) {
            Ok(value) => assert_eq!(value, 987, "{workers} workers"),
            Err(e) => panic!("{workers} workers: {e}"),
        }
    }
}

/// The pools the iterating tasks below use, by size.
static ITERATED: [OnceLock<ThreadPool>; 2] = [OnceLock::new(), OnceLock::new()];

fn square(x: u64) -> u64 {
    x * x
}

/// The sum of the squares below 50, got with `imap` and with `imap_unordered` over the pool
/// of `workers` that runs this task.
fn iterate_own_pool(workers: usize) -> (u64, u64) {
    let pool = ITERATED[workers - 1].get().expect("the test starts the pool first");
    let ordered = pool.imap(square, 0..50).map(Result::unwrap).sum();
    let unordered = pool.imap_unordered(square, 0..50).map(Result::unwrap).sum();
    (ordered, unordered)
}

/// Every thread of the pool runs a task that iterates over the same pool: the items those
/// iterators queue are run by the waiting threads themselves. They waited for each other for
/// ever before.
#[test]
fn tasks_that_iterate_over_their_own_pool_finish_on_one_thread_and_on_two() {
    for workers in [1, 2] {
        let pool = ITERATED[workers - 1].get_or_init(|| ThreadPool::new(workers).unwrap());
        let mut handles: Vec<_> = (0..4).map(|_| pool.submit(iterate_own_pool, workers)).collect();
        for handle in &mut handles {
            match handle.join_timeout(Duration::from_secs(60)) {
                Ok(sums) => assert_eq!(sums, (40_425, 40_425), "{workers} workers"),
                Err(e) => panic!("{workers} workers: {e}"),
            }
        }
    }
}

/// The pools of one and two threads with a time limit whose tasks below map with progress.
static TIMED: [OnceLock<ThreadPool>; 2] = [OnceLock::new(), OnceLock::new()];

/// The sum of the squares below 50, got with `map_with_progress` and
/// `map_results_with_progress` over the pool of `workers` that runs this task: with a time
/// limit, these go one handle per item.
fn map_own_pool_with_progress(workers: usize) -> (u64, u64) {
    let pool = TIMED[workers - 1].get().expect("the test starts the pool first");
    let mut seen = 0;
    let mapped = pool.map_with_progress(square, 0..50, |done, _| seen = done).unwrap();
    assert_eq!(seen, 50);
    let results = pool.map_results_with_progress(square, 0..50, |_, _| {});
    (mapped.iter().sum(), results.into_iter().map(Result::unwrap).sum())
}

/// As above, for the maps that report progress on a pool with a time limit: they waited for
/// their items without letting the waiting thread run them, so with every thread waiting
/// the tasks timed out (or, behind a relief thread, never ended).
#[test]
fn tasks_that_map_with_progress_over_their_own_timed_pool_finish_on_one_thread_and_on_two() {
    for workers in [1, 2] {
        let config = Config::new().workers(workers).timeout(Duration::from_secs(60));
        let pool = TIMED[workers - 1].get_or_init(|| ThreadPool::with_config(config).unwrap());
        let mut handles: Vec<_> =
            (0..4).map(|_| pool.submit(map_own_pool_with_progress, workers)).collect();
        for handle in &mut handles {
            match handle.join_timeout(Duration::from_secs(60)) {
                Ok(sums) => assert_eq!(sums, (40_425, 40_425), "{workers} workers"),
                Err(e) => panic!("{workers} workers: {e}"),
            }
        }
    }
}

/// Met by two tasks at a time.
static PAIR: Barrier = Barrier::new(2);

/// Returns once another task reached the same point: it finishes only if two run at once.
fn meet(x: u64) -> u64 {
    PAIR.wait();
    x
}

fn noop(x: u64) -> u64 {
    x
}

/// Right after a round trip a thread waits for the next task, and the pool may hold fewer
/// running drainers than threads: two tasks submitted then must still run on both at once.
#[test]
fn two_tasks_submitted_right_after_a_round_trip_run_at_once_on_a_pool_of_two() {
    let pool = ThreadPool::new(2).unwrap();
    for round in 0..300 {
        assert_eq!(pool.apply(noop, round).unwrap(), round);
        let mut first = pool.submit(meet, 2 * round);
        let mut second = pool.submit(meet, 2 * round + 1);
        // Run one after the other, each would wait at the barrier forever: fail rather than hang.
        for (handle, x) in [(&mut first, 2 * round), (&mut second, 2 * round + 1)] {
            match handle.join_timeout(Duration::from_secs(30)) {
                Ok(value) => assert_eq!(value, x),
                Err(e) => panic!("round {round}: task {x}: {e}"),
            }
        }
    }
}

/// A shape a user's tasks take: an internally tagged enum.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind")]
enum Shape {
    Circle { r: u64 },
    Square { side: u64 },
}

fn area(shape: Shape) -> u64 {
    match shape {
        Shape::Circle { r } => 3 * r * r,
        Shape::Square { side } => side * side,
    }
}

fn shout(text: String) -> String {
    text.to_uppercase()
}

fn reverse(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.reverse();
    bytes
}

fn field(value: serde_json::Value) -> serde_json::Value {
    value["n"].clone()
}

/// One pool, one queue, tasks of four types interleaved in one burst and between round trips:
/// each handle gets its own task's result, of its own type.
#[test]
fn tasks_of_different_types_share_one_pool_and_each_gets_its_own_result() {
    let pool = ThreadPool::new(2).unwrap();
    for round in 0..50u64 {
        let shapes: Vec<_> = (0..20)
            .map(|i| {
                let shape =
                    if i % 2 == 0 { Shape::Circle { r: i } } else { Shape::Square { side: i } };
                pool.submit(area, shape)
            })
            .collect();
        let texts: Vec<_> = (0..20).map(|i| pool.submit(shout, format!("task {i}"))).collect();
        let bytes: Vec<_> =
            (0..20u8).map(|i| pool.submit(reverse, vec![i, i + 1, i + 2])).collect();
        let json = pool.apply(field, serde_json::json!({ "n": round, "tag": "x" })).unwrap();
        assert_eq!(json, serde_json::json!(round));
        for (i, handle) in (0..20u64).zip(shapes) {
            assert_eq!(handle.join().unwrap(), if i % 2 == 0 { 3 * i * i } else { i * i });
        }
        for (i, handle) in (0..20).zip(texts) {
            assert_eq!(handle.join().unwrap(), format!("TASK {i}"));
        }
        for (i, handle) in (0..20u8).zip(bytes) {
            assert_eq!(handle.join().unwrap(), [i + 2, i + 1, i]);
        }
    }
}
