//! What the frames between parent and worker carry.
//!
//! [`crate::wire`] splits bytes into frames; this module builds and reads the bodies of each
//! [`Kind`]. The layout of every frame is listed in `README.md`.

use std::ops::Range;

use taskpool_core::{Direction, PanicReport, Resource, Side, TaskError};

use crate::bulk;
use crate::ship::Shipped;
use crate::usage::Cost;
use crate::wire::{self, Body, Kind, WireError};

/// Bit in [`Kind::Batch`]'s flags: write each result as soon as it exists.
pub(crate) const FLUSH_EACH: u8 = 1;
/// Bit in [`Kind::Batch`]'s flags: its items have callers of their own, so a long item must
/// not hold back the results before it for long (see `flusher.rs`; on the result pipe, the
/// same as [`FLUSH_EACH`]), nor the items after it: each may be recalled on its own, as a
/// batch is (`status.rs`).
pub(crate) const FLUSH_SOON: u8 = 4;
/// Bit in [`Kind::Batch`]'s flags: its items may be cancelled after they were sent, so the
/// worker checks its status page for cancellations before starting each.
pub(crate) const CANCELLABLE: u8 = 2;
/// Bit in [`Kind::Batch`]'s flags: a caller wants its items' own cost, so the worker reads
/// its CPU time after the batch's last item even if it read it less than 100 µs before (a
/// reading is a system call, about 1 µs on a virtual machine: a quarter of a round trip).
pub(crate) const MEASURE: u8 = 8;
/// Bit in [`Kind::Batch`]'s flags: its function closed a worker's result pipe before (see
/// `Pace::closes_descriptors`), so the worker checks the pipe after each item and exits
/// if it is gone, before another item runs (`Outputs::check_descriptors`). It also writes
/// each result at once, as for [`FLUSH_EACH`]: an item that closes the pipe and runs on gets
/// its worker killed, which would lose the results it held back.
pub(crate) const CHECK_DESCRIPTORS: u8 = 16;
/// Bit in [`Kind::Init`]'s flags: capture backtraces on panic.
pub(crate) const BACKTRACES: u8 = 1;
/// Bit in [`Kind::Init`]'s flags: after its hello, the worker reads batches from the request
/// ring and writes results to the result ring of its shared memory (`region.rs`), and rings
/// the parent with [`Kind::Bell`] frames on the result pipe.
pub(crate) const RINGS: u8 = 2;
/// Bit in [`Kind::Init`]'s flags: the worker's results go on to another machine, so a result
/// that holds a handle or shared bytes fails to encode (`handoff::off_machine`).
pub(crate) const OFF_MACHINE: u8 = 4;

/// The settings a worker receives in its [`Kind::Init`] frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Init {
    pub(crate) frame_limit: u64,
    pub(crate) flags: u8,
    pub(crate) initializer: Option<i64>,
    /// The cap on the worker's address space, in bytes.
    pub(crate) memory_limit: Option<u64>,
    /// The cap on each task's CPU time, in whole seconds.
    pub(crate) cpu_time_limit: Option<u64>,
    pub(crate) name: String,
}

impl Init {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let at = wire::begin_frame(out, Kind::Init);
        wire::put_u64(out, self.frame_limit);
        out.push(self.flags);
        out.push(u8::from(self.initializer.is_some()));
        wire::put_i64(out, self.initializer.unwrap_or(0));
        wire::put_u64(out, self.memory_limit.unwrap_or(0));
        wire::put_u64(out, self.cpu_time_limit.unwrap_or(0));
        out.extend_from_slice(self.name.as_bytes());
        wire::end_frame(out, at);
    }

    pub(crate) fn decode(body: &[u8]) -> Result<Init, wire::WireError> {
        let mut b = Body::new(body);
        let frame_limit = b.u64("frame limit")?;
        let flags = b.u8("flags")?;
        let has_init = b.u8("initializer flag")? != 0;
        let offset = b.i64("initializer")?;
        let limit = |v: u64| (v != 0).then_some(v);
        let memory_limit = limit(b.u64("memory limit")?);
        let cpu_time_limit = limit(b.u64("cpu time limit")?);
        let name = String::from_utf8_lossy(b.rest()).into_owned();
        Ok(Init {
            frame_limit,
            flags,
            initializer: has_init.then_some(offset),
            memory_limit,
            cpu_time_limit,
            name,
        })
    }
}

