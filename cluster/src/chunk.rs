//! How many items of a `map` travel in one unit, from what the agents measured.
//!
//! A unit costs a round trip through the server (a few hundred microseconds) however small
//! it is, so short items travel in chunks large enough that the round trip is a small part
//! of the chunk's time; but not so large that one agent gets all the work. Agents report how
//! long each unit takes on its agent, from what its items took in the agent's workers (not
//! the time it waited there behind other work: a unit sent to a busy agent would otherwise
//! take its items for slow ones). Each job of a caller (a `map`, `imap` or `starmap` call)
//! keeps a moving average of the time per item of its own units, and sizes each new chunk to
//! take about [`TARGET`], at most a fair share of what is left, unless that share is less
//! work than [`WORTH`], too little for a round trip of its own. Until one of its units was
//! measured a job sends no more items than it keeps chunks in flight, shared out a chunk to
//! each agent alive (`batch.rs`): a guess that takes slow items for cheap ones would send a
//! whole `map` at once, and a task another caller sends after it would wait behind all of it
//! (the agents take the tasks of every caller from one queue). What one job measured never
//! sizes the chunks of another: a `map` of slow items after (or beside) one of cheap items
//! would otherwise travel in a few large chunks, each run by one agent while the others
//! wait, and a `map` of cheap items after one of slow items in chunks of one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The time one chunk should take on its agent.
const TARGET: Duration = Duration::from_millis(10);
/// The least work worth splitting into chunks for a fair share: a chunk's round trip through
/// the server (a few hundred microseconds to a millisecond) costs more than spreading less
/// over more workers saves.
const WORTH: Duration = Duration::from_millis(1);
/// The most items in one chunk.
pub(crate) const MAX_CHUNK: usize = 1 << 16;

/// The measured time per item of one job's units.
#[derive(Debug, Default)]
pub(crate) struct ItemTime {
    ns: AtomicU64,
    /// Whether a unit was measured yet.
    measured: AtomicBool,
}

impl ItemTime {
    /// A job's time per item, not measured yet.
    pub(crate) fn new() -> Self {
        ItemTime::default()
    }

    /// Records a unit of `items` items that took `ns` on its agent; 0 says that nothing was
    /// measured (the unit failed as a whole, or every item failed), which changes nothing.
    /// The first unit measured sets the time per item; each later one moves it halfway.
    pub(crate) fn record(&self, items: usize, ns: u64) {
        if items == 0 || ns == 0 {
            return;
        }
        let per_item = (ns / items as u64).max(1);
        let new = if self.measured() {
            let old = self.ns.load(Ordering::Relaxed);
            (old / 2 + per_item / 2).max(1)
        } else {
            per_item
        };
        self.ns.store(new, Ordering::Relaxed);
        // Released after the time: whoever sees it measured sees the time too.
        self.measured.store(true, Ordering::Release);
    }

    /// Whether a unit was measured yet.
    pub(crate) fn measured(&self) -> bool {
        self.measured.load(Ordering::Acquire)
    }

    /// The items of the next chunk: about [`TARGET`] of work, at most `remaining` split over
    /// two chunks per worker (but never less than [`WORTH`] of work), at most `max`; at least
    /// one. One until a unit was measured (a batch sizes its first chunks itself).
    pub(crate) fn chunk(&self, remaining: Option<usize>, workers: usize, max: usize) -> usize {
        if !self.measured() {
            return 1;
        }
        let per_item = self.ns.load(Ordering::Relaxed).max(1);
        let items_in = |work: Duration| {
            usize::try_from(work.as_nanos() as u64 / per_item).unwrap_or(MAX_CHUNK)
        };
        let by_time = items_in(TARGET);
        let fair = remaining
            .map_or(usize::MAX, |r| r.div_ceil(2 * workers.max(1)).max(items_in(WORTH).min(r)));
        by_time.min(fair).min(max).clamp(1, MAX_CHUNK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_grow_for_cheap_items_and_shrink_for_dear_ones() {
        let time = ItemTime::new();
        assert_eq!(time.chunk(None, 2, usize::MAX), 1, "one item until a unit was measured");
        time.record(0, 5);
        assert_eq!(time.chunk(None, 2, usize::MAX), 1, "an empty unit measures nothing");
        time.record(10, 0);
        assert_eq!(time.chunk(None, 2, usize::MAX), 1, "a failed unit measures nothing");
        for _ in 0..20 {
            time.record(1000, 100_000); // 100 ns per item
        }
        assert_eq!(time.chunk(None, 2, usize::MAX), MAX_CHUNK);
        assert_eq!(time.chunk(Some(1000), 2, usize::MAX), 1000, "100 us of work: one chunk");
        assert_eq!(time.chunk(Some(100_000), 2, usize::MAX), 25_000, "a fair share");
        assert_eq!(time.chunk(None, 2, 77), 77);
        for _ in 0..40 {
            time.record(1, 50_000_000); // 50 ms per item
        }
        assert_eq!(time.chunk(None, 2, usize::MAX), 1);
        time.record(0, 5);
        assert_eq!(time.chunk(Some(0), 2, usize::MAX), 1);
    }

    #[test]
    fn the_first_unit_measured_sets_the_time_per_item() {
        let time = ItemTime::new();
        time.record(4, 4_000_000); // 1 ms per item
        assert_eq!(time.chunk(None, 2, usize::MAX), 10);
        let cheap = ItemTime::new();
        cheap.record(1, 1_000); // 1 us per item
        assert_eq!(cheap.chunk(None, 2, usize::MAX), 10_000);
    }

    /// A `map` of 100 items of 10 us on two agents of two workers, 18 of them measured: the
    /// 82 left go in one chunk, not in 8 chunks of 11 items (110 us of work each), each of
    /// which would cost a round trip through the server (about a millisecond).
    #[test]
    fn what_is_not_worth_a_round_trip_is_not_split_for_a_fair_share() {
        let cheap = ItemTime::new();
        cheap.record(1, 10_000);
        assert_eq!(cheap.chunk(Some(82), 4, usize::MAX), 82);
        assert_eq!(cheap.chunk(Some(1000), 4, usize::MAX), 125, "a fair share of 1.25 ms");
        assert_eq!(cheap.chunk(Some(82), 4, 40), 40);
        let dear = ItemTime::new();
        dear.record(1, 100_000);
        assert_eq!(dear.chunk(Some(82), 4, usize::MAX), 11, "a fair share of 1.1 ms");
        let slow = ItemTime::new();
        slow.record(1, 1_000_000);
        assert_eq!(slow.chunk(Some(82), 4, usize::MAX), 10);
    }
}
