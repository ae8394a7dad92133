//! Rings: a byte stream from one process to another through shared memory, as a pipe is but
//! without a system call per write or read.
//!
//! A ring lives in a [`SharedMemory`] at the place its [`RingLayout`] says: a header, then
//! `capacity` bytes of data (a power of two). The header holds, each on a cache line of its
//! own:
//!
//! | offset | field | written by |
//! |---|---|---|
//! | 0 | `tail: u64`, bytes written so far; `closed: u32` at 8, set when no more will come | producer |
//! | 64 | `head: u64`, bytes read so far | consumer |
//! | 128 | the data bell ([`Doorbell`]): the consumer sleeps on it when the ring is empty | both |
//! | 192 | the space bell: the producer sleeps on it when the ring is full | both |
//!
//! The contract, for any channel built on it (the worker transport, and whatever else needs a
//! byte stream between two processes):
//!
//! - One [`Producer`] and one [`Consumer`] per ring, each used by one thread at a time.
//! - Positions only grow (modulo 2^64); the byte at position `p` is at `p % capacity` of the
//!   data. The producer copies bytes into `[tail, head + capacity)`, then publishes the new
//!   tail (release); the consumer copies bytes out of `[head, tail)`, then publishes the new
//!   head. So a position is published only after its bytes, in one store: a peer that dies
//!   mid-write leaves at most bytes that were never published.
//! - Each side keeps its own position privately and never reads it back from the memory; it
//!   reads only the other side's, and checks it: a consumer that finds `tail - head` over the
//!   capacity, or a producer that finds the head behind the last one it saw or past its tail,
//!   reports [`Broken`] from then on, and copies nothing more. Bytes are copied out before
//!   they are parsed; a peer can change what they say, never where they are read.
//! - After writing, the producer rings the data bell; after reading, the consumer rings the
//!   space bell (see `doorbell.rs`: a system call only if the other side sleeps).
//! - Neither side ever waits for the other while holding the ring: a ring that stays full or
//!   empty is the caller's to wait on (its bell, with a spin first), and a dead peer is
//!   noticed by watching its process, not the ring.
//!
//! The memory is zeroed when created, so a new ring is empty and open.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::atomic::{AtomicU32, AtomicU64};

use crate::doorbell::{BELL_BYTES, Doorbell};
use crate::sys::SharedMemory;

/// Bytes of a ring's header.
pub(crate) const HEADER: usize = 256;
const TAIL: usize = 0;
const CLOSED: usize = 8;
const HEAD: usize = 64;
const DATA_BELL: usize = 128;
const SPACE_BELL: usize = 192;
const _: () = assert!(SPACE_BELL + BELL_BYTES <= HEADER);

/// Where a ring lies in its shared memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RingLayout {
    /// Byte offset of its header (a multiple of 64).
    pub(crate) offset: usize,
    /// Bytes of data: a power of two.
    pub(crate) capacity: usize,
}

impl RingLayout {
    /// Bytes the ring takes, header and data.
    pub(crate) const fn size(&self) -> usize {
        HEADER + self.capacity
    }

    fn valid(&self, memory: &SharedMemory) -> bool {
        self.capacity.is_power_of_two()
            && self.offset.is_multiple_of(64)
            && self.offset.checked_add(self.size()).is_some_and(|end| end <= memory.len())
    }
}

/// The peer broke the ring's protocol: a position it published is impossible. The ring
/// carries nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Broken;

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the peer broke the shared-memory ring (an impossible position)")
    }
}

impl std::error::Error for Broken {}

/// The parts both ends share.
#[derive(Debug)]
struct Ring {
    memory: Arc<SharedMemory>,
    layout: RingLayout,
}

impl Ring {
    fn new(memory: Arc<SharedMemory>, layout: RingLayout) -> Option<Ring> {
        layout.valid(&memory).then_some(Ring { memory, layout })
    }

    fn tail(&self) -> &AtomicU64 {
        &self.memory.words(self.layout.offset + TAIL, 1)[0]
    }

