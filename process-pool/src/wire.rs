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
/// before reading again never has more than `limit + HEADER + READ_CHUNK` bytes allocated,
/// whatever the peer sends.
#[derive(Debug)]
pub(crate) struct FrameReader {
    buf: Vec<u8>,
    /// Start of the bytes not yet returned as frames.
    start: usize,
    /// End of the bytes read so far.
    end: usize,
    /// The largest frame (kind plus body) accepted.
    limit: usize,
}

/// How much a reader asks the kernel for at once, at least.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

impl FrameReader {
    #[inline]
    pub(crate) fn new(limit: usize) -> Self {
        FrameReader { buf: Vec::new(), start: 0, end: 0, limit }
    }

    /// Changes the largest frame accepted.
    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Reads what the descriptor has (blocking if it has nothing). Returns 0 at end of file.
    pub(crate) fn fill(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        self.fill_with(|buf| sys::read(fd, buf))
    }

    /// Makes room, then lets `read` put bytes at the end of what is held, as a read(2) would:
    /// it returns how many it put, 0 for end of input.
    pub(crate) fn fill_with(
        &mut self,
        read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        self.make_room();
        let room = &mut self.buf[self.end..];
        let n = read(room)?.min(room.len());
        self.end += n;
        Ok(n)
    }

    /// Appends all of `bytes` as if they were read, in as many reads as it takes.
    #[cfg(test)]
    pub(crate) fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = self
                .fill_with(|room| {
                    let n = room.len().min(bytes.len());
                    room[..n].copy_from_slice(&bytes[..n]);
                    Ok(n)
                })
                .unwrap_or(0);
            bytes = &bytes[n..];
        }
    }

    /// Whether the buffer grew to [`bulk::LARGE`] or more (for a large frame) and is kept.
    pub(crate) fn holds_large(&self) -> bool {
        self.buf.len() >= bulk::LARGE
    }

    /// Gives back the memory of a buffer that grew for a large frame, if no byte is held (see
    /// `bulk.rs`); the next read starts small again.
    pub(crate) fn release(&mut self) {
        if self.is_empty() && self.holds_large() {
            *self = FrameReader::new(self.limit);
        }
    }

    /// Drops every byte held: what a peer that broke the protocol sent later is not read.
    pub(crate) fn discard(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Bytes allocated for the buffer, for the tests of the allocation bound.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Moves unread bytes to the front and makes room for the next read: as many bytes again
    /// as are held (at least [`READ_CHUNK`]), but never more than the rest of the frame being
    /// read plus [`READ_CHUNK`], and only [`READ_CHUNK`] while the frame's length is unknown
    /// or over the limit.
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let pending = self.end - self.start;
        let frame = match self.peek_len() {
            Some(len) if len <= self.limit => HEADER - 1 + len,
            _ => 0,
        };
        let want = (pending + READ_CHUNK.max(pending)).min(frame.max(pending) + READ_CHUNK);
        if self.start > 0 && self.buf.len() - self.start < want {
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = pending;
        }
        if self.buf.len() < self.start + want {
            let more = self.start + want - self.buf.len();
            bulk::reserve_exact(&mut self.buf, more);
            self.buf.resize(self.start + want, 0);
        }
    }

    fn peek_len(&self) -> Option<usize> {
        let b = self.buf[..self.end].get(self.start..self.start + 4)?;
        usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()
    }

    /// The next complete frame, as its kind and the range of its body in [`Self::bytes`].
    /// `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    ///
    /// A frame longer than the limit, empty, or of an unknown kind: each is reported as soon
    /// as its header has arrived, without waiting for a body.
    pub(crate) fn next_frame(&mut self) -> Result<Option<(Kind, Range<usize>)>, WireError> {
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
        let Some(&kind) = self.buf[..self.end].get(kind_at) else { return Ok(None) };
        let kind =
            Kind::from_byte(kind).ok_or_else(|| malformed(format!("unknown frame kind {kind}")))?;
        if self.end - self.start < 4 + len {
            return Ok(None);
        }
        self.start += 4 + len;
        Ok(Some((kind, kind_at + 1..self.start)))
    }

    /// The bytes of a range returned by [`Self::next_frame`]; valid until the next
    /// [`Self::fill`].
    #[inline]
    pub(crate) fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// Whether no bytes are held.
    pub(crate) fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Bytes held that do not yet form a complete frame.
    pub(crate) fn pending(&self) -> usize {
        self.end - self.start
    }
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
                .fill_with(|room| {
                    let n = room.len().min(bytes.len() - at).min(1 << 20);
                    room[..n].copy_from_slice(&bytes[at..at + n]);
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
        ) -> (Vec<(Kind, Vec<u8>)>, Option<WireError>) {
            let mut frames = Vec::new();
            let mut at = 0;
            while at < stream.len() {
                let piece = 1 + rng.len_up_to(3 * READ_CHUNK);
                let n = reader
                    .fill_with(|room| {
                        let n = room.len().min(piece).min(stream.len() - at);
                        room[..n].copy_from_slice(&stream[at..at + n]);
                        Ok(n)
                    })
                    .unwrap();
                at += n;
                loop {
                    match reader.next_frame() {
                        Ok(Some((kind, range))) => {
                            frames.push((kind, reader.bytes(range).to_vec()))
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

        /// Random frames that fit `limit`, and the stream they make.
        fn frames(rng: &mut Rng, limit: usize) -> (Vec<(Kind, Vec<u8>)>, Vec<u8>) {
            let mut stream = Vec::new();
            let frames: Vec<(Kind, Vec<u8>)> = (0..rng.below(12))
                .map(|_| {
                    let len = rng.len_up_to(limit - 1);
                    (rng.pick(&KINDS), rng.bytes(len))
                })
                .collect();
            for (kind, body) in &frames {
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
                let whole: usize = got.iter().map(|(_, body)| HEADER + body.len()).sum();
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
                assert!(got.iter().all(|(_, body)| body.len() < limit));
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
                    header.push(rng.pick(&[0, 3, 9, 16, 99, 255]));
                }
                let mut reader = FrameReader::new(limit);
                reader.push(&header);
                assert!(reader.next_frame().is_err(), "{header:?}, limit {limit}");
                assert!(reader.capacity() <= READ_CHUNK);
            }
        }
    }
}
