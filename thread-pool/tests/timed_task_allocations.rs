//! A task with a time limit costs one allocation, as one without does: its record in the
//! queue holds its handle's slot, and is also the alarm that the pool's watchdog rings and the
//! link to the relief thread started should it overrun. (The queue adds one for every 63
//! tasks queued at once, a block of its slots, hence the bound of 1.1 per task.)
//!
//! Counted with a global allocator of this test binary's own, which counts every allocation
//! in the process: the test runs its tasks on a pool of one thread, held by a first task
//! until every counted task is queued, so that the one thread drains them all in one go
//! (nothing else starts or allocates meanwhile).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use taskpool_thread::{Config, Pool, TaskHandle, ThreadPool};

/// Counts the allocations of the whole process.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method hands its arguments on, unchanged, to the system allocator, which
// meets the trait's contract; counting touches no memory the allocator hands out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's promises about `layout` are the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` or `realloc` above, that is from `System`, with
        // `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System` with `layout`, and the caller's promises about
        // `new_size` are the system allocator's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Tasks counted in each round.
const TASKS: usize = 1_000;

/// A limit no task here comes near.
const LIMIT: Duration = Duration::from_secs(600);

/// Taken by each test for its whole run: the count is the process's, and the tests of a file
/// run at once.
static ALONE: Mutex<()> = Mutex::new(());

static OPEN: Mutex<bool> = Mutex::new(false);
static OPENED: Condvar = Condvar::new();

/// Holds its thread until [`open`] is called.
fn gate(x: u64) -> u64 {
    drop(OPENED.wait_while(OPEN.lock().unwrap(), |open| !*open).unwrap());
    x
}

fn open(is_open: bool) {
    *OPEN.lock().unwrap() = is_open;
    OPENED.notify_all();
}

fn square(x: u64) -> u64 {
    x * x
}

/// The allocations per task of `TASKS` tasks that `submit` queues on a pool of one thread
/// while a gate task (its argument `u64::MAX`) holds the thread, and then joined.
fn allocations_per_task(submit: impl Fn(u64) -> TaskHandle<u64>) -> f64 {
    open(false);
    let held = submit(u64::MAX);
    let mut handles = Vec::with_capacity(TASKS);
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    handles.extend((0..TASKS as u64).map(&submit));
    open(true);
    for (i, handle) in handles.drain(..).enumerate() {
        assert_eq!(handle.join().unwrap(), (i * i) as u64);
    }
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert_eq!(held.join().unwrap(), u64::MAX);
    (after - before) as f64 / TASKS as f64
}

#[test]
fn a_task_with_a_time_limit_costs_one_allocation() {
    let _alone = ALONE.lock().unwrap();
    let pool = ThreadPool::new(1).unwrap();
    let gated = |x| match x {
        u64::MAX => pool.submit_timeout(gate, x, LIMIT),
        x => pool.submit_timeout(square, x, LIMIT),
    };
    // A first round starts the pool's thread and its watchdog.
    allocations_per_task(gated);
    let per_task = allocations_per_task(gated);
    assert!(per_task < 1.1, "submit_timeout: {per_task} allocations per task");

    let config = Config::new().workers(1).timeout(LIMIT);
    let pool = ThreadPool::with_config(config).unwrap();
    let gated = |x| match x {
        u64::MAX => pool.submit(gate, x),
        x => pool.submit(square, x),
    };
    allocations_per_task(gated);
    let per_task = allocations_per_task(gated);
    assert!(per_task < 1.1, "the pool's limit: {per_task} allocations per task");
}

/// A `map` on a pool with a time limit runs each item as a task with its deadline: one
/// allocation per item, its record, which holds the item's handle's slot. Before, a promise
/// for the handle and a record: two per item.
#[test]
fn a_map_on_a_pool_with_a_time_limit_costs_one_allocation_per_item() {
    let _alone = ALONE.lock().unwrap();
    let pool = ThreadPool::with_config(Config::new().workers(1).timeout(LIMIT)).unwrap();
    let items = || 0..TASKS as u64;
    // A first map starts the pool's thread and its watchdog.
    assert_eq!(pool.map(square, items()).unwrap().len(), TASKS);
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let squares = pool.map(square, items()).unwrap();
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert!(squares.iter().zip(items()).all(|(&s, x)| s == x * x));
    // The map's own vectors and the queue's blocks of slots come on top, a few in all; a
    // second allocation per item would make it 2.
    let per_item = (after - before) as f64 / TASKS as f64;
    assert!(per_item < 1.5, "map: {per_item} allocations per item");
}