/// [`Kind::Failed`] reason: the value could not be (de)serialized.
const FAILED_SERIALIZATION: u8 = 0;
/// [`Kind::Failed`] reason: the encoded value is over the frame limit.
const FAILED_TOO_LARGE: u8 = 1;
/// [`Kind::Failed`] reason: the task ran out of memory under the worker's cap (size: the cap).
const FAILED_MEMORY: u8 = 2;
/// [`Kind::Failed`] reason: the task used up its CPU time (size: the limit in seconds).
const FAILED_CPU_TIME: u8 = 3;
/// [`Kind::Failed`] reason: the item was cancelled before it started, and was skipped.
const FAILED_CANCELLED: u8 = 4;
/// [`Kind::Failed`] reason: the items of a batch, from the frame's (size: how many), were
/// recalled by the parent before the batch started, and were skipped (or one task of a frame
/// of single tasks, before it started: see [`FLUSH_SOON`]).
const FAILED_RECALLED: u8 = 5;

fn side_byte(side: Side) -> u8 {
    match side {
        Side::Argument => 0,
        Side::Result => 1,
        Side::Task => 2,
    }
}

fn side_from_byte(b: u8) -> Option<Side> {
    Some(match b {
        0 => Side::Argument,
        1 => Side::Result,
        2 => Side::Task,
        _ => return None,
    })
}

/// Which way a value of `side` fails in a worker: a worker decodes arguments and task state
/// and encodes results.
fn worker_direction(side: Side) -> Direction {
    match side {
        Side::Result => Direction::Encode,
        Side::Argument | Side::Task => Direction::Decode,
    }
}

/// Appends a [`Kind::Batch`] frame: `count` inputs to run with `job`, numbered from
/// `first_seq`, given as they travel: each a `u32` length and its bytes (see `run.rs`).
pub(crate) fn encode_batch(
    out: &mut Vec<u8>,
    first_seq: u64,
    job: &Shipped,
    flags: u8,
    count: usize,
    framed: &[u8],
) {
    encode_batch_head(out, first_seq, job, flags, count, framed);
    bulk::reserve(out, framed.len());
    out.extend_from_slice(framed);
}

/// Appends the head of the [`Kind::Batch`] frame that [`encode_batch`] would append, without
/// its inputs: `framed` follows it in the stream, written from where it is.
pub(crate) fn encode_batch_head(
    out: &mut Vec<u8>,
    first_seq: u64,
    job: &Shipped,
    flags: u8,
    count: usize,
    framed: &[u8],
) {
    batch_head(out, first_seq, job, flags, count, framed.len());
}

/// Appends the [`Kind::Batch`] frame that [`encode_batch`] would append for inputs framed in
/// several pieces (the items of several runs of one job), `parts` in order.
pub(crate) fn encode_batch_parts<'a>(
    out: &mut Vec<u8>,
    first_seq: u64,
    job: &Shipped,
    flags: u8,
    count: usize,
    parts: impl Iterator<Item = &'a [u8]> + Clone,
) {
    batch_head(out, first_seq, job, flags, count, parts.clone().map(<[u8]>::len).sum());
    for part in parts {
        out.extend_from_slice(part);
    }
}

/// The head of a [`Kind::Batch`] frame whose `len` bytes of framed inputs follow.
fn batch_head(out: &mut Vec<u8>, seq: u64, job: &Shipped, flags: u8, count: usize, len: usize) {
    let at = wire::begin_frame(out, Kind::Batch);
    wire::put_u64(out, seq);
    wire::put_i64(out, job.entry);
    out.push(flags);
    wire::put_bytes(out, &job.state);
    wire::put_u32(out, u32::try_from(count).unwrap_or(u32::MAX));
    wire::end_frame_before(out, at, len);
}

