//! A worker's status page: memory it shares with its parent, so the parent knows which item
//! runs (even when the worker dies without a word) and a cancelled item is never started.
//!
//! The worker stores, before each item, that it started it, and after, that it finished it:
//! a plain store each (a sequentially consistent one for items that can be cancelled). The
//! parent reads the two when the worker ends, to blame the item that was running and only
//! it. To cancel an item sent but not started, the parent writes its sequence number into a
//! small ring and bumps a counter; a worker about to start a cancellable item checks the
//! counter, and skips the item if it is in the ring. Both sides write before they read
//! (sequentially consistent), so either the worker sees the cancellation or the parent sees
//! that the item started, and then kills the worker.
//!
//! To take back the batches sent to a worker stuck on a long item, the parent raises a
//! watermark: every batch whose first item is below it and has not started is skipped. The
//! worker stores that a batch starts, then reads the watermark; the parent stores the
//! watermark, then reads what started. So either the parent sees the batch started (and
//! leaves it with the worker), or the worker sees the watermark and skips the batch, which the
//! parent then sends elsewhere; a batch the worker skips that the parent saw start (both
//! saw each other) is answered as recalled, and sent elsewhere then. In a frame of single
//! tasks (each of its own caller), every task counts as a batch of its own: the worker makes
//! the same check before each, so a task stuck waiting holds none of those behind it.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

use crate::scheduler::Progress;
use crate::sys::{SharedMemory, SharedWords};

/// Word: one more than the sequence number of the last item started.
const STARTED: usize = 0;
/// Word: one more than the sequence number of the last item finished.
const FINISHED: usize = 1;
/// Word: how many cancellations were written into the ring.
const CANCELS: usize = 2;
/// Word: 1 once the worker, at the end of its input, has begun to exit.
const LEAVING: usize = 3;
/// Word: batches whose first item's sequence number is below this are recalled, unless
/// started.
const RECALLED: usize = 4;
/// Word: 1 once the parent saw the worker's result pipe end while it ran (a task closed it):
/// the worker leaves after the item it runs, its results written to its ring.
const UNHEARD: usize = 5;
/// The first word of the ring of cancelled items (each one more than its sequence number).
const RING: usize = 8;
/// Cancellations the ring holds: more cancellations of sent items than this before the
/// worker reaches them are noticed late (the parent then kills the worker when the item
/// runs).
const RING_LEN: usize = 64;
/// Words in a page.
pub(crate) const WORDS: usize = RING + RING_LEN;

/// A worker's status page, from either side.
#[derive(Debug)]
pub(crate) struct StatusPage {
    words: SharedWords,
    /// Worker side: cancellations read from the ring so far.
    seen: u64,
    /// Worker side: cancelled items not reached yet.
    cancelled: Vec<u64>,
}

impl StatusPage {
    /// The page at byte `offset` of `memory` (8-aligned, [`WORDS`] words long).
    pub(crate) fn new(memory: Arc<SharedMemory>, offset: usize) -> Self {
        StatusPage {
            words: SharedWords::new(memory, offset, WORDS),
            seen: 0,
            cancelled: Vec::new(),
        }
    }

    #[inline]
    fn word(&self, i: usize) -> &AtomicU64 {
        &self.words.get()[i]
    }

    /// Worker side: records that item `seq` starts. Returns `false` if it was cancelled
    /// (checked only if `cancellable`): the worker skips it.
    #[inline]
    pub(crate) fn start(&mut self, seq: u64, cancellable: bool) -> bool {
        if !cancellable {
            self.word(STARTED).store(seq + 1, Release);
            return true;
        }
        self.word(STARTED).store(seq + 1, SeqCst);
        let cancels = self.word(CANCELS).load(SeqCst);
        while self.seen < cancels {
            let slot = usize::try_from(self.seen).unwrap_or(0) % RING_LEN;
            let tag = self.word(RING + slot).load(Acquire);
            if tag > seq {
                self.cancelled.push(tag - 1);
            }
            self.seen += 1;
        }
        if self.cancelled.is_empty() {
            return true;
        }
        self.cancelled.retain(|&c| c >= seq);
        let skip = self.cancelled.contains(&seq);
        if skip {
            self.finish(seq);
        }
        !skip
    }

