//! Outcomes among many tiny items. A worker runs items that prove tiny (a `map` of thousands of
//! quick ones) a shorter way than others; whatever one of them does, a panic, a crash, a value
//! that will not encode or a large value, it comes back exactly as it would alone, every
//! other item gives its value, and (after a crash) no item runs twice.

mod common;

use std::os::fd::AsRawFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use common::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_bytes::ByteBuf;
use taskpool_process::{
    Config, Direction, Exit, Pool, ProcessConfig, ProcessPool, Side, Task, TaskError,
};

/// Items of each `map`: its runs are thousands long, so almost all of them go the short way.
const ITEMS: u64 = 20_000;

/// One worker, so that every item of a run lands in the same batch stream.
fn one_worker() -> ProcessPool {
    ProcessPool::with_config(ProcessConfig::new(Config::new().workers(1))).unwrap()
}

/// Whether item `x` is one of the culprits: a few in a row (so that some fall where a group of
/// tiny items ends, some where one goes on), every 4,000 items.
fn culprit(x: u64) -> bool {
    x % 4000 >= 2997 && x % 4000 < 3003
}

fn panics_at_culprits(x: u64) -> u64 {
    if culprit(x) {
        panic!("culprit {x}");
    }
    x
}

/// The item whose task crashes its worker in the crash test.
const CRASH_AT: u64 = 15_001;

/// Counts each run of each item in a file that every worker maps (one byte per item, mapped
/// once per worker, so that an item stays tiny), and crashes its worker at [`CRASH_AT`].
#[derive(Serialize, Deserialize)]
struct CountedCrash {
    counts: String,
}

impl Task for CountedCrash {
    type Input = u64;
    type Output = u64;

    fn run(&self, x: u64) -> u64 {
        static COUNTS: OnceLock<usize> = OnceLock::new();
        let base = *COUNTS.get_or_init(|| map_counts(&self.counts));
        // SAFETY: the mapping is `ITEMS` bytes long and stays for the worker's life, and
        // `x < ITEMS`; an `AtomicU8` has the size and alignment of a byte.
        let count = unsafe { &*(base as *const AtomicU8).add(x as usize) };
        count.fetch_add(1, Ordering::Relaxed);
        if x == CRASH_AT {
            segfault(x);
        }
        x
    }
}