    fn head(&self) -> &AtomicU64 {
        &self.memory.words(self.layout.offset + HEAD, 1)[0]
    }

    fn closed(&self) -> &AtomicU32 {
        self.memory.word32(self.layout.offset + CLOSED)
    }

    fn data_bell(&self) -> Doorbell<'_> {
        Doorbell::at(&self.memory, self.layout.offset + DATA_BELL)
    }

    fn space_bell(&self) -> Doorbell<'_> {
        Doorbell::at(&self.memory, self.layout.offset + SPACE_BELL)
    }

    /// Where position `pos` lies in the memory, and how many bytes from there to the end of
    /// the data.
    fn at(&self, pos: u64) -> (usize, usize) {
        let mask = self.layout.capacity as u64 - 1;
        let within = usize::try_from(pos & mask).unwrap_or(0);
        (self.layout.offset + HEADER + within, self.layout.capacity - within)
    }
}

/// A look at a ring from the consumer's side, without being its consumer: whether bytes wait,
/// and its data bell. For a thread that watches a ring another thread reads.
#[derive(Debug)]
pub(crate) struct Peek {
    ring: Ring,
}

impl Peek {
    /// Whether bytes seem to wait: the published tail differs from the published head. Only
    /// a hint (a broken producer can make it say anything); the consumer checks what it reads.
    pub(crate) fn has_data(&self) -> bool {
        self.ring.tail().load(Acquire) != self.ring.head().load(Acquire)
    }

    /// The bell the consumer sleeps on while the ring is empty.
    pub(crate) fn data_bell(&self) -> Doorbell<'_> {
        self.ring.data_bell()
    }
}

/// The writing end of a ring.
#[derive(Debug)]
pub(crate) struct Producer {
    ring: Ring,
    /// Bytes written: this side's position, never read back from the memory.
    tail: u64,
    /// The consumer's position when last read.
    head: u64,
    broken: bool,
}

impl Producer {
    /// The producer of the ring at `layout` of `memory` (a fresh, zeroed ring); `None` if the
    /// layout does not fit the memory.
    pub(crate) fn new(memory: Arc<SharedMemory>, layout: RingLayout) -> Option<Producer> {
        Some(Producer { ring: Ring::new(memory, layout)?, tail: 0, head: 0, broken: false })
    }

    /// Bytes that can be written now.
    ///
    /// # Errors
    ///
    /// [`Broken`]: the consumer published an impossible head.
    pub(crate) fn room(&mut self) -> Result<usize, Broken> {
        if self.broken {
            return Err(Broken);
        }
        let head = self.ring.head().load(Acquire);
        let capacity = self.ring.layout.capacity as u64;
        // The head only moves forward, never past what was written.
        if head.wrapping_sub(self.head) > self.tail.wrapping_sub(self.head) {
            self.broken = true;
            return Err(Broken);
        }
        self.head = head;
        let used = self.tail.wrapping_sub(head);
        Ok(usize::try_from(capacity - used).unwrap_or(0))
    }

    /// Copies as much of `bytes` as fits and publishes it; returns how many. Does not ring
    /// the data bell ([`Producer::data_bell`]).
    ///
    /// # Errors
    ///
    /// [`Broken`]: the consumer published an impossible head.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<usize, Broken> {
        let n = self.room()?.min(bytes.len());
        if n == 0 {
            return Ok(0);
        }
        let (at, to_end) = self.ring.at(self.tail);
        let first = n.min(to_end);
        let memory = &self.ring.memory;
        let copied = memory.write_at(at, &bytes[..first])
            && memory.write_at(self.ring.at(0).0, &bytes[first..n]);
        if !copied {
            self.broken = true;
            return Err(Broken);
        }
        self.tail = self.tail.wrapping_add(n as u64);
        self.ring.tail().store(self.tail, Release);
        Ok(n)
    }

    /// Says that nothing more will be written: the consumer reads what is left, then the
    /// end. The caller rings the data bell.
    pub(crate) fn close(&self) {
        self.ring.closed().store(1, Release);
    }

    /// The bell the consumer sleeps on while the ring is empty: the producer rings it.
    pub(crate) fn data_bell(&self) -> Doorbell<'_> {
        self.ring.data_bell()
    }

    /// The bell the producer sleeps on while the ring is full.
    pub(crate) fn space_bell(&self) -> Doorbell<'_> {
        self.ring.space_bell()
    }
}

