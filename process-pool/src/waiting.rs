//! The work waiting for a worker: one line per job, the lines served in turn.
//!
//! A job is what shares a pace (`batching.rs`): the runs of one `map` or `imap`, or the units
//! an agent runs for one `map` of a cluster's caller (`remote.rs`). Single tasks (`submit`,
//! `apply`) share one line, so they keep the order they were submitted in, whatever their
//! function; so do the single tasks of one cluster caller on its agent, each function with a
//! pace of its own (`Paced::line`). Within a line, slices keep the order they were queued in
//! (requeued ones go first); between lines, a worker that takes a batch from the front line
//! sends that line to the back ([`Waiting::served`]). So a task submitted while a `map` has
//! thousands of items waiting goes after at most one batch of the `map` (and of each other
//! job waiting), rather than after all of them, and two `map`s that run at once share the
//! workers batch by batch.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::run::{Batching, Run, Slice};

/// The queue of slices not yet sent, by job.
#[derive(Default)]
pub(crate) struct Waiting {
    /// The jobs with slices waiting, the next to be served first. None is empty.
    lines: VecDeque<Line>,
}

/// The waiting slices of one job (or the single tasks), in order.
struct Line {
    job: usize,
    slices: VecDeque<Slice>,
}

/// The line of the single tasks: no pace lives at address 0.
const SINGLES: usize = 0;

/// The line `slice` waits in (see [`job_of_run`]).
fn job_of(slice: &Slice) -> usize {
    job_of_run(&slice.run)
}

/// The line the items of `run` wait in: that of the single tasks, or its job's, by the
/// address of the pace that names its line (alive while the run is: see
/// `Paced::line_pace`).
fn job_of_run(run: &Run) -> usize {
    if is_single(run) { SINGLES } else { Arc::as_ptr(run.job.line_pace()) as usize }
}

/// Whether `run` is a task submitted alone: one item, sent as a batch of one, as `submit`
/// makes it. An `imap` sends runs of one item too while its items are slow, batched
/// adaptively: those stay in their job's line, or a task submitted beside the `imap` would
/// wait behind its whole window.
fn is_single(run: &Run) -> bool {
    run.len() == 1 && matches!(run.batching, Batching::Fixed(1))
}

impl Waiting {
    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// How many slices wait.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lines.iter().map(|line| line.slices.len()).sum()
    }

    /// The slices waiting, line by line, each line's in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Slice> {
        self.lines.iter().flat_map(|line| line.slices.iter())
    }

    /// Queues `slice` after the waiting slices of its job; a job with none waits behind
    /// every other.
    pub(crate) fn push_back(&mut self, slice: Slice) {
        let job = job_of(&slice);
        match self.lines.iter_mut().rev().find(|line| line.job == job) {
            Some(line) => line.slices.push_back(slice),
            None => self.lines.push_back(Line { job, slices: VecDeque::from([slice]) }),
        }
    }

    /// Queues `slice` before the waiting slices of its job, and its job first: for items
    /// taken back from a worker, which were due before anything waiting.
    pub(crate) fn push_front(&mut self, slice: Slice) {
        let job = job_of(&slice);
        let mut line = match self.lines.iter().position(|line| line.job == job) {
            Some(at) => self.lines.remove(at).unwrap_or(Line { job, slices: VecDeque::new() }),
            None => Line { job, slices: VecDeque::new() },
        };
        line.slices.push_front(slice);
        self.lines.push_front(line);
    }

    /// The next slice of the job served next.
    pub(crate) fn front(&self) -> Option<&Slice> {
        self.lines.front()?.slices.front()
    }

    /// [`Waiting::front`], to take items from.
    pub(crate) fn front_mut(&mut self) -> Option<&mut Slice> {
        self.lines.front_mut()?.slices.front_mut()
    }

    /// Removes [`Waiting::front`]; its job stays first while it has more.
    pub(crate) fn pop_front(&mut self) -> Option<Slice> {
        let line = self.lines.front_mut()?;
        let slice = line.slices.pop_front();
        if line.slices.is_empty() {
            self.lines.pop_front();
        }
        slice
    }

    /// Records that a batch of `run`'s job was just taken from the front: if more of that
    /// job waits, it goes behind the other jobs waiting.
    pub(crate) fn served(&mut self, run: &Run) {
        let job = job_of_run(run);
        if self.lines.len() > 1 && self.lines.front().is_some_and(|line| line.job == job) {
            self.lines.rotate_left(1);
        }
    }

    /// Keeps only the slices for which `keep` is true.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&Slice) -> bool) {
        for line in &mut self.lines {
            line.slices.retain(&mut keep);
        }
        self.lines.retain(|line| !line.slices.is_empty());
    }

    /// Removes the first slice for which `is` is true, if any.
    pub(crate) fn remove_first(&mut self, mut is: impl FnMut(&Slice) -> bool) -> Option<Slice> {
        for (l, line) in self.lines.iter_mut().enumerate() {
            if let Some(at) = line.slices.iter().position(&mut is) {
                let slice = line.slices.remove(at);
                if line.slices.is_empty() {
                    self.lines.remove(l);
                }
                return slice;
            }
        }
        None
    }

    /// Takes every waiting slice out, leaving nothing waiting.
    pub(crate) fn take_all(&mut self) -> impl Iterator<Item = Slice> + use<> {
        std::mem::take(&mut self.lines).into_iter().flat_map(|line| line.slices)
    }
}
