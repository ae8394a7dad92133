//! The batching policy: how many items one batch frame carries.
//!
//! Supervisors feed [`Pace`] the time workers measured per item; a batch then holds about
//! [`BATCH_TARGET_NS`] of work, one item at first (until an item was measured), up to
//! [`MAX_BATCH`]. A user's chunk size overrides the target, and every batch is cut so that
//! its frame stays within the frame limit.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::run::{Batching, Run};

/// How long a batch of items should take in a worker: long enough to amortize a round trip,
/// short enough to balance load.
pub(crate) const BATCH_TARGET_NS: u64 = 200_000;
/// The most items sent in one batch frame.
pub(crate) const MAX_BATCH: usize = 4096;
/// Assumed time per item before any was measured: slow, so the first items go one by one.
const INITIAL_ITEM_NS: u64 = 1_000_000;
/// Bytes a batch frame spends per input besides the input itself (its length).
const PER_INPUT: usize = 4;

/// A moving average of the time a worker spends per item.
#[derive(Debug)]
pub(crate) struct Pace {
    item_ns: AtomicU64,
}

impl Default for Pace {
    fn default() -> Self {
        Pace { item_ns: AtomicU64::new(INITIAL_ITEM_NS) }
    }
}

impl Pace {
    /// Records how long a worker spent on one item.
    pub(crate) fn record(&self, ns: u64) {
        let old = self.item_ns.load(Ordering::Relaxed);
        let new = old - old / 8 + ns / 8;
        self.item_ns.store(new.max(1), Ordering::Relaxed);
    }

    /// How many items make one batch, from the measured time per item.
    pub(crate) fn batch_target(&self) -> usize {
        let per_item = self.item_ns.load(Ordering::Relaxed).max(1);
        usize::try_from(BATCH_TARGET_NS / per_item).unwrap_or(MAX_BATCH).clamp(1, MAX_BATCH)
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
    let mut bytes = run.job.state.len();
    let mut count = 0;
    while count < take {
        let size = run.input(start + count).len() + PER_INPUT;
        if count > 0 && bytes + size > limit {
            break;
        }
        bytes += size;
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::run::RunBuilder;
    use crate::scheduler::tests::NullSink;
    use crate::ship::Shipped;

    fn run(inputs: &[&[u8]], batching: Batching) -> Run {
        let mut b = RunBuilder::new(Arc::new(Shipped { entry: 0, state: Vec::new() }));
        for input in inputs {
            b.push_encoded(input);
        }
        b.finish(Box::new(NullSink), None, batching)
    }

    #[test]
    fn the_first_items_go_one_by_one_then_batches_grow_with_speed() {
        let pace = Pace::default();
        assert_eq!(pace.batch_target(), 1);
        for _ in 0..200 {
            pace.record(1_000);
        }
        assert!((190..=200).contains(&pace.batch_target()), "{}", pace.batch_target());
        for _ in 0..200 {
            pace.record(1);
        }
        assert_eq!(pace.batch_target(), MAX_BATCH);
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
