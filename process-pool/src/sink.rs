//! Where the results of a run go: a task handle, or the channel of a `map` or `imap`.
//!
//! A supervisor thread hands each sink the encoded results of consecutive items; the sink
//! decodes them (on the supervisor thread, outside the pool's lock) and delivers them. A
//! result's `Deserialize` is user code: its panic fails that result alone.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crossbeam_channel::Sender;
use serde::de::DeserializeOwned;
use taskpool_core::backend::{Completer, PanicScope};
use taskpool_core::{Direction, PanicReport, Side, TaskError};

use crate::codec;
use crate::deliveries::{Costs, Entries, Entry};
use crate::protocol::Values;
use crate::usage::{Cost, Usage};

/// A result as a supervisor delivers it: its encoding, and what producing it cost.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Value<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) cost: Cost,
}

/// An item's outcome as a supervisor delivers it: the encoded result, or the failure.
pub(crate) type Encoded<'a> = Result<Value<'a>, TaskError>;

/// The outcomes of consecutive items as a supervisor delivers them: lists of encoded
/// results (ranges of a read buffer) and failures, and what they cost.
pub(crate) struct Received<'a> {
    entries: Entries,
    /// How many items the entries hold.
    len: usize,
    /// What the items cost, from the item of each entry on (see `deliveries.rs`).
    costs: Costs,
    buffer: &'a dyn Fn(Range<usize>) -> &'a [u8],
}

impl<'a> Received<'a> {
    /// The outcomes `entries`, of `len` items which cost `costs`, their encoded results in
    /// `buffer`.
    pub(crate) fn new(
        entries: Entries,
        len: usize,
        costs: Costs,
        buffer: &'a dyn Fn(Range<usize>) -> &'a [u8],
    ) -> Self {
        Received { entries, len, costs, buffer }
    }

    /// How many outcomes there are.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Each outcome, in order.
    pub(crate) fn iter(&self) -> Outcomes<'_, 'a> {
        Outcomes {
            entries: self.entries.iter(),
            values: Values::new(&[]),
            left: 0,
            buffer: self.buffer,
            costs: &self.costs,
            cost: Cost::default(),
            next: 0,
        }
    }

    /// How many bytes the encoded outcomes take: their lists', and those of a large value
    /// that came apart (lent to their decoding, see `codec::with_bulk`).
    pub(crate) fn bytes(&self) -> usize {
        let lists: usize = self
            .entries
            .iter()
            .map(|entry| match entry {
                Entry::Values { list, .. } => list.len(),
                Entry::Failed(_) => 0,
            })
            .sum();
        lists + codec::lent_len()
    }

    /// The first outcome.
    pub(crate) fn first(&self) -> Option<Encoded<'a>> {
        self.iter().next()
    }
}

/// The outcomes of a [`Received`], one item at a time.
pub(crate) struct Outcomes<'r, 'a> {
    entries: std::slice::Iter<'r, Entry>,
    /// The rest of the current list of values, `left` of them.
    values: Values<'a>,
    left: usize,
    buffer: &'a dyn Fn(Range<usize>) -> &'a [u8],
    /// The costs not reached yet, and the current one.
    costs: &'r [(usize, Cost)],
    cost: Cost,
    /// The number of the next item.
    next: usize,
}

impl Outcomes<'_, '_> {
    /// What the next item cost; moves on to the item after it.
    fn cost(&mut self) -> Cost {
        while let [(from, cost), rest @ ..] = self.costs {
            if *from > self.next {
                break;
            }
            self.cost = *cost;
            self.costs = rest;
        }
        self.next += 1;
        self.cost
    }
}