/// What every result frame says before the outcome: which item, and what it cost (CPU time
/// since the worker last read it: see `README.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    /// The item's sequence number on its worker.
    pub(crate) seq: u64,
    pub(crate) cost: Cost,
}

/// Why a worker reports an item as [`Kind::Failed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure<'a> {
    /// A value could not be (de)serialized.
    Serialization { side: Side, message: &'a str },
    /// An encoded value is over the frame limit.
    TooLarge { side: Side, size: u64 },
    /// The task went over one of the worker's limits.
    ResourceLimit { resource: Resource, limit: u64 },
    /// The item was cancelled before it started, and was skipped.
    Cancelled,
    /// The items of a batch, `count` of them from the frame's, were recalled before the
    /// batch started, and were skipped (or one task of a frame of single tasks).
    Recalled { count: u32 },
}

fn begin_result(out: &mut Vec<u8>, kind: Kind, meta: Meta) -> usize {
    let at = wire::begin_frame(out, kind);
    let Cost { elapsed_ns, user_ns, system_ns, peak_rss } = meta.cost;
    for field in [meta.seq, elapsed_ns, user_ns, system_ns, peak_rss] {
        wire::put_u64(out, field);
    }
    at
}

/// Where a [`Kind::Done`] frame's item count is, from the frame's start.
const DONE_COUNT: usize = wire::HEADER + 5 * 8;

/// A [`Kind::Done`] frame being built at the end of a buffer: the encoded results of
/// consecutive items, and what they cost together. After each [`OpenDone::push`] the buffer
/// holds a complete frame, so it can be written (or flushed by a crash handler) at any time
/// between items.
#[derive(Debug)]
pub(crate) struct OpenDone {
    /// Where the frame starts in the buffer.
    at: usize,
    count: u32,
    cost: Cost,
}

impl OpenDone {
    /// Starts a [`Kind::Done`] frame for items from `seq`, with no item yet.
    pub(crate) fn begin(out: &mut Vec<u8>, seq: u64) -> Self {
        let at = begin_result(out, Kind::Done, Meta { seq, cost: Cost::default() });
        wire::put_u32(out, 0);
        wire::end_frame(out, at);
        OpenDone { at, count: 0, cost: Cost::default() }
    }

    /// Adds the next item's encoded result, and what it cost, to the frame at the end of
    /// `out`. `false` (and nothing added) if the frame is full.
    #[inline(always)]
    pub(crate) fn push(&mut self, out: &mut Vec<u8>, value: &[u8], cost: Cost) -> bool {
        if self.count == u32::MAX || out.len() - self.at + value.len() + 4 > u32::MAX as usize {
            return false;
        }
        wire::put_bytes(out, value);
        self.count += 1;
        // Most items of a group of tiny ones report no cost (see the worker's clock): the
        // frame's cost fields are rewritten only when it grows.
        if cost != Cost::default() {
            self.cost.add(cost);
            let Cost { elapsed_ns, user_ns, system_ns, peak_rss } = self.cost;
            let fields = self.at + wire::HEADER + 8;
            for (i, field) in [elapsed_ns, user_ns, system_ns, peak_rss].into_iter().enumerate() {
                out[fields + 8 * i..fields + 8 * (i + 1)].copy_from_slice(&field.to_le_bytes());
            }
        }
        out[self.at + DONE_COUNT..self.at + DONE_COUNT + 4]
            .copy_from_slice(&self.count.to_le_bytes());
        wire::end_frame(out, self.at);
        true
    }
}

/// Appends a [`Kind::Done`] frame with one item's encoded result.
#[cfg(test)]
pub(crate) fn encode_done(out: &mut Vec<u8>, meta: Meta, value: &[u8]) {
    let mut open = OpenDone::begin(out, meta.seq);
    open.push(out, value, meta.cost);
}