/// Maps the counts file shared and writable; returns its address.
fn map_counts(path: &str) -> usize {
    let file = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    // SAFETY: a new shared mapping of `ITEMS` bytes of an open file at least that long; no
    // existing memory is touched.
    let at = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            ITEMS as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(at, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
    at as usize
}

/// A value whose `Serialize` refuses the culprits.
struct Refused(u64);

impl Serialize for Refused {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if culprit(self.0) {
            return Err(serde::ser::Error::custom(format!("refused {}", self.0)));
        }
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Refused {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u64::deserialize(d).map(Refused)
    }
}

fn refused_at_culprits(x: u64) -> Refused {
    Refused(x)
}

/// An empty buffer, but 5 MiB of `x as u8` for the culprits: larger than a worker sends with
/// other results.
fn large_at_culprits(x: u64) -> ByteBuf {
    ByteBuf::from(if culprit(x) { vec![x as u8; 5 << 20] } else { Vec::new() })
}

/// Checks that exactly the culprits failed, each as `check` says, and every other item gave
/// `x`; returns how many failed.
fn only_culprits_failed<T: PartialEq<u64> + std::fmt::Debug>(
    out: &[Result<T, TaskError>],
    check: impl Fn(u64, &TaskError),
) -> usize {
    assert_eq!(out.len() as u64, ITEMS);
    let mut failed = 0;
    for (x, outcome) in (0..).zip(out) {
        match outcome {
            Ok(value) => assert!(!culprit(x) && *value == x, "item {x}: {value:?}"),
            Err(e) => {
                assert!(culprit(x), "item {x} failed: {e}");
                check(x, e);
                failed += 1;
            }
        }
    }
    failed
}

/// The pool's (completed, failed, crashes) counters.
fn counters(pool: &ProcessPool) -> (u64, u64, u64) {
    let stats = pool.stats();
    (stats.completed, stats.failed, stats.crashes)
}

/// Two maps whose culprits panic: each fails alone, with its message and location.
fn panics_fail_alone(pool: &ProcessPool) {
    let (completed, failed_before, crashes) = counters(pool);
    for round in 0..2 {
        let out = pool.map_results(panics_at_culprits, 0..ITEMS);
        let failed = only_culprits_failed(&out, |x, e| match e {
            TaskError::Panicked(report) => {
                assert_eq!(report.message, format!("culprit {x}"));
                let location = report.location.as_deref().unwrap_or_default();
                assert!(location.contains("tiny_items.rs:"), "item {x}: {location}");
            }
            other => panic!("item {x}: {other}"),
        });
        assert_eq!(failed, 30, "round {round}: 6 culprits in each of 5 stretches");
    }
    let done = (completed + 2 * (ITEMS - 30), failed_before + 60, crashes);
    assert_eq!(counters(pool), done);
}

/// A map whose item [`CRASH_AT`] segfaults: it alone fails, with its signal, and no item
/// runs twice (`name` names the file of counts).
fn a_crash_fails_alone(pool: &ProcessPool, name: &str) {
    let (completed, failed, crashes) = counters(pool);
    let scratch = Scratch::new(name);
    let counts = scratch.file("counts");
    std::fs::write(&counts, vec![0u8; ITEMS as usize]).unwrap();
    let out = pool.map_results(CountedCrash { counts: counts.clone() }, 0..ITEMS);
    for (x, outcome) in (0..).zip(&out) {
        match outcome {
            Err(TaskError::Crashed(Exit::Signal(libc::SIGSEGV))) if x == CRASH_AT => {}
            Ok(value) if x != CRASH_AT && *value == x => {}
            other => panic!("item {x}: {other:?}"),
        }
    }
    // The results the crashed worker had not written yet were flushed as it died: no item
    // ran twice, the culprit included.
    let ran = std::fs::read(&counts).unwrap();
    let twice: Vec<usize> = (0..ran.len()).filter(|&x| ran[x] != 1).collect();
    assert!(twice.is_empty(), "items that did not run exactly once: {twice:?}");
    assert_eq!(counters(pool), (completed + ITEMS - 1, failed + 1, crashes + 1));
    // The replacement worker runs the next job the same way.
    assert_eq!(pool.map(square, 0..ITEMS).unwrap()[1000], 1_000_000);
}

/// A map whose culprits' results refuse to encode: each fails alone, with its message.
fn refusals_fail_alone(pool: &ProcessPool) {
    let out: Vec<_> = pool
        .map_results(refused_at_culprits, 0..ITEMS)
        .into_iter()
        .map(|r| r.map(|Refused(v)| v))
        .collect();
    let failed = only_culprits_failed(&out, |x, e| match e {
        TaskError::Serialization { side: Side::Result, direction: Direction::Encode, message } => {
            assert!(message.contains(&format!("refused {x}")), "item {x}: {message}");
        }
        other => panic!("item {x}: {other}"),
    });
    assert_eq!(failed, 30);
}

/// A map whose culprits return 5 MiB each: every value arrives whole.
fn large_values_arrive_whole(pool: &ProcessPool) {
    let out = pool.map(large_at_culprits, 0..ITEMS).unwrap();
    for (x, value) in (0..).zip(&out) {
        if culprit(x) {
            assert_eq!(value.len(), 5 << 20, "item {x}");
            assert!(value.iter().all(|&b| b == x as u8), "item {x}");
        } else {
            assert!(value.is_empty(), "item {x}");
        }
    }
}

#[test]
fn panics_among_tiny_items_fail_only_their_items_with_message_and_location() {
    within("tiny items with panics", || panics_fail_alone(&one_worker()));
}

#[test]
fn a_crash_among_tiny_items_fails_only_its_item_with_its_signal() {
    within("tiny items with a crash", || a_crash_fails_alone(&one_worker(), "tiny-items-crash"));
}

#[test]
fn results_that_do_not_encode_among_tiny_items_fail_only_their_items() {
    within("tiny items with results that do not encode", || refusals_fail_alone(&one_worker()));
}

#[test]
fn large_values_among_tiny_items_arrive_whole() {
    within("tiny items with large values", || large_values_arrive_whole(&one_worker()));
}

#[test]
fn one_pool_runs_each_of_these_jobs_in_turn() {
    within("one pool, every job in turn", || {
        let pool = one_worker();
        large_values_arrive_whole(&pool);
        panics_fail_alone(&pool);
        a_crash_fails_alone(&pool, "tiny-items-in-turn");
        refusals_fail_alone(&pool);
        large_values_arrive_whole(&pool);
        panics_fail_alone(&pool);
    });
}

/// A task whose state takes 200 ms to decode (a large lookup table, say) and whose items are
/// no-ops.
#[derive(Serialize)]
struct SlowToDecode;

impl<'de> Deserialize<'de> for SlowToDecode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d)?;
        std::thread::sleep(std::time::Duration::from_millis(200));
        Ok(SlowToDecode)
    }
}

impl Task for SlowToDecode {
    type Input = u64;
    type Output = u64;
    fn run(&self, x: u64) -> u64 {
        x
    }
}

/// A state decoded once per batch is the batch's cost, not its first item's. Counted as the
/// item's, it made the job's items look slow, so that every batch stayed one item long and
/// decoded the state again for every item (a state of 80 KB made a `map` of 100,000 no-ops
/// 200 times slower than without it): the item's time starts once the state is decoded.
#[test]
fn the_decoding_of_a_state_is_not_counted_in_its_first_items_time() {
    let pool = one_worker();
    let (value, usage) = pool.submit_with_usage(SlowToDecode, 7).join().unwrap();
    assert_eq!(value, 7);
    assert!(
        usage.elapsed < std::time::Duration::from_millis(200),
        "a no-op took {:?}, the 200 ms its state took to decode counted in",
        usage.elapsed
    );
}