impl<'a> Iterator for Outcomes<'_, 'a> {
    type Item = Encoded<'a>;

    #[inline]
    fn next(&mut self) -> Option<Encoded<'a>> {
        loop {
            if self.left > 0 {
                self.left -= 1;
                let bytes = self.values.next().unwrap_or_default();
                return Some(Ok(Value { bytes, cost: self.cost() }));
            }
            match self.entries.next()? {
                Entry::Values { list, count } => {
                    self.values = Values::new((self.buffer)(list.clone()));
                    self.left = *count;
                }
                Entry::Failed(e) => {
                    self.cost();
                    return Some(Err((**e).clone()));
                }
            }
        }
    }
}

/// How many tasks ended with a value, how many with an error, and how many were dropped
/// unrun because nobody wanted them any more.
///
/// Whoever settles a task counts it, before the caller can see the outcome: a sink when it
/// delivers, a cancellation when it settles the handle. So a caller that reads the counts
/// after it received a result finds that result counted, and no task is counted twice.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    completed: AtomicU64,
    failed: AtomicU64,
    discarded: AtomicU64,
}

impl Tally {
    /// Counts `values` tasks that ended with a value and `errors` that ended with an error.
    pub(crate) fn record(&self, values: usize, errors: usize) {
        if values > 0 {
            self.completed.fetch_add(values as u64, Ordering::Relaxed);
        }
        if errors > 0 {
            self.failed.fetch_add(errors as u64, Ordering::Relaxed);
        }
    }

    /// Counts `items` tasks dropped without running, their iterator dropped: no outcome is
    /// delivered for them, so they are neither completed nor failed.
    pub(crate) fn discard(&self, items: usize) {
        self.discarded.fetch_add(items as u64, Ordering::Relaxed);
    }

    /// `(completed, failed, discarded)` so far.
    pub(crate) fn counts(&self) -> (u64, u64, u64) {
        let load = |count: &AtomicU64| count.load(Ordering::Relaxed);
        (load(&self.completed), load(&self.failed), load(&self.discarded))
    }
}

