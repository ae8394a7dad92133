//! Lazy iteration over a pool with a bounded window of tasks in flight; dropping an iterator
//! cancels the tasks it still holds. The input is pulled on the consumer's thread, or fed by
//! a thread of its own (`feed.rs`): then a result that is ready is yielded while the input
//! waits for its next item. Every wait may end at a deadline ([`NextTimeout`]), which takes
//! nothing from the iterator.

use std::collections::VecDeque;
use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::error::TaskError;
use crate::feed::{Input, Pull};
use crate::handle::TaskHandle;
use crate::pace::Pace;
use crate::pool::Pool;
use crate::task::Job;

/// An `imap` iterator whose wait for its next outcome can be bounded, like Python's
/// `IMapIterator.next(timeout)`.
///
/// The iterators of [`Pool::imap`], [`Pool::imap_unordered`], [`Pool::imap_stream`] and
/// [`Pool::imap_unordered_stream`] implement it, on every backend. Bring it into scope
/// (`use taskpool_process::NextTimeout;`, or the thread or cluster crate's) to call it.
///
/// # Examples
///
/// Waiting in steps, doing something else between them, without giving up the item:
///
/// ```
/// use std::time::Duration;
///
/// use taskpool_core::{NextTimeout, Pool, TaskError, Timeout};
///
/// fn slow_square(x: u64) -> u64 {
///     std::thread::sleep(Duration::from_millis(50));
///     x * x
/// }
/// # let pool = taskpool_thread::ThreadPool::new(2)?;
///
/// let mut squares = pool.imap(slow_square, 1..=3);
/// let mut got = Vec::new();
/// loop {
///     match squares.next_timeout(Duration::from_millis(10)) {
///         Ok(Some(square)) => got.push(square?),
///         Ok(None) => break, // the input's end
///         Err(Timeout) => println!("still waiting for item {}", got.len() + 1),
///     }
/// }
/// assert_eq!(got, [1, 4, 9]); // in input order, none lost to a timeout
/// # Ok::<(), TaskError>(())
/// ```
///
/// [`Pool::imap`]: crate::Pool::imap
/// [`Pool::imap_unordered`]: crate::Pool::imap_unordered
/// [`Pool::imap_stream`]: crate::Pool::imap_stream
/// [`Pool::imap_unordered_stream`]: crate::Pool::imap_unordered_stream
pub trait NextTimeout: Iterator {
    /// Waits at most `limit` for the next item, which [`Iterator::next`] would wait for as
    /// long as it takes.
    ///
    /// `Ok(Some(outcome))` and `Ok(None)` are what `next` gives: the next task's outcome,
    /// or the end of the input. `Err(Timeout)` says that no outcome came within `limit`, and
    /// takes nothing: the outcome waited for stays in the iterator, and a later
    /// `next_timeout` or `next` yields it (in input order for `imap`), while its task runs
    /// on. Dropping the iterator after a timeout cancels its items as any drop does.
    ///
    /// `Duration::ZERO` polls: an outcome that is ready is taken, and none is waited for. A
    /// limit too long to be a point in time, such as `Duration::MAX`, waits as `next` does.
    ///
    /// The limit bounds the wait for outcomes, and, for `imap_stream` and
    /// `imap_unordered_stream`, for the input's items. `imap` and `imap_unordered` pull
    /// their input on the caller's thread, in this call as in `next`: an input whose `next`
    /// waits (a channel, a socket) is not cut short, so give such input to `imap_stream`.
    ///
    /// A timeout is an `Err` of its own, [`Timeout`], rather than a
    /// [`TaskError::TimedOut`]: that one is an item's outcome (its task ran past its time
    /// limit), yielded once and taken, where this one is no item's and takes nothing.
    ///
    /// # Errors
    ///
    /// [`Timeout`] if no outcome came within `limit`.
    fn next_timeout(&mut self, limit: Duration) -> Result<Option<Self::Item>, Timeout>;
}

