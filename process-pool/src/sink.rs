//! Where the results of a run go: a task handle, or the channel of a `map` or `imap`.
//!
//! A supervisor thread hands each sink the encoded results of consecutive items; the sink
//! decodes them (on the supervisor thread, outside the pool's lock) and delivers them.

use crossbeam_channel::Sender;
use serde::de::DeserializeOwned;
use taskpool_core::{Completer, Side, TaskError};

use crate::codec;

/// An item's outcome as a supervisor delivers it: the encoded result, or the failure.
pub(crate) type Encoded<'a> = Result<&'a [u8], TaskError>;

/// Receives the outcomes of a run's items.
pub(crate) trait Sink: Send + Sync {
    /// Delivers the outcomes of items `first..first + outcomes.len()` of the run.
    fn deliver(&self, first: usize, outcomes: Vec<Encoded<'_>>);

    /// Whether item `index` no longer needs running (its handle was cancelled).
    fn is_settled(&self, _index: usize) -> bool {
        false
    }
}

fn decode<R: DeserializeOwned>(outcome: Encoded<'_>) -> Result<R, TaskError> {
    codec::decode(outcome?).map_err(|e| TaskError::serialization(Side::Result, e))
}

/// The sink of a single submitted task: its handle.
pub(crate) struct HandleSink<R> {
    pub(crate) completer: Completer<R>,
}

impl<R: DeserializeOwned + Send> Sink for HandleSink<R> {
    fn deliver(&self, _first: usize, outcomes: Vec<Encoded<'_>>) {
        if let Some(outcome) = outcomes.into_iter().next() {
            self.completer.complete(decode(outcome));
        }
    }

    fn is_settled(&self, _index: usize) -> bool {
        self.completer.is_settled()
    }
}

/// Outcomes of consecutive items, from the first item's index, as a batch sink sends them.
pub(crate) type Group<R> = (usize, Vec<Result<R, TaskError>>);

/// The sink of a batch: sends `(index, outcomes)` groups to the thread collecting them.
///
/// `indices`, when present, maps the run's item numbers to the caller's (items that failed
/// before they were sent are not in the run); otherwise item `i` is caller item `base + i`.
pub(crate) struct ChannelSink<R> {
    pub(crate) tx: Sender<Group<R>>,
    pub(crate) base: usize,
    pub(crate) indices: Option<Vec<usize>>,
}

impl<R: DeserializeOwned + Send> Sink for ChannelSink<R> {
    fn deliver(&self, first: usize, outcomes: Vec<Encoded<'_>>) {
        match &self.indices {
            None => {
                let values = outcomes.into_iter().map(decode).collect();
                let _ = self.tx.send((self.base + first, values));
            }
            Some(indices) => {
                for (i, outcome) in outcomes.into_iter().enumerate() {
                    let _ = self.tx.send((indices[first + i], vec![decode(outcome)]));
                }
            }
        }
    }
}
