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
    pub(crate) entry: i64,
    #[serde(with = "serde_bytes")]
    pub(crate) state: Vec<u8>,
    pub(crate) timeout_ns: Option<u64>,
    /// The items' encodings, back to back; `ends[i]` is where item `i` ends.
    #[serde(with = "serde_bytes")]
    pub(crate) inputs: Vec<u8>,
    pub(crate) ends: Vec<u32>,
}

impl Unit {
    /// The encoded size, roughly: what it adds to a message.
    pub(crate) fn weight(&self) -> usize {
        self.inputs.len() + self.state.len() + 5 * self.ends.len() + 32
    }
}

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

/// The outcome of one unit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UnitResult {
    pub(crate) task: u64,
    /// How long the agent took over the unit, from receiving it to its last item's result.
    pub(crate) elapsed_ns: u64,
    pub(crate) outcome: UnitOutcome,
}

impl UnitResult {
    /// A unit that failed as a whole with `error`, without running.
    pub(crate) fn failed(task: u64, error: WireError) -> Self {
        UnitResult { task, elapsed_ns: 0, outcome: UnitOutcome::Failed(error) }
    }

    /// Roughly what the result adds to a message, in bytes.
    pub(crate) fn weight(&self) -> usize {
        64 + match &self.outcome {
            UnitOutcome::Items { bytes, items } => bytes.len() + 8 * items.len(),
            UnitOutcome::Failed(_) => 64,
        }
    }

    /// Makes the result fit in `limit` bytes: the largest item results are replaced by
    /// [`TaskError::TooLarge`] until it does, so a result that no message can carry fails
    /// typed rather than never arriving.
    pub(crate) fn fit(&mut self, limit: usize) {
        let weight = self.weight();
        let UnitOutcome::Items { bytes, items } = &mut self.outcome else { return };
        if weight <= limit {
            return;
        }
        let mut starts = Vec::with_capacity(items.len());
        let mut at = 0usize;
        for item in items.iter() {
            starts.push(at);
            if let Item::Ok(len) = item {
                at += *len as usize;
            }
        }
        let mut by_size: Vec<usize> = (0..items.len()).collect();
        let size = |item: &Item| match item {
            Item::Ok(len) => *len,
            Item::Err(_) => 0,
        };
        by_size.sort_by_key(|&i| std::cmp::Reverse(size(&items[i])));
        let mut excess = weight - limit;
        let mut dropped = vec![false; items.len()];
        for i in by_size {
            let Item::Ok(len) = items[i] else { continue };
            if excess == 0 || len == 0 {
                break;
            }
            dropped[i] = true;
            excess = excess.saturating_sub(len as usize);
        }
        let mut kept = Vec::new();
        for (i, item) in items.iter_mut().enumerate() {
            let Item::Ok(len) = *item else { continue };
            if dropped[i] {
                let error = TaskError::TooLarge {
                    side: Side::Result,
                    size: u64::from(len),
                    limit: limit as u64,
                };
                *item = Item::Err(Box::new(WireError::from_error(&error)));
            } else {
                kept.extend_from_slice(&bytes[starts[i]..starts[i] + len as usize]);
            }
        }
        *bytes = kept;
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
            TaskError::NoWorker { waited } => WireError::NoWorker { waited_ns: nanos(*waited) },
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
            WireError::NoWorker { waited_ns } => {
                TaskError::NoWorker { waited: Duration::from_nanos(*waited_ns) }
            }
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
            TaskError::NoWorker { waited: Duration::from_secs(30) },
            error::unreachable("no route", Duration::from_secs(2)),
        ];
        for e in all {
            let wire: WireError = decode(&encode(&WireError::from_error(&e))).unwrap();
            let back = wire.to_error();
            assert_eq!(back.to_string(), e.to_string());
            assert_eq!(std::mem::discriminant(&back), std::mem::discriminant(&e));
        }
    }

    #[test]
    fn a_result_too_large_for_a_message_fails_its_largest_items() {
        let mut result = UnitResult {
            task: 1,
            elapsed_ns: 0,
            outcome: UnitOutcome::Items {
                bytes: [vec![1; 10], vec![2; 1000], vec![3; 20]].concat(),
                items: vec![Item::Ok(10), Item::Ok(1000), Item::Ok(20)],
            },
        };
        result.fit(500);
        assert!(result.weight() <= 500);
        let items = result.outcome.items(3);
        assert_eq!(items[0].as_ref().unwrap(), &[1; 10]);
        assert!(matches!(
            items[1],
            Err(TaskError::TooLarge { side: Side::Result, size: 1000, limit: 500 })
        ));
        assert_eq!(items[2].as_ref().unwrap(), &[3; 20]);
        let small = result.clone();
        result.fit(500);
        assert_eq!(result.weight(), small.weight(), "a result that fits is left alone");
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
