//! The batching policy: how many items one batch frame carries, and how much work a worker
//! may hold.
//!
//! Every job learns its own cost: each `map`, `imap` or job run for another machine's caller
//! (`remote.rs`) has a [`Pace`] of its own (tasks submitted one by one share one per
//! function, in [`Paces`]), fed the time its workers measured per item. A job starts slow:
//! one item per batch until an item was measured. After that a batch holds about
//! [`BATCH_TARGET_NS`] of work, up to [`MAX_BATCH`] items, so slow items go one or two at a
//! time (load stays balanced) and fast ones go in thousands (a round trip is amortized). What
//! one job measured never sizes the batches of another, so a CPU-bound `map` after a burst of
//! tiny tasks spreads over the workers as it would on a fresh pool.
//!
//! A worker holds at most `in_flight` batches' worth of work: [`BATCH_TARGET_NS`] times
//! `in_flight`, each item counted at its job's estimate when it was sent (a slow item counts
//! as a whole batch). A user's chunk size overrides the batch size, and every batch is cut so
//! that its frame stays within the frame limit.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::run::{Batching, Run};
use crate::scheduler::Shared;
use crate::ship::Shipped;

/// How long a batch of items should take in a worker: long enough to amortize a round trip,
/// short enough to balance load.
pub(crate) const BATCH_TARGET_NS: u64 = 200_000;
/// The most items sent in one batch frame.
pub(crate) const MAX_BATCH: usize = 4096;
/// Assumed time per item before any was measured: slow, so the first items go one by one.
const INITIAL_ITEM_NS: u64 = 1_000_000;
/// The weight of a new sample, once this many were taken: a moving average over about as
/// many items. Before that, the plain mean of the samples so far, so the first measured
/// item replaces the initial guess.
const SMOOTHING: u64 = 8;
/// Functions whose single tasks [`Paces`] remembers; it forgets them all when full.
const MAX_PACES: usize = 256;
/// An item measured this long or longer is a long one (a millisecond: five batches' worth):
/// a function with such calls among tiny ones varies (see [`Pace::varies`]).
pub(crate) const LONG_ITEM_NS: u64 = 1_000_000;
/// For how many measurements after a long item a job's items count as varying (a
/// measurement is one item's time, or the mean of a group of tiny items, see `worker.rs`).
pub(crate) const LONG_ITEM_MEMORY: u64 = 256;

/// What one job's items cost in a worker: a moving average of the time per item, as the
/// workers measured it, and whether a recent one was long.
#[derive(Debug)]
pub(crate) struct Pace {
    item_ns: AtomicU64,
    samples: AtomicU64,
    /// Measurements left before the last long item ([`LONG_ITEM_NS`]) is forgotten.
    long_left: AtomicU64,
    /// A worker's result pipe was closed while it held started items of this job.
    closes_descriptors: AtomicBool,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            item_ns: AtomicU64::new(INITIAL_ITEM_NS),
            samples: AtomicU64::new(0),
            long_left: AtomicU64::new(0),
            closes_descriptors: AtomicBool::new(false),
        }
    }
}

impl Pace {
    /// Records how long a worker spent on one item.
    pub(crate) fn record(&self, ns: u64) {
        // Past the first samples only the average changes, and only a change is written:
        // the submitting threads read the pace for every task.
        let mut taken = self.samples.load(Ordering::Relaxed);
        if taken < SMOOTHING {
            taken = self.samples.fetch_add(1, Ordering::Relaxed);
        }
        let weight = (taken + 1).min(SMOOTHING);
        let old = self.item_ns.load(Ordering::Relaxed);
        // Rounded away from `old`, so the average reaches a steady `ns` exactly.
        let new = if ns >= old {
            old + (ns - old).div_ceil(weight)
        } else {
            old - (old - ns).div_ceil(weight)
        };
        if new.max(1) != old {
            self.item_ns.store(new.max(1), Ordering::Relaxed);
        }
        // Written only after a long item: a function whose items are all short writes nothing.
        if ns >= LONG_ITEM_NS {
            self.long_left.store(LONG_ITEM_MEMORY, Ordering::Relaxed);
        } else {
            let left = self.long_left.load(Ordering::Relaxed);
            if left > 0 {
                self.long_left.store(left - 1, Ordering::Relaxed);
            }
        }
    }

