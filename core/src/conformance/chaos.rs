//! The chaos run: many tasks through every batch method at once, a few of them faulty, and
//! every outcome checked.
//!
//! Which items fault is decided by a hash of the item number ([`Mix::fault`]), so the task,
//! in whatever worker runs it, and the checker agree on each item's fate without talking. A
//! healthy item returns [`value`] of its number, so a result lost, delivered twice or given
//! to the wrong item is caught. A backend's chaos test writes the task (it knows how to
//! crash in its own way), then calls [`run`]:
//!
//! ```text
//! const MIX: Mix = Mix { segfault: 0, abort: 0, panic: 100, hang: 50 };
//!
//! fn chaos_task(item: u64) -> u64 {
//!     match MIX.fault(item) {
//!         Fault::None => chaos::value(item),
//!         Fault::Panic => panic!("{}", chaos::panic_message(item)),
//!         Fault::Hang => sleep_past_the_timeout(item),
//!         Fault::Segfault | Fault::Abort => unreachable!(),
//!     }
//! }
//!
//! let expected = chaos::run(&pool, chaos_task, MIX, 0..100_000, &expect);
//! assert_eq!(pool.stats().completed, expected.healthy);
//! ```

use std::collections::HashSet;
use std::ops::Range;
use std::thread;
use std::time::Duration;

use crate::{Exit, IntoTask, Pool, TaskError};

/// What one item of a chaos run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Returns [`value`] of its number.
    None,
    /// Writes through a null pointer: `SIGSEGV`.
    Segfault,
    /// Calls `abort()`: `SIGABRT`.
    Abort,
    /// Panics with [`panic_message`] of its number.
    Panic,
    /// Runs past the pool's timeout.
    Hang,
}

/// How often each fault occurs, in items per 10 000; the rest are healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    /// Items per 10 000 that segfault.
    pub segfault: u64,
    /// Items per 10 000 that abort.
    pub abort: u64,
    /// Items per 10 000 that panic.
    pub panic: u64,
    /// Items per 10 000 that hang.
    pub hang: u64,
}

impl Mix {
    /// The fate of item `item`: a hash of its number, the same in every process and run.
    pub const fn fault(&self, item: u64) -> Fault {
        let mut roll = hash(item) % 10_000;
        let faults = [
            (self.segfault, Fault::Segfault),
            (self.abort, Fault::Abort),
            (self.panic, Fault::Panic),
            (self.hang, Fault::Hang),
        ];
        let mut i = 0;
        while i < faults.len() {
            if roll < faults[i].0 {
                return faults[i].1;
            }
            roll -= faults[i].0;
            i += 1;
        }
        Fault::None
    }

    /// How many items of `items` meet each fate.
    pub fn expected(&self, items: Range<u64>) -> Tally {
        let mut tally = Tally::default();
        for item in items {
            tally.add(self.fault(item));
        }
        tally
    }
}

/// SplitMix64's finalizer: spreads consecutive numbers over the whole range.
const fn hash(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What a healthy item returns: its number, encoded so that it differs from every other
/// item's value and from the number itself.
pub const fn value(item: u64) -> u64 {
    !item
}

/// The item whose [`value`] this is.
pub const fn item_of(value: u64) -> u64 {
    !value
}

/// The message a panicking item panics with.
pub fn panic_message(item: u64) -> String {
    format!("chaos item {item} panics")
}

fn panicking_item(message: &str) -> Option<u64> {
    message.strip_prefix("chaos item ")?.strip_suffix(" panics")?.parse().ok()
}

/// How the backend under test reports a hang.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// The pool's per-task timeout, which every hang must report.
    pub timeout: Duration,
    /// Whether a timed-out task may still be running (threads) or was killed (processes).
    pub hang_still_running: bool,
}

/// How many items met each fate.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Items that returned their value.
    pub healthy: u64,
    /// Items that segfaulted.
    pub segfaults: u64,
    /// Items that aborted.
    pub aborts: u64,
    /// Items that panicked.
    pub panics: u64,
    /// Items that hung past the timeout.
    pub hangs: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.healthy += other.healthy;
        self.segfaults += other.segfaults;
        self.aborts += other.aborts;
        self.panics += other.panics;
        self.hangs += other.hangs;
    }
}

