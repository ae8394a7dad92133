//! What travels through the streams: task messages, result messages, and errors.
//!
//! Envelopes are encoded with the process backend's codec; the values inside (arguments,
//! results, a struct task's state) are already encoded with it and travel as bytes.
//! A message carries one or more *units*: a unit is one submitted task or one chunk of a
//! `map`, with its own task id, so several units sent together still settle one by one.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use taskpool_core::{Direction, Exit, PanicReport, Resource, Side, TaskError};
use taskpool_process::remote;

use crate::error;

/// A message on the tasks stream.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TaskMessage {
    /// The caller's id: results go to its subject.
    pub(crate) caller: String,
    /// How many deliveries a unit of this message may take before it fails.
    pub(crate) delivery_limit: u32,
    /// The caller's pool initializer, as an offset into the executable image: the workers
    /// that run these units run it first, once each.
    pub(crate) initializer: Option<i64>,
    pub(crate) units: Vec<Unit>,
}

/// One task, or one chunk of a `map`: a job and the encoded inputs of its items.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Unit {
    pub(crate) task: u64,
    /// The caller's job it belongs to: the `map`, `imap` or `starmap` call it is a chunk of,
    /// or [`SINGLE_TASKS`] for the caller's single tasks. An agent runs the units of one job
    /// that it holds at once as one job of its pool: they share what their items were
    /// measured to cost, and wait in one line in the order they came, while the lines of
    /// different jobs (and callers) take turns.
    pub(crate) job: u64,
    pub(crate) entry: i64,
    #[serde(with = "serde_bytes")]
    pub(crate) state: Vec<u8>,
    pub(crate) timeout_ns: Option<u64>,
    /// The items' encodings, back to back; `ends[i]` is where item `i` ends.
    #[serde(with = "serde_bytes")]
    pub(crate) inputs: Vec<u8>,
    pub(crate) ends: Vec<u32>,
}

/// The [`Unit::job`] of a caller's single tasks (`submit`, `apply`): its batches count from 1.
pub(crate) const SINGLE_TASKS: u64 = 0;

/// What a unit adds to a message beyond its state and inputs: ids, its time limit and the
/// framing of its fields (an overestimate, so that units weighed to fit do fit).
const UNIT_OVERHEAD: usize = 64;
/// What an item adds to a unit beyond its input: its end offset.
pub(crate) const INPUT_OVERHEAD: usize = 5;

impl Unit {
    /// The encoded size, roughly: what it adds to a message; never less than its encoding.
    pub(crate) fn weight(&self) -> usize {
        Unit::weight_of(self.state.len(), self.inputs.len(), self.ends.len())
    }

    /// [`TaskError::TooLarge`] naming the task, if a struct task's encoded state of `state`
    /// bytes cannot travel in a unit of at most `max_unit` bytes even beside an empty input:
    /// its own size, and the largest a state may be.
    pub(crate) fn state_too_large(state: usize, max_unit: usize) -> Option<TaskError> {
        let limit = max_unit.saturating_sub(Unit::weight_of(0, 0, 1));
        (state > limit).then(|| TaskError::TooLarge {
            side: Side::Task,
            size: state as u64,
            limit: limit as u64,
        })
    }

    /// The weight of a unit with a state of `state` bytes and `items` inputs of `inputs`
    /// bytes in all.
    pub(crate) fn weight_of(state: usize, inputs: usize, items: usize) -> usize {
        UNIT_OVERHEAD + state + inputs + INPUT_OVERHEAD * items
    }
}

/// What an agent says straight to a caller (a plain message on its fast subject, with the
/// header [`REFUSED_HEADER`]), about once a second, while the server refuses to store the
/// results of some of the caller's units: the caller would otherwise wait for them, with no
/// word, for as long as the agent lives.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RefusedResults {
    pub(crate) agent: String,
    /// The units whose results the agent holds and cannot store.
    pub(crate) tasks: Vec<u64>,
    /// How long the server has refused them, in milliseconds (while the agent could reach
    /// it: a store that fails for want of a connection is not a refusal).
    pub(crate) refused_ms: u64,
    /// Why, as the server's last refusal says, with what it may mean.
    pub(crate) reason: String,
}

