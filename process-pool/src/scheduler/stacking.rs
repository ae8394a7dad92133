//! Stacking: on a pool of many more workers than CPUs, tiny work goes to as many workers as
//! there are CPUs, and waits behind what they run rather than wake another worker.
//!
//! A pool sized past the CPUs for tasks that wait hands each task of a burst of tiny ones to
//! another idle worker: each costs a wake-up of a worker process and of its supervisor, and
//! with more of them awake than CPUs, each spins and takes turns with the others (on 2 CPUs,
//! bursts of 1,000 no-op tasks went at 1.7–1.9 M tasks/s on 2 workers, 0.15–0.19 M/s on 64).
//!
//! So, from [`WORKERS_PER_CPU`] workers per CPU, tiny work at the front of the queue (items
//! measured under half a batch, see `batching.rs`, of a function none of whose last calls ran
//! [`TINY_OVERDUE`] or longer: see [`is_tiny`]) is *held back* from idle workers while as
//! many workers as there are CPUs *run tiny work*: their head item is tiny and started less
//! than [`TINY_OVERDUE`] ago, they take work, and they have a status page (what they hold can
//! be taken back). Those take the held-back work behind what they run (*stacking*), each task
//! in a frame of its own.
//!
//! A task that waits for another never waits behind it for ever, by construction:
//! - Only work never taken back is held back or stacked ([`crowdable`]): once a task was taken
//!   back from behind a head, it goes to an idle worker as on any pool, and is never stacked
//!   again. So a task is stacked at most once.
//! - A tiny head with work stacked behind it is overdue after [`TINY_OVERDUE`]
//!   (`overdue_for`), the moment its worker stops counting as one that runs tiny work, also
//!   if a call of its function that ran long elsewhere has raised its estimate since. From
//!   the moment work goes behind the head, the worker's supervisor looks again by then
//!   (`Shared::fill` wakes it, see `Slot::watch_at`), and each time after, while work stays
//!   there; once the head is overdue and a worker is idle, it takes the work back and sends
//!   it to the idle workers (`Shared::shed`).
//! - Whenever the pool's lock is released with work held back and a worker idle, every
//!   worker that runs tiny work holds work behind its head: wherever work may come to be held
//!   back (a task queued, a worker refilled after an answer, work sent to idle workers), those
//!   with room take it, as the count of the moment says (`Shared::stack`, and
//!   `Shared::pump_all`'s passes until nothing moves). So each is watched as above, and the
//!   first to stop counting, by [`TINY_OVERDUE`] after its head started, sends the queue on
//!   if the head did not end (then its worker was refilled, from the queue's front).
//!
//! Without a status page (pipe transport), nothing is stacked nor held back.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{Shared, Slot, State};
use crate::batching::LONG_ITEM_NS;
use crate::run::{Run, Slice};
use crate::waiting::Waiting;

/// How long a tiny head item runs, on an oversubscribed pool, before its worker no longer
/// counts as one that keeps a CPU busy with tiny work, and the head is overdue (ten times the
/// longest tiny item's estimate): it waits for something (a lock, a pipe, another task), or
/// many threads share the CPUs; either way, what waits behind it may run elsewhere.
pub(super) const TINY_OVERDUE: Duration = Duration::from_millis(1);

/// From how many workers per CPU a pool stacks tiny work. Below it, frames of one task cost
/// more than the frames of several tasks that a pool sends once all its workers are busy:
/// on a 2-CPU machine, with a first form of this rule, bursts of 1,000 no-op tasks went 0.70
/// times as fast stacked on 4 workers, 0.75–0.87 on 8, as fast on 16, and 1.9 times on 32.
pub(super) const WORKERS_PER_CPU: usize = 8;

/// Whether the items of `run` were measured tiny: several make one batch, and none of the
/// recent ones ran [`TINY_OVERDUE`] or longer (`Pace::varies`). Behind a head of a function
/// whose calls vary so, stacked work would wait for its next long call, then be taken back
/// and sent again, one task per idle worker: bursts of a function of tiny calls and a long
/// one in 50 went 1.5 times slower on 32 workers than sent to idle workers at once.
pub(super) fn is_tiny(run: &Run) -> bool {
    run.job.pace.batch_target() > 1 && !run.job.pace.varies()
}

// A long item, for `Pace::varies`, is one that work stacked behind it would not wait out.
const _: () = assert!(TINY_OVERDUE.as_nanos() == LONG_ITEM_NS as u128);

/// Whether `slice`, at the front of the queue, may be held back from idle workers and
/// stacked: its items are tiny, and no worker held them before (taken back, they go to an
/// idle worker).
pub(super) fn crowdable(slice: &Slice) -> bool {
    !slice.requeued && is_tiny(&slice.run)
}

/// The workers that run tiny work on an oversubscribed pool, counted once at `now` and kept
/// up to date as work is sent.
pub(super) struct Crowd {
    now: Instant,
    cpus: usize,
    quota: u64,
    /// Workers that run tiny work.
    running: usize,
}

impl Crowd {
    /// Counts the workers that run tiny work now; `None` if the pool has fewer than
    /// [`WORKERS_PER_CPU`] workers per CPU, or if the front of the queue is not
    /// [crowdable](crowdable): nothing is held back then (work that comes to the front while
    /// it is sent goes to idle workers, as on any pool).
    pub(super) fn count(shared: &Shared, state: &State) -> Option<Crowd> {
        if !state.queue.front().is_some_and(crowdable) || !shared.oversubscribed(state) {
            return None;
        }
        let now = Instant::now();
        let mut crowd = Crowd { now, cpus: shared.cpus, quota: shared.quota(), running: 0 };
        crowd.running = state.slots.iter().filter(|slot| crowd.runs_tiny(slot)).count();
        Some(crowd)
    }

    /// Whether the worker of `slot` runs tiny work: its head item is tiny and started less
    /// than [`TINY_OVERDUE`] ago, it takes work, and what it holds can be taken back (it has
    /// a status page).
    pub(super) fn runs_tiny(&self, slot: &Slot) -> bool {
        let tiny = slot.sent.front().is_some_and(|head| !head.recalled && is_tiny(&head.run));
        let Some(conn) = slot.conn.as_ref().filter(|c| tiny && c.takes_work(self.quota)) else {
            return false;
        };
        self.fresh(&slot.sent, slot.head_since) && conn.process.progress().is_some()
    }

    /// Whether a worker that holds `sent`, whose head item started at `since`, runs a tiny
    /// item that started less than [`TINY_OVERDUE`] before the count.
    pub(super) fn fresh(&self, sent: &VecDeque<Slice>, since: Option<Instant>) -> bool {
        sent.front().is_some_and(|head| !head.recalled && is_tiny(&head.run))
            && since.is_some_and(|since| self.now.saturating_duration_since(since) < TINY_OVERDUE)
    }

    /// Whether the front of `queue` is held back from idle workers: it is
    /// [crowdable](crowdable) and as many workers as there are CPUs run tiny work.
    pub(super) fn holds_back(&self, queue: &Waiting) -> bool {
        self.running >= self.cpus && queue.front().is_some_and(crowdable)
    }

    /// Counts a worker that was idle and was just sent `sent`, its head item started at
    /// `since`, if it now runs tiny work; `stackable` says whether it takes work and has a
    /// status page (asked only then).
    pub(super) fn started(
        &mut self,
        sent: &VecDeque<Slice>,
        since: Option<Instant>,
        stackable: impl FnOnce() -> bool,
    ) {
        if self.fresh(sent, since) && stackable() {
            self.running += 1;
        }
    }
}
