//! [`Tally`]: how many tasks a pool accepted and how many finished, for `shutdown` to wait
//! until every accepted task finished.
//!
//! One counter that submitters add to and the pool's threads take from would move its cache
//! line between cores twice per task. Here the submitters add to one counter and each pool
//! thread counts what it finished on a line of its own, so a burst of tasks from one thread
//! moves no counter's line; the waiter adds them up.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex, PoisonError};

/// A counter on a cache line of its own (two lines: x86-64 fetches them in pairs).
#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicUsize);

/// Tasks accepted and finished, and the hand-shake that wakes a waiter.
///
/// A waiter registers in `waiting` and adds the counts up while holding `idle_lock`; a pool
/// thread counts its task and then looks at `waiting` (both sequentially consistent), and if
/// someone waits, notifies under the same lock. So either the waiter's sum sees the task, or
/// the finisher sees the waiter and wakes it: no wake-up is lost, and a pool nobody waits on
/// never pays for one.
pub(crate) struct Tally {
    accepted: Padded,
    /// One per pool thread, by its index, and a last one for tasks finished elsewhere (refused
    /// on the submitter's thread).
    finished: Box<[Padded]>,
    /// Threads in [`Tally::wait_idle`].
    waiting: AtomicUsize,
    idle_lock: Mutex<()>,
    idle: Condvar,
}

impl Tally {
    /// A tally for a pool of `threads` threads.
    pub(crate) fn new(threads: usize) -> Self {
        Tally {
            accepted: Padded::default(),
            finished: (0..=threads).map(|_| Padded::default()).collect(),
            waiting: AtomicUsize::new(0),
            idle_lock: Mutex::new(()),
            idle: Condvar::new(),
        }
    }

    /// Counts one task accepted, before it is handed to the pool.
    #[inline]
    pub(crate) fn accept(&self) {
        self.accepted.0.fetch_add(1, SeqCst);
    }

    /// Counts one accepted task finished, by pool thread `thread` (`None` off the pool);
    /// wakes the waiters, if any.
    #[inline]
    pub(crate) fn finish(&self, thread: Option<usize>) {
        let last = self.finished.len() - 1;
        let slot = thread.filter(|&t| t < last).unwrap_or(last);
        self.finished[slot].0.fetch_add(1, SeqCst);
        if self.waiting.load(SeqCst) > 0 {
            let _guard = self.idle_lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.idle.notify_all();
        }
    }

    /// Whether every task accepted so far has finished. The finished counts are read first:
    /// a task counts as finished only after it was accepted, so equal sums mean that every
    /// task accepted by the time `accepted` was read had finished.
    fn idle(&self) -> bool {
        let finished: usize = self.finished.iter().map(|f| f.0.load(SeqCst)).sum();
        finished == self.accepted.0.load(SeqCst)
    }

    /// Waits until every task accepted so far has finished.
    pub(crate) fn wait_idle(&self) {
        let mut guard = self.idle_lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.waiting.fetch_add(1, SeqCst);
        while !self.idle() {
            guard = self.idle.wait(guard).unwrap_or_else(PoisonError::into_inner);
        }
        self.waiting.fetch_sub(1, SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_waiter_returns_once_every_accepted_task_finished_wherever_it_finished() {
        let tally = Arc::new(Tally::new(2));
        tally.wait_idle();
        for _ in 0..3 {
            tally.accept();
        }
        tally.finish(Some(0));
        tally.finish(None);
        assert!(!tally.idle(), "one of three still runs");
        let finisher = {
            let tally = tally.clone();
            std::thread::spawn(move || {
                // Finished only once the waiter registered: the wake-up is the waiter's way out.
                while tally.waiting.load(SeqCst) == 0 {
                    std::thread::yield_now();
                }
                tally.finish(Some(1));
            })
        };
        tally.wait_idle();
        assert!(tally.idle());
        finisher.join().unwrap();
        assert_eq!(tally.waiting.load(SeqCst), 0);
    }

    #[test]
    fn a_thread_index_past_the_pool_counts_as_finished_elsewhere() {
        let tally = Tally::new(1);
        tally.accept();
        tally.finish(Some(7));
        assert_eq!(tally.finished[1].0.load(SeqCst), 1);
        assert!(tally.idle());
    }
}