/// The header that marks a message on a caller's fast subject as [`RefusedResults`].
pub(crate) const REFUSED_HEADER: &str = "Taskpool-Refused-Results";

/// A message on the results stream: the outcomes of one or more units of one caller.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ResultMessage {
    pub(crate) results: Vec<UnitResult>,
}

/// A [`ResultMessage`] to encode from borrowed results (the same encoding).
#[derive(Debug, Serialize)]
pub(crate) struct ResultMessageRef<'a> {
    pub(crate) results: &'a [UnitResult],
}

/// The outcome of one unit, or of a part of its items.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UnitResult {
    pub(crate) task: u64,
    /// How long the unit takes on its agent with nothing else to run: the time its items
    /// took in the agent's workers, spread over as many workers as it has items (at most
    /// all); not the time it waited there behind other work. 0 if nothing was measured (the
    /// unit failed as a whole, or every item failed).
    pub(crate) elapsed_ns: u64,
    /// `None` for the whole unit's outcome; `Some(i)` for a part of it, the outcomes of
    /// consecutive items from item `i` on (see [`UnitResult::split`]).
    pub(crate) part: Option<u32>,
    pub(crate) outcome: UnitOutcome,
}

/// What a result adds to a message beyond its items: ids, times and the framing of its lists
/// (an overestimate, so that results weighed to fit do fit).
const RESULT_OVERHEAD: usize = 96;
/// What an item adds beyond its result's bytes: its length in the list of lengths.
const ITEM_OVERHEAD: usize = 8;

impl UnitResult {
    /// A unit that failed as a whole with `error`, without running.
    pub(crate) fn failed(task: u64, error: WireError) -> Self {
        UnitResult { task, elapsed_ns: 0, part: None, outcome: UnitOutcome::Failed(error) }
    }

    /// Roughly what the result adds to a message, in bytes; never less than its encoding.
    pub(crate) fn weight(&self) -> usize {
        RESULT_OVERHEAD
            + match &self.outcome {
                UnitOutcome::Items { bytes, items } => {
                    let errors: usize = items
                        .iter()
                        .map(|item| match item {
                            Item::Ok(_) => 0,
                            Item::Err(e) => e.weight(),
                        })
                        .sum();
                    bytes.len() + ITEM_OVERHEAD * items.len() + errors
                }
                UnitOutcome::Failed(e) => e.weight(),
            }
    }

