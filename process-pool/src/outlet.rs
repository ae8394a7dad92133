//! The writes to workers: each worker's outbox and the non-blocking writes that empty it.
//!
//! This is one side of the transport seam (the other is the supervisor's reading of result
//! frames): the scheduler appends batch frames to a worker's [`Outlet`] under the pool's lock
//! and the writes happen after the lock is released ([`Flush`]), so a write, and the wake-up
//! of the worker inside it, never holds up the rest of the pool. What a full pipe or ring
//! does not take stays in the outbox until the worker's supervisor sees room.
//!
//! Requests travel on the worker's request ring where it has shared memory ([`RingRequests`]:
//! a copy, and a futex wake only if the worker sleeps), or on its request pipe.
//!
//! A batch whose inputs come to [`bulk::APART`] or more on a ring ([`bulk::LARGE`] on a pipe)
//! is not copied into the outbox: the outbox holds its frame's head, and the inputs are
//! written later straight from their run ([`Writer::push_batch`]). Such an argument so takes
//! one copy less on its way, and the pool's lock is never held while megabytes are copied. A
//! batch of one input that is one byte string goes as a bulk frame of its bytes, then the
//! batch frame with a reference to them (see `codec.rs`), so the worker reads the bytes
//! straight into its argument's vector.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Instant;

use crate::bulk;
use crate::codec;
use crate::protocol;
use crate::ring::Producer;
use crate::run::Run;
use crate::ship::Shipped;
use crate::sys;
use crate::wire;

/// Where a worker's requests go: its request ring, or the write end of its request pipe
/// (non-blocking).
pub(crate) trait RequestPipe: Send + Sync {
    /// Writes some of `bytes` without blocking, waking the worker if it sleeps; `Ok(0)` when
    /// the pipe is full.
    fn write(&self, bytes: &[u8]) -> io::Result<usize>;

    /// Tells the worker that nothing more will come, once it has read what was written. (A
    /// pipe closes when its last reference is dropped.)
    fn close(&self) {}

    /// The descriptor to poll for room to write, where room is seen that way (a pipe).
    fn pollable(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// Where room is not seen by polling (a ring): asks the worker to ring the supervisor
    /// once it frees room. Returns whether there is room already (nothing is asked then).
    fn watch_room(&self) -> bool {
        true
    }

    /// Withdraws what [`RequestPipe::watch_room`] asked.
    fn unwatch_room(&self) {}

    /// Whether the worker broke the transport: it can never be written to again.
    fn is_broken(&self) -> bool {
        false
    }

    /// Whether this is a ring, where a batch's inputs are written from their run rather than
    /// copied into the outbox from [`bulk::APART`] bytes on; on a pipe, where each part
    /// written costs a system call, only from [`bulk::LARGE`] (see [`bulk::apart_from`]).
    fn on_ring(&self) -> bool {
        false
    }
}

impl RequestPipe for OwnedFd {
    fn write(&self, bytes: &[u8]) -> io::Result<usize> {
        sys::write_to_child(self.as_fd(), bytes)
    }

    fn pollable(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }
}

/// A worker's request ring, and its request pipe, kept open (for nothing but the worker's
/// sake: it read its start-up frame there) until the ring is dropped.
#[derive(Debug)]
pub(crate) struct RingRequests {
    ring: Mutex<Producer>,
    _pipe: OwnedFd,
    broken: AtomicBool,
}

impl RingRequests {
    pub(crate) fn new(ring: Producer, pipe: OwnedFd) -> Self {
        RingRequests { ring: Mutex::new(ring), _pipe: pipe, broken: AtomicBool::new(false) }
    }