impl Tally {
    fn add(&mut self, fault: Fault) {
        match fault {
            Fault::None => self.healthy += 1,
            Fault::Segfault => self.segfaults += 1,
            Fault::Abort => self.aborts += 1,
            Fault::Panic => self.panics += 1,
            Fault::Hang => self.hangs += 1,
        }
    }

    /// Items that failed, whatever the fault.
    pub fn failed(&self) -> u64 {
        self.segfaults + self.aborts + self.panics + self.hangs
    }

    /// Items that crashed their worker (segfaults and aborts).
    pub fn crashes(&self) -> u64 {
        self.segfaults + self.aborts
    }
}

/// What one outcome says happened: the fault, and the item when the outcome names it (a value
/// or a panic message does; a crash or a timeout does not).
fn classify(outcome: &Result<u64, TaskError>, expect: &Expect) -> (Fault, Option<u64>) {
    match outcome {
        Ok(v) => (Fault::None, Some(item_of(*v))),
        Err(TaskError::Crashed(Exit::Signal(11))) => (Fault::Segfault, None),
        Err(TaskError::Crashed(Exit::Signal(6))) => (Fault::Abort, None),
        Err(TaskError::Panicked(report)) => match panicking_item(&report.message) {
            Some(item) => (Fault::Panic, Some(item)),
            None => panic!("unexpected panic: {report}"),
        },
        Err(TaskError::TimedOut { limit, still_running })
            if *limit == expect.timeout && *still_running == expect.hang_still_running =>
        {
            (Fault::Hang, None)
        }
        Err(e) => panic!("unexpected error: {e:?}"),
    }
}

/// Checks that `outcome` is exactly what item `item` should give.
fn check_item(mix: &Mix, expect: &Expect, item: u64, outcome: &Result<u64, TaskError>) {
    let fault = mix.fault(item);
    let (seen, named) = classify(outcome, expect);
    assert_eq!(seen, fault, "item {item}: expected {fault:?}, got {outcome:?}");
    if let Some(named) = named {
        assert_eq!(named, item, "item {item} got the outcome of item {named}: {outcome:?}");
    }
}

/// Checks outcomes that arrive in any order: each healthy and each panicking item of `items`
/// exactly once, and as many crashes and hangs of each kind as the mix says.
fn check_unordered(
    mix: &Mix,
    expect: &Expect,
    items: Range<u64>,
    outcomes: impl Iterator<Item = Result<u64, TaskError>>,
) {
    let mut seen = Tally::default();
    let mut named = HashSet::new();
    for outcome in outcomes {
        let (fault, item) = classify(&outcome, expect);
        if let Some(item) = item {
            assert!(items.contains(&item), "outcome {outcome:?} of item {item}, not sent");
            assert_eq!(mix.fault(item), fault, "item {item}: got {outcome:?}");
            assert!(named.insert(item), "item {item} delivered twice: {outcome:?}");
        }
        seen.add(fault);
    }
    assert_eq!(seen, mix.expected(items), "unordered outcomes by fate");
}

/// How many items one `map` call of [`run`] takes, and how many threads make such calls.
/// A `map` returns when its last item does, and a hang holds it for the whole timeout, so
/// large chunks from several threads keep every worker busy.
const MAP_CHUNK: u64 = 1000;
const MAP_THREADS: usize = 8;

