//! Single tasks a caller leaves for whoever holds the pool's lock, so that a burst of
//! `submit`s never sleeps on the lock.
//!
//! A supervisor that sends a worker a frame of a few hundred queued tasks holds the pool's
//! lock for tens of microseconds; a caller submitting meanwhile used to sleep on it, and on a
//! virtual machine waking a sleeping thread costs as much again. Measured on a kept pool of 2
//! (1,000 no-ops submitted after 50 ms idle), the caller slept on the lock up to 47 times per
//! burst, about 0.2 ms in all (the median of 15 bursts of 0.56–1.2 ms).
//!
//! Now a caller that finds the lock taken ([`crate::scheduler::Shared::submit`]) leaves the
//! task here, in a list behind a lock of its own that is only ever held for a push or a
//! swap, and goes on. Whoever holds the pool's lock takes the list in when it releases it
//! ([`crate::scheduler::Locked`]), as if the caller had waited: the tasks join the queue in
//! the order they were left, and are sent at once if a worker is idle.
//!
//! Nothing left here is forgotten. The caller publishes the list's length, then (after a
//! `SeqCst` fence) tries the pool's lock once more: if it is free, the caller takes the
//! list in itself. If it is taken, its holder releases it later, then (after a `SeqCst`
//! fence) reads the length: of the caller's read of the lock and the holder's read of the
//! length, the two fences make sure at least one sees the other's write, so either the
//! caller finds the lock free or the holder finds the list non-empty. A holder that finds
//! the lock taken again by then leaves the list to that holder, by the same argument.
//!
//! The pool's condition variable releases the lock without a guard's release: a waiter takes
//! the list in before it waits (see [`crate::scheduler::Shared::wait`]); a task left in the
//! instant between that look and the wait is taken in by the next release of the lock, by
//! whoever makes it (a supervisor, as the work the waiter waits for ends, or the waiter when
//! it wakes). Closing the pool takes the list in first (`lock_to_close`): a task whose
//! `submit` returned before `shutdown` was called runs.

use std::sync::atomic::{AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, PoisonError};

use crate::run::Run;

/// The list of tasks left for the pool's lock holder.
#[derive(Default)]
pub(crate) struct Inbox {
    runs: Mutex<Vec<Arc<Run>>>,
    /// How many runs the list holds: written with the list's lock held, read without.
    len: AtomicUsize,
}

impl Inbox {
    /// Leaves `run` in the list. The caller then tries the pool's lock once more (see the
    /// module's doc): the fence here orders this write before that attempt.
    pub(crate) fn leave(&self, run: Arc<Run>) {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        runs.push(run);
        self.len.store(runs.len(), Ordering::SeqCst);
        drop(runs);
        fence(Ordering::SeqCst);
    }

    /// Whether a holder of the pool's lock, which it just released, must look at the list.
    /// The fence orders the release before this read (see the module's doc).
    pub(crate) fn has_runs_after_release(&self) -> bool {
        fence(Ordering::SeqCst);
        self.len.load(Ordering::SeqCst) > 0
    }

    /// Whether the list holds anything, as a holder of the pool's lock sees it.
    #[inline]
    pub(crate) fn has_runs(&self) -> bool {
        self.len.load(Ordering::Relaxed) > 0
    }

    /// How many runs the list holds, each a single task.
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Takes every run in the list, in the order they were left.
    pub(crate) fn take(&self) -> Vec<Arc<Run>> {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        self.len.store(0, Ordering::SeqCst);
        std::mem::take(&mut *runs)
    }
}
