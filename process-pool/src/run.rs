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
    /// Where each input but the last ends (the last ends at the end of `inputs`).
    ends: Vec<usize>,
    len: usize,
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
    /// Where each input but the last ends.
    ends: Vec<usize>,
    len: usize,
}

impl RunBuilder {
    pub(crate) fn new(job: Arc<Shipped>) -> Self {
        RunBuilder { job, inputs: Vec::new(), ends: Vec::new(), len: 0 }
    }

    /// Encodes one more input.
    ///
    /// # Errors
    ///
    /// The input cannot be serialized, or with the job's state it is over `limit` bytes.
    pub(crate) fn push<T: Serialize>(&mut self, input: &T, limit: usize) -> Result<(), TaskError> {
        let start = self.inputs.len();
        self.begin_input();
        if let Err(e) = codec::encode_into(input, &mut self.inputs) {
            self.inputs.truncate(start);
            self.undo_input();
            return Err(TaskError::serialization(Side::Argument, Direction::Encode, e));
        }
        let size = self.inputs.len() - start + self.job.state.len();
        if size > limit {
            self.inputs.truncate(start);
            self.undo_input();
            return Err(TaskError::TooLarge {
                side: Side::Argument,
                size: size as u64,
                limit: limit as u64,
            });
        }
        Ok(())
    }

    /// Starts an input: the one before (if any) ends here.
    fn begin_input(&mut self) {
        if self.len > 0 {
            self.ends.push(self.inputs.len());
        }
        self.len += 1;
    }

    /// Withdraws the input begun last.
    fn undo_input(&mut self) {
        self.len -= 1;
        if self.len > 0 {
            self.ends.pop();
        }
    }

    /// Adds an input that is encoded already (by the codec, in another process).
    pub(crate) fn push_encoded(&mut self, input: &[u8]) {
        self.begin_input();
        self.inputs.extend_from_slice(input);
    }

    /// How many inputs were encoded.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The run, with where its results go and the pace its job learns.
    pub(crate) fn finish(
        self,
        sink: Box<dyn Sink>,
        timeout: Option<Duration>,
        batching: Batching,
        pace: Arc<Pace>,
    ) -> Run {
        let RunBuilder { job, inputs, ends, len } = self;
        Run { job, inputs, ends, len, sink, timeout, batching, pace }
    }

    /// The job the run is built for.
    pub(crate) fn job(&self) -> &Arc<Shipped> {
        &self.job
    }
}

impl Run {
    /// How many items it has.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The encoded input of item `i` (empty past the last).
    pub(crate) fn input(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends.get(i - 1).copied().unwrap_or(usize::MAX) };
        let end = self.ends.get(i).copied().unwrap_or(self.inputs.len());
        self.inputs.get(start..end).unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A value whose serialization fails after it wrote part of itself.
    struct HalfWritten;

    impl Serialize for HalfWritten {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::{Error, SerializeSeq};
            let mut seq = s.serialize_seq(Some(2))?;
            seq.serialize_element(&7u64)?;
            Err(S::Error::custom("cannot write the rest"))
        }
    }

    fn builder() -> RunBuilder {
        RunBuilder::new(Arc::new(Shipped { entry: 0, state: Vec::new() }))
    }

    fn encoded(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        codec::encode_into(&v, &mut out).unwrap();
        out
    }

    #[test]
    fn inputs_that_fail_to_encode_leave_nothing_behind() {
        let mut b = builder();
        b.push(&1u64, 1 << 20).unwrap();
        assert!(matches!(b.push(&HalfWritten, 1 << 20), Err(TaskError::Serialization { .. })));
        assert!(matches!(b.push(&vec![0u8; 100], 10), Err(TaskError::TooLarge { .. })));
        b.push(&2u64, 1 << 20).unwrap();
        b.push_encoded(&encoded(3));
        let pace = Arc::new(Pace::default());
        let run =
            b.finish(Box::new(crate::scheduler::tests::NullSink), None, Batching::Fixed(1), pace);
        assert_eq!(run.len(), 3);
        for (i, v) in [1, 2, 3].into_iter().enumerate() {
            assert_eq!(run.input(i), encoded(v), "input {i}");
        }
        assert_eq!(run.input(3), b"", "past the last");
    }

    #[test]
    fn a_single_input_is_the_whole_buffer() {
        let mut b = builder();
        b.push(&5u64, 1 << 20).unwrap();
        let pace = Arc::new(Pace::default());
        let run =
            b.finish(Box::new(crate::scheduler::tests::NullSink), None, Batching::Fixed(1), pace);
        assert_eq!((run.len(), run.input(0)), (1, &encoded(5)[..]));
    }
}