    /// The result as messages of at most `limit` bytes each: itself if it fits, else parts
    /// of consecutive items, as many items to a part as fit.
    ///
    /// Items are never failed for their neighbours' size: only an item whose result alone
    /// is larger than any message can carry is replaced by [`TaskError::TooLarge`], with its
    /// own size and the largest an item's result may be, so that it fails typed rather than
    /// never arriving. An error too large for a message (a panic's message of megabytes) has
    /// its text cut to fit ([`WireError::fit`]): it arrives, shortened.
    pub(crate) fn split(self, limit: usize) -> Vec<UnitResult> {
        if self.weight() <= limit {
            return vec![self];
        }
        let UnitResult { task, elapsed_ns, part, outcome } = self;
        let (bytes, items) = match outcome {
            UnitOutcome::Items { bytes, items } => (bytes, items),
            UnitOutcome::Failed(mut error) => {
                error.fit(limit.saturating_sub(RESULT_OVERHEAD));
                return vec![UnitResult {
                    task,
                    elapsed_ns,
                    part,
                    outcome: UnitOutcome::Failed(error),
                }];
            }
        };
        let largest = limit.saturating_sub(RESULT_OVERHEAD + ITEM_OVERHEAD);
        let start = part.unwrap_or(0);
        let mut parts = Vec::new();
        let mut first = 0usize;
        let mut part_bytes = Vec::new();
        let mut part_items = Vec::new();
        let mut weight = RESULT_OVERHEAD;
        let mut at = 0usize;
        for (i, item) in items.into_iter().enumerate() {
            let (item, value) = match item {
                Item::Ok(len) => {
                    let end = at.saturating_add(len as usize);
                    let value = bytes.get(at..end);
                    at = end;
                    match value {
                        Some(_) if len as usize > largest => {
                            let error = TaskError::TooLarge {
                                side: Side::Result,
                                size: u64::from(len),
                                limit: largest as u64,
                            };
                            (Item::Err(Box::new(WireError::from_error(&error))), None)
                        }
                        Some(value) => (Item::Ok(len), Some(value)),
                        None => {
                            let reason = "a result is shorter than its items".to_string();
                            (Item::Err(Box::new(WireError::Protocol(reason))), None)
                        }
                    }
                }
                Item::Err(mut error) => {
                    error.fit(largest);
                    (Item::Err(error), None)
                }
            };
            let added = ITEM_OVERHEAD
                + match (&item, value) {
                    (Item::Err(e), _) => e.weight(),
                    (Item::Ok(_), value) => value.map_or(0, <[u8]>::len),
                };
            if !part_items.is_empty() && weight + added > limit {
                let outcome = UnitOutcome::Items {
                    bytes: std::mem::take(&mut part_bytes),
                    items: std::mem::take(&mut part_items),
                };
                parts.push((first, outcome));
                first = i;
                weight = RESULT_OVERHEAD;
            }
            weight += added;
            part_bytes.extend_from_slice(value.unwrap_or_default());
            part_items.push(item);
        }
        parts.push((first, UnitOutcome::Items { bytes: part_bytes, items: part_items }));
        // One part is the whole unit (only items too large alone failed).
        let whole = parts.len() == 1 && part.is_none();
        parts
            .into_iter()
            .map(|(first, outcome)| UnitResult {
                task,
                elapsed_ns,
                part: (!whole).then(|| start.saturating_add(first as u32)),
                outcome,
            })
            .collect()
    }
}

/// Every item's outcome, or a failure of the whole unit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum UnitOutcome {
    Items {
        /// The results' encodings, back to back, in item order (failed items add none).
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        #[serde(with = "compact_items")]
        items: Vec<Item>,
    },
    Failed(WireError),
}

/// One item's outcome: the length of its encoded result, or its error.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    Ok(u32),
    /// Boxed: errors are rare, and a small item keeps a large chunk's list small.
    Err(Box<WireError>),
}

impl UnitOutcome {
    /// Replaces every [`WireError::Cancelled`] in it with `error`.
    pub(crate) fn replace_cancelled(&mut self, error: &WireError) {
        match self {
            UnitOutcome::Failed(e) if *e == WireError::Cancelled => *e = error.clone(),
            UnitOutcome::Failed(_) => {}
            UnitOutcome::Items { items, .. } => {
                for item in items {
                    match item {
                        Item::Err(e) if **e == WireError::Cancelled => **e = error.clone(),
                        _ => {}
                    }
                }
            }
        }
    }

    /// How many items' outcomes this carries: `None` for a failure of the whole unit.
    pub(crate) fn carried(&self) -> Option<usize> {
        match self {
            UnitOutcome::Items { items, .. } => Some(items.len()),
            UnitOutcome::Failed(_) => None,
        }
    }