/// The reading end of a ring.
#[derive(Debug)]
pub(crate) struct Consumer {
    ring: Ring,
    /// Bytes read: this side's position, never read back from the memory.
    head: u64,
    broken: bool,
}

impl Consumer {
    /// The consumer of the ring at `layout` of `memory` (a fresh, zeroed ring); `None` if the
    /// layout does not fit the memory.
    pub(crate) fn new(memory: Arc<SharedMemory>, layout: RingLayout) -> Option<Consumer> {
        Some(Consumer { ring: Ring::new(memory, layout)?, head: 0, broken: false })
    }

    /// Bytes waiting to be read.
    ///
    /// # Errors
    ///
    /// [`Broken`]: the producer published an impossible tail.
    pub(crate) fn available(&mut self) -> Result<usize, Broken> {
        if self.broken {
            return Err(Broken);
        }
        let tail = self.ring.tail().load(Acquire);
        let available = tail.wrapping_sub(self.head);
        if available > self.ring.layout.capacity as u64 {
            self.broken = true;
            return Err(Broken);
        }
        Ok(usize::try_from(available).unwrap_or(0))
    }

    /// A look at this ring for other threads ([`Peek`]).
    pub(crate) fn peek(&self) -> Peek {
        Peek { ring: Ring { memory: self.ring.memory.clone(), layout: self.ring.layout } }
    }

    /// Whether bytes are waiting, without checking them (for a quick look from a spin; a
    /// broken tail reads as bytes waiting, which the next read reports).
    pub(crate) fn has_data(&self) -> bool {
        self.broken || self.ring.tail().load(Acquire) != self.head
    }

    /// Copies waiting bytes into `buf` (as many as fit) and publishes that they were read;
    /// returns how many. Does not ring the space bell ([`Consumer::space_bell`]).
    ///
    /// # Errors
    ///
    /// [`Broken`]: the producer published an impossible tail.
    #[cfg(test)]
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Result<usize, Broken> {
        self.take(buf.len(), |memory, [(at, first), (start, second)]| {
            let (front, back) = buf[..first + second].split_at_mut(first);
            memory.read_at(at, front) && memory.read_at(start, back)
        })
    }

    /// Copies at most `max` waiting bytes onto the end of `buf`, into the room it has (its
    /// spare capacity, not cleared first), and publishes that they were read; returns how
    /// many. Does not ring the space bell.
    ///
    /// # Errors
    ///
    /// [`Broken`]: the producer published an impossible tail.
    pub(crate) fn read_appending(
        &mut self,
        buf: &mut Vec<u8>,
        max: usize,
    ) -> Result<usize, Broken> {
        let room = max.min(buf.capacity() - buf.len());
        self.take(room, |memory, [(at, first), (start, second)]| {
            memory.read_appending(at, first, buf) && memory.read_appending(start, second, buf)
        })
    }

    /// Takes at most `most` waiting bytes: `copy` copies them out of the memory, given where
    /// the two pieces lie (before and after the wrap) and their lengths. Publishes the new
    /// head once they are copied.
    fn take(
        &mut self,
        most: usize,
        copy: impl FnOnce(&SharedMemory, [(usize, usize); 2]) -> bool,
    ) -> Result<usize, Broken> {
        let n = self.available()?.min(most);
        if n == 0 {
            return Ok(0);
        }
        let (at, to_end) = self.ring.at(self.head);
        let first = n.min(to_end);
        if !copy(&self.ring.memory, [(at, first), (self.ring.at(0).0, n - first)]) {
            self.broken = true;
            return Err(Broken);
        }
        self.head = self.head.wrapping_add(n as u64);
        self.ring.head().store(self.head, Release);
        Ok(n)
    }

