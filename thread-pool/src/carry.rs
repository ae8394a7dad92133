//! [`Carry`]: what a pool thread carries from one timed task to the next it takes right away.
//!
//! A task with a time limit reads the clock as it starts, for its deadline, and as it returns,
//! to fail it if it ran past that; in a burst of quick tasks the two reads are most of what the
//! limit costs (on a virtual machine a read can take longer than a no-op task). A thread
//! draining the queue takes one task after another, so here the read as a timed task returned
//! is the start of the next one the thread takes, if nothing of the user's ran in between:
//! one read per task. The next task's time then includes the pool's handling between the two
//! (settling the first, taking the next: well under a microsecond, a few if it wakes a thread
//! asleep in `join`, more if the thread is preempted there), as a process worker's measure of
//! a task includes its own handling of it.
//!
//! The thread forgets the read when it runs a task of another kind and when it finds the queue
//! empty, before it waits ([`Carry::forget`]).

use std::cell::Cell;
use std::time::Instant;

/// What a pool thread carries from one timed task to the next (see the module's notes).
#[derive(Default)]
pub(crate) struct Carry {
    /// When the last timed task returned, if nothing of the user's ran since.
    ended: Cell<Option<Instant>>,
}

impl Carry {
    /// The start of the next timed task: when the last one returned, if it left that, or
    /// now. The carry is empty after.
    pub(crate) fn start(&self) -> Instant {
        self.ended.take().unwrap_or_else(now)
    }

    /// Leaves `ended`, the clock read as a timed task returned, as the next one's start:
    /// nothing of the user's runs before the next task starts.
    pub(crate) fn leave(&self, ended: Instant) {
        self.ended.set(Some(ended));
    }

    /// Forgets the last end: another task runs, or the thread waits.
    #[inline]
    pub(crate) fn forget(&self) {
        self.ended.set(None);
    }
}

/// The clock as timed tasks read it: [`Instant::now`], counted per thread in tests.
#[inline]
pub(crate) fn now() -> Instant {
    #[cfg(test)]
    READS.set(READS.get() + 1);
    Instant::now()
}

#[cfg(test)]
thread_local! {
    /// How many times this thread read the clock through [`now`].
    pub(crate) static READS: Cell<usize> = const { Cell::new(0) };
}