/// Receives the outcomes of a run's items.
pub(crate) trait Sink: Send + Sync {
    /// Delivers the outcomes of items `first..first + outcomes.len()` of the run, counting
    /// each in `tally` before its caller can see it.
    ///
    /// Calls `release` once the outcomes are decoded and before the caller can see them: the
    /// items' inputs let go then of what they held for the workers (queue ends, shared bytes:
    /// see `handoff.rs`), so a caller that has an outcome finds those gone. Decoding comes
    /// first, so that shared bytes a task returned are found still mapped, not opened again.
    fn deliver(&self, first: usize, outcomes: Received<'_>, tally: &Tally, release: &dyn Fn());

    /// Whether item `index` no longer needs running (its handle was cancelled).
    fn is_settled(&self, _index: usize) -> bool {
        false
    }

    /// Whether its items can be cancelled one by one once sent (they have handles).
    fn is_cancellable(&self) -> bool {
        false
    }

    /// Whether its items' callers want their own cost ([`crate::Usage`]).
    fn wants_usage(&self) -> bool {
        false
    }

    /// Whether nobody wants the items not yet run (their iterator was dropped).
    fn is_abandoned(&self) -> bool {
        false
    }
}

/// Decodes a result.
pub(crate) fn decode<R: DeserializeOwned>(outcome: Encoded<'_>) -> Result<R, TaskError> {
    decode_caught(&PanicScope::enter(false), &outcome)
}

/// Decodes a result that may be a failure already.
fn decode_ref<R: DeserializeOwned>(outcome: &Encoded<'_>) -> Result<R, TaskError> {
    match outcome {
        Ok(value) => decode_value(value),
        Err(e) => Err(e.clone()),
    }
}

/// Decodes an encoded result.
fn decode_value<R: DeserializeOwned>(value: &Value<'_>) -> Result<R, TaskError> {
    codec::decode_result(value.bytes)
        .map_err(|e| TaskError::serialization(Side::Result, Direction::Decode, e))
}

/// Decodes a result, catching a panic of its `Deserialize` (user code, run here in the
/// parent) as a serialization error of that one result.
fn decode_caught<R: DeserializeOwned>(
    scope: &PanicScope,
    outcome: &Encoded<'_>,
) -> Result<R, TaskError> {
    scope.catch(|| decode_ref(outcome)).unwrap_or_else(|report| Err(panicked_decoding(&report)))
}

/// The error of a result whose `Deserialize` panicked (reported by `report`) in the caller.
pub(crate) fn panicked_decoding(report: &PanicReport) -> TaskError {
    TaskError::serialization(
        Side::Result,
        Direction::Decode,
        format_args!("its Deserialize panicked: {}", report.message),
    )
}

/// Decodes consecutive results. A panic of a `Deserialize` is caught for the whole group,
/// which then is decoded again one result at a time, so that it fails that result alone.
fn decode_all<R: DeserializeOwned>(outcomes: &Received<'_>) -> Decoded<R> {
    let scope = PanicScope::enter(false);
    scope.catch(|| decode_values(outcomes)).unwrap_or_else(|_| {
        Decoded::Mixed(outcomes.iter().map(|o| decode_caught(&scope, &o)).collect())
    })
}

/// Decodes consecutive results: as values alone while every one is a value.
fn decode_values<R: DeserializeOwned>(outcomes: &Received<'_>) -> Decoded<R> {
    let mut values = Vec::with_capacity(outcomes.len());
    // The common case, lists of values only: each list decoded in one pass, up to the first
    // failure.
    let mut failed = None;
    for entry in &outcomes.entries {
        match entry {
            Entry::Values { list, .. } => {
                if let Err(e) = codec::decode_list((outcomes.buffer)(list.clone()), &mut values) {
                    failed = Some(TaskError::serialization(Side::Result, Direction::Decode, e));
                    break;
                }
            }
            Entry::Failed(e) => {
                failed = Some((**e).clone());
                break;
            }
        }
    }
    let Some(failure) = failed else { return Decoded::Values(values) };
    // Values, a failure, then the rest one at a time.
    let mut mixed: Vec<Result<R, TaskError>> = Vec::with_capacity(outcomes.len());
    let done = values.len();
    mixed.extend(values.into_iter().map(Ok));
    mixed.push(Err(failure));
    mixed.extend(outcomes.iter().skip(done + 1).map(|o| o.and_then(|value| decode_value(&value))));
    Decoded::Mixed(mixed)
}

/// The decoded outcomes of consecutive items: values alone (the common case, and smaller),
/// or values and failures.
#[derive(Debug)]
pub(crate) enum Decoded<R> {
    Values(Vec<R>),
    Mixed(Vec<Result<R, TaskError>>),
}

impl<R> Decoded<R> {
    /// How many outcomes there are.
    pub(crate) fn len(&self) -> usize {
        match self {
            Decoded::Values(values) => values.len(),
            Decoded::Mixed(outcomes) => outcomes.len(),
        }
    }

    /// How many are values.
    fn values(&self) -> usize {
        match self {
            Decoded::Values(values) => values.len(),
            Decoded::Mixed(outcomes) => outcomes.iter().filter(|o| o.is_ok()).count(),
        }
    }

