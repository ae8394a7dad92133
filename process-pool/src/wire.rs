//! Framing between the parent and a worker: length-prefixed frames with a hard size cap.
//!
//! A frame is `len: u32 LE`, then `kind: u8`, then `len - 1` bytes of body. Bodies are built
//! from little-endian integers and `u32`-length-prefixed byte strings. The reader allocates
//! for the bytes that arrived, never for the length a frame claims, and never beyond its
//! limit; see `README.md` for the frame kinds and the protocol.

use std::fmt;
use std::io;
use std::ops::Range;
use std::os::fd::BorrowedFd;

use crate::bulk;
use crate::sys;

/// Bytes before a frame's body: the length and the kind.
pub(crate) const HEADER: usize = 5;

/// Room for a frame's own fields on top of the user payload it carries.
pub(crate) const SLACK: usize = 4096;

/// What a frame is. Parent-to-worker kinds are below 10, worker-to-parent kinds from 10.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Parent → worker, once, first: the worker's settings.
    Init = 1,
    /// Parent → worker: items to run with one job.
    Batch = 2,
    /// Either way: the bytes of the one large byte string the next frame holds, which it
    /// encodes as a reference to them (see [`FrameReader::take_bulk`] and `codec.rs`). The
    /// reader puts them straight into a vector of their own, so they are copied once on
    /// their way and become the value decoded without another copy.
    Bulk = 3,
    /// Worker → parent, once, after a successful start.
    Hello = 10,
    /// Worker → parent: the initializer or the start checks failed; the worker exits.
    InitFailed = 11,
    /// Worker → parent: an item's encoded result.
    Done = 12,
    /// Worker → parent: an item panicked.
    Panicked = 13,
    /// Worker → parent: an item's argument, result or job state failed to travel.
    Failed = 14,
    /// Worker → parent, on the result pipe while the rings carry the work: the parent's
    /// supervisor slept on a ring's doorbell, and the worker rang it. No body.
    Bell = 15,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Init,
            2 => Kind::Batch,
            3 => Kind::Bulk,
            10 => Kind::Hello,
            11 => Kind::InitFailed,
            12 => Kind::Done,
            13 => Kind::Panicked,
            14 => Kind::Failed,
            15 => Kind::Bell,
            _ => return None,
        })
    }
}

/// A malformed frame or body: the peer broke the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError(pub(crate) String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn malformed(what: impl Into<String>) -> WireError {
    WireError(what.into())
}

/// Starts a frame of `kind` in `out`; returns where it starts, for [`end_frame`].
#[inline]
pub(crate) fn begin_frame(out: &mut Vec<u8>, kind: Kind) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, kind as u8]);
    start
}

/// Finishes the frame begun at `start` by writing its length. Returns the frame's length
/// field (kind plus body).
#[inline]
pub(crate) fn end_frame(out: &mut [u8], start: usize) -> usize {
    end_frame_before(out, start, 0)
}

/// Finishes the frame begun at `start` whose last `more` bytes are not in `out`: they follow
/// it in the stream, written from a buffer of their own. Returns the frame's length field.
#[inline]
pub(crate) fn end_frame_before(out: &mut [u8], start: usize, more: usize) -> usize {
    let len = (out.len() - start - 4).saturating_add(more);
    let field = u32::try_from(len).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&field.to_le_bytes());
    len
}

/// Appends the head of a [`Kind::Bulk`] frame whose `len` bytes follow it in the stream,
/// written from where they are.
pub(crate) fn put_bulk_head(out: &mut Vec<u8>, len: usize) {
    let at = begin_frame(out, Kind::Bulk);
    end_frame_before(out, at, len);
}

/// Appends a little-endian `u32`.
#[inline]
pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a little-endian `u64`.
#[inline]
pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a little-endian `i64`.
#[inline]
pub(crate) fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a `u32` length and the bytes.
#[inline]
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, u32::try_from(bytes.len()).unwrap_or(u32::MAX));
    bulk::reserve(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// The error for a frame body that ends before its field `what`.
#[cold]
fn too_short(what: &str) -> WireError {
    malformed(format!("frame body too short for {what}"))
}

/// Reads the fields of a frame body in order.
#[derive(Debug)]
pub(crate) struct Body<'a> {
    rest: &'a [u8],
}