    /// Every item's outcome in order, as encoded bytes or an error; `n` items are expected.
    pub(crate) fn items(&self, n: usize) -> Vec<Result<&[u8], TaskError>> {
        match self {
            UnitOutcome::Failed(e) => (0..n).map(|_| Err(e.to_error())).collect(),
            UnitOutcome::Items { bytes, items } => {
                let mut at = 0usize;
                let mut out = Vec::with_capacity(n);
                for item in items.iter().take(n) {
                    out.push(match item {
                        Item::Ok(len) => {
                            let end = at.saturating_add(*len as usize);
                            match bytes.get(at..end) {
                                Some(slice) => {
                                    at = end;
                                    Ok(slice)
                                }
                                None => Err(TaskError::Protocol {
                                    reason: "a result message is shorter than its items".into(),
                                }),
                            }
                        }
                        Item::Err(e) => Err(e.to_error()),
                    });
                }
                while out.len() < n {
                    out.push(Err(TaskError::Protocol {
                        reason: "a result message has fewer items than its task".into(),
                    }));
                }
                out
            }
        }
    }
}

/// How a unit's items travel: the result lengths (0 for a failed item) as one list and the
/// errors, by item index, as another, so a chunk of many items costs a number per item.
mod compact_items {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Item, WireError};

    pub(super) fn serialize<S: Serializer>(items: &[Item], s: S) -> Result<S::Ok, S::Error> {
        let lens: Vec<u32> = items
            .iter()
            .map(|item| match item {
                Item::Ok(len) => *len,
                Item::Err(_) => 0,
            })
            .collect();
        let errors: Vec<(u32, &WireError)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item {
                Item::Err(e) => Some((i as u32, &**e)),
                Item::Ok(_) => None,
            })
            .collect();
        (lens, errors).serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Item>, D::Error> {
        let (lens, errors): (Vec<u32>, Vec<(u32, WireError)>) = Deserialize::deserialize(d)?;
        let mut items: Vec<Item> = lens.into_iter().map(Item::Ok).collect();
        for (i, error) in errors {
            match items.get_mut(i as usize) {
                Some(item) => *item = Item::Err(Box::new(error)),
                None => {
                    return Err(serde::de::Error::custom("an error for an item that is not there"));
                }
            }
        }
        Ok(items)
    }
}

/// A [`TaskError`] as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum WireError {
    Panicked { message: String, location: Option<String>, backtrace: Option<String> },
    Signal(i32),
    Code(i32),
    TimedOut { limit_ns: u64, still_running: bool },
    Cancelled,
    ShutDown,
    Serialization { side: u8, encode: bool, message: String },
    TooLarge { side: u8, size: u64, limit: u64 },
    WorkerStart(String),
    ResourceLimit { memory: bool, limit: u64 },
    Protocol(String),
    InvalidConfig(String),
    Unsupported(String),
    AlreadyJoined,
    Io(String),
    NoWorker { waited_ns: u64 },
    DeliveryLimit(u32),
    Unreachable { waited_ns: u64, reason: String },
}

fn side_byte(side: Side) -> u8 {
    match side {
        Side::Argument => 0,
        Side::Result => 1,
        Side::Task => 2,
    }
}

fn side_of(byte: u8) -> Side {
    match byte {
        0 => Side::Argument,
        1 => Side::Result,
        _ => Side::Task,
    }
}

impl WireError {
    /// Roughly what the error adds to a message, in bytes; never less than its encoding.
    pub(crate) fn weight(&self) -> usize {
        let text = match self {
            WireError::Panicked { message, location, backtrace } => {
                message.len()
                    + location.as_ref().map_or(0, String::len)
                    + backtrace.as_ref().map_or(0, String::len)
            }
            WireError::Serialization { message, .. } => message.len(),
            WireError::WorkerStart(s)
            | WireError::Protocol(s)
            | WireError::InvalidConfig(s)
            | WireError::Unsupported(s)
            | WireError::Io(s)
            | WireError::Unreachable { reason: s, .. } => s.len(),
            _ => 0,
        };
        // The variant's and fields' names, numbers, and the strings' lengths.
        96 + text
    }