    fn lock(&self) -> MutexGuard<'_, Producer> {
        // Every step leaves the producer consistent, so a poisoned lock is usable.
        self.ring.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RequestPipe for RingRequests {
    /// A copy into shared memory, and a wake-up only if the worker sleeps: a part more costs
    /// little.
    fn on_ring(&self) -> bool {
        true
    }

    fn write(&self, bytes: &[u8]) -> io::Result<usize> {
        let mut ring = self.lock();
        match ring.write(bytes) {
            Ok(n) => {
                if n > 0 {
                    ring.data_bell().ring();
                }
                Ok(n)
            }
            Err(broken) => {
                self.broken.store(true, Ordering::Release);
                Err(io::Error::other(broken.to_string()))
            }
        }
    }

    fn close(&self) {
        let ring = self.lock();
        ring.close();
        ring.data_bell().ring();
    }

    fn watch_room(&self) -> bool {
        let mut ring = self.lock();
        ring.space_bell().arm();
        match ring.room() {
            Ok(0) => false,
            Ok(_) => {
                ring.space_bell().disarm();
                true
            }
            Err(_) => {
                ring.space_bell().disarm();
                self.broken.store(true, Ordering::Release);
                true
            }
        }
    }

    fn unwatch_room(&self) {
        self.lock().space_bell().disarm();
    }

    fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }
}

/// The write side of a worker's request pipe, behind the [`Outlet`]'s lock.
pub(crate) struct Writer {
    /// `None` once closed (the worker then exits when done). The supervisor holds another
    /// reference, for polling; the descriptor closes when both are gone.
    request: Option<Arc<dyn RequestPipe>>,
    /// Frames not written yet, but for the large inputs in `spliced`.
    outbox: Vec<u8>,
    /// Bytes of `outbox` written.
    written: usize,
    /// Large inputs to write from their runs, in order, each where it belongs in the stream.
    spliced: VecDeque<Splice>,
    /// The frames of items with a time limit that may not be answered yet, in order: their
    /// items' clocks start no earlier than they are written (see [`Handover`]).
    timed: VecDeque<Timed>,
}

/// A frame of items with a time limit ([`Writer::time_from_write`]).
#[derive(Debug)]
struct Timed {
    /// Its items' sequence numbers.
    seqs: Range<u64>,
    /// When a write of it was first tried, once it was.
    written: Option<Instant>,
}

/// Whether the frame of an item was handed to the worker ([`Writer::handover`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handover {
    /// Not written yet: the worker cannot have started the item.
    Pending,
    /// Written then: what the pipe or ring did not take at once waited for the worker to
    /// make room, which counts in the item's time as the worker's own delays do.
    At(Instant),
    /// Not recorded (no time limit): its clock is the scheduler's alone.
    Unknown,
}

/// The inputs of a large batch, written straight from their run.
struct Splice {
    /// Where they go in the stream: after this many bytes of the outbox.
    at: usize,
    run: Arc<Run>,
    items: Range<usize>,
    /// Bytes of them written (from the first one not to write: a byte string's head stays
    /// out of its bulk frame).
    written: usize,
}

impl Writer {
    /// Appends a [`Kind::Batch`](crate::wire::Kind::Batch) frame for `items` of `run`,
    /// numbered from `first_seq` (see [`protocol::encode_batch`]). Inputs of
    /// [`bulk::apart_from`] bytes or more (see [`RequestPipe::on_ring`]) are not copied: only
    /// the frame's head is, and they are written after it from the run.
    pub(crate) fn push_batch(
        &mut self,
        first_seq: u64,
        run: &Arc<Run>,
        flags: u8,
        items: Range<usize>,
    ) {
        let framed = run.framed(items.clone());
        let (count, job) = (items.len(), &run.job.shipped);
        let on_ring = self.request.as_deref().is_some_and(RequestPipe::on_ring);
        if framed.len() < bulk::apart_from(on_ring) {
            protocol::encode_batch(&mut self.outbox, first_seq, job, flags, count, framed);
            return;
        }
        // One input, a `u32` length then its encoding.
        let head = if count == 1 { codec::byte_string_head(&framed[4..]) } else { None };
        let Some(head) = head else {
            protocol::encode_batch_head(&mut self.outbox, first_seq, job, flags, count, framed);
            let at = self.outbox.len();
            self.spliced.push_back(Splice { at, run: run.clone(), items, written: 0 });
            return;
        };
        let skip = 4 + head;
        wire::put_bulk_head(&mut self.outbox, framed.len() - skip);
        let at = self.outbox.len();
        self.spliced.push_back(Splice { at, run: run.clone(), items, written: skip });
        let mut reference = vec![0; 4];
        codec::bulk_reference(&mut reference, &framed[4..skip]);
        let len = u32::try_from(reference.len() - 4).unwrap_or(u32::MAX);
        reference[..4].copy_from_slice(&len.to_le_bytes());
        protocol::encode_batch(&mut self.outbox, first_seq, job, flags, 1, &reference);
    }