impl<'a> Body<'a> {
    #[inline]
    pub(crate) fn new(body: &'a [u8]) -> Self {
        Body { rest: body }
    }

    #[inline]
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(too_short(what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    #[inline]
    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }

    #[inline]
    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, WireError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    #[inline]
    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, WireError> {
        let b = self.take(8, what)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    #[inline]
    pub(crate) fn i64(&mut self, what: &str) -> Result<i64, WireError> {
        Ok(self.u64(what)?.cast_signed())
    }

    #[inline]
    pub(crate) fn bytes(&mut self, what: &str) -> Result<&'a [u8], WireError> {
        let len = self.u32(what)?;
        self.take(usize::try_from(len).unwrap_or(usize::MAX), what)
    }

    /// Everything not read yet.
    #[inline]
    pub(crate) fn rest(self) -> &'a [u8] {
        self.rest
    }

    /// Fails unless every byte was read.
    #[inline]
    pub(crate) fn finish(self, what: &str) -> Result<(), WireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(malformed(format!("{} unexpected bytes after {what}", self.rest.len())))
        }
    }
}

/// Splits a byte stream into frames, holding at most `limit` bytes of frame at a time.
///
/// Its buffer grows with the bytes that arrive (doubling, so a large frame takes a few reads),
/// up to the frame being read plus one read's worth: a caller that takes every complete frame
/// before reading again never has more than `limit + HEADER + READ_CHUNK` bytes allocated for
/// it, whatever the peer sends. Bytes are read into room not cleared first.
///
/// A [`Kind::Bulk`] frame is not returned: its body is read into a vector of its own and
/// handed to whoever handles the frame after it ([`FrameReader::take_bulk`]). That vector is
/// reserved at once at the length the frame's header claims (at most the limit), so that the
/// bytes are copied once, into memory that is not moved and, from 32 MiB, on huge pages:
/// address space only, which the kernel backs as the bytes arrive; a reservation it refuses
/// is a protocol error, not an abort. One bulk at a time: a second before the frame that
/// takes the first is a protocol error too.
#[derive(Debug)]
pub(crate) struct FrameReader {
    /// The bytes read and not yet returned as frames start at `start`; its length is the end
    /// of what was read.
    buf: Vec<u8>,
    /// Start of the bytes not yet returned as frames.
    start: usize,
    /// The largest frame (kind plus body) accepted.
    limit: usize,
    /// A bulk frame's body, as read so far, and its length.
    bulk: Option<(Vec<u8>, usize)>,
    /// The body of the bulk frame before the frame last returned, until it is taken or the
    /// next frame is asked for.
    attached: Option<Vec<u8>>,
    /// Whether room the allocator refuses for a frame is an error rather than an abort (see
    /// [`FrameReader::refuse_when_full`]).
    fallible: bool,
    /// The length of the frame whose room the allocator refused, once it did.
    refused: Option<usize>,
    /// Whether a bulk frame's body of [`bulk::LARGE`] or more was read since the reader
    /// started or was last released: memory the allocator may keep once the value is freed.
    read_large: bool,
}

/// How much a reader asks the kernel for at once, at least.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

impl FrameReader {
    #[inline]
    pub(crate) fn new(limit: usize) -> Self {
        FrameReader {
            buf: Vec::new(),
            start: 0,
            limit,
            bulk: None,
            attached: None,
            fallible: false,
            refused: None,
            read_large: false,
        }
    }

    /// Makes room the allocator refuses for a frame an error of [`Self::fill_with`] (kind
    /// `OutOfMemory`) instead of an abort, and records the frame's length for
    /// [`Self::refused`]: a worker under a memory limit tells its parent so.
    pub(crate) fn refuse_when_full(&mut self) {
        self.fallible = true;
    }

    /// The length of the frame (kind and body) for which the allocator refused room, if it did.
    pub(crate) fn refused(&self) -> Option<usize> {
        self.refused
    }

    /// Changes the largest frame accepted.
    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Reads what the descriptor has (blocking if it has nothing). Returns 0 at end of file.
    pub(crate) fn fill(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        self.fill_with(|buf, most| sys::read_appending(fd, buf, most))
    }