    /// Cuts the error's texts (the longest first, keeping its start) until its weight is at
    /// most `limit`, each with a note of how many bytes were cut: an error is what a task's
    /// caller must get, whatever its size, and a message too large for the server would
    /// never be stored, so the unit would be delivered again and again.
    pub(crate) fn fit(&mut self, limit: usize) {
        /// What a cut adds to its text at most: the note.
        const NOTE: usize = 64;
        while self.weight() > limit {
            let excess = self.weight() - limit;
            let Some(text) = self.longest_text() else { return };
            if text.len() <= NOTE {
                return;
            }
            let mut keep = text.len().saturating_sub(excess + NOTE);
            while !text.is_char_boundary(keep) {
                keep -= 1;
            }
            let cut = text.len() - keep;
            text.truncate(keep);
            text.push_str(&format!(" [{cut} more bytes cut to fit one message]"));
        }
    }

    /// The longest of the error's texts, if it has any.
    fn longest_text(&mut self) -> Option<&mut String> {
        match self {
            WireError::Panicked { message, location, backtrace } => {
                [Some(message), location.as_mut(), backtrace.as_mut()]
                    .into_iter()
                    .flatten()
                    .max_by_key(|text| text.len())
            }
            WireError::Serialization { message: s, .. }
            | WireError::WorkerStart(s)
            | WireError::Protocol(s)
            | WireError::InvalidConfig(s)
            | WireError::Unsupported(s)
            | WireError::Io(s)
            | WireError::Unreachable { reason: s, .. } => Some(s),
            _ => None,
        }
    }

    /// The travelling form of `e`.
    pub(crate) fn from_error(e: &TaskError) -> WireError {
        match e {
            TaskError::Panicked(r) => WireError::Panicked {
                message: r.message.clone(),
                location: r.location.clone(),
                backtrace: r.backtrace.clone(),
            },
            TaskError::Crashed(Exit::Signal(s)) => WireError::Signal(*s),
            TaskError::Crashed(Exit::Code(c)) => WireError::Code(*c),
            TaskError::TimedOut { limit, still_running } => {
                WireError::TimedOut { limit_ns: nanos(*limit), still_running: *still_running }
            }
            TaskError::Cancelled => WireError::Cancelled,
            TaskError::ShutDown => WireError::ShutDown,
            TaskError::Serialization { side, direction, message } => WireError::Serialization {
                side: side_byte(*side),
                encode: matches!(direction, Direction::Encode),
                message: message.clone(),
            },
            TaskError::TooLarge { side, size, limit } => {
                WireError::TooLarge { side: side_byte(*side), size: *size, limit: *limit }
            }
            TaskError::WorkerStart { reason } => WireError::WorkerStart(reason.clone()),
            TaskError::ResourceLimit { resource, limit } => WireError::ResourceLimit {
                memory: matches!(resource, Resource::Memory),
                limit: *limit,
            },
            TaskError::Protocol { reason } => WireError::Protocol(reason.clone()),
            TaskError::InvalidConfig { reason } => WireError::InvalidConfig(reason.clone()),
            TaskError::Unsupported { operation } => WireError::Unsupported(operation.to_string()),
            TaskError::AlreadyJoined => WireError::AlreadyJoined,
            TaskError::Io(io) => WireError::Io(io.to_string()),
            // Agents of other images are the caller's own finding, never an agent's.
            TaskError::NoWorker { waited, .. } => WireError::NoWorker { waited_ns: nanos(*waited) },
            TaskError::DeliveryLimit { deliveries } => WireError::DeliveryLimit(*deliveries),
            TaskError::Unreachable { waited, source } => {
                WireError::Unreachable { waited_ns: nanos(*waited), reason: source.to_string() }
            }
            other => WireError::Protocol(other.to_string()),
        }
    }

