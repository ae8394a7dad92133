//! What the frames between parent and worker carry.
//!
//! [`crate::wire`] splits bytes into frames; this module builds and reads the bodies of each
//! [`Kind`]. The layout of every frame is listed in `README.md`.

use std::ops::Range;

use taskpool_core::{PanicReport, Side, TaskError};

use crate::ship::Shipped;
use crate::wire::{self, Body, Kind, WireError};

/// Bit in [`Kind::Batch`]'s flags: write each result as soon as it exists.
pub(crate) const FLUSH_EACH: u8 = 1;
/// Bit in [`Kind::Init`]'s flags: capture backtraces on panic.
pub(crate) const BACKTRACES: u8 = 1;

/// The settings a worker receives in its [`Kind::Init`] frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Init {
    pub(crate) frame_limit: u64,
    pub(crate) flags: u8,
    pub(crate) initializer: Option<i64>,
    pub(crate) name: String,
}

impl Init {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let at = wire::begin_frame(out, Kind::Init);
        wire::put_u64(out, self.frame_limit);
        out.push(self.flags);
        out.push(u8::from(self.initializer.is_some()));
        wire::put_i64(out, self.initializer.unwrap_or(0));
        out.extend_from_slice(self.name.as_bytes());
        wire::end_frame(out, at);
    }

    pub(crate) fn decode(body: &[u8]) -> Result<Init, wire::WireError> {
        let mut b = Body::new(body);
        let frame_limit = b.u64("frame limit")?;
        let flags = b.u8("flags")?;
        let has_init = b.u8("initializer flag")? != 0;
        let offset = b.i64("initializer")?;
        let name = String::from_utf8_lossy(b.rest()).into_owned();
        Ok(Init { frame_limit, flags, initializer: has_init.then_some(offset), name })
    }
}

/// [`Kind::Failed`] reason: the value could not be (de)serialized.
pub(crate) const FAILED_SERIALIZATION: u8 = 0;
/// [`Kind::Failed`] reason: the encoded value is over the frame limit.
pub(crate) const FAILED_TOO_LARGE: u8 = 1;

pub(crate) fn side_byte(side: Side) -> u8 {
    match side {
        Side::Argument => 0,
        Side::Result => 1,
        Side::Task => 2,
    }
}

pub(crate) fn side_from_byte(b: u8) -> Option<Side> {
    Some(match b {
        0 => Side::Argument,
        1 => Side::Result,
        2 => Side::Task,
        _ => return None,
    })
}

/// Appends a [`Kind::Batch`] frame: `inputs` to run with `job`, numbered from `first_seq`.
pub(crate) fn encode_batch<'a>(
    out: &mut Vec<u8>,
    first_seq: u64,
    job: &Shipped,
    flags: u8,
    inputs: impl ExactSizeIterator<Item = &'a [u8]>,
) {
    let at = wire::begin_frame(out, Kind::Batch);
    wire::put_u64(out, first_seq);
    wire::put_i64(out, job.entry);
    out.push(flags);
    wire::put_bytes(out, &job.state);
    wire::put_u32(out, u32::try_from(inputs.len()).unwrap_or(u32::MAX));
    for input in inputs {
        wire::put_bytes(out, input);
    }
    wire::end_frame(out, at);
}

/// One item's outcome as read from a result frame: the range of its encoded value in the
/// frame reader's buffer, or the failure.
pub(crate) type ItemOutcome = Result<Range<usize>, TaskError>;

/// A result frame, read.
#[derive(Debug)]
pub(crate) struct ItemResult {
    pub(crate) seq: u64,
    pub(crate) elapsed_ns: u64,
    pub(crate) outcome: ItemOutcome,
}

/// Reads a result frame ([`Kind::Done`], [`Kind::Panicked`] or [`Kind::Failed`]) whose body
/// is `body`, found at `range` of the reader's buffer.
pub(crate) fn decode_result(
    kind: Kind,
    body: &[u8],
    range: Range<usize>,
) -> Result<ItemResult, WireError> {
    let mut b = Body::new(body);
    let seq = b.u64("sequence number")?;
    let elapsed_ns = b.u64("elapsed time")?;
    let outcome = match kind {
        Kind::Done => Ok(range.start + 16..range.end),
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
                FAILED_SERIALIZATION => TaskError::Serialization { side, message },
                FAILED_TOO_LARGE => TaskError::TooLarge { side, size, limit: 0 },
                _ => return Err(WireError(format!("unknown failure reason {reason}"))),
            })
        }
        other => return Err(WireError(format!("unexpected {other:?} frame"))),
    };
    Ok(ItemResult { seq, elapsed_ns, outcome })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::FrameReader;

    #[test]
    fn init_frames_round_trip() {
        let init = Init {
            frame_limit: 1 << 20,
            flags: BACKTRACES,
            initializer: Some(-42),
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

    #[test]
    fn sides_round_trip_through_bytes() {
        for side in [Side::Argument, Side::Result, Side::Task] {
            assert_eq!(side_from_byte(side_byte(side)), Some(side));
        }
        assert_eq!(side_from_byte(9), None);
    }
}