/// Appends the start of a [`Kind::Done`] frame for one item whose encoded result, `len`
/// bytes, is written right after it from its own buffer: a large result is not copied into
/// the frame.
pub(crate) fn encode_done_head(out: &mut Vec<u8>, meta: Meta, len: usize) {
    let at = begin_result(out, Kind::Done, meta);
    wire::put_u32(out, 1);
    wire::put_u32(out, u32::try_from(len).unwrap_or(u32::MAX));
    wire::end_frame_before(out, at, len);
}

/// Appends a [`Kind::Panicked`] frame: the panic's message, location and backtrace (empty
/// when unknown).
pub(crate) fn encode_panicked(
    out: &mut Vec<u8>,
    meta: Meta,
    message: &str,
    location: &str,
    backtrace: &str,
) {
    let at = begin_result(out, Kind::Panicked, meta);
    wire::put_bytes(out, message.as_bytes());
    wire::put_bytes(out, location.as_bytes());
    wire::put_bytes(out, backtrace.as_bytes());
    wire::end_frame(out, at);
}

/// Appends a [`Kind::Failed`] frame.
pub(crate) fn encode_failed(out: &mut Vec<u8>, meta: Meta, failure: Failure<'_>) {
    let at = begin_result(out, Kind::Failed, meta);
    let (side, reason, size, message) = match failure {
        Failure::Serialization { side, message } => (side, FAILED_SERIALIZATION, 0, message),
        Failure::TooLarge { side, size } => (side, FAILED_TOO_LARGE, size, ""),
        Failure::ResourceLimit { resource: Resource::CpuTime, limit } => {
            (Side::Task, FAILED_CPU_TIME, limit, "")
        }
        Failure::ResourceLimit { limit, .. } => (Side::Task, FAILED_MEMORY, limit, ""),
        Failure::Cancelled => (Side::Task, FAILED_CANCELLED, 0, ""),
        Failure::Recalled { count } => (Side::Task, FAILED_RECALLED, u64::from(count), ""),
    };
    out.push(side_byte(side));
    out.push(reason);
    wire::put_u64(out, size);
    out.extend_from_slice(message.as_bytes());
    wire::end_frame(out, at);
}

/// The outcome of the items of a result frame: the range, in the frame reader's buffer, of
/// their encoded values (a list: see [`ItemResult::values`]), or the failure of its one item.
pub(crate) type ItemOutcome = Result<Range<usize>, TaskError>;

/// A result frame, read: [`Kind::Done`] for `count` consecutive items from `meta.seq`, which
/// together cost `meta.cost`, or a failure of one item.
#[derive(Debug)]
pub(crate) struct ItemResult {
    pub(crate) meta: Meta,
    pub(crate) count: u32,
    pub(crate) outcome: ItemOutcome,
    /// The items were recalled by the parent and skipped (the outcome says `Cancelled`):
    /// they are sent elsewhere, not failed.
    pub(crate) recalled: bool,
}

impl ItemResult {
    /// The ranges of the encoded values, in item order, in the buffer the frame was read
    /// from, given `list`: the bytes at the outcome's range of that buffer. None for a
    /// failure.
    pub(crate) fn values<'a>(&self, list: &'a [u8]) -> ValueRanges<'a> {
        match &self.outcome {
            Ok(range) => ValueRanges { list, base: range.start, at: 0, left: self.count },
            Err(_) => ValueRanges { list: &[], base: 0, at: 0, left: 0 },
        }
    }
}

/// The ranges of the values of a [`Kind::Done`] frame's list, checked when it was read.
#[derive(Debug)]
pub(crate) struct ValueRanges<'a> {
    list: &'a [u8],
    base: usize,
    at: usize,
    left: u32,
}

impl Iterator for ValueRanges<'_> {
    type Item = Range<usize>;

    fn next(&mut self) -> Option<Range<usize>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let len = self.list.get(self.at..self.at + 4)?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let start = self.at + 4;
        self.at = start + len;
        Some(self.base + start..self.base + self.at)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for ValueRanges<'_> {}

impl ValueRanges<'_> {
    /// Moves past the next `n` values and returns the range they span, each a `u32` length
    /// and its bytes, as [`Values`] reads them. Taking all that are left walks nothing.
    pub(crate) fn take_list(&mut self, n: usize) -> Range<usize> {
        let start = self.at;
        if n >= self.left as usize {
            self.left = 0;
            self.at = self.list.len();
        } else {
            for _ in 0..n {
                self.next();
            }
        }
        self.base + start..self.base + self.at
    }
}