impl<I: NextTimeout + ?Sized> NextTimeout for &mut I {
    fn next_timeout(&mut self, limit: Duration) -> Result<Option<Self::Item>, Timeout> {
        (**self).next_timeout(limit)
    }
}

impl<I: NextTimeout + ?Sized> NextTimeout for Box<I> {
    fn next_timeout(&mut self, limit: Duration) -> Result<Option<Self::Item>, Timeout> {
        (**self).next_timeout(limit)
    }
}

/// No outcome came within the limit of [`NextTimeout::next_timeout`]; the iterator keeps
/// the one it waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timeout;

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no outcome came within the time limit; the iterator keeps it")
    }
}

impl Error for Timeout {}

/// The point in time `limit` from now, or `None` (no deadline) if it is too far to be one:
/// what a backend's [`NextTimeout::next_timeout`] waits until.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// use taskpool_core::backend::deadline_after;
///
/// assert!(deadline_after(Duration::from_millis(10)).is_some());
/// assert_eq!(deadline_after(Duration::MAX), None); // waits as `next` does
/// ```
pub fn deadline_after(limit: Duration) -> Option<Instant> {
    Instant::now().checked_add(limit)
}

/// Receives from `rx`, waiting until `deadline` (none: for ever): a backend's `imap` waiting
/// for its next group of outcomes. `Ok(None)` if the channel disconnected; `Err(Timeout)`
/// past the deadline, with nothing received.
///
/// # Errors
///
/// [`Timeout`] once `deadline` passed with nothing to receive.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
///
/// use taskpool_core::Timeout;
/// use taskpool_core::backend::recv_until;
///
/// let (tx, rx) = crossbeam_channel::unbounded();
/// assert_eq!(recv_until(&rx, Some(Instant::now())), Err(Timeout));
/// tx.send(7).unwrap();
/// assert_eq!(recv_until(&rx, None), Ok(Some(7)));
/// drop(tx);
/// assert_eq!(recv_until(&rx, Some(Instant::now() + Duration::from_secs(1))), Ok(None));
/// ```
pub fn recv_until<T>(rx: &Receiver<T>, deadline: Option<Instant>) -> Result<Option<T>, Timeout> {
    match deadline {
        None => Ok(rx.recv().ok()),
        Some(deadline) => match rx.recv_deadline(deadline) {
            Ok(value) => Ok(Some(value)),
            Err(RecvTimeoutError::Timeout) => Err(Timeout),
            Err(RecvTimeoutError::Disconnected) => Ok(None),
        },
    }
}

/// Pulls up to `group` items of `input` and hands them over at once to `start`, which
/// starts them on the pool ([`Execute::start_group`](crate::backend::Execute::start_group))
/// and keeps their handles; the first pull may wait if `wait`. Returns whether the group is
/// full, so that more may follow. Items pulled before a pull that panics are handed over all
/// the same.
fn hand_over<T, I: Iterator<Item = T>>(
    input: &mut Input<I>,
    group: usize,
    wait: bool,
    deadline: Option<Instant>,
    start: impl FnMut(Vec<T>),
) -> bool {
    /// Hands the items over when dropped, however the pulling ends.
    struct Group<T, F: FnMut(Vec<T>)> {
        items: Vec<T>,
        start: F,
    }
    impl<T, F: FnMut(Vec<T>)> Drop for Group<T, F> {
        fn drop(&mut self) {
            if !self.items.is_empty() {
                (self.start)(std::mem::take(&mut self.items));
            }
        }
    }
    let mut items = Group { items: Vec::with_capacity(group), start };
    while items.items.len() < group {
        // Nothing in flight: only an item (or the input's end) can come next.
        let Pull::Item(item) = input.pull(wait && items.items.is_empty(), deadline) else {
            return false;
        };
        items.items.push(item);
    }
    true
}