    /// Every outcome, in order.
    pub(crate) fn into_results(self) -> Vec<Result<R, TaskError>> {
        match self {
            Decoded::Values(values) => values.into_iter().map(Ok).collect(),
            Decoded::Mixed(outcomes) => outcomes,
        }
    }
}

/// Decodes a result and pairs it with what it cost.
pub(crate) fn decode_with_usage<R: DeserializeOwned>(
    outcome: Encoded<'_>,
) -> Result<(R, Usage), TaskError> {
    let value = outcome?;
    Ok((decode(Ok(value))?, Usage::from(value.cost)))
}

/// How an outcome becomes what a handle holds: [`decode`] or [`decode_with_usage`].
type Decode<T> = fn(Encoded<'_>) -> Result<T, TaskError>;

/// How a single task's outcome becomes what its handle holds, and whether its caller wants
/// the task's own cost (then its worker measures it: see `protocol::MEASURE`).
#[derive(Debug)]
pub(crate) struct Decoder<T> {
    decode: Decode<T>,
    usage: bool,
}

impl<T> Clone for Decoder<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Decoder<T> {}

/// The task's value, as [`decode`] makes it.
pub(crate) fn value<R: DeserializeOwned>() -> Decoder<R> {
    Decoder { decode: decode::<R>, usage: false }
}

/// The task's value and its cost, as [`decode_with_usage`] makes them.
pub(crate) fn value_and_usage<R: DeserializeOwned>() -> Decoder<(R, Usage)> {
    Decoder { decode: decode_with_usage::<R>, usage: true }
}

/// The sink of a single submitted task: its handle, and how to turn an outcome into what the
/// handle holds (its run's job knows the pool, for a cancellation: see `pool.rs`).
pub(crate) struct HandleSink<T> {
    pub(crate) completer: Completer<T>,
    pub(crate) decoder: Decoder<T>,
}

impl<T: Send> Sink for HandleSink<T> {
    fn deliver(&self, _first: usize, outcomes: Received<'_>, tally: &Tally, release: &dyn Fn()) {
        let Some(outcome) = outcomes.first() else { return release() };
        if self.completer.is_settled() {
            // Cancelled: the cancellation counted it.
            return release();
        }
        let value = (self.decoder.decode)(outcome);
        release();
        let ok = value.is_ok();
        // Counted only if this is its outcome: a cancellation that settled it in between
        // counted it. Never counted and taken back, which a reader of the counts would see
        // go down.
        self.completer.complete_then(value, || tally.record(usize::from(ok), usize::from(!ok)));
    }

    fn is_settled(&self, _index: usize) -> bool {
        self.completer.is_settled()
    }

    fn is_cancellable(&self) -> bool {
        true
    }

    fn wants_usage(&self) -> bool {
        self.decoder.usage
    }
}

/// Outcomes of consecutive items, from the first item's index, as a batch sink sends them.
pub(crate) type Group<R> = (usize, Decoded<R>);

/// The sink of a batch: sends `(index, outcomes)` groups to the thread collecting them.
///
/// `indices`, when present, maps the run's item numbers to the caller's (items that failed
/// before they were sent are not in the run); otherwise item `i` is caller item `base + i`.
pub(crate) struct ChannelSink<R> {
    pub(crate) tx: Sender<Group<R>>,
    pub(crate) base: usize,
    pub(crate) indices: Option<Vec<usize>>,
    /// Set when the receiving iterator is dropped: the items not yet run are not wanted.
    pub(crate) abandoned: Option<Arc<AtomicBool>>,
    /// Where to store the encoded bytes per item of the latest outcomes, for a receiver that
    /// holds as many outcomes as their size allows (an `imap` window).
    pub(crate) result_bytes: Option<Arc<AtomicUsize>>,
}

impl<R: DeserializeOwned + Send> Sink for ChannelSink<R> {
    fn deliver(&self, first: usize, outcomes: Received<'_>, tally: &Tally, release: &dyn Fn()) {
        if let Some(bytes) = &self.result_bytes {
            bytes.store(outcomes.bytes() / outcomes.len().max(1), Ordering::Relaxed);
        }
        let decoded: Decoded<R> = decode_all(&outcomes);
        release();
        let ok = decoded.values();
        tally.record(ok, decoded.len() - ok);
        match &self.indices {
            None => {
                let _ = self.tx.send((self.base + first, decoded));
            }
            Some(indices) => {
                for (i, outcome) in decoded.into_results().into_iter().enumerate() {
                    let _ = self.tx.send((indices[first + i], Decoded::Mixed(vec![outcome])));
                }
            }
        }
    }

    fn is_abandoned(&self) -> bool {
        self.abandoned.as_ref().is_some_and(|a| a.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use smallvec::smallvec;

    use super::*;

    /// `values`, listed as a result frame lists them: each a `u32` length and its bytes.
    fn listed(values: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for value in values {
            crate::wire::put_bytes(&mut list, value);
        }
        list
    }

    #[test]
    fn outcomes_walk_lists_and_failures_in_order_with_their_costs() {
        let cost = |elapsed_ns| Cost { elapsed_ns, ..Cost::default() };
        let mut buffer = listed(&[b"a", b"", b"ccc"]);
        let second = buffer.len()..buffer.len() + 6;
        buffer.extend(listed(&[b"dd"]));
        let entries: Entries = smallvec![
            Entry::Values { list: 0..second.start, count: 3 },
            Entry::Failed(Box::new(TaskError::ShutDown)),
            Entry::Values { list: second, count: 1 },
        ];
        // Items 0-1 cost 5 each, item 2 costs 7, the failure nothing, item 4 costs 9.
        let costs: Costs =
            smallvec![(0, cost(5)), (2, cost(7)), (3, Cost::default()), (4, cost(9))];
        let read = |range: Range<usize>| &buffer[range];
        let received = Received::new(entries, 5, costs, &read);
        assert_eq!(received.len(), 5);
        let seen: Vec<_> = received
            .iter()
            .map(|o| o.map(|v| (v.bytes.to_vec(), v.cost.elapsed_ns)).map_err(|e| e.to_string()))
            .collect();
        let expected = vec![
            Ok((b"a".to_vec(), 5)),
            Ok((b"".to_vec(), 5)),
            Ok((b"ccc".to_vec(), 7)),
            Err(TaskError::ShutDown.to_string()),
            Ok((b"dd".to_vec(), 9)),
        ];
        assert_eq!(seen, expected);
        assert!(matches!(received.first(), Some(Ok(Value { bytes: b"a", .. }))));
    }

    #[test]
    fn values_of_several_lists_decode_in_order_and_a_bad_one_fails_alone() {
        let encode = |v: u64| {
            let mut out = Vec::new();
            codec::encode_into(&v, &mut out).unwrap();
            out
        };
        let mut buffer = listed(&[&encode(1), &encode(300)]);
        let last = listed(&[&encode(3)]);
        let second = buffer.len()..buffer.len() + last.len();
        buffer.extend(last);
        let entries = || -> Entries {
            smallvec![
                Entry::Values { list: 0..second.start, count: 2 },
                Entry::Values { list: second.clone(), count: 1 },
            ]
        };
        let read = |range: Range<usize>| &buffer[range];
        let received = Received::new(entries(), 3, Costs::new(), &read);
        assert!(matches!(decode_values::<u64>(&received), Decoded::Values(v) if v == [1, 300, 3]));
        // As a `u8`, 300 fails alone; the values around it stay in place.
        let received = Received::new(entries(), 3, Costs::new(), &read);
        let Decoded::Mixed(mixed) = decode_values::<u8>(&received) else { panic!("mixed") };
        assert!(
            matches!(mixed[..], [Ok(1), Err(TaskError::Serialization { .. }), Ok(3)]),
            "{mixed:?}"
        );
        // A failure between lists keeps its place too.
        let entries: Entries = smallvec![
            Entry::Values { list: 0..second.start, count: 2 },
            Entry::Failed(Box::new(TaskError::Cancelled)),
            Entry::Values { list: second.clone(), count: 1 },
        ];
        let received = Received::new(entries, 4, Costs::new(), &read);
        let Decoded::Mixed(mixed) = decode_values::<u64>(&received) else { panic!("mixed") };
        assert!(
            matches!(mixed[..], [Ok(1), Ok(300), Err(TaskError::Cancelled), Ok(3)]),
            "{mixed:?}"
        );
    }
}