    /// Appends one [`Kind::Batch`](crate::wire::Kind::Batch) frame for `count` single items
    /// of several runs of `job`, numbered from `first_seq`: their framed inputs, `parts`, in
    /// order (see [`protocol::encode_batch_parts`]). They are small, so they are copied.
    pub(crate) fn push_parts<'a>(
        &mut self,
        first_seq: u64,
        job: &Shipped,
        flags: u8,
        count: usize,
        parts: impl Iterator<Item = &'a [u8]> + Clone,
    ) {
        protocol::encode_batch_parts(&mut self.outbox, first_seq, job, flags, count, parts);
    }

    /// Records that the frame just appended carries items `seqs`, which have a time limit:
    /// their clocks start no earlier than it is written, which happens once the pool's lock
    /// is released, by a thread that may be descheduled in between. Forgets the frames of
    /// items before `answered` (all answered).
    pub(crate) fn time_from_write(&mut self, seqs: Range<u64>, answered: u64) {
        self.forget_before(answered);
        self.timed.push_back(Timed { seqs, written: None });
    }

    /// Whether the frame of item `seq`, the first not answered, was written, and when.
    pub(crate) fn handover(&mut self, seq: u64) -> Handover {
        self.forget_before(seq);
        match self.timed.iter().find(|t| t.seqs.contains(&seq)) {
            Some(Timed { written: Some(at), .. }) => Handover::At(*at),
            Some(Timed { written: None, .. }) => Handover::Pending,
            None => Handover::Unknown,
        }
    }

    /// Forgets the timed frames whose items all come before `seq`.
    fn forget_before(&mut self, seq: u64) {
        while self.timed.front().is_some_and(|t| t.seqs.end <= seq) {
            self.timed.pop_front();
        }
    }

    /// Records that a write of every timed frame appended was tried by now.
    fn note_written(&mut self) {
        let mut now = None;
        for timed in self.timed.iter_mut().rev().take_while(|t| t.written.is_none()) {
            timed.written = Some(*now.get_or_insert_with(Instant::now));
        }
    }

    /// Writes what the pipe takes without blocking; returns whether bytes are left. A broken
    /// pipe is left for the supervisor to notice as the worker's end.
    fn flush(&mut self) -> bool {
        let Some(request) = &self.request else {
            self.clear();
            return false;
        };
        loop {
            let end = self.spliced.front().map_or(self.outbox.len(), |s| s.at);
            while self.written < end {
                match request.write(&self.outbox[self.written..end]) {
                    Ok(0) => {
                        self.compact();
                        return true;
                    }
                    Ok(n) => self.written += n,
                    Err(_) => {
                        self.clear();
                        return false;
                    }
                }
            }
            let Some(splice) = self.spliced.front_mut() else { break };
            let bytes = splice.run.framed(splice.items.clone());
            while splice.written < bytes.len() {
                match request.write(&bytes[splice.written..]) {
                    Ok(0) => {
                        self.compact();
                        return true;
                    }
                    Ok(n) => splice.written += n,
                    Err(_) => {
                        self.clear();
                        return false;
                    }
                }
            }
            self.spliced.pop_front();
        }
        self.clear();
        false
    }

    /// Drops the bytes of the outbox already written, once they are half of it or more. A
    /// worker that never catches up (each frame larger than its ring, the next appended
    /// before the last is read) leaves bytes behind at every flush, and the outbox is cleared
    /// only once it is written whole: without this it would keep every frame ever sent.
    fn compact(&mut self) {
        let written = self.written;
        if written == 0 || written < self.outbox.len() / 2 {
            return;
        }
        self.outbox.drain(..written);
        // Every large input goes after what was written: none was reached before it.
        self.spliced.iter_mut().for_each(|splice| splice.at -= written);
        self.written = 0;
    }

    /// Drops every frame not written.
    fn clear(&mut self) {
        self.note_written();
        self.outbox.clear();
        self.written = 0;
        self.spliced.clear();
    }

    /// Closes the pipe: the worker finishes what it holds and exits.
    fn close(&mut self) {
        if let Some(request) = self.request.take() {
            request.close();
        }
        self.clear();
    }
}