/// How long the head of an ordered `imap` whose window is full may take before the iterator
/// goes on past it (see [`Ordered`]): a slow item, as the pace counts them.
const SLOW_HEAD: Duration = Duration::from_millis(1);

/// Yields outcomes in input order; keeps at most `window` tasks in flight (see `pace.rs`).
///
/// With an input pulled on the consumer's thread, the outcomes finished behind a slow head
/// count only against the most the window grows to ([`Pace::most`]), not against the
/// window: the pool goes on past a slow item as far as that reaches, so that a second slow
/// item runs beside it rather than after it. To know when those finish, every task notes its
/// end once a head took [`SLOW_HEAD`] with the window full, until the window has grown to its
/// most. A fed input (a stream, whose items wait for something and may be of any size, for
/// a most of thousands of items) keeps every item not yielded within the window.
pub(crate) struct Ordered<'p, P: ?Sized, J: Job, I: Iterator> {
    pool: &'p P,
    job: Arc<J>,
    input: Input<I>,
    pace: Pace,
    pending: VecDeque<TaskHandle<J::Output>>,
    /// A note from every task as it settles: with a fed input (kept for good), so that waiting
    /// for the input ends when the result at the head is ready; and while going on past a
    /// slow head.
    settled: Option<(Sender<usize>, Receiver<usize>)>,
    /// Whether the input ended.
    ended: bool,
    /// Whether the pool refused an item as shut down: no more items are pulled.
    refused: bool,
}

impl<'p, P: Pool + ?Sized, J: Job, I: Iterator<Item = J::Input>> Ordered<'p, P, J, I> {
    pub(crate) fn new(pool: &'p P, job: Arc<J>, input: Input<I>, window: usize) -> Self {
        let settled = input.is_fed().then(crossbeam_channel::unbounded);
        let pace = Pace::new(window, pool.imap_pace());
        let pending = VecDeque::new();
        Ordered { pool, job, input, pace, pending, settled, ended: false, refused: false }
    }
}