    /// The error this stands for.
    pub(crate) fn to_error(&self) -> TaskError {
        match self {
            WireError::Panicked { message, location, backtrace } => {
                TaskError::Panicked(Box::new(PanicReport {
                    message: message.clone(),
                    location: location.clone(),
                    backtrace: backtrace.clone(),
                }))
            }
            WireError::Signal(s) => TaskError::Crashed(Exit::Signal(*s)),
            WireError::Code(c) => TaskError::Crashed(Exit::Code(*c)),
            WireError::TimedOut { limit_ns, still_running } => TaskError::TimedOut {
                limit: Duration::from_nanos(*limit_ns),
                still_running: *still_running,
            },
            WireError::Cancelled => TaskError::Cancelled,
            WireError::ShutDown => TaskError::ShutDown,
            WireError::Serialization { side, encode, message } => TaskError::Serialization {
                side: side_of(*side),
                direction: if *encode { Direction::Encode } else { Direction::Decode },
                message: message.clone(),
            },
            WireError::TooLarge { side, size, limit } => {
                TaskError::TooLarge { side: side_of(*side), size: *size, limit: *limit }
            }
            WireError::WorkerStart(reason) => TaskError::WorkerStart { reason: reason.clone() },
            WireError::ResourceLimit { memory, limit } => TaskError::ResourceLimit {
                resource: if *memory { Resource::Memory } else { Resource::CpuTime },
                limit: *limit,
            },
            WireError::Protocol(reason) => TaskError::Protocol { reason: reason.clone() },
            WireError::InvalidConfig(reason) => TaskError::InvalidConfig { reason: reason.clone() },
            WireError::Unsupported(op) => {
                TaskError::Protocol { reason: format!("the agent does not support {op}") }
            }
            WireError::AlreadyJoined => TaskError::AlreadyJoined,
            WireError::Io(message) => {
                TaskError::Io(Arc::new(std::io::Error::other(message.clone())))
            }
            WireError::NoWorker { waited_ns } => TaskError::NoWorker {
                waited: Duration::from_nanos(*waited_ns),
                other_agents: 0,
                other_streams: 0,
            },
            WireError::DeliveryLimit(deliveries) => {
                TaskError::DeliveryLimit { deliveries: *deliveries }
            }
            WireError::Unreachable { waited_ns, reason } => {
                error::unreachable(reason.clone(), Duration::from_nanos(*waited_ns))
            }
        }
    }
}

/// `d` in whole nanoseconds, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Encodes an envelope.
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // The envelopes hold only strings, numbers, byte buffers and sequences of them, which
    // the codec always encodes.
    let _ = remote::encode_into(value, &mut out, Side::Task);
    out
}