    /// Whether the producer said nothing more will come. Bytes may still be waiting: read
    /// this before [`Consumer::available`] to tell the end from a pause.
    pub(crate) fn is_closed(&self) -> bool {
        self.ring.closed().load(Acquire) != 0
    }

    /// The bell the consumer sleeps on while the ring is empty.
    pub(crate) fn data_bell(&self) -> Doorbell<'_> {
        self.ring.data_bell()
    }

    /// The bell the producer sleeps on while the ring is full: the consumer rings it.
    pub(crate) fn space_bell(&self) -> Doorbell<'_> {
        self.ring.space_bell()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::Rng;
    use crate::wire::{self, FrameReader, Kind};

    const LAYOUT: RingLayout = RingLayout { offset: 64, capacity: 256 };

    fn pair() -> (Producer, Consumer, Arc<SharedMemory>) {
        let (memory, _fd) = SharedMemory::create(c"taskpool-test", 4096).unwrap();
        let memory = Arc::new(memory);
        let producer = Producer::new(memory.clone(), LAYOUT).unwrap();
        let consumer = Consumer::new(memory.clone(), LAYOUT).unwrap();
        (producer, consumer, memory)
    }

    #[test]
    fn a_layout_that_does_not_fit_is_refused() {
        let (memory, _fd) = SharedMemory::create(c"taskpool-test", 4096).unwrap();
        let memory = Arc::new(memory);
        for layout in [
            RingLayout { offset: 0, capacity: 4096 },
            RingLayout { offset: 0, capacity: 1000 },
            RingLayout { offset: 8, capacity: 256 },
            RingLayout { offset: usize::MAX - 63, capacity: 256 },
        ] {
            assert!(Producer::new(memory.clone(), layout).is_none(), "{layout:?}");
        }
    }

    #[test]
    fn bytes_come_out_in_order_in_any_pieces_across_the_wrap() {
        let mut rng = Rng::new(1);
        for _ in 0..50 {
            let (mut producer, mut consumer, _memory) = pair();
            let len = rng.below(5000);
            let sent = rng.bytes(len);
            let (mut written, mut got) = (0, Vec::new());
            while got.len() < sent.len() {
                let chunk = rng.below(300).min(sent.len() - written);
                written += producer.write(&sent[written..written + chunk]).unwrap();
                let mut buf = vec![0; rng.below(300)];
                let n = consumer.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
                assert!(consumer.available().unwrap() <= LAYOUT.capacity);
            }
            assert_eq!(got, sent);
            assert_eq!(producer.room().unwrap(), LAYOUT.capacity, "all read: empty again");
        }
    }

    #[test]
    fn a_full_ring_takes_nothing_and_the_end_follows_the_last_bytes() {
        let (mut producer, mut consumer, _memory) = pair();
        assert_eq!(producer.write(&[7; 300]).unwrap(), 256);
        assert_eq!(producer.write(&[7; 10]).unwrap(), 0);
        producer.close();
        assert!(consumer.is_closed());
        let mut buf = [0; 512];
        assert_eq!(consumer.read(&mut buf).unwrap(), 256);
        assert_eq!(consumer.read(&mut buf).unwrap(), 0);
    }

    /// A producer that breaks the protocol: whatever it writes into the header, the consumer
    /// never reads out of bounds or more than it was asked, never panics, and once it finds
    /// an impossible tail reports the ring broken for good.
    #[test]
    fn a_consumer_survives_any_tail_a_broken_producer_publishes() {
        let mut rng = Rng::new(2);
        for _ in 0..2000 {
            let (mut producer, mut consumer, memory) = pair();
            let mut broken = false;
            for _ in 0..rng.below(20) {
                if rng.below(3) == 0 {
                    let tail = match rng.below(4) {
                        0 => rng.next_u64(),
                        1 => u64::MAX - rng.below(300) as u64,
                        2 => rng.below(600) as u64,
                        _ => consumer.head.wrapping_sub(rng.below(4) as u64),
                    };
                    memory.words(LAYOUT.offset + TAIL, 1)[0].store(tail, Release);
                } else {
                    let len = rng.below(200);
                    let _ = producer.write(&rng.bytes(len));
                }
                let mut buf = vec![0; rng.below(300)];
                match consumer.read(&mut buf) {
                    Ok(n) => {
                        assert!(!broken, "broken is for good");
                        assert!(n <= buf.len());
                    }
                    Err(Broken) => broken = true,
                }
                let tail = memory.words(LAYOUT.offset + TAIL, 1)[0].load(Acquire);
                if tail.wrapping_sub(consumer.head) > 256 {
                    assert!(consumer.available().is_err(), "an impossible tail is refused");
                    broken = true;
                }
            }
        }
    }

    #[test]
    fn a_producer_survives_any_head_a_broken_consumer_publishes() {
        let mut rng = Rng::new(3);
        for _ in 0..2000 {
            let (mut producer, mut consumer, memory) = pair();
            let mut broken = false;
            for _ in 0..rng.below(20) {
                if rng.below(3) == 0 {
                    let head = match rng.below(3) {
                        0 => rng.next_u64(),
                        1 => producer.tail.wrapping_add(1 + rng.below(300) as u64),
                        _ => producer.head.wrapping_sub(1 + rng.below(4) as u64),
                    };
                    memory.words(LAYOUT.offset + HEAD, 1)[0].store(head, Release);
                    assert!(producer.room().is_err(), "head {head} refused");
                    broken = true;
                } else {
                    let _ = consumer.read(&mut vec![0; rng.below(300)]);
                }
                let len = rng.below(300);
                match producer.write(&rng.bytes(len)) {
                    Ok(n) => assert!(!broken && n <= LAYOUT.capacity),
                    Err(Broken) => assert!(broken),
                }
            }
        }
    }

    /// Frames read through a ring whose bytes a broken producer damaged: the frame reader
    /// gives whole frames, errors or nothing, never a panic or an allocation past its limit.
    #[test]
    fn frames_from_a_damaged_ring_are_whole_or_refused() {
        let mut rng = Rng::new(4);
        for _ in 0..500 {
            let (mut producer, mut consumer, _memory) = pair();
            let mut stream = Vec::new();
            for _ in 0..1 + rng.below(8) {
                let at = wire::begin_frame(&mut stream, Kind::Done);
                let len = rng.len_up_to(400);
                stream.extend_from_slice(&rng.bytes(len));
                wire::end_frame(&mut stream, at);
            }
            let stream = rng.damage(&stream);
            let mut reader = FrameReader::new(1024);
            let mut written = 0;
            'feed: while written < stream.len() {
                written += producer.write(&stream[written..]).unwrap();
                let n = reader
                    .fill_with(|buf, most| Ok(consumer.read_appending(buf, most).unwrap()))
                    .unwrap();
                assert!(n <= LAYOUT.capacity);
                loop {
                    match reader.next_frame() {
                        Ok(Some((_, range))) => assert!(range.len() <= 1024),
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
                assert!(reader.capacity() <= 1024 + wire::HEADER + wire::READ_CHUNK);
            }
        }
    }

    /// Well-formed frames, some longer than the ring, written in pieces of any size as room
    /// allows and read in pieces of any size: each comes back whole, in order, unchanged.
    #[test]
    fn well_formed_frames_come_back_intact_in_any_pieces() {
        let mut rng = Rng::new(5);
        let kinds = [Kind::Done, Kind::Failed, Kind::Panicked, Kind::Bell];
        for _ in 0..300 {
            let (mut producer, mut consumer, _memory) = pair();
            let mut stream = Vec::new();
            let mut sent = Vec::new();
            for _ in 0..1 + rng.below(12) {
                let kind = rng.pick(&kinds);
                let len = rng.len_up_to(700);
                let body = rng.bytes(len);
                let at = wire::begin_frame(&mut stream, kind);
                stream.extend_from_slice(&body);
                wire::end_frame(&mut stream, at);
                sent.push((kind, body));
            }
            let mut reader = FrameReader::new(1024);
            let (mut written, mut got, mut rounds) = (0, Vec::new(), 0);
            while got.len() < sent.len() {
                let piece = (1 + rng.below(300)).min(stream.len() - written);
                written += producer.write(&stream[written..written + piece]).unwrap();
                let most = 1 + rng.below(300);
                let room = |buf: &mut Vec<u8>, room: usize| {
                    Ok(consumer.read_appending(buf, most.min(room)).unwrap())
                };
                reader.fill_with(room).unwrap();
                while let Some((kind, range)) = reader.next_frame().unwrap() {
                    got.push((kind, reader.bytes(range).to_vec()));
                }
                rounds += 1;
                assert!(rounds < 100_000, "stalled after {} of {} frames", got.len(), sent.len());
            }
            assert_eq!(got, sent);
            assert!(reader.is_empty());
        }
    }

    /// A peer that writes anything anywhere in the ring (its header words and its data)
    /// between reads: reading until the ring says "nothing" or "broken" always ends, within
    /// as many reads as the ring holds bytes, and never copies more than asked.
    #[test]
    fn reading_a_ring_a_peer_scribbles_on_always_ends() {
        let mut rng = Rng::new(6);
        for _ in 0..1000 {
            let (_producer, mut consumer, memory) = pair();
            for _ in 0..1 + rng.below(10) {
                for _ in 0..rng.below(6) {
                    let word = rng.pick(&[TAIL, HEAD, CLOSED, DATA_BELL, SPACE_BELL]);
                    let value = match rng.below(3) {
                        0 => rng.next_u64(),
                        1 => consumer.head.wrapping_add(rng.below(600) as u64),
                        _ => u64::MAX - rng.below(4) as u64,
                    };
                    memory.words(LAYOUT.offset + word, 1)[0].store(value, Release);
                }
                let at = LAYOUT.offset + HEADER + rng.below(LAYOUT.capacity);
                let len = rng.below(LAYOUT.offset + HEADER + LAYOUT.capacity - at);
                assert!(memory.write_at(at, &rng.bytes(len)));
                let mut reads = 0;
                loop {
                    let mut buf = vec![0; 1 + rng.below(64)];
                    match consumer.read(&mut buf) {
                        Ok(0) | Err(Broken) => break,
                        Ok(n) => assert!(n <= buf.len()),
                    }
                    reads += 1;
                    assert!(reads <= LAYOUT.capacity, "the reads never end");
                }
                let _ = consumer.is_closed();
            }
        }
    }

    #[test]
    fn two_threads_stream_through_a_ring_with_bells() {
        let (mut producer, mut consumer, _memory) = pair();
        let total = 200_000usize;
        let reader = std::thread::spawn(move || {
            let mut got = 0usize;
            let mut buf = [0u8; 100];
            while got < total {
                let n = consumer.read(&mut buf).unwrap();
                for (i, b) in buf[..n].iter().enumerate() {
                    assert_eq!(*b, ((got + i) % 251) as u8);
                }
                got += n;
                if n > 0 {
                    consumer.space_bell().ring();
                    continue;
                }
                let ticket = consumer.data_bell().arm();
                if consumer.available().unwrap() == 0 {
                    consumer.data_bell().sleep(ticket, None);
                }
                consumer.data_bell().disarm();
            }
        });
        let bytes: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        let mut sent = 0;
        while sent < total {
            let n = producer.write(&bytes[sent..(sent + 77).min(total)]).unwrap();
            sent += n;
            if n > 0 {
                producer.data_bell().ring();
                continue;
            }
            let ticket = producer.space_bell().arm();
            if producer.room().unwrap() == 0 {
                producer.space_bell().sleep(ticket, None);
            }
            producer.space_bell().disarm();
        }
        reader.join().unwrap();
    }
}