impl<P: Pool + ?Sized, J: Job, I: Iterator<Item = J::Input>> Ordered<'_, P, J, I> {
    /// The next outcome, waiting for it until `deadline` (none: for ever).
    fn next_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Result<J::Output, TaskError>>, Timeout> {
        if !self.input.is_fed() && self.pace.window() >= self.pace.most() {
            // Nothing more to go past a slow head with.
            self.settled = None;
        }
        if let Some((_, notes)) = &self.settled {
            // Old notes: the head's state is read from its handle below.
            notes.try_iter().for_each(drop);
        }
        loop {
            while !self.refused && (self.pending.is_empty() || self.has_room()) {
                let wait = self.pending.is_empty();
                let (pool, job) = (self.pool, &self.job);
                let (pending, settled) = (&mut self.pending, &self.settled);
                let full =
                    hand_over(&mut self.input, self.pace.group(), wait, deadline, |inputs| {
                        // Every task notes its end on the one channel, if any.
                        let zeros = settled.as_ref().map(|_| vec![0; inputs.len()]);
                        let notes =
                            settled.as_ref().zip(zeros.as_deref()).map(|((tx, _), z)| (tx, z));
                        pending.extend(pool.start_group(job, inputs, notes));
                    });
                if !full {
                    self.ended = !self.input.may_come();
                    break;
                }
            }
            let Some(head) = self.pending.front() else {
                // Nothing in flight and no item yet: a fed input that did not send one in time
                // (or the pool is shut down).
                return if self.input.may_come() && !self.refused {
                    Err(Timeout)
                } else {
                    Ok(None)
                };
            };
            // Whether more may be pulled before the head is yielded: once items finish behind
            // it, or, fed, as they come.
            let more = self.pending.len() < self.most()
                && !self.ended
                && !self.refused
                && (!self.input.is_fed() || self.input.may_come());
            let Some((_, notes)) = &self.settled else {
                if !more {
                    return self.take_head(deadline);
                }
                // Wait for the head as a join would, as long as an item that is not slow takes.
                head.help(deadline);
                if head.settled_within(SLOW_HEAD, deadline)
                    || deadline.is_some_and(|d| Instant::now() >= d)
                {
                    return self.take_head(deadline);
                }
                // A slow head: from now on every task notes its end here (those that noted it
                // on an earlier channel, since dropped, too).
                let (tx, rx) = crossbeam_channel::unbounded();
                self.pending.iter().for_each(|handle| handle.note_to(&tx, 0));
                self.settled = Some((tx, rx));
                continue;
            };
            if head.is_finished() || !more {
                return self.take_head(deadline);
            }
            // Room for more once something settles, and the head still runs: wait for
            // whichever comes first, the next item or a result (the backend may use this
            // thread for the head, as a join would).
            head.help(deadline);
            if !head.is_finished() {
                self.input.wait_with(notes, deadline)?;
            }
        }
    }

    /// The most items not yielded (see [`Ordered`]).
    fn most(&self) -> usize {
        if self.input.is_fed() { self.pace.window() } else { self.pace.most() }
    }

    /// Whether the window has room for the next group: the items that did not finish count
    /// against the window, all that were not yielded against its most (see [`Ordered`]).
    fn has_room(&self) -> bool {
        let (group, window) = (self.pace.group(), self.pace.window());
        let held = self.pending.len();
        if held + group <= window {
            return true;
        }
        if self.settled.is_none() || held + group > self.most() {
            return false;
        }
        // Counted from the newest, which are the likeliest to run still, as far as needed.
        let most_running = window.saturating_sub(group);
        let running = self.pending.iter().rev().filter(|h| !h.is_finished());
        running.take(most_running + 1).count() <= most_running
    }

    /// Yields the head's outcome once it is settled, waiting until `deadline` at most: past
    /// it, the head stays.
    fn take_head(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Result<J::Output, TaskError>>, Timeout> {
        if let (Some(head), Some(_)) = (self.pending.front(), deadline) {
            if !head.settled_by(deadline) {
                return Err(Timeout);
            }
        }
        let head = self.pending.pop_front().map(TaskHandle::join);
        if head.is_some() {
            self.pace.yielded();
        }
        self.refused |= matches!(head, Some(Err(TaskError::ShutDown)));
        Ok(head)
    }
}

impl<P: Pool + ?Sized, J: Job, I: Iterator<Item = J::Input>> Iterator for Ordered<'_, P, J, I> {
    type Item = Result<J::Output, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        // With no deadline, nothing times out.
        self.next_until(None).unwrap_or(None)
    }
}

impl<P: Pool + ?Sized, J: Job, I: Iterator<Item = J::Input>> NextTimeout for Ordered<'_, P, J, I> {
    fn next_timeout(&mut self, limit: Duration) -> Result<Option<Self::Item>, Timeout> {
        self.next_until(deadline_after(limit))
    }
}

impl<P: ?Sized, J: Job, I: Iterator> Drop for Ordered<'_, P, J, I> {
    fn drop(&mut self) {
        // Items pulled and not yet yielded: nobody wants them any more.
        self.pending.iter().for_each(|h| {
            h.cancel();
        });
    }
}

/// Yields outcomes as they finish; keeps at most `window` tasks in flight (see `pace.rs`).
pub(crate) struct Unordered<'p, P: ?Sized, J: Job, I: Iterator> {
    pool: &'p P,
    job: Arc<J>,
    input: Input<I>,
    pace: Pace,
    slots: Vec<Option<TaskHandle<J::Output>>>,
    free: Vec<usize>,
    tx: Sender<usize>,
    rx: Receiver<usize>,
    /// Whether the pool refused an item as shut down: no more items are pulled.
    refused: bool,
}