/// The encoded values of a list that [`ValueRanges::take_list`] spans, in order.
#[derive(Debug, Clone)]
pub(crate) struct Values<'a> {
    rest: &'a [u8],
}

impl<'a> Values<'a> {
    /// The values of `list` (a list checked when its frame was read).
    pub(crate) fn new(list: &'a [u8]) -> Self {
        Values { rest: list }
    }
}

impl<'a> Iterator for Values<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let (len, rest) = self.rest.split_first_chunk::<4>()?;
        let len = (u32::from_le_bytes(*len) as usize).min(rest.len());
        let (value, rest) = rest.split_at(len);
        self.rest = rest;
        Some(value)
    }
}

/// Checks that `list` holds exactly `count` length-prefixed values: a walk from length to
/// length, with no error built until one is found (it runs once per result).
fn check_values(list: &[u8], count: u32) -> Result<(), WireError> {
    let mut at = 0usize;
    for _ in 0..count {
        let Some(len) = list.get(at..at + 4) else { return Err(bad_values(list, count)) };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        at = at + 4 + len;
    }
    if at == list.len() { Ok(()) } else { Err(bad_values(list, count)) }
}

/// Why `list` is not `count` length-prefixed values.
#[cold]
fn bad_values(list: &[u8], count: u32) -> WireError {
    let mut b = Body::new(list);
    for _ in 0..count {
        if let Err(e) = b.bytes("result value") {
            return e;
        }
    }
    b.finish("result values").err().unwrap_or_else(|| WireError("malformed result values".into()))
}