/// Decodes an envelope.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    remote::decode(bytes, Side::Task).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_survives_the_trip() {
        let all = [
            TaskError::Panicked(Box::new(PanicReport {
                message: "boom".into(),
                location: Some("src/x.rs:1:2".into()),
                backtrace: None,
            })),
            TaskError::Crashed(Exit::Signal(11)),
            TaskError::Crashed(Exit::Code(3)),
            TaskError::TimedOut { limit: Duration::from_millis(5), still_running: false },
            TaskError::Cancelled,
            TaskError::ShutDown,
            TaskError::serialization(Side::Result, Direction::Decode, "bad"),
            TaskError::TooLarge { side: Side::Argument, size: 10, limit: 5 },
            TaskError::WorkerStart { reason: "no".into() },
            TaskError::ResourceLimit { resource: Resource::Memory, limit: 1 << 28 },
            TaskError::ResourceLimit { resource: Resource::CpuTime, limit: 1 },
            TaskError::Protocol { reason: "garbage".into() },
            TaskError::DeliveryLimit { deliveries: 3 },
            TaskError::NoWorker {
                waited: Duration::from_secs(30),
                other_agents: 0,
                other_streams: 0,
            },
            error::unreachable("no route", Duration::from_secs(2)),
        ];
        for e in all {
            let wire: WireError = decode(&encode(&WireError::from_error(&e))).unwrap();
            let back = wire.to_error();
            assert_eq!(back.to_string(), e.to_string());
            assert_eq!(std::mem::discriminant(&back), std::mem::discriminant(&e));
        }
    }

    fn result_of(values: &[Vec<u8>]) -> UnitResult {
        UnitResult {
            task: 1,
            elapsed_ns: 5,
            part: None,
            outcome: UnitOutcome::Items {
                bytes: values.concat(),
                items: values.iter().map(|v| Item::Ok(v.len() as u32)).collect(),
            },
        }
    }

    #[test]
    fn a_result_that_fits_travels_whole() {
        let result = result_of(&[vec![1; 10], vec![2; 20]]);
        let parts = result.clone().split(result.weight());
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].part, None);
        let items = parts[0].outcome.items(2);
        assert_eq!(items[0].as_ref().unwrap(), &[1; 10]);
        assert_eq!(items[1].as_ref().unwrap(), &[2; 20]);
    }

    #[test]
    fn a_result_too_large_for_one_message_travels_in_parts_that_fit() {
        let values: Vec<Vec<u8>> = (0..7u8).map(|i| vec![i; 300]).collect();
        let limit = 1000;
        let parts = result_of(&values).split(limit);
        assert!(parts.len() > 1);
        let mut next = 0;
        for part in &parts {
            assert!(part.weight() <= limit, "{} > {limit}", part.weight());
            assert!(wire_size(part) <= part.weight(), "the weight covers the encoding");
            assert_eq!(part.part, Some(next));
            let n = part.outcome.carried().unwrap();
            for (k, item) in part.outcome.items(n).into_iter().enumerate() {
                assert_eq!(item.unwrap(), &values[next as usize + k][..]);
            }
            next += n as u32;
        }
        assert_eq!(next, 7, "every item travels once");
    }

    #[test]
    fn only_an_item_too_large_alone_fails_with_its_own_size() {
        let limit = 1000;
        let values = [vec![1; 10], vec![2; 600], vec![3; 2000], vec![4; 600], vec![5; 20]];
        let parts = result_of(&values).split(limit);
        let mut outcomes = Vec::new();
        for part in &parts {
            assert!(part.weight() <= limit);
            outcomes.extend(part.outcome.items(part.outcome.carried().unwrap()));
        }
        assert_eq!(outcomes.len(), 5);
        for (i, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Err(TaskError::TooLarge { side: Side::Result, size, limit: largest }) => {
                    assert_eq!(i, 2, "only the item too large alone fails");
                    assert_eq!(size, 2000);
                    assert!(size > largest && largest < limit as u64);
                }
                other => assert_eq!(other.unwrap(), &values[i][..]),
            }
        }
        let alone = result_of(&[vec![9; 2000]]).split(limit);
        assert_eq!(alone.len(), 1);
        assert_eq!(alone[0].part, None, "one part is the whole unit");
        assert!(matches!(
            alone[0].outcome.items(1)[0],
            Err(TaskError::TooLarge { size: 2000, .. })
        ));
    }

    /// A panic whose message is `len` bytes of 'é' (two bytes each: cuts keep whole
    /// characters) after "start".
    fn huge_panic(len: usize) -> WireError {
        WireError::Panicked {
            message: format!("start{}", "é".repeat(len / 2)),
            location: Some("src/task.rs:1:1".into()),
            backtrace: None,
        }
    }

    /// Asserts that `error` is the huge panic, cut to fit.
    fn assert_cut(error: TaskError) {
        let TaskError::Panicked(report) = error else { panic!("{error:?}") };
        assert!(report.message.starts_with("startéé"), "its start is kept");
        assert!(report.message.ends_with("bytes cut to fit one message]"), "{}", report.message);
        assert_eq!(report.location.as_deref(), Some("src/task.rs:1:1"), "short texts are kept");
    }

    #[test]
    fn an_error_too_large_for_a_message_arrives_with_its_text_cut_to_fit() {
        let limit = 1000;
        let outcome = UnitOutcome::Items {
            bytes: vec![1, 2],
            items: vec![Item::Ok(1), Item::Err(Box::new(huge_panic(5000))), Item::Ok(1)],
        };
        let result = UnitResult { task: 1, elapsed_ns: 5, part: None, outcome };
        let parts = result.split(limit);
        let mut outcomes = Vec::new();
        for part in &parts {
            assert!(part.weight() <= limit, "{} > {limit}", part.weight());
            assert!(wire_size(part) <= part.weight(), "the weight covers the encoding");
            outcomes.extend(part.outcome.items(part.outcome.carried().unwrap()));
        }
        assert_eq!(outcomes.len(), 3);
        assert_eq!(outcomes[0].as_ref().unwrap(), &[1]);
        assert_cut(outcomes[1].clone().unwrap_err());
        assert_eq!(outcomes[2].as_ref().unwrap(), &[2]);

        let failed = UnitResult::failed(2, huge_panic(5000)).split(limit);
        assert_eq!(failed.len(), 1);
        assert!(failed[0].weight() <= limit && wire_size(&failed[0]) <= limit);
        let UnitOutcome::Failed(error) = &failed[0].outcome else { panic!("a failed unit") };
        assert_cut(error.to_error());
    }

    /// The encoded size of a message of `result` alone.
    fn wire_size(result: &UnitResult) -> usize {
        encode(&ResultMessageRef { results: std::slice::from_ref(result) }).len()
    }

    #[test]
    fn only_cancelled_items_are_replaced() {
        let stopped = WireError::Unreachable { waited_ns: 0, reason: "gone".into() };
        let mut outcome = UnitOutcome::Items {
            bytes: vec![1],
            items: vec![
                Item::Ok(1),
                Item::Err(Box::new(WireError::Cancelled)),
                Item::Err(Box::new(WireError::Signal(9))),
            ],
        };
        outcome.replace_cancelled(&stopped);
        let items = outcome.items(3);
        assert_eq!(items[0].as_ref().unwrap(), &[1]);
        assert!(matches!(items[1], Err(TaskError::Unreachable { .. })));
        assert_eq!(items[2].as_ref().unwrap_err().signal(), Some(9));
        let mut whole = UnitOutcome::Failed(WireError::Cancelled);
        whole.replace_cancelled(&stopped);
        assert!(matches!(whole, UnitOutcome::Failed(WireError::Unreachable { .. })));
    }

    #[test]
    fn items_travel_as_lengths_and_errors() {
        let outcome = UnitOutcome::Items {
            bytes: vec![1, 2, 3],
            items: vec![Item::Ok(1), Item::Err(Box::new(WireError::Signal(11))), Item::Ok(2)],
        };
        let back: UnitOutcome = decode(&encode(&outcome)).unwrap();
        let items = back.items(3);
        assert_eq!(items[0].as_ref().unwrap(), &[1]);
        assert_eq!(items[1].as_ref().unwrap_err().signal(), Some(11));
        assert_eq!(items[2].as_ref().unwrap(), &[2, 3]);
    }

    #[test]
    fn items_split_the_result_bytes_and_flag_short_messages() {
        let outcome = UnitOutcome::Items {
            bytes: vec![1, 2, 3],
            items: vec![Item::Ok(1), Item::Err(Box::new(WireError::Signal(11))), Item::Ok(2)],
        };
        let items = outcome.items(3);
        assert_eq!(items[0].as_ref().unwrap(), &[1]);
        assert_eq!(items[1].as_ref().unwrap_err().signal(), Some(11));
        assert_eq!(items[2].as_ref().unwrap(), &[2, 3]);
        let short = outcome.items(4);
        assert!(matches!(short[3], Err(TaskError::Protocol { .. })));
        let lying = UnitOutcome::Items { bytes: vec![1], items: vec![Item::Ok(5)] };
        assert!(matches!(lying.items(1)[0], Err(TaskError::Protocol { .. })));
    }
}
