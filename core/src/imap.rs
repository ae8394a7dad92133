//! Lazy iteration over a pool with a bounded window of tasks in flight; dropping an iterator
//! cancels the tasks it still holds. The input is pulled on the consumer's thread, or fed by
//! a thread of its own (`feed.rs`): then a result that is ready is yielded while the input
//! waits for its next item.

use std::collections::VecDeque;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::error::TaskError;
use crate::feed::{Input, Pull};
use crate::handle::{TaskHandle, promise, promise_notify};
use crate::pool::Pool;
use crate::task::Job;

/// Yields outcomes in input order; keeps at most `window` tasks in flight.
pub(crate) struct Ordered<'p, P: ?Sized, J: Job, I: Iterator> {
    pool: &'p P,
    job: Arc<J>,
    input: Input<I>,
    window: usize,
    pending: VecDeque<TaskHandle<J::Output>>,
    /// With a fed input: a note from every task as it settles, so that waiting for the input
    /// ends when the result at the head is ready.
    settled: Option<(Sender<usize>, Receiver<usize>)>,
}

impl<'p, P: Pool + ?Sized, J: Job, I: Iterator<Item = J::Input>> Ordered<'p, P, J, I> {
    pub(crate) fn new(pool: &'p P, job: Arc<J>, input: Input<I>, window: usize) -> Self {
        let settled = input.may_come().then(crossbeam_channel::unbounded);
        Ordered { pool, job, input, window: window.max(1), pending: VecDeque::new(), settled }
    }
}

impl<P: Pool + ?Sized, J: Job, I: Iterator<Item = J::Input>> Iterator for Ordered<'_, P, J, I> {
    type Item = Result<J::Output, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some((_, notes)) = &self.settled {
            // Old notes: the head's state is read from its handle below.
            notes.try_iter().for_each(drop);
        }
        loop {
            while self.pending.len() < self.window {
                // Nothing in flight: only an item (or the input's end) can come next.
                let Pull::Item(input) = self.input.pull(self.pending.is_empty()) else {
                    break;
                };
                let (completer, handle) = match &self.settled {
                    Some((tx, _)) => promise_notify(tx.clone(), 0),
                    None => promise(),
                };
                self.pool.execute(&self.job, input, completer, None);
                self.pending.push_back(handle);
            }
            let head = self.pending.front()?;
            let Some((_, notes)) = &self.settled else {
                return self.pending.pop_front().map(TaskHandle::join);
            };
            if head.is_finished() || self.pending.len() >= self.window || !self.input.may_come() {
                return self.pending.pop_front().map(TaskHandle::join);
            }
            // Room for more, and the head still runs: wait for whichever comes first, the
            // next item or a result (the backend may use this thread for the head, as a join
            // would).
            head.help(None);
            if !head.is_finished() {
                self.input.wait_with(notes);
            }
        }
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

/// Yields outcomes as they finish; keeps at most `window` tasks in flight.
pub(crate) struct Unordered<'p, P: ?Sized, J: Job, I: Iterator> {
    pool: &'p P,
    job: Arc<J>,
    input: Input<I>,
    window: usize,
    slots: Vec<Option<TaskHandle<J::Output>>>,
    free: Vec<usize>,
    tx: Sender<usize>,
    rx: Receiver<usize>,
}

impl<'p, P: Pool + ?Sized, J: Job, I: Iterator<Item = J::Input>> Unordered<'p, P, J, I> {
    pub(crate) fn new(pool: &'p P, job: Arc<J>, input: Input<I>, window: usize) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Unordered {
            pool,
            job,
            input,
            window: window.max(1),
            slots: Vec::new(),
            free: Vec::new(),
            tx,
            rx,
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

impl<P: Pool + ?Sized, J: Job, I: Iterator<Item = J::Input>> Iterator for Unordered<'_, P, J, I> {
    type Item = Result<J::Output, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            while self.in_flight() < self.window {
                // Nothing in flight: only an item (or the input's end) can come next.
                let Pull::Item(input) = self.input.pull(self.in_flight() == 0) else {
                    break;
                };
                let index = self.free.pop().unwrap_or_else(|| {
                    self.slots.push(None);
                    self.slots.len() - 1
                });
                let (completer, handle) = promise_notify(self.tx.clone(), index);
                self.pool.execute(&self.job, input, completer, None);
                self.slots[index] = Some(handle);
            }
            if self.in_flight() == 0 {
                return None;
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
                        waiting.help(None);
                    }
                    if self.in_flight() < self.window && self.input.may_come() {
                        // Room for more: the next item may come before a result does.
                        match self.input.wait_with(&self.rx) {
                            Some(index) => index,
                            None => continue,
                        }
                    } else {
                        self.rx.recv().ok()?
                    }
                }
            };
            let handle = self.slots.get_mut(index)?.take()?;
            self.free.push(index);
            return Some(handle.join());
        }
    }
}