/// Reads a result frame ([`Kind::Done`], [`Kind::Panicked`] or [`Kind::Failed`]) whose body
/// is `body`, found at `range` of the reader's buffer, from a worker whose frames take up to
/// `frame_limit` bytes (what a [`TaskError::TooLarge`] names as the limit).
pub(crate) fn decode_result(
    kind: Kind,
    body: &[u8],
    range: Range<usize>,
    frame_limit: usize,
) -> Result<ItemResult, WireError> {
    let mut b = Body::new(body);
    let meta = Meta {
        seq: b.u64("sequence number")?,
        cost: Cost {
            elapsed_ns: b.u64("elapsed time")?,
            user_ns: b.u64("user time")?,
            system_ns: b.u64("system time")?,
            peak_rss: b.u64("peak resident memory")?,
        },
    };
    let mut count = 1;
    let mut recalled = false;
    let outcome = match kind {
        Kind::Done => {
            count = b.u32("item count")?;
            if count == 0 {
                return Err(WireError("a result frame without items".into()));
            }
            let list = b.rest();
            check_values(list, count)?;
            Ok(range.end - list.len()..range.end)
        }
        Kind::Panicked => {
            let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
            let message = text(b.bytes("panic message")?);
            let location = text(b.bytes("panic location")?);
            let backtrace = text(b.bytes("backtrace")?);
            b.finish("panic report")?;
            Err(TaskError::from(PanicReport {
                message,
                location: (!location.is_empty()).then_some(location),
                backtrace: (!backtrace.is_empty()).then_some(backtrace),
            }))
        }
        Kind::Failed => {
            let side =
                side_from_byte(b.u8("side")?).ok_or_else(|| WireError("unknown side".into()))?;
            let reason = b.u8("reason")?;
            let size = b.u64("size")?;
            let message = String::from_utf8_lossy(b.rest()).into_owned();
            Err(match reason {
                FAILED_SERIALIZATION => {
                    TaskError::Serialization { side, direction: worker_direction(side), message }
                }
                FAILED_TOO_LARGE => TaskError::TooLarge { side, size, limit: frame_limit as u64 },
                FAILED_MEMORY => {
                    TaskError::ResourceLimit { resource: Resource::Memory, limit: size }
                }
                FAILED_CPU_TIME => {
                    TaskError::ResourceLimit { resource: Resource::CpuTime, limit: size }
                }
                FAILED_CANCELLED => TaskError::Cancelled,
                FAILED_RECALLED => {
                    count = u32::try_from(size)
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| WireError(format!("{size} items recalled")))?;
                    recalled = true;
                    TaskError::Cancelled
                }
                _ => return Err(WireError(format!("unknown failure reason {reason}"))),
            })
        }
        other => return Err(WireError(format!("unexpected {other:?} frame"))),
    };
    Ok(ItemResult { meta, count, outcome, recalled })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{FrameReader, HEADER};

    /// The frame limit of the worker whose results the tests read.
    const LIMIT: usize = 1 << 20;

    #[test]
    fn a_value_list_must_hold_exactly_its_count_of_values() {
        let mut list = Vec::new();
        for value in [&b"ab"[..], b"", b"xyz"] {
            wire::put_bytes(&mut list, value);
        }
        assert!(check_values(&list, 3).is_ok());
        let fails = |list: &[u8], count: u32| check_values(list, count).unwrap_err().0;
        assert!(fails(&list, 4).contains("too short for result value"));
        assert!(fails(&list, 2).contains("unexpected bytes after result values"));
        assert!(fails(&list[..list.len() - 1], 3).contains("too short for result value"));
        // A length that points past the end, and one that ends inside a length.
        let mut past = list.clone();
        past[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(fails(&past, 3).contains("result value"));
        assert!(fails(&list[..9], 3).contains("result value"));
    }

    #[test]
    fn a_batch_head_then_its_inputs_is_the_whole_batch_frame() {
        let job = Shipped { entry: -7, state: b"state".to_vec(), kept: Default::default() };
        let framed = [3, 0, 0, 0, 1, 2, 3];
        let mut whole = Vec::new();
        encode_batch(&mut whole, 41, &job, CANCELLABLE, 1, &framed);
        let mut spliced = Vec::new();
        encode_batch_head(&mut spliced, 41, &job, CANCELLABLE, 1, &framed);
        spliced.extend_from_slice(&framed);
        assert_eq!(spliced, whole);
        let mut reader = FrameReader::new(1 << 10);
        reader.push(&spliced);
        let (kind, body) = reader.next_frame().unwrap().unwrap();
        assert_eq!(kind, Kind::Batch);
        assert!(reader.bytes(body).ends_with(&framed));
    }

    #[test]
    fn init_frames_round_trip() {
        let init = Init {
            frame_limit: 1 << 20,
            flags: BACKTRACES,
            initializer: Some(-42),
            memory_limit: Some(1 << 28),
            cpu_time_limit: None,
            name: "w-1".into(),
        };
        let mut out = Vec::new();
        init.encode(&mut out);
        let mut r = FrameReader::new(1024);
        r.push(&out);
        let (kind, body) = r.next_frame().unwrap().unwrap();
        assert_eq!(kind, Kind::Init);
        assert_eq!(Init::decode(r.bytes(body)).unwrap(), init);
    }

    /// Reads back the one frame in `bytes` as a result frame.
    fn read_result(bytes: &[u8]) -> (ItemResult, Vec<u8>) {
        let mut r = FrameReader::new(1024);
        r.push(bytes);
        let (kind, body) = r.next_frame().unwrap().unwrap();
        let item = decode_result(kind, r.bytes(body.clone()), body, LIMIT).unwrap();
        let value = match &item.outcome {
            Ok(list) => {
                let mut values = item.values(r.bytes(list.clone()));
                assert_eq!(values.len(), 1);
                r.bytes(values.next().unwrap()).to_vec()
            }
            Err(_) => Vec::new(),
        };
        (item, value)
    }

    #[test]
    fn result_frames_round_trip() {
        let cost = Cost { elapsed_ns: 1234, user_ns: 5, system_ns: 6, peak_rss: 1 << 20 };
        let meta = Meta { seq: 7, cost };
        let mut out = Vec::new();
        encode_done(&mut out, meta, b"value");
        let (item, value) = read_result(&out);
        assert_eq!((item.meta, value), (meta, b"value".to_vec()));
        let mut split = Vec::new();
        encode_done_head(&mut split, meta, 5);
        split.extend_from_slice(b"value");
        assert_eq!(split, out, "a head and its value make the same frame");

        out.clear();
        encode_panicked(&mut out, meta, "boom", "src/x.rs:1:2", "");
        match read_result(&out).0.outcome {
            Err(TaskError::Panicked(report)) => {
                assert_eq!(report.message, "boom");
                assert_eq!(report.location.as_deref(), Some("src/x.rs:1:2"));
                assert_eq!(report.backtrace, None);
            }
            other => panic!("{other:?}"),
        }

        out.clear();
        encode_failed(&mut out, meta, Failure::TooLarge { side: Side::Result, size: 99 });
        let failed = read_result(&out).0.outcome;
        assert!(matches!(
            failed,
            Err(TaskError::TooLarge { side: Side::Result, size: 99, limit }) if limit == LIMIT as u64
        ));
        out.clear();
        let failure = Failure::Serialization { side: Side::Argument, message: "bad" };
        encode_failed(&mut out, meta, failure);
        match read_result(&out).0.outcome {
            Err(TaskError::Serialization { side: Side::Argument, direction, message }) => {
                assert_eq!((direction, message.as_str()), (Direction::Decode, "bad"));
            }
            other => panic!("{other:?}"),
        }
        for resource in [Resource::Memory, Resource::CpuTime] {
            out.clear();
            encode_failed(&mut out, meta, Failure::ResourceLimit { resource, limit: 5 });
            match read_result(&out).0.outcome {
                Err(TaskError::ResourceLimit { resource: r, limit: 5 }) => assert_eq!(r, resource),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn sides_round_trip_through_bytes() {
        for side in [Side::Argument, Side::Result, Side::Task] {
            assert_eq!(side_from_byte(side_byte(side)), Some(side));
        }
        assert_eq!(side_from_byte(9), None);
    }

    /// Property tests: result and init frames, valid, damaged or random, never panic the
    /// decoder; valid ones decode to what was encoded.
    mod properties {
        use super::*;
        use crate::fuzz::Rng;

        const RESULT_KINDS: [Kind; 3] = [Kind::Done, Kind::Panicked, Kind::Failed];
        const SIDES: [Side; 3] = [Side::Argument, Side::Result, Side::Task];

        fn text(rng: &mut Rng) -> String {
            let len = rng.len_up_to(200);
            String::from_utf8_lossy(&rng.bytes(len)).into_owned()
        }

        /// A random, valid result frame body of `kind`, and what it says: its meta and its
        /// texts (one per item of a `Done` frame, whose meta sums the items' costs).
        fn result_body(rng: &mut Rng, kind: Kind) -> (Vec<u8>, Meta, Vec<String>) {
            let cost = Cost {
                elapsed_ns: rng.next_u64(),
                user_ns: rng.next_u64(),
                system_ns: rng.next_u64(),
                peak_rss: rng.next_u64(),
            };
            let meta = Meta { seq: rng.next_u64(), cost };
            let payload = text(rng);
            let mut out = Vec::new();
            match kind {
                Kind::Done => {
                    let mut open = OpenDone::begin(&mut out, meta.seq);
                    let mut payloads = vec![payload];
                    let mut total = Cost::default();
                    for _ in 0..rng.below(4) {
                        payloads.push(text(rng));
                    }
                    for (i, payload) in payloads.iter().enumerate() {
                        let cost = if i == 0 { meta.cost } else { Cost { elapsed_ns: 1, ..cost } };
                        total.add(cost);
                        assert!(open.push(&mut out, payload.as_bytes(), cost));
                    }
                    let meta = Meta { cost: total, ..meta };
                    return (out[HEADER..].to_vec(), meta, payloads);
                }
                Kind::Panicked => encode_panicked(&mut out, meta, &payload, &text(rng), ""),
                _ => {
                    let side = rng.pick(&SIDES);
                    let resource = rng.pick(&[Resource::Memory, Resource::CpuTime]);
                    let failure = match rng.below(5) {
                        0 => Failure::Serialization { side, message: &payload },
                        1 => Failure::ResourceLimit { resource, limit: rng.next_u64() },
                        2 => Failure::Cancelled,
                        3 => Failure::Recalled { count: 1 },
                        _ => Failure::TooLarge { side, size: rng.next_u64() },
                    };
                    encode_failed(&mut out, meta, failure);
                }
            }
            (out[HEADER..].to_vec(), meta, vec![payload])
        }

        #[test]
        fn valid_result_frames_decode_to_what_was_encoded() {
            let mut rng = Rng::new(5);
            for _ in 0..2000 {
                let kind = rng.pick(&RESULT_KINDS);
                let (body, meta, payloads) = result_body(&mut rng, kind);
                let item = decode_result(kind, &body, 0..body.len(), LIMIT).unwrap();
                assert_eq!(item.meta, meta);
                assert_eq!(item.count as usize, payloads.len());
                if let Ok(list) = &item.outcome {
                    let values: Vec<&[u8]> =
                        item.values(&body[list.clone()]).map(|r| &body[r]).collect();
                    let expected: Vec<&[u8]> = payloads.iter().map(|p| p.as_bytes()).collect();
                    assert_eq!(values, expected);
                }
                let payload = &payloads[0];
                match (kind, item.outcome) {
                    (Kind::Done, Ok(_)) => {}
                    (Kind::Panicked, Err(TaskError::Panicked(report))) => {
                        assert_eq!(&report.message, payload);
                    }
                    (Kind::Failed, Err(TaskError::Serialization { message, .. })) => {
                        assert_eq!(&message, payload);
                    }
                    (Kind::Failed, Err(TaskError::TooLarge { .. })) => {}
                    (Kind::Failed, Err(TaskError::ResourceLimit { .. })) => {}
                    (Kind::Failed, Err(TaskError::Cancelled)) => {}
                    (kind, outcome) => panic!("{kind:?} decoded as {outcome:?}"),
                }
            }
        }

        #[test]
        fn damaged_or_random_result_frames_never_panic() {
            let mut rng = Rng::new(6);
            for case in 0..20_000 {
                let kind = rng.pick(&RESULT_KINDS);
                let body = if case % 4 == 0 {
                    let len = rng.len_up_to(300);
                    rng.bytes(len)
                } else {
                    let (valid, _, _) = result_body(&mut rng, kind);
                    rng.damage(&valid)
                };
                let at = rng.below(1 << 20);
                let range = at..at + body.len();
                if let Ok(ItemResult { outcome: Ok(value), .. }) =
                    decode_result(kind, &body, range, LIMIT)
                {
                    assert!(value.start >= at && value.end == at + body.len(), "{value:?}");
                }
            }
            // Frames of other kinds are refused, whatever their bodies.
            for kind in [Kind::Init, Kind::Batch, Kind::Hello, Kind::InitFailed] {
                let (body, _, _) = result_body(&mut rng, Kind::Done);
                assert!(decode_result(kind, &body, 0..body.len(), LIMIT).is_err());
            }
        }

        #[test]
        fn init_frames_round_trip_and_damaged_ones_never_panic() {
            let mut rng = Rng::new(7);
            for _ in 0..10_000 {
                let init = Init {
                    frame_limit: rng.next_u64(),
                    flags: rng.pick(&[0, BACKTRACES]),
                    initializer: rng.pick(&[None, Some(-42), Some(1 << 40)]),
                    memory_limit: rng.pick(&[None, Some(1 << 28)]),
                    cpu_time_limit: rng.pick(&[None, Some(1), Some(u64::MAX)]),
                    name: text(&mut rng),
                };
                let mut out = Vec::new();
                init.encode(&mut out);
                let body = &out[HEADER..];
                assert_eq!(Init::decode(body).unwrap(), init);
                let _ = Init::decode(&rng.damage(body));
                let len = rng.len_up_to(64);
                let _ = Init::decode(&rng.bytes(len));
            }
        }
    }
}
