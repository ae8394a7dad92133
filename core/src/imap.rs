//! Lazy iteration over a pool with a bounded window of tasks in flight; dropping an iterator
//! cancels the tasks it still holds.

use std::collections::VecDeque;
use std::iter::Fuse;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::error::TaskError;
use crate::handle::{TaskHandle, promise, promise_notify};
use crate::pool::Pool;
use crate::task::Job;

/// Yields outcomes in input order; keeps at most `window` tasks in flight.
pub(crate) struct Ordered<'p, P: ?Sized, J: Job, I> {
    pool: &'p P,
    job: Arc<J>,
    items: Fuse<I>,
    window: usize,
    pending: VecDeque<TaskHandle<J::Output>>,
}

impl<'p, P: Pool + ?Sized, J: Job, I: Iterator<Item = J::Input>> Ordered<'p, P, J, I> {
    pub(crate) fn new(pool: &'p P, job: Arc<J>, items: I, window: usize) -> Self {
        Ordered { pool, job, items: items.fuse(), window: window.max(1), pending: VecDeque::new() }
    }
}

impl<P: Pool + ?Sized, J: Job, I: Iterator<Item = J::Input>> Iterator for Ordered<'_, P, J, I> {
    type Item = Result<J::Output, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.pending.len() < self.window {
            let Some(input) = self.items.next() else {
                break;
            };
            let (completer, handle) = promise();
            self.pool.execute(&self.job, input, completer, None);
            self.pending.push_back(handle);
        }
        self.pending.pop_front().map(TaskHandle::join)
    }
}

impl<P: ?Sized, J: Job, I> Drop for Ordered<'_, P, J, I> {
    fn drop(&mut self) {
        // Items pulled and not yet yielded: nobody wants them any more.
        self.pending.iter().for_each(|h| {
            h.cancel();
        });
    }
}

/// Yields outcomes as they finish; keeps at most `window` tasks in flight.
pub(crate) struct Unordered<'p, P: ?Sized, J: Job, I> {
    pool: &'p P,
    job: Arc<J>,
    items: Fuse<I>,
    window: usize,
    slots: Vec<Option<TaskHandle<J::Output>>>,
    free: Vec<usize>,
    tx: Sender<usize>,
    rx: Receiver<usize>,
}

impl<'p, P: Pool + ?Sized, J: Job, I: Iterator<Item = J::Input>> Unordered<'p, P, J, I> {
    pub(crate) fn new(pool: &'p P, job: Arc<J>, items: I, window: usize) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Unordered {
            pool,
            job,
            items: items.fuse(),
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

impl<P: ?Sized, J: Job, I> Drop for Unordered<'_, P, J, I> {
    fn drop(&mut self) {
        self.slots.iter().flatten().for_each(|h| {
            h.cancel();
        });
    }
}

impl<P: Pool + ?Sized, J: Job, I: Iterator<Item = J::Input>> Iterator for Unordered<'_, P, J, I> {
    type Item = Result<J::Output, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.in_flight() < self.window {
            let Some(input) = self.items.next() else {
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
        // We hold a sender, so the channel cannot disconnect, and every slot in flight sends
        // its index exactly once when it settles.
        let index = match self.rx.try_recv() {
            Ok(index) => index,
            Err(_) => {
                // None finished: before sleeping, let the backend use this thread for a task
                // in flight, as a join would (a thread of the pool itself, iterating inside a
                // task, runs it if no thread took it: otherwise every thread could wait).
                if let Some(waiting) = self.slots.iter().flatten().find(|h| !h.is_finished()) {
                    waiting.help(None);
                }
                self.rx.recv().ok()?
            }
        };
        let handle = self.slots.get_mut(index)?.take()?;
        self.free.push(index);
        Some(handle.join())
    }
}