    /// Makes room, then lets `read` append at most the given number of bytes to the vector
    /// it is given, into the room the vector has (as [`sys::read_appending`] does); it returns
    /// 0 for end of input. Returns how many bytes it appended. A bulk frame's body is read
    /// into its own vector.
    pub(crate) fn fill_with(
        &mut self,
        read: impl FnOnce(&mut Vec<u8>, usize) -> io::Result<usize>,
    ) -> io::Result<usize> {
        if let Some((bytes, len)) = self.bulk.as_mut().filter(|(bytes, len)| bytes.len() < *len) {
            return append(bytes, *len - bytes.len(), read);
        }
        self.make_room()?;
        let room = self.buf.capacity() - self.buf.len();
        let n = append(&mut self.buf, room, read);
        self.start = self.start.min(self.buf.len());
        n
    }

    /// Appends all of `bytes` as if they were read, in as many reads as it takes.
    #[cfg(test)]
    pub(crate) fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = self
                .fill_with(|buf, room| {
                    let n = room.min(bytes.len());
                    buf.extend_from_slice(&bytes[..n]);
                    Ok(n)
                })
                .unwrap_or(0);
            bytes = &bytes[n..];
        }
    }

    /// Whether the buffer grew to [`bulk::LARGE`] or more (for a large frame) and is kept, or
    /// a bulk frame's body that large was read since the last [`Self::release`].
    pub(crate) fn holds_large(&self) -> bool {
        self.read_large || self.buf.capacity() >= bulk::LARGE
    }

    /// Gives back the memory of a buffer that grew for a large frame, if no byte is held (see
    /// `bulk.rs`); the next read starts small again.
    pub(crate) fn release(&mut self) {
        if self.is_empty() && self.holds_large() {
            *self = FrameReader { fallible: self.fallible, ..FrameReader::new(self.limit) };
        }
    }

    /// Drops every byte held: what a peer that broke the protocol sent later is not read.
    pub(crate) fn discard(&mut self) {
        self.start = 0;
        self.buf.clear();
        self.bulk = None;
        self.attached = None;
    }

    /// Bytes allocated for the buffer, for the tests of the allocation bound.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Moves unread bytes to the front and makes room for the next read: once less than
    /// [`READ_CHUNK`] is left, as many bytes again as are held (at least [`READ_CHUNK`]), but
    /// never more than the rest of the frame being read plus [`READ_CHUNK`], and only
    /// [`READ_CHUNK`] while the frame's length is unknown or over the limit. Room is made only
    /// when little is left, so that a large frame's buffer doubles a few times rather than
    /// grow by each read's worth (and be moved each time). Fails only when
    /// [`Self::refuse_when_full`] was called and the allocator refuses the room.
    fn make_room(&mut self) -> io::Result<()> {
        if self.start == self.buf.len() {
            self.start = 0;
            self.buf.clear();
        }
        let pending = self.buf.len() - self.start;
        let frame = match self.peek_len() {
            Some(len) if len <= self.limit => HEADER - 1 + len,
            _ => 0,
        };
        let want = (pending + READ_CHUNK.max(pending)).min(frame.max(pending) + READ_CHUNK);
        if self.start > 0 && self.buf.capacity() - self.start < want {
            self.buf.copy_within(self.start.., 0);
            self.buf.truncate(pending);
            self.start = 0;
        }
        let little_left = self.buf.capacity() - self.buf.len() < READ_CHUNK;
        if little_left && self.buf.capacity() < self.start + want {
            let more = self.start + want - self.buf.len();
            if !self.fallible {
                bulk::reserve_exact(&mut self.buf, more);
            } else if !bulk::try_reserve_exact(&mut self.buf, more) {
                self.refused = Some(frame);
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    format!("no room for a frame of {frame} bytes"),
                ));
            }
        }
        Ok(())
    }

    fn peek_len(&self) -> Option<usize> {
        let b = self.buf.get(self.start..self.start + 4)?;
        usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()
    }

    /// The next complete frame, as its kind and the range of its body in [`Self::bytes`].
    /// `Ok(None)` when more bytes are needed. A bulk frame before it is read into a vector of
    /// its own, kept for the frame after it ([`FrameReader::take_bulk`]); a bulk that frame
    /// did not take is dropped here.
    ///
    /// # Errors
    ///
    /// A frame longer than the limit, empty, or of an unknown kind: each is reported as soon
    /// as its header has arrived, without waiting for a body. A second bulk frame before the
    /// frame that takes the first, or one whose room cannot be reserved.
    pub(crate) fn next_frame(&mut self) -> Result<Option<(Kind, Range<usize>)>, WireError> {
        self.attached = None;
        loop {
            if self.bulk.as_ref().is_some_and(|(bytes, len)| bytes.len() < *len) {
                return Ok(None);
            }
            let Some(len) = self.peek_len() else { return Ok(None) };
            if len == 0 {
                return Err(malformed("empty frame"));
            }
            if len > self.limit {
                return Err(malformed(format!(
                    "frame of {len} bytes is over the {}-byte limit",
                    self.limit
                )));
            }
            let kind_at = self.start + 4;
            let Some(&kind) = self.buf.get(kind_at) else { return Ok(None) };
            let kind = Kind::from_byte(kind)
                .ok_or_else(|| malformed(format!("unknown frame kind {kind}")))?;
            if kind == Kind::Bulk {
                self.begin_bulk(kind_at + 1, len - 1)?;
                continue;
            }
            if self.buf.len() - self.start < 4 + len {
                return Ok(None);
            }
            self.start += 4 + len;
            self.attached = self.bulk.take().map(|(bytes, _)| bytes);
            return Ok(Some((kind, kind_at + 1..self.start)));
        }
    }

    /// Starts reading a bulk frame's body of `len` bytes, which begins at `body` of the
    /// buffer: into a vector of its own, with the part of it that arrived already.
    fn begin_bulk(&mut self, body: usize, len: usize) -> Result<(), WireError> {
        if self.bulk.is_some() {
            return Err(malformed("a bulk frame before the frame that takes the one before it"));
        }
        let Some(mut bytes) = bulk::try_with_capacity(len) else {
            self.refused = Some(len + 1);
            return Err(malformed(format!(
                "a bulk frame of {len} bytes, more than this process may reserve"
            )));
        };
        self.read_large |= len >= bulk::LARGE;
        let arrived = (self.buf.len() - body).min(len);
        bytes.extend_from_slice(&self.buf[body..body + arrived]);
        self.start = body + arrived;
        self.bulk = Some((bytes, len));
        Ok(())
    }

    /// Whether a bulk frame's body is held whole: the next frame returned comes with it.
    pub(crate) fn holds_bulk(&self) -> bool {
        self.bulk.as_ref().is_some_and(|(bytes, len)| bytes.len() == *len)
    }

    /// The body of the bulk frame that came right before the frame last returned by
    /// [`Self::next_frame`], if one did: the bytes of the large byte string that frame
    /// refers to.
    pub(crate) fn take_bulk(&mut self) -> Option<Vec<u8>> {
        self.attached.take()
    }

    /// The bytes of a range returned by [`Self::next_frame`]; valid until the next
    /// [`Self::fill`].
    #[inline]
    pub(crate) fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// Whether no bytes are held (a bulk frame's body counts).
    pub(crate) fn is_empty(&self) -> bool {
        self.pending() == 0
    }

    /// Bytes held that do not yet form a complete frame (a bulk frame's, whole or not,
    /// counts with its header).
    pub(crate) fn pending(&self) -> usize {
        let bulk = self.bulk.as_ref().map_or(0, |(bytes, _)| HEADER + bytes.len());
        self.buf.len() - self.start + bulk
    }
}