/// A worker's [`Writer`] behind its lock, with a flag that says, without taking the lock,
/// whether bytes were left in the outbox (so the supervisor must watch the pipe for room).
///
/// Lock order: the pool's lock, then this one; never the other way.
pub(crate) struct Outlet {
    writer: Mutex<Writer>,
    backlog: AtomicBool,
}

impl Outlet {
    pub(crate) fn new(request: Arc<dyn RequestPipe>) -> Self {
        let writer = Writer {
            request: Some(request),
            outbox: Vec::new(),
            written: 0,
            spliced: VecDeque::new(),
            timed: VecDeque::new(),
        };
        Outlet { writer: Mutex::new(writer), backlog: AtomicBool::new(false) }
    }

    /// Locks the writer. Writes leave it consistent at every step, so a poisoned lock is
    /// usable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes what the pipe takes; returns whether bytes are left (and records it).
    pub(crate) fn flush(&self) -> bool {
        let mut writer = self.lock();
        let left = writer.flush();
        writer.note_written();
        self.backlog.store(left, Ordering::Release);
        left
    }

    /// Whether the outbox kept the memory of a large frame (see `bulk.rs`). Never waits:
    /// while somebody writes, the answer is no (the outbox is not idle).
    pub(crate) fn holds_large(&self) -> bool {
        match self.writer.try_lock() {
            Ok(writer) => bulk::is_large(&writer.outbox),
            Err(TryLockError::Poisoned(e)) => bulk::is_large(&e.into_inner().outbox),
            Err(TryLockError::WouldBlock) => false,
        }
    }

    /// Gives back the memory of an emptied outbox that grew for a large frame.
    pub(crate) fn release(&self) {
        bulk::release(&mut self.lock().outbox);
    }

    /// The bytes the outbox holds, written or not.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.lock().outbox.len()
    }

    /// Whether the last flush left bytes behind.
    pub(crate) fn has_backlog(&self) -> bool {
        self.backlog.load(Ordering::Acquire)
    }

    /// Closes the request pipe: the worker finishes what it holds and exits.
    pub(crate) fn close(&self) {
        self.lock().close();
        self.backlog.store(false, Ordering::Release);
    }
}

impl fmt::Debug for Outlet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outlet").field("backlog", &self.has_backlog()).finish()
    }
}

/// The flushes one step of the scheduler leaves to do (rarely more than one).
pub(crate) type Flushes = smallvec::SmallVec<[Flush; 2]>;

/// A worker with frames to write once the pool's lock is released; see
/// [`crate::scheduler::Shared::flush`].
#[derive(Debug)]
pub(crate) struct Flush {
    pub(crate) w: usize,
    pub(crate) outlet: Arc<Outlet>,
    /// Its supervisor must be woken: its head item has a new deadline.
    pub(crate) wake: bool,
}