    /// Worker side: records that the batch whose first item is `seq` starts (or the task
    /// `seq` of a frame of single tasks). Returns `false` if it was recalled: the worker
    /// skips all of it.
    #[inline]
    pub(crate) fn start_batch(&self, seq: u64) -> bool {
        self.word(STARTED).store(seq + 1, SeqCst);
        self.word(RECALLED).load(SeqCst) <= seq
    }

    /// Worker side: records that item `seq` finished.
    #[inline]
    pub(crate) fn finish(&self, seq: u64) {
        self.word(FINISHED).store(seq + 1, Release);
    }

    /// Worker side: records that it has begun to exit, having nothing more to do.
    pub(crate) fn leave(&self) {
        self.word(LEAVING).store(1, Release);
    }

    /// Parent side: whether the worker has begun to exit (see [`StatusPage::leave`]).
    pub(crate) fn leaving(&self) -> bool {
        self.word(LEAVING).load(Acquire) != 0
    }

    /// Parent side: tells the worker that its result pipe ended (a task closed it): it leaves
    /// after the item it runs, without writing to that descriptor again.
    pub(crate) fn ask_to_leave(&self) {
        self.word(UNHEARD).store(1, SeqCst);
    }

    /// Worker side: whether the parent asked it to leave (see [`StatusPage::ask_to_leave`]).
    #[inline]
    pub(crate) fn asked_to_leave(&self) -> bool {
        self.word(UNHEARD).load(Relaxed) != 0
    }

    /// Parent side: what the worker started and finished so far.
    pub(crate) fn progress(&self) -> Progress {
        let finished = self.word(FINISHED).load(SeqCst);
        let started = self.word(STARTED).load(SeqCst);
        Progress { started: started.max(finished), finished }
    }

    /// Parent side: asks the worker to skip item `seq`. Returns what it had started by then:
    /// if that includes `seq`, the worker may run it.
    pub(crate) fn cancel(&self, seq: u64) -> Progress {
        let n = self.word(CANCELS).load(Relaxed);
        let slot = usize::try_from(n).unwrap_or(0) % RING_LEN;
        self.word(RING + slot).store(seq + 1, Relaxed);
        self.word(CANCELS).store(n + 1, SeqCst);
        self.progress()
    }

    /// Parent side: recalls the batches that start before item `before` and have not
    /// started. Returns what the worker had started by then: the batches that start at or
    /// after its `started` are skipped.
    pub(crate) fn recall(&self, before: u64) -> Progress {
        self.word(RECALLED).fetch_max(before, SeqCst);
        self.progress()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (StatusPage, StatusPage) {
        let (memory, _fd) = SharedMemory::create(c"taskpool-test", WORDS * 8).unwrap();
        let memory = Arc::new(memory);
        (StatusPage::new(memory.clone(), 0), StatusPage::new(memory, 0))
    }

    #[test]
    fn the_parent_sees_what_runs_and_a_cancelled_item_is_skipped() {
        let (mut worker, parent) = pair();
        assert_eq!(parent.progress().running(), None);
        assert!(worker.start(0, true));
        assert_eq!(parent.progress().running(), Some(0));
        worker.finish(0);
        assert_eq!(parent.progress(), Progress { started: 1, finished: 1 });
        // Item 2 is cancelled before the worker gets to it; item 1 is not.
        assert_eq!(parent.cancel(2).running(), None);
        assert!(worker.start(1, true));
        worker.finish(1);
        assert!(!worker.start(2, true), "a cancelled item never starts");
        assert_eq!(parent.progress().running(), None);
        assert!(worker.start(3, false));
        assert_eq!(parent.progress().running(), Some(3));
        assert!(!parent.leaving());
        worker.leave();
        assert!(parent.leaving());
    }

    #[test]
    fn a_recalled_batch_is_skipped_unless_it_started() {
        let (mut worker, parent) = pair();
        assert!(worker.start_batch(0));
        assert!(worker.start(0, false));
        // Batches from 1 and from 3 were sent behind item 0, which runs.
        let progress = parent.recall(5);
        assert_eq!(progress.running(), Some(0));
        worker.finish(0);
        assert!(!worker.start_batch(1), "a recalled batch never starts");
        assert!(!worker.start_batch(3), "a recalled batch never starts");
        // A batch sent after the recall runs.
        assert!(worker.start_batch(5));
        // The watermark never goes down.
        assert_eq!(parent.recall(2).started, 6);
        assert!(worker.start_batch(6));
    }
}
