//! Building runs: one job with the encoded inputs of its items, and slices of them.
//!
//! Work reaches the scheduler as a [`Run`], built on the submitting thread by a
//! [`RunBuilder`]. The scheduler moves [`Slice`]s of runs between its queue and its workers.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use taskpool_core::{Direction, Side, TaskError};

use crate::batching::Pace;
use crate::codec;
use crate::ship::Shipped;
use crate::sink::Sink;

/// One job with the encoded inputs of its items.
pub(crate) struct Run {
    pub(crate) job: Arc<Shipped>,
    inputs: Vec<u8>,
    ends: Vec<usize>,
    pub(crate) sink: Box<dyn Sink>,
    pub(crate) timeout: Option<Duration>,
    /// How many items travel in one batch.
    pub(crate) batching: Batching,
    /// What its job's items cost, as measured so far: shared by the runs of one `imap`, or
    /// of the single tasks of one function.
    pub(crate) pace: Arc<Pace>,
}

/// How a run's items are grouped into batches.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Batching {
    /// As many as take about [`crate::batching::BATCH_TARGET_NS`] to run, up to this many.
    Adaptive(usize),
    /// Exactly this many (the user set a chunk size).
    Fixed(usize),
}

/// Encodes the inputs of a run before it is built.
pub(crate) struct RunBuilder {
    job: Arc<Shipped>,
    inputs: Vec<u8>,
    ends: Vec<usize>,
}

impl RunBuilder {
    pub(crate) fn new(job: Arc<Shipped>) -> Self {
        RunBuilder { job, inputs: Vec::new(), ends: Vec::new() }
    }

    /// Encodes one more input.
    ///
    /// # Errors
    ///
    /// The input cannot be serialized, or with the job's state it is over `limit` bytes.
    pub(crate) fn push<T: Serialize>(&mut self, input: &T, limit: usize) -> Result<(), TaskError> {
        let start = self.inputs.len();
        codec::encode_into(input, &mut self.inputs)
            .map_err(|e| TaskError::serialization(Side::Argument, Direction::Encode, e))?;
        let size = self.inputs.len() - start + self.job.state.len();
        if size > limit {
            self.inputs.truncate(start);
            return Err(TaskError::TooLarge {
                side: Side::Argument,
                size: size as u64,
                limit: limit as u64,
            });
        }
        self.ends.push(self.inputs.len());
        Ok(())
    }

    /// Adds an input that is encoded already (by the codec, in another process).
    pub(crate) fn push_encoded(&mut self, input: &[u8]) {
        self.inputs.extend_from_slice(input);
        self.ends.push(self.inputs.len());
    }

    /// How many inputs were encoded.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// The run, with where its results go and the pace its job learns.
    pub(crate) fn finish(
        self,
        sink: Box<dyn Sink>,
        timeout: Option<Duration>,
        batching: Batching,
        pace: Arc<Pace>,
    ) -> Run {
        let RunBuilder { job, inputs, ends } = self;
        Run { job, inputs, ends, sink, timeout, batching, pace }
    }

    /// The job the run is built for.
    pub(crate) fn job(&self) -> &Arc<Shipped> {
        &self.job
    }
}

impl Run {
    /// How many items it has.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// The encoded input of item `i`.
    pub(crate) fn input(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.inputs[start..self.ends[i]]
    }
}

/// Items `items` of `run`.
pub(crate) struct Slice {
    pub(crate) run: Arc<Run>,
    pub(crate) items: Range<usize>,
    /// Once sent: what each item counts against its worker's budget (see `batching.rs`).
    pub(crate) load_ns: u64,
}

impl Slice {
    /// Items `items` of `run`, not sent.
    pub(crate) fn new(run: Arc<Run>, items: Range<usize>) -> Self {
        Slice { run, items, load_ns: 0 }
    }
}