    /// Whether one of the last [`LONG_ITEM_MEMORY`] measurements was of a long item
    /// ([`LONG_ITEM_NS`]), however short the average is: a task of this job queued behind
    /// another may wait for such an item.
    pub(crate) fn varies(&self) -> bool {
        self.long_left.load(Ordering::Relaxed) > 0
    }

    /// Notes that a worker's result pipe was closed while it held started items of this job:
    /// one of them may have closed it (as a daemon closes every descriptor from 3 up).
    pub(crate) fn suspect_descriptors(&self) {
        self.closes_descriptors.store(true, Ordering::Relaxed);
    }

    /// Whether a worker's result pipe was closed while it held started items of this job:
    /// its workers then check the pipe after each of its items, to blame the one that closed
    /// it and send what follows elsewhere (see `protocol::CHECK_DESCRIPTORS`).
    pub(crate) fn closes_descriptors(&self) -> bool {
        self.closes_descriptors.load(Ordering::Relaxed)
    }

    /// The estimated time of one item, in nanoseconds.
    pub(crate) fn item_ns(&self) -> u64 {
        self.item_ns.load(Ordering::Relaxed).max(1)
    }

    /// How many items make one batch, from the measured time per item.
    pub(crate) fn batch_target(&self) -> usize {
        usize::try_from(BATCH_TARGET_NS / self.item_ns()).unwrap_or(MAX_BATCH).clamp(1, MAX_BATCH)
    }

    /// What one item counts against a worker's budget: its estimate, but no more than a
    /// whole batch (a slow item is one batch of one).
    pub(crate) fn load_ns(&self) -> u64 {
        self.item_ns().min(BATCH_TARGET_NS)
    }
}

/// A shipped job and the pace of its items, as its runs carry them: the runs of one `map` or
/// `imap`, or the single tasks of a function that carries no state, share one, so a task
/// counts one reference where it counted one for its job, one for its pace and one for its
/// pool (counted up by the caller, down by a supervisor, on another core).
#[derive(Debug)]
pub(crate) struct Paced {
    pub(crate) shipped: Shipped,
    pub(crate) pace: Arc<Pace>,
    /// The pool that sent its single tasks, to cancel one; dangling for batches.
    pub(crate) pool: Weak<Shared>,
    /// The pace of the job whose line its runs wait in (`waiting.rs`), when that is not its
    /// own: a job run for another machine's caller that shares its line with the caller's
    /// other functions (`remote.rs`).
    pub(crate) line: Option<Arc<Pace>>,
}

impl Paced {
    /// `shipped` with a pace (and a line) of its own, for the runs of one batch job.
    pub(crate) fn new(shipped: Shipped) -> Arc<Self> {
        Arc::new(Paced { shipped, pace: Arc::default(), pool: Weak::new(), line: None })
    }

    /// `shipped`, in the line of `other`'s runs: with `other`'s pace if it is the same
    /// function, else with a pace of its own.
    pub(crate) fn in_line_of(other: &Paced, shipped: Shipped) -> Arc<Self> {
        let pace =
            if shipped.entry == other.shipped.entry { other.pace.clone() } else { Arc::default() };
        let line = Some(other.line_pace().clone());
        Arc::new(Paced { shipped, pace, pool: Weak::new(), line })
    }

    /// The pace whose address names the line its runs wait in: its own, unless it waits in
    /// another job's line.
    pub(crate) fn line_pace(&self) -> &Arc<Pace> {
        self.line.as_ref().unwrap_or(&self.pace)
    }
}

/// The paces of tasks submitted one by one, by function (the offset of the job's entry
/// point): a task sent alone is costed by what the earlier tasks of its function measured.
/// A function that carries no state is shipped once: its tasks share one [`Paced`], which
/// each thread also keeps for its next task (see [`LAST`]).
#[derive(Debug)]
pub(crate) struct Paces {
    by_entry: Mutex<HashMap<i64, Known, BuildHasherDefault<EntryHasher>>>,
    /// Tells this pool's paces from another's in [`LAST`].
    id: u64,
}

