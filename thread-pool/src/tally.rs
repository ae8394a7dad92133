//! [`Tally`]: how many tasks a pool accepted and how many finished, for `shutdown` to wait
//! until every accepted task finished.
//!
//! One counter that submitters add to and the pool's threads take from would move its cache
//! line between cores twice per task. Here the submitters add to one counter and each pool
//! thread counts what it finished on a line of its own, so a burst of tasks from one thread
//! moves no counter's line; the waiter adds them up.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

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
    /// Threads in [`Tally::wait_idle`] or [`Tally::wait_idle_inside`].
    waiting: AtomicUsize,
    /// The tasks that wait in [`Tally::wait_idle_inside`], with the tasks they run inside:
    /// unfinished, and not waited for there.
    parked: AtomicUsize,
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
            parked: AtomicUsize::new(0),
            idle_lock: Mutex::new(()),
            idle: Condvar::new(),
        }
    }

    /// Counts one task accepted, before it is handed to the pool.
    #[inline]
    pub(crate) fn accept(&self) {
        self.accept_n(1);
    }

    /// Counts `n` tasks accepted at once, before they are handed to the pool.
    #[inline]
    pub(crate) fn accept_n(&self, n: usize) {
        self.accepted.0.fetch_add(n, SeqCst);
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

    /// Whether every task accepted so far has finished.
    fn idle(&self) -> bool {
        self.unfinished() == 0
    }

    /// How many tasks accepted so far have not finished. The finished counts are read first:
    /// a task counts as finished only after it was accepted, so the difference counts every
    /// task accepted by the time `accepted` was read that had not finished.
    pub(crate) fn unfinished(&self) -> usize {
        let finished: usize = self.finished.iter().map(|f| f.0.load(SeqCst)).sum();
        self.accepted.0.load(SeqCst).saturating_sub(finished)
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

    /// Counts `tasks` more among those that called `shutdown` from inside the pool and have
    /// not finished: [`Tally::wait_idle_inside`] does not wait for them, nor they for each
    /// other. Wakes those waiting there.
    pub(crate) fn park(&self, tasks: usize) {
        self.parked.fetch_add(tasks, SeqCst);
        let _guard = self.idle_lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.idle.notify_all();
    }

    /// One task [`Tally::park`] counted finished (after [`Tally::finish`] counted it).
    pub(crate) fn unpark(&self) {
        self.parked.fetch_sub(1, SeqCst);
    }

    /// [`Tally::wait_idle`] for a task of the pool, [`Tally::park`]ed with the tasks it runs
    /// inside: waits until every accepted task has finished but the parked ones, which
    /// cannot finish before their `shutdown` returns. `help` runs the queued tasks on this
    /// thread meanwhile, for every thread of the pool may be waiting here; it is called again
    /// every [`HELP_EVERY`] while tasks remain, for a task accepted before the pool closed may
    /// reach the queue only after a look.
    pub(crate) fn wait_idle_inside(&self, mut help: impl FnMut()) {
        loop {
            help();
            let guard = self.idle_lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.waiting.fetch_add(1, SeqCst);
            let done = self.unfinished() <= self.parked.load(SeqCst);
            if !done {
                drop(self.idle.wait_timeout(guard, HELP_EVERY));
            }
            self.waiting.fetch_sub(1, SeqCst);
            if done {
                return;
            }
        }
    }
}

/// How often a task waiting in [`Tally::wait_idle_inside`] looks for queued tasks to run,
/// short of a wake-up.
const HELP_EVERY: Duration = Duration::from_millis(10);

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
    fn tasks_waiting_inside_wait_for_the_others_and_not_for_each_other() {
        let tally = Arc::new(Tally::new(2));
        // Two tasks that will wait inside, and one other.
        for _ in 0..3 {
            tally.accept();
        }
        let waiters: Vec<_> = (0..2)
            .map(|i| {
                let tally = tally.clone();
                std::thread::spawn(move || {
                    tally.park(1);
                    tally.wait_idle_inside(|| {});
                    (i, tally)
                })
            })
            .collect();
        // Both parked and registered as waiting: neither returns while the other task runs.
        while tally.parked.load(SeqCst) < 2 || tally.waiting.load(SeqCst) < 2 {
            std::thread::yield_now();
        }
        assert!(waiters.iter().all(|w| !w.is_finished()), "the third task still runs");
        tally.finish(None);
        // Both return, neither waiting for the other's task, which finishes after.
        for waiter in waiters {
            let (i, tally) = waiter.join().unwrap();
            tally.finish(Some(i));
            tally.unpark();
        }
        assert_eq!(tally.parked.load(SeqCst), 0);
        assert!(tally.idle());
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