/// Lets `read` append at most `most` bytes to `buf`; returns how many it did (bytes past
/// `most` are cut off).
fn append(
    buf: &mut Vec<u8>,
    most: usize,
    read: impl FnOnce(&mut Vec<u8>, usize) -> io::Result<usize>,
) -> io::Result<usize> {
    let before = buf.len();
    read(buf, most)?;
    buf.truncate(before + most);
    Ok(buf.len().saturating_sub(before))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: Kind, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let at = begin_frame(&mut out, kind);
        out.extend_from_slice(body);
        end_frame(&mut out, at);
        out
    }

    #[test]
    fn frames_split_across_reads_are_reassembled() {
        let mut bytes = frame(Kind::Done, b"hello");
        bytes.extend(frame(Kind::Hello, &7u32.to_le_bytes()));
        let mut r = FrameReader::new(1024);
        for chunk in bytes.chunks(3) {
            r.push(chunk);
        }
        let (kind, body) = r.next_frame().unwrap().unwrap();
        assert_eq!((kind, r.bytes(body)), (Kind::Done, &b"hello"[..]));
        let (kind, body) = r.next_frame().unwrap().unwrap();
        assert_eq!(kind, Kind::Hello);
        assert_eq!(Body::new(r.bytes(body)).u32("pid").unwrap(), 7);
        assert_eq!(r.next_frame().unwrap(), None);
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn a_large_frame_read_in_small_pieces_grows_its_buffer_a_few_times() {
        // A ring hands a large frame over a ring's worth at a time: the buffer must double,
        // not grow by each piece (which moves the whole frame read so far every time).
        let body = vec![7u8; 16 << 20];
        let bytes = frame(Kind::Batch, &body);
        let mut r = FrameReader::new(1 << 30);
        let (mut at, mut capacities) = (0, vec![r.capacity()]);
        let mut whole = None;
        while whole.is_none() {
            let n = r
                .fill_with(|buf, most| {
                    let n = most.min(256 << 10).min(bytes.len() - at);
                    buf.extend_from_slice(&bytes[at..at + n]);
                    Ok(n)
                })
                .unwrap();
            at += n;
            capacities.push(r.capacity());
            whole = r.next_frame().unwrap();
        }
        let (kind, range) = whole.unwrap();
        assert_eq!((kind, r.bytes(range).len()), (Kind::Batch, body.len()));
        capacities.dedup();
        assert!(
            capacities.len() <= 12,
            "the buffer grew {} times: {capacities:?}",
            capacities.len()
        );
        assert!(r.capacity() <= bytes.len() + READ_CHUNK);
    }

    #[test]
    fn a_partial_length_is_not_read_past_the_data() {
        let mut r = FrameReader::new(1024);
        r.push(&frame(Kind::Done, b"x"));
        r.next_frame().unwrap().unwrap();
        r.push(&[2, 0]);
        assert_eq!(r.next_frame().unwrap(), None);
        r.push(&[0, 0, Kind::Done as u8, 7]);
        let (_, body) = r.next_frame().unwrap().unwrap();
        assert_eq!(r.bytes(body), [7]);
    }

    #[test]
    fn oversized_claims_fail_before_allocating() {
        let mut r = FrameReader::new(100);
        r.push(&u32::MAX.to_le_bytes());
        assert!(r.next_frame().unwrap_err().0.contains("over the 100-byte limit"));
        assert!(r.capacity() <= READ_CHUNK, "the reader allocated {} bytes", r.capacity());
    }

    #[test]
    fn a_claimed_length_costs_nothing_until_its_bytes_arrive() {
        let mut r = FrameReader::new(1 << 30);
        r.push(&[0, 0, 0, 0x30, Kind::Done as u8]);
        assert_eq!(r.next_frame().unwrap(), None);
        r.push(&[0; 10]);
        assert!(r.capacity() <= 2 * READ_CHUNK, "the reader allocated {} bytes", r.capacity());
    }

    #[test]
    fn garbage_kinds_and_empty_frames_are_errors_before_the_body() {
        let mut r = FrameReader::new(100);
        r.push(&[50, 0, 0, 0, 99]);
        assert!(r.next_frame().unwrap_err().0.contains("unknown frame kind 99"));
        let mut r = FrameReader::new(100);
        r.push(&[0, 0, 0, 0]);
        assert!(r.next_frame().is_err());
    }

    #[test]
    fn a_large_frame_arrives_in_a_few_reads_and_the_buffer_stays_bounded() {
        let body = vec![7; 3 << 20];
        let bytes = frame(Kind::Done, &body);
        let mut r = FrameReader::new(4 << 20);
        let mut reads = 0;
        let mut at = 0;
        while at < bytes.len() {
            // A pipe hands over at most 1 MiB per read.
            at += r
                .fill_with(|buf, room| {
                    let n = room.min(bytes.len() - at).min(1 << 20);
                    buf.extend_from_slice(&bytes[at..at + n]);
                    Ok(n)
                })
                .unwrap();
            reads += 1;
        }
        assert!(reads <= 16, "{reads} reads");
        let (_, range) = r.next_frame().unwrap().unwrap();
        assert_eq!(r.bytes(range), &body[..]);
        assert!(r.capacity() <= (4 << 20) + HEADER + READ_CHUNK);
    }

    #[test]
    fn the_memory_of_a_large_frame_goes_back_only_once_nothing_is_held() {
        let body = vec![9; bulk::LARGE];
        let mut bytes = frame(Kind::Done, &body);
        bytes.extend(frame(Kind::Done, b"next"));
        let mut r = FrameReader::new(2 * bulk::LARGE);
        r.push(&bytes[..bytes.len() - 2]);
        let (_, range) = r.next_frame().unwrap().unwrap();
        assert_eq!(r.bytes(range), &body[..]);
        assert!(r.holds_large());
        r.release();
        assert!(r.holds_large(), "part of the next frame is held: nothing goes back");
        r.push(&bytes[bytes.len() - 2..]);
        let (_, range) = r.next_frame().unwrap().unwrap();
        assert_eq!(r.bytes(range), b"next");
        r.release();
        assert!(!r.holds_large() && r.capacity() == 0);
        r.push(&frame(Kind::Done, b"small"));
        let (_, range) = r.next_frame().unwrap().unwrap();
        assert_eq!(r.bytes(range), b"small", "a released reader reads on");
    }

    #[test]
    fn a_frame_ended_before_its_last_bytes_reads_as_one() {
        let mut out = Vec::new();
        let at = begin_frame(&mut out, Kind::Done);
        out.extend_from_slice(b"head");
        assert_eq!(end_frame_before(&mut out, at, 4), 1 + 8);
        out.extend_from_slice(b"tail");
        assert_eq!(out, frame(Kind::Done, b"headtail"));
    }

    #[test]
    fn discard_drops_what_is_held() {
        let mut r = FrameReader::new(100);
        r.push(&frame(Kind::Done, b"x")[..3]);
        r.discard();
        assert_eq!(r.pending(), 0);
        r.push(&frame(Kind::Done, b"y"));
        let (_, body) = r.next_frame().unwrap().unwrap();
        assert_eq!(r.bytes(body), b"y");
    }

    fn bulk_frame(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_bulk_head(&mut out, body.len());
        out.extend_from_slice(body);
        out
    }

    /// Feeds `bytes` in pieces of `piece`, taking every complete frame (and its bulk) after
    /// each, as the supervisor and the worker do.
    fn read_all(
        r: &mut FrameReader,
        bytes: &[u8],
        piece: usize,
    ) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut got = Vec::new();
        for chunk in bytes.chunks(piece) {
            r.push(chunk);
            while let Some((_, range)) = r.next_frame().unwrap() {
                got.push((r.bytes(range).to_vec(), r.take_bulk()));
            }
        }
        got
    }

    #[test]
    fn a_bulk_frame_goes_into_a_vector_of_its_own_for_the_frame_after_it() {
        let body: Vec<u8> = (0..3 * READ_CHUNK + 5).map(|i| (i % 251) as u8).collect();
        let mut bytes = bulk_frame(&body);
        bytes.extend(frame(Kind::Done, b"refers"));
        bytes.extend(frame(Kind::Done, b"next"));
        let mut r = FrameReader::new(1 << 20);
        let got = read_all(&mut r, &bytes, 1000);
        assert_eq!(got, [(b"refers".to_vec(), Some(body)), (b"next".to_vec(), None)]);
        assert!(r.capacity() <= 2 * READ_CHUNK, "the bulk went through the buffer");
        assert!(r.is_empty() && !r.holds_bulk());
        r.push(&bulk_frame(b"held"));
        assert_eq!(r.next_frame(), Ok(None));
        assert!(r.holds_bulk(), "whole, waiting for its frame");
    }

    #[test]
    fn a_large_bulk_read_counts_as_held_until_the_reader_is_released() {
        let body = vec![5; bulk::LARGE];
        let mut bytes = bulk_frame(&body);
        bytes.extend(frame(Kind::Done, b"refers"));
        let mut r = FrameReader::new(2 * bulk::LARGE);
        let got = read_all(&mut r, &bytes, READ_CHUNK);
        assert_eq!(got, [(b"refers".to_vec(), Some(body))]);
        assert!(r.capacity() < bulk::LARGE, "the bulk went into a vector of its own");
        assert!(r.holds_large(), "its memory, freed, may stay with the allocator");
        r.release();
        assert!(!r.holds_large());
        read_all(&mut r, &bulk_frame(&[5; 1000]), READ_CHUNK);
        assert!(!r.holds_large(), "a small bulk is not large");
    }

    #[test]
    fn an_untaken_bulk_goes_with_its_frame_and_a_second_before_it_is_an_error() {
        let mut bytes = bulk_frame(b"abc");
        bytes.extend(frame(Kind::Done, b"x"));
        bytes.extend(frame(Kind::Done, b"y"));
        let mut r = FrameReader::new(1024);
        r.push(&bytes);
        let (_, range) = r.next_frame().unwrap().unwrap();
        assert_eq!(r.bytes(range), b"x");
        let (_, range) = r.next_frame().unwrap().unwrap();
        assert_eq!(r.bytes(range), b"y");
        assert_eq!(r.take_bulk(), None, "the bulk of x is not y's");
        let mut r = FrameReader::new(1024);
        r.push(&bulk_frame(b"abc"));
        r.push(&bulk_frame(b"def"));
        assert!(r.next_frame().unwrap_err().0.contains("bulk frame before"));
    }

    #[test]
    fn a_partial_bulk_is_held_until_discarded_and_an_oversized_one_refused() {
        let bytes = bulk_frame(&[5; 100]);
        let mut r = FrameReader::new(1024);
        r.push(&bytes[..50]);
        assert_eq!(r.next_frame(), Ok(None));
        assert_eq!(r.pending(), 50);
        r.discard();
        assert!(r.is_empty());
        let got = read_all(&mut r, &frame(Kind::Done, b"z"), 3);
        assert_eq!(got, [(b"z".to_vec(), None)]);
        let mut r = FrameReader::new(100);
        let mut head = Vec::new();
        put_bulk_head(&mut head, 200);
        r.push(&head);
        assert!(r.next_frame().unwrap_err().0.contains("over the 100-byte limit"));
    }

    #[test]
    fn bodies_reject_short_and_trailing_bytes() {
        let mut out = Vec::new();
        put_u64(&mut out, 9);
        put_bytes(&mut out, b"abc");
        let mut body = Body::new(&out);
        assert_eq!(body.u64("seq").unwrap(), 9);
        assert_eq!(body.bytes("name").unwrap(), b"abc");
        body.finish("frame").unwrap();
        assert!(Body::new(&out[..5]).u64("seq").is_err());
        let mut long = Body::new(&out);
        long.u32("x").unwrap();
        assert!(long.finish("frame").is_err());
        let mut lying = Vec::new();
        put_u32(&mut lying, 1000);
        assert!(Body::new(&lying).bytes("payload").is_err());
    }

    /// Property tests: many generated streams, split at random points, through the real read
    /// path (`fill_with`), the way the supervisor and the worker read.
    mod properties {
        use super::*;
        use crate::fuzz::Rng;

        const KINDS: [Kind; 8] = [
            Kind::Init,
            Kind::Batch,
            Kind::Hello,
            Kind::InitFailed,
            Kind::Done,
            Kind::Panicked,
            Kind::Failed,
            Kind::Bell,
        ];
        const LIMITS: [usize; 5] = [64, 1000, 5000, 70_000, 300_000];

        /// The most a reader may hold when its caller takes every complete frame.
        fn cap(limit: usize) -> usize {
            limit + HEADER + READ_CHUNK
        }

        /// Feeds `stream` to `reader` in random pieces, taking every complete frame after each
        /// read and checking the allocation bound. Stops at the first error, as callers do.
        fn feed(
            rng: &mut Rng,
            reader: &mut FrameReader,
            stream: &[u8],
        ) -> (Vec<Sent>, Option<WireError>) {
            let mut frames = Vec::new();
            let mut at = 0;
            while at < stream.len() {
                let piece = 1 + rng.len_up_to(3 * READ_CHUNK);
                let n = reader
                    .fill_with(|buf, room| {
                        let n = room.min(piece).min(stream.len() - at);
                        buf.extend_from_slice(&stream[at..at + n]);
                        Ok(n)
                    })
                    .unwrap();
                at += n;
                loop {
                    match reader.next_frame() {
                        Ok(Some((kind, range))) => {
                            let body = reader.bytes(range).to_vec();
                            frames.push((kind, body, reader.take_bulk()));
                        }
                        Ok(None) => break,
                        Err(e) => return (frames, Some(e)),
                    }
                }
                let (capacity, limit) = (reader.capacity(), reader.limit);
                assert!(capacity <= cap(limit), "{capacity} bytes held, limit {limit}");
            }
            (frames, None)
        }

        /// A frame: its kind, its body, and the body of the bulk frame before it, if any.
        type Sent = (Kind, Vec<u8>, Option<Vec<u8>>);

        /// Random frames that fit `limit`, a third of them after a bulk frame, and the stream
        /// they make.
        fn frames(rng: &mut Rng, limit: usize) -> (Vec<Sent>, Vec<u8>) {
            let mut stream = Vec::new();
            let frames: Vec<Sent> = (0..rng.below(12))
                .map(|_| {
                    let len = rng.len_up_to(limit - 1);
                    let bulk = (rng.below(3) == 0).then(|| {
                        let len = rng.len_up_to(limit - 1);
                        rng.bytes(len)
                    });
                    (rng.pick(&KINDS), rng.bytes(len), bulk)
                })
                .collect();
            for (kind, body, bulk) in &frames {
                if let Some(bulk) = bulk {
                    put_bulk_head(&mut stream, bulk.len());
                    stream.extend_from_slice(bulk);
                }
                stream.extend(frame(*kind, body));
            }
            (frames, stream)
        }

        #[test]
        fn frames_in_any_pieces_come_out_whole_and_in_order() {
            let mut rng = Rng::new(1);
            for _ in 0..300 {
                let limit = rng.pick(&LIMITS);
                let (expected, stream) = frames(&mut rng, limit);
                let mut reader = FrameReader::new(limit);
                let (got, error) = feed(&mut rng, &mut reader, &stream);
                assert_eq!(error, None);
                assert!(got == expected, "frames differ, limit {limit}");
                assert_eq!(reader.pending(), 0);
            }
        }

        #[test]
        fn a_truncated_stream_gives_its_whole_frames_and_holds_the_rest() {
            let mut rng = Rng::new(2);
            for _ in 0..300 {
                let limit = rng.pick(&LIMITS);
                let (expected, stream) = frames(&mut rng, limit);
                let cut = rng.below(stream.len() + 1);
                let mut reader = FrameReader::new(limit);
                let (got, error) = feed(&mut rng, &mut reader, &stream[..cut]);
                assert_eq!(error, None);
                assert!(expected.starts_with(&got));
                let whole: usize = got
                    .iter()
                    .map(|(_, body, bulk)| {
                        HEADER + body.len() + bulk.as_ref().map_or(0, |b| HEADER + b.len())
                    })
                    .sum();
                assert_eq!(reader.pending(), cut - whole);
                assert_eq!(reader.next_frame(), Ok(None));
            }
        }

        #[test]
        fn garbage_never_panics_nor_outgrows_the_limit() {
            let mut rng = Rng::new(3);
            for case in 0..3000 {
                let limit = rng.pick(&LIMITS);
                let stream = if case % 2 == 0 {
                    let len = rng.len_up_to(4 * READ_CHUNK);
                    rng.bytes(len)
                } else {
                    let (_, stream) = frames(&mut rng, limit);
                    rng.damage(&stream)
                };
                let mut reader = FrameReader::new(limit);
                let (got, _) = feed(&mut rng, &mut reader, &stream);
                assert!(got.iter().all(|(_, body, bulk)| {
                    body.len() < limit && bulk.as_ref().is_none_or(|b| b.len() < limit)
                }));
            }
        }

        #[test]
        fn an_oversized_or_unknown_header_fails_at_once() {
            let mut rng = Rng::new(4);
            for _ in 0..1000 {
                let limit = rng.pick(&LIMITS);
                let mut header = Vec::new();
                if rng.below(2) == 0 {
                    let len = limit + 1 + rng.below(u32::MAX as usize - limit);
                    header.extend_from_slice(&u32::try_from(len).unwrap().to_le_bytes());
                } else {
                    let len = 1 + rng.below(limit);
                    header.extend_from_slice(&u32::try_from(len).unwrap().to_le_bytes());
                    header.push(rng.pick(&[0, 4, 9, 16, 99, 255]));
                }
                let mut reader = FrameReader::new(limit);
                reader.push(&header);
                assert!(reader.next_frame().is_err(), "{header:?}, limit {limit}");
                assert!(reader.capacity() <= READ_CHUNK);
            }
        }
    }
}