impl Default for Paces {
    fn default() -> Self {
        static IDS: AtomicU64 = AtomicU64::new(0);
        Paces { by_entry: Mutex::default(), id: IDS.fetch_add(1, Ordering::Relaxed) }
    }
}

thread_local! {
    /// The job this thread last sent alone, if its function carries no state, with its
    /// pool's [`Paces::id`] and its entry point: a burst of tasks of one function takes
    /// neither the map's lock nor a lookup per task. (Kept after its pool is dropped, it
    /// holds the pool's allocation, not what the pool owned, until the thread sends a task of
    /// another function or ends.)
    static LAST: std::cell::RefCell<Option<(u64, i64, Arc<Paced>)>> =
        const { std::cell::RefCell::new(None) };
}

/// What [`Paces`] knows of a function: its pace, and the job if it carries no state.
type Known = (Arc<Pace>, Option<Arc<Paced>>);

impl Paces {
    /// The job `shipped` of a single task sent by `pool`, with the pace of its function's
    /// single tasks: shared with earlier tasks of its function if it carries no state.
    pub(crate) fn of(&self, shipped: Shipped, pool: &Arc<Shared>) -> Arc<Paced> {
        if !shipped.state.is_empty() {
            return self.look_up(shipped, pool);
        }
        let (id, entry) = (self.id, shipped.entry);
        let last = LAST.with_borrow(|last| match last {
            Some((i, e, known)) if (*i, *e) == (id, entry) => Some(known.clone()),
            _ => None,
        });
        last.unwrap_or_else(|| {
            let known = self.look_up(shipped, pool);
            LAST.set(Some((id, entry, known.clone())));
            known
        })
    }

    /// [`Paces::of`], from the map.
    fn look_up(&self, shipped: Shipped, pool: &Arc<Shared>) -> Arc<Paced> {
        let mut by_entry = self.by_entry.lock().unwrap_or_else(PoisonError::into_inner);
        if by_entry.len() >= MAX_PACES && !by_entry.contains_key(&shipped.entry) {
            by_entry.clear();
        }
        let (pace, stateless) = by_entry.entry(shipped.entry).or_default();
        let new = |shipped| {
            let pool = Arc::downgrade(pool);
            Arc::new(Paced { shipped, pace: pace.clone(), pool, line: None })
        };
        match stateless {
            Some(known) if shipped.state.is_empty() => known.clone(),
            _ if shipped.state.is_empty() => {
                let known = new(shipped);
                *stateless = Some(known.clone());
                known
            }
            _ => new(shipped),
        }
    }
}

/// Hashes a function's entry point (an offset in the executable) with one multiplication:
/// every single task looks its function up, and SipHash would cost more than the rest of the
/// lookup. Nobody chooses the keys to collide: they are the program's own functions.
#[derive(Debug, Default)]
struct EntryHasher(u64);

impl Hasher for EntryHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b) ^ self.0.rotate_left(8));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Offsets are aligned: the high half of the product reaches the low bits too.
        let h = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }

    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }
}