impl<'p, P: Pool + ?Sized, J: Job, I: Iterator<Item = J::Input>> Unordered<'p, P, J, I> {
    pub(crate) fn new(pool: &'p P, job: Arc<J>, input: Input<I>, window: usize) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Unordered {
            pool,
            job,
            input,
            pace: Pace::new(window, pool.imap_pace()),
            slots: Vec::new(),
            free: Vec::new(),
            tx,
            rx,
            refused: false,
        }
    }

    fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

impl<P: ?Sized, J: Job, I: Iterator> Drop for Unordered<'_, P, J, I> {
    fn drop(&mut self) {
        self.slots.iter().flatten().for_each(|h| {
            h.cancel();
        });
    }
}

impl<P: Pool + ?Sized, J: Job, I: Iterator<Item = J::Input>> Unordered<'_, P, J, I> {
    /// The next outcome to settle, waiting for it until `deadline` (none: for ever).
    fn next_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Result<J::Output, TaskError>>, Timeout> {
        loop {
            let (group, window) = (self.pace.group(), self.pace.window());
            while !self.refused && (self.in_flight() == 0 || self.in_flight() + group <= window) {
                let wait = self.in_flight() == 0;
                let (pool, job) = (self.pool, &self.job);
                let (slots, free, tx) = (&mut self.slots, &mut self.free, &self.tx);
                let full = hand_over(&mut self.input, group, wait, deadline, |inputs| {
                    let indices: Vec<usize> = (0..inputs.len())
                        .map(|_| {
                            free.pop().unwrap_or_else(|| {
                                slots.push(None);
                                slots.len() - 1
                            })
                        })
                        .collect();
                    let handles = pool.start_group(job, inputs, Some((tx, &indices)));
                    for (index, handle) in indices.into_iter().zip(handles) {
                        slots[index] = Some(handle);
                    }
                });
                if !full {
                    break;
                }
            }
            if self.in_flight() == 0 {
                // No item yet: a fed input that did not send one in time (or the pool is
                // shut down).
                return if self.input.may_come() && !self.refused {
                    Err(Timeout)
                } else {
                    Ok(None)
                };
            }
            // We hold a sender, so the channel cannot disconnect, and every slot in flight
            // sends its index exactly once when it settles.
            let index = match self.rx.try_recv() {
                Ok(index) => index,
                Err(_) => {
                    // None finished: before sleeping, let the backend use this thread for a
                    // task in flight, as a join would (a thread of the pool itself, iterating
                    // inside a task, runs it if no thread took it: otherwise every thread
                    // could wait).
                    if let Some(waiting) = self.slots.iter().flatten().find(|h| !h.is_finished()) {
                        waiting.help(deadline);
                    }
                    if self.in_flight() < window && self.input.may_come() && !self.refused {
                        // Room for more: the next item may come before a result does.
                        match self.input.wait_with(&self.rx, deadline)? {
                            Some(index) => index,
                            None => continue,
                        }
                    } else {
                        match recv_until(&self.rx, deadline)? {
                            Some(index) => index,
                            None => return Ok(None),
                        }
                    }
                }
            };
            let Some(handle) = self.slots.get_mut(index).and_then(Option::take) else {
                return Ok(None);
            };
            self.free.push(index);
            self.pace.yielded();
            let outcome = handle.join();
            self.refused |= matches!(outcome, Err(TaskError::ShutDown));
            return Ok(Some(outcome));
        }
    }
}

impl<P: Pool + ?Sized, J: Job, I: Iterator<Item = J::Input>> Iterator for Unordered<'_, P, J, I> {
    type Item = Result<J::Output, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        // With no deadline, nothing times out.
        self.next_until(None).unwrap_or(None)
    }
}

impl<P: Pool + ?Sized, J: Job, I: Iterator<Item = J::Input>> NextTimeout
    for Unordered<'_, P, J, I>
{
    fn next_timeout(&mut self, limit: Duration) -> Result<Option<Self::Item>, Timeout> {
        self.next_until(deadline_after(limit))
    }
}