/// Runs every item of `items` through `pool` at once, a fifth each through `map_results`,
/// `map`, `imap`, `imap_unordered` and `submit`, each from threads of its own, and checks every
/// outcome: healthy items return their [`value`] exactly once, segfaults fail with
/// `Crashed(Signal(11))`, aborts with `Crashed(Signal(6))`, panics with `Panicked` and their
/// [`panic_message`], hangs with `TimedOut` as `expect` says.
///
/// Outcomes that arrive in order are checked item by item, `imap_unordered`'s as a whole.
/// `map` is called on chunks of up to 1000 items, once with the healthy items (it must return
/// every value) and once with the faulty ones (it must fail with the first one's error).
///
/// Returns how many items met each fate, for the caller to compare with the pool's counters.
///
/// # Panics
///
/// On the first outcome that differs from what its item should give.
pub fn run<P, M, T>(pool: &P, task: T, mix: Mix, items: Range<u64>, expect: &Expect) -> Tally
where
    P: Pool + Sync,
    T: IntoTask<M, Input = u64, Output = u64> + Copy + Send,
{
    let len = items.end - items.start;
    let cut = |k: u64| items.start + len * k / 5;
    let [by_map_results, by_map, by_imap, by_imap_unordered, by_submit] =
        [0, 1, 2, 3, 4].map(|k| cut(k)..cut(k + 1));
    let mix = &mix;
    let map_chunks: Vec<Range<u64>> = by_map
        .clone()
        .step_by(MAP_CHUNK as usize)
        .map(|at| at..(at + MAP_CHUNK).min(by_map.end))
        .collect();
    thread::scope(|s| {
        s.spawn(move || {
            let outcomes = pool.map_results(task, by_map_results.clone());
            assert_eq!(outcomes.len() as u64, by_map_results.end - by_map_results.start);
            for (item, outcome) in by_map_results.zip(outcomes) {
                check_item(mix, expect, item, &outcome);
            }
        });
        for t in 0..MAP_THREADS {
            let chunks = &map_chunks;
            s.spawn(move || {
                for chunk in chunks.iter().skip(t).step_by(MAP_THREADS) {
                    check_map(pool, task, mix, expect, chunk.clone());
                }
            });
        }
        s.spawn(move || {
            let mut outcomes = pool.imap(task, by_imap.clone());
            for item in by_imap {
                let outcome = outcomes.next().expect("imap ended early");
                check_item(mix, expect, item, &outcome);
            }
            assert!(outcomes.next().is_none(), "imap gave more outcomes than items");
        });
        s.spawn(move || {
            let outcomes = pool.imap_unordered(task, by_imap_unordered.clone());
            check_unordered(mix, expect, by_imap_unordered, outcomes);
        });
        s.spawn(move || {
            let handles: Vec<_> = by_submit.map(|item| (item, pool.submit(task, item))).collect();
            for (item, handle) in handles {
                check_item(mix, expect, item, &handle.join());
            }
        });
    });
    mix.expected(items)
}

/// `map` on the healthy items of `chunk` returns their values; on the faulty ones it fails
/// with the first one's error.
fn check_map<P, M, T>(pool: &P, task: T, mix: &Mix, expect: &Expect, chunk: Range<u64>)
where
    P: Pool,
    T: IntoTask<M, Input = u64, Output = u64> + Copy,
{
    let (healthy, faulty): (Vec<u64>, Vec<u64>) =
        chunk.partition(|&item| mix.fault(item) == Fault::None);
    let values = pool.map(task, healthy.iter().copied());
    let expected: Vec<u64> = healthy.iter().map(|&item| value(item)).collect();
    assert_eq!(values.as_ref().ok(), Some(&expected), "map of healthy items {healthy:?}");
    if let Some(&first) = faulty.first() {
        match pool.map(task, faulty.iter().copied()) {
            Ok(values) => panic!("map of faulty items {faulty:?} returned {values:?}"),
            Err(e) => check_item(mix, expect, first, &Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_follow_the_mix() {
        let mix = Mix { segfault: 100, abort: 100, panic: 100, hang: 50 };
        let tally = mix.expected(0..1_000_000);
        for (count, per_10k) in
            [(tally.segfaults, 100), (tally.aborts, 100), (tally.panics, 100), (tally.hangs, 50)]
        {
            let expected = per_10k * 100;
            assert!(count.abs_diff(expected) < expected / 10, "{count} vs {expected}");
        }
        assert_eq!(tally.healthy + tally.failed(), 1_000_000);
    }

    #[test]
    fn values_and_panic_messages_name_their_item() {
        assert_eq!(item_of(value(42)), 42);
        assert_ne!(value(42), 42);
        assert_eq!(panicking_item(&panic_message(7)), Some(7));
        assert_eq!(panicking_item("something else"), None);
    }
}