/// How many items of `run`, from item `start`, the next batch takes: the run's batching
/// (`target` for adaptive runs), at most `room` (what the worker may still hold) and the
/// `run_left` items left, and no more than fit in a frame of `limit` bytes (always one).
pub(crate) fn batch_len(
    run: &Run,
    start: usize,
    run_left: usize,
    target: usize,
    room: usize,
    limit: usize,
) -> usize {
    let batch = match run.batching {
        Batching::Adaptive(cap) => target.min(cap),
        Batching::Fixed(size) => size,
    };
    let take = batch.min(room).clamp(1, run_left.max(1));
    run.fitting(start, take, limit.saturating_sub(run.job.shipped.state.len()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::run::RunBuilder;
    use crate::scheduler::tests::NullSink;
    use crate::ship::Shipped;

    fn run(inputs: &[&[u8]], batching: Batching) -> Run<NullSink> {
        let mut b = RunBuilder::new(Paced::new(Shipped {
            entry: 0,
            state: Vec::new(),
            kept: Default::default(),
        }));
        for input in inputs {
            b.push_encoded(input);
        }
        b.finish(NullSink, None, batching)
    }

    #[test]
    fn the_first_items_go_one_by_one_then_batches_follow_what_items_measure() {
        let pace = Pace::default();
        assert_eq!(pace.batch_target(), 1);
        assert_eq!(pace.load_ns(), BATCH_TARGET_NS, "an unmeasured item counts as a batch");
        pace.record(1_000);
        assert_eq!(pace.batch_target(), 200, "the first measured item replaces the guess");
        for _ in 0..200 {
            pace.record(1_000);
        }
        assert_eq!(pace.batch_target(), 200);
        for _ in 0..200 {
            pace.record(1);
        }
        assert_eq!(pace.batch_target(), MAX_BATCH);
        assert_eq!(pace.load_ns(), 1);
        for _ in 0..200 {
            pace.record(5_000_000);
        }
        assert_eq!(pace.batch_target(), 1, "slow items go one by one again");
    }

    #[test]
    fn single_tasks_share_a_pace_per_function() {
        let pool = Arc::new(crate::scheduler::tests::shared(
            crate::config::ProcessConfig::new(taskpool_core::Config::new().workers(1)),
            1,
        ));
        let paces = Paces::default();
        let job = |entry, state: &[u8]| Shipped {
            entry,
            state: state.to_vec(),
            kept: Default::default(),
        };
        let a = paces.of(job(1, b""), &pool);
        a.pace.record(10);
        let again = paces.of(job(1, b""), &pool);
        assert!(Arc::ptr_eq(&a, &again), "a stateless job is shipped once");
        let with_state = paces.of(job(1, b"state"), &pool);
        assert!(Arc::ptr_eq(&a.pace, &with_state.pace));
        assert_eq!(with_state.shipped.state, b"state", "a job's state is its own");
        assert!(with_state.pool.upgrade().is_some_and(|p| Arc::ptr_eq(&p, &pool)));
        assert_eq!(
            paces.of(job(2, b""), &pool).pace.item_ns(),
            INITIAL_ITEM_NS,
            "another function starts afresh"
        );
    }

    #[test]
    fn jobs_in_one_line_share_the_pace_of_their_function_only() {
        let job = |entry| Shipped { entry, state: Vec::new(), kept: Default::default() };
        let first = Paced::new(job(1));
        assert!(Arc::ptr_eq(first.line_pace(), &first.pace), "a job has a line of its own");
        let same = Paced::in_line_of(&first, job(1));
        assert!(Arc::ptr_eq(&same.pace, &first.pace), "the same function shares its pace");
        let other = Paced::in_line_of(&same, job(2));
        assert!(!Arc::ptr_eq(&other.pace, &first.pace), "another function learns its own");
        for job in [&same, &other] {
            assert!(Arc::ptr_eq(job.line_pace(), &first.pace), "all wait in the first's line");
        }
        let again = Paced::in_line_of(&other, job(2));
        assert!(Arc::ptr_eq(&again.pace, &other.pace));
        assert!(Arc::ptr_eq(again.line_pace(), &first.pace));
    }

    #[test]
    fn a_batch_respects_the_chunk_size_room_and_frame_limit() {
        let items: Vec<&[u8]> = vec![&[0; 10]; 100];
        let adaptive = run(&items, Batching::Adaptive(50));
        assert_eq!(batch_len(&adaptive, 0, 100, 64, 1000, 1 << 20), 50);
        assert_eq!(batch_len(&adaptive, 0, 100, 8, 1000, 1 << 20), 8);
        assert_eq!(batch_len(&adaptive, 0, 100, 64, 5, 1 << 20), 5);
        assert_eq!(batch_len(&adaptive, 97, 3, 64, 1000, 1 << 20), 3);
        // 14 bytes per item: 7 fit in 100 bytes.
        assert_eq!(batch_len(&adaptive, 0, 100, 64, 1000, 100), 7);
        let fixed = run(&items, Batching::Fixed(9));
        assert_eq!(batch_len(&fixed, 0, 100, 1, 1000, 1 << 20), 9);
        // One item always goes, even over the limit (it was checked when encoded).
        assert_eq!(batch_len(&fixed, 0, 100, 1, 1000, 1), 1);
    }
}
