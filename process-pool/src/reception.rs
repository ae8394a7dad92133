//! Reading what a worker wrote: its result pipe and, where it has shared memory, its result
//! ring; handling the frames (hello, results, last words) under the pool's lock; handing the
//! outcomes to their sinks after it.
//!
//! A worker's [`Reception`] is read by its supervisor, and by a caller that joins a task of
//! the pool (see [`watch`]): whoever holds its lock reads, and the
//! result a caller reads itself reaches it without a wake-up of the supervisor and then of
//! the caller. Lock order: a reception's lock, then the pool's lock; a caller only ever tries
//! it (`try_lock`), so nothing waits for it while holding another lock.
//!
//! Beside a ring, the result pipe carries only the worker's start, its bells and its last
//! words: the results it had not written to the ring yet when it died, written by its
//! crash-time flush, and the running item's limit if it hit one. The pipe is read after every
//! load of the ring and handled first, so bytes a task wrote there before its result reached
//! the ring are seen first (the task fails with its worker, whatever its result said), and
//! last words are handled once the ring, loaded after them, is empty (every result the worker
//! put in the ring came before them).

use std::ops::Range;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use smallvec::SmallVec;
use taskpool_core::TaskError;

use crate::codec;
use crate::deliveries::{Deliveries, Spare};
use crate::doorbell::Spin;
use crate::protocol::{self, ItemResult};
use crate::ring::{Consumer, Peek};
use crate::scheduler::{Conn, KillReason, Shared, State};
use crate::sys::{self, Interest};
use crate::wire::{FrameReader, Kind};

/// How far a worker got in its start.
#[derive(Debug)]
pub(crate) struct Start {
    /// The worker said hello.
    pub(crate) ready: bool,
    /// Before its hello: when it must have said it.
    pub(crate) deadline: Instant,
    /// Why the worker did not start, if it said.
    pub(crate) refused: Option<String>,
}

/// What a worker wrote and was not handled yet, behind the reception's lock.
#[derive(Debug)]
pub(crate) struct Receiving {
    /// Frames read from the result pipe.
    reader: FrameReader,
    /// The result pipe has not reached its end.
    pub(crate) result_open: bool,
    /// The result ring and the frames read from it, where the worker has shared memory.
    ring: Option<(Consumer, FrameReader)>,
    pub(crate) start: Start,
    /// Ring mode: the worker's last words read from the pipe, handled once the ring holds
    /// nothing more.
    last_words: LastWords,
    /// Room for the next frames' outcomes.
    spare: Spare,
}

/// A dying worker's last words, read from its result pipe: its results, their bytes copied
/// out of the pipe's reader (which moves on), each result's range rebased into `bytes`.
#[derive(Debug, Default)]
pub(crate) struct LastWords {
    items: Vec<ItemResult>,
    bytes: Vec<u8>,
}

impl LastWords {
    /// Keeps `item`, whose bytes (if it has any) are at its range of `reader`.
    fn push(&mut self, mut item: ItemResult, reader: &FrameReader) {
        if let Ok(range) = &mut item.outcome {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(reader.bytes(range.clone()));
            *range = start..self.bytes.len();
        }
        self.items.push(item);
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Where a worker's results arrive, and who reads them.
#[derive(Debug)]
pub(crate) struct Reception {
    /// The worker's slot.
    pub(crate) w: usize,
    /// The worker's process id.
    pid: libc::pid_t,
    /// The read end of the result pipe (non-blocking).
    result: OwnedFd,
    /// A look at the result ring, without its lock.
    peek: Option<Peek>,
    /// Callers spinning on the ring for their own result: the supervisor does not spin then.
    watchers: AtomicUsize,
    inner: Mutex<Receiving>,
}

/// Who reads a reception.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reader {
    /// The worker's supervisor: everything.
    Supervisor,
    /// A caller waiting for its own result: the ring only.
    Caller,
}

/// Where frames were read, which says what they may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The result pipe of a worker without rings: everything it says.
    Pipe,
    /// The result pipe of a worker with rings: its start, its bells, and its last words (the
    /// results it wrote as it died), which wait in `last_words` for the ring to be read.
    PipeBesideRing,
    /// The result ring: results.
    Ring,
}

impl Reception {
    /// The reception of the worker `pid` in slot `w`: its result pipe (non-blocking), its
    /// result ring if it has one, and frames of at most `limit` bytes.
    pub(crate) fn new(
        w: usize,
        pid: libc::pid_t,
        result: OwnedFd,
        ring: Option<Consumer>,
        limit: usize,
        deadline: Instant,
    ) -> Self {
        let peek = ring.as_ref().map(Consumer::peek);
        let receiving = Receiving {
            reader: FrameReader::new(limit),
            result_open: true,
            ring: ring.map(|ring| (ring, FrameReader::new(limit))),
            start: Start { ready: false, deadline, refused: None },
            last_words: LastWords::default(),
            spare: Spare::default(),
        };
        Reception {
            w,
            pid,
            result,
            peek,
            watchers: AtomicUsize::new(0),
            inner: Mutex::new(receiving),
        }
    }

    /// Locks what was received. Every step leaves it consistent, so a poisoned lock is
    /// usable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Receiving> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The result pipe, for polling.
    pub(crate) fn pipe(&self) -> BorrowedFd<'_> {
        self.result.as_fd()
    }

    /// A look at the result ring, if the worker has one.
    pub(crate) fn peek(&self) -> Option<&Peek> {
        self.peek.as_ref()
    }

    /// Whether a caller watches the ring for its own result.
    pub(crate) fn is_watched(&self) -> bool {
        self.watchers.load(Ordering::Acquire) > 0
    }

    /// Whether a reader kept the memory of a large frame (see `bulk.rs`). Never waits: while
    /// somebody reads, the answer is no (the reader is not idle).
    pub(crate) fn holds_large(&self) -> bool {
        let receiving = match self.inner.try_lock() {
            Ok(receiving) => receiving,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return false,
        };
        receiving.reader.holds_large()
            || receiving.ring.as_ref().is_some_and(|(_, reader)| reader.holds_large())
    }

    /// Gives back the memory the readers kept for large frames, where they hold no byte, and
    /// the room kept for outcomes.
    pub(crate) fn release(&self) {
        let mut receiving = self.lock();
        receiving.reader.release();
        receiving.spare.release();
        if let Some((_, reader)) = &mut receiving.ring {
            reader.release();
        }
    }

    /// Whether the worker wrote something not read yet (on its ring or its pipe).
    pub(crate) fn has_unread(&self, receiving: &Receiving) -> bool {
        self.peek.as_ref().is_some_and(Peek::has_data)
            || (receiving.result_open && readable(self.result.as_fd()))
    }

    /// Reads and handles what the result pipe holds (and, beside a ring, what the ring
    /// holds, in the order the worker wrote them).
    pub(crate) fn read(&self, shared: &Shared, receiving: &mut Receiving) {
        self.read_pipe(shared, receiving);
        if receiving.start.ready {
            self.take_ring(shared, receiving, Reader::Supervisor);
        }
    }

    /// Reads and handles what the result ring holds (and the pipe after each load of it),
    /// then the worker's last words once the ring is empty; rings the worker if it waits for
    /// room. A worker that broke its ring is killed for its running item.
    ///
    /// A caller never reads the pipe (its bells are the supervisor's): finding bytes there,
    /// it stops, leaving what it loaded from the ring to the supervisor, and returns `false`.
    pub(crate) fn take_ring(&self, shared: &Shared, receiving: &mut Receiving, by: Reader) -> bool {
        loop {
            let Some((ring, reader)) = &mut receiving.ring else { return true };
            let filled = reader.fill_with(|buf, most| {
                ring.read_appending(buf, most).map_err(std::io::Error::other)
            });
            let filled = match filled {
                Ok(n) => n,
                Err(broken) => {
                    reader.discard();
                    let mut state = shared.lock();
                    kill_for_protocol(&mut state.slots[self.w].conn, broken.to_string());
                    return true;
                }
            };
            if filled > 0 {
                ring.space_bell().ring();
            }
            if (filled > 0 || !reader.is_empty()) && receiving.result_open {
                match by {
                    Reader::Supervisor => self.read_pipe(shared, receiving),
                    Reader::Caller if readable(self.result.as_fd()) => return false,
                    Reader::Caller => {}
                }
            }
            let Receiving { ring: Some((_, reader)), start, last_words, spare, .. } = receiving
            else {
                return true;
            };
            while read_frames(shared, self.w, reader, start, Origin::Ring, last_words, spare) {}
            if filled == 0 {
                break;
            }
        }
        if !receiving.last_words.is_empty() {
            let last_words = std::mem::take(&mut receiving.last_words);
            settle_all(shared, self.w, last_words);
        }
        true
    }

    /// Reads what the result pipe holds (without waiting) and handles the frames. At the
    /// pipe's end with the process still running (not exiting), the worker can never answer
    /// again: a task closed its descriptor, or replaced the process with `exec`. It is killed
    /// for its running item.
    pub(crate) fn read_pipe(&self, shared: &Shared, receiving: &mut Receiving) {
        if !receiving.result_open {
            return;
        }
        match receiving.reader.fill(self.result.as_fd()) {
            Ok(0) => {
                receiving.result_open = false;
                if !sys::is_exiting(self.pid) {
                    let mut state = shared.lock();
                    shared.pipe_closed(&mut state, self.w);
                }
            }
            Ok(_) => self.pipe_frames(shared, receiving),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => receiving.result_open = false,
        }
    }

    /// After the worker's process ended: reads everything it left, ring and pipe (at most
    /// `reads` reads of the pipe: what it holds, not what a forked copy that escaped the
    /// group may still write).
    pub(crate) fn drain(&self, shared: &Shared, reads: usize) {
        let mut receiving = self.lock();
        self.take_ring(shared, &mut receiving, Reader::Supervisor);
        for _ in 0..reads {
            match receiving.reader.fill(self.result.as_fd()) {
                Ok(n) if n > 0 && receiving.result_open => self.pipe_frames(shared, &mut receiving),
                _ => break,
            }
        }
        self.take_ring(shared, &mut receiving, Reader::Supervisor);
    }

    /// Handles the frames read from the result pipe: everything a worker without rings says;
    /// beside a ring, its start, its bells and its last words.
    fn pipe_frames(&self, shared: &Shared, receiving: &mut Receiving) {
        let origin = if receiving.ring.is_some() { Origin::PipeBesideRing } else { Origin::Pipe };
        let Receiving { reader, start, last_words, spare, .. } = receiving;
        while read_frames(shared, self.w, reader, start, origin, last_words, spare) {}
    }
}

/// A caller waits for a result that one of `receptions`' workers will write (whichever holds
/// its task): spins on their rings for a while (never past `deadline`), reading what arrives
/// itself where nobody else reads, until `done` says so. The supervisors do not spin
/// meanwhile, and the workers do not ring them: the caller takes their place, and hands it
/// back (ringing a supervisor whose worker's results are left, or whose worker may retire).
pub(crate) fn watch(
    receptions: &[Arc<Reception>],
    shared: &Shared,
    deadline: Instant,
    done: impl Fn() -> bool,
) {
    let mut watch = Watch { shared, watched: SmallVec::new() };
    for reception in receptions {
        let Some(peek) = reception.peek.as_ref() else { continue };
        reception.watchers.fetch_add(1, Ordering::AcqRel);
        // The supervisor may sleep with the bell armed: the worker would wake it for nothing.
        // The caller takes the bell over, and gives it back when it stops watching.
        let borrowed = peek.data_bell().borrow();
        watch.watched.push(Watched { reception, peek, borrowed, handed_over: false, read: false });
    }
    let mut spin = Spin::default();
    let waiting = |w: &Watched<'_>| !w.handed_over && w.peek.has_data();
    while !done() && watch.watched.iter().any(|w| !w.handed_over) {
        let ready = spin.spin_until(deadline, || done() || watch.watched.iter().any(waiting));
        if !ready || done() {
            break;
        }
        for w in watch.watched.iter_mut().filter(|w| waiting(w)) {
            let reception = w.reception;
            let taken = match reception.inner.try_lock() {
                Ok(mut receiving) => reception.take_ring(shared, &mut receiving, Reader::Caller),
                Err(TryLockError::Poisoned(e)) => {
                    reception.take_ring(shared, &mut e.into_inner(), Reader::Caller)
                }
                Err(TryLockError::WouldBlock) => {
                    // Its supervisor reads: let it have the CPU.
                    std::thread::yield_now();
                    true
                }
            };
            w.handed_over = !taken;
            w.read = true;
        }
    }
}

/// The receptions a caller watches (see [`watch`]): handed back to their supervisors when it
/// stops, however it stops.
struct Watch<'a> {
    shared: &'a Shared,
    watched: SmallVec<[Watched<'a>; 4]>,
}

/// A reception watched, whether its supervisor's bell was borrowed, whether the caller
/// handed its reading back (it found bytes on the pipe, which are the supervisor's), and
/// whether it read results (which may have made another item the worker's head).
struct Watched<'a> {
    reception: &'a Reception,
    peek: &'a Peek,
    borrowed: bool,
    handed_over: bool,
    read: bool,
}

impl Drop for Watch<'_> {
    fn drop(&mut self) {
        if self.watched.is_empty() {
            return;
        }
        for w in &self.watched {
            w.reception.watchers.fetch_sub(1, Ordering::AcqRel);
            if w.borrowed {
                w.peek.data_bell().give_back();
            }
        }
        // The supervisor decides what follows an answer (a worker at its quota, or in a pool
        // that closes, retires; a new head item's time limit or cancellation is policed):
        // it looks again if results are left, its worker may retire, or the results read
        // made a policed item the head (it may sleep with no deadline, or an old one).
        let shared = self.shared;
        let state = shared.lock();
        let wake: SmallVec<[usize; 4]> = self
            .watched
            .iter()
            .filter(|w| {
                w.handed_over
                    || w.borrowed && w.peek.has_data()
                    || shared.should_retire(&state, w.reception.w)
                    || w.read && shared.head_is_policed(&state, w.reception.w)
            })
            .map(|w| w.reception.w)
            .collect();
        drop(state);
        wake.into_iter().for_each(|w| shared.wake(w));
    }
}

/// Handles complete frames in `reader` (read from `origin` of the worker in slot `w`) under
/// one lock: the hello (or the refusal) of a starting worker, then results: records the
/// answers (and counts them as delivered) and refills the worker; then hands the results to
/// their sinks outside the lock. Counting before handing over is safe: `shutdown` and `drop`
/// also wait for the supervisor to end, which it does only after handing over. Bells are only
/// wake-ups: they carry nothing.
///
/// A result that came after a bulk frame is handed over alone, with the bulk lent to its
/// decoding (see `codec.rs`): returns `true` when it stopped before or after one, to be
/// called again for the frames after it.
fn read_frames(
    shared: &Shared,
    w: usize,
    reader: &mut FrameReader,
    start: &mut Start,
    origin: Origin,
    last_words: &mut LastWords,
    spare: &mut Spare,
) -> bool {
    let mut deliveries = Deliveries::reusing(spare);
    let mut lent = None;
    let now = Instant::now();
    let mut state = shared.lock();
    let mut hello = false;
    let mut again = false;
    // Whether the bytes held are dropped: only once the outcomes read before are delivered,
    // as their values are read from the reader's buffer.
    let mut discard = false;
    loop {
        let Some(killed) = state.slots[w].conn.as_ref().map(|c| c.killed.is_some()) else {
            discard = true;
            break;
        };
        if reader.holds_bulk() && !deliveries.is_empty() {
            // The frame after the bulk is handed over alone, with it.
            again = true;
            break;
        }
        let frame = match reader.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) if killed => {
                discard = true;
                break;
            }
            Err(e) => {
                kill_for_protocol(&mut state.slots[w].conn, e.to_string());
                break;
            }
        };
        let (kind, range) = frame;
        // Only a result on the ring or a worker's only pipe takes a bulk: a last word, or
        // anything else, that came after one fails to decode it if it refers to it.
        let bulk =
            reader.take_bulk().filter(|_| kind == Kind::Done && origin != Origin::PipeBesideRing);
        if kind == Kind::Bell && origin != Origin::Ring {
            continue;
        }
        if !start.ready {
            match kind {
                Kind::Hello => {
                    start.ready = true;
                    hello = true;
                    shared.started(&mut state, w);
                    if let Some(conn) = state.slots[w].conn.as_mut() {
                        conn.ready = true;
                    }
                    continue;
                }
                Kind::InitFailed => {
                    let reason = String::from_utf8_lossy(reader.bytes(range)).into_owned();
                    start.refused = Some(reason);
                }
                other => {
                    start.refused = Some(format!("the worker sent {other:?} before its hello"));
                    if let Some(conn) = state.slots[w].conn.as_mut() {
                        conn.kill(KillReason::Shutdown, None);
                    }
                }
            }
            discard = true;
            break;
        }
        if !matches!(kind, Kind::Done | Kind::Panicked | Kind::Failed) {
            kill_for_protocol(&mut state.slots[w].conn, format!("unexpected {kind:?} frame"));
            break;
        }
        let limit = shared.config.get_max_frame_bytes();
        let item = match protocol::decode_result(kind, reader.bytes(range.clone()), range, limit) {
            Ok(item) => item,
            Err(e) => {
                kill_for_protocol(&mut state.slots[w].conn, e.to_string());
                break;
            }
        };
        if origin == Origin::PipeBesideRing {
            // Only a result for an item the worker holds can be a last word; anything else
            // was written there by something other than the worker's flush.
            let slot = &state.slots[w];
            let held = slot.sent.iter().map(|s| s.items.len() as u64).sum::<u64>();
            let first = slot.conn.as_ref().map_or(0, |c| c.expect_seq);
            let items = item.meta.seq..item.meta.seq.saturating_add(u64::from(item.count));
            if items.start < first || items.end > first + held {
                let reason = format!(
                    "result for item {} on the result pipe, an item the worker does not hold",
                    item.meta.seq
                );
                kill_for_protocol(&mut state.slots[w].conn, reason);
                break;
            }
            last_words.push(item, reader);
            continue;
        }
        let list = item.outcome.as_ref().map_or(&[][..], |list| reader.bytes(list.clone()));
        if !settle(shared, &mut state, w, item, list, now, &mut deliveries) {
            discard = true;
            break;
        }
        if bulk.is_some() {
            lent = bulk;
            break;
        }
    }
    let flushes = if hello {
        shared.pump_all(&mut state)
    } else {
        shared.pump(&mut state, w).into_iter().collect()
    };
    shared.delivered(&mut state, deliveries.len());
    drop(state);
    shared.flush(flushes);
    let again = again || lent.is_some();
    let held = &*reader;
    codec::with_bulk(lent, || {
        deliveries.deliver_keeping(&|range| held.bytes(range), &shared.tally, spare)
    });
    if discard {
        reader.discard();
    }
    again
}

/// Records one result frame of worker `w`, read at `now` (`list`: the bytes of its values'
/// list, if it has one), and adds its outcomes to `deliveries`. Returns `false` if nothing
/// more the worker sent counts: the result came after a kill, broke the order, or said the
/// worker is dying of a limit.
fn settle(
    shared: &Shared,
    state: &mut State,
    w: usize,
    item: ItemResult,
    list: &[u8],
    now: Instant,
    deliveries: &mut Deliveries,
) -> bool {
    let seq = item.meta.seq;
    let Some(conn) = state.slots[w].conn.as_ref() else { return false };
    // After a kill, only results of items before the one it was for count: that item gets
    // the kill's error, whatever raced with it. Later bytes are dropped as they come, so
    // they cannot pile up until the worker ends.
    let accepted =
        (0..u64::from(item.count)).take_while(|&i| conn.accepts(seq.saturating_add(i))).count();
    if accepted == 0 {
        return false;
    }
    let cost = item.meta.cost;
    let answered = match &item.outcome {
        Ok(_) => {
            let each = cost.per_item(item.count);
            let mut values = item.values(list);
            let seqs = seq..seq.saturating_add(accepted as u64);
            // A lone result measures its own item: one that ran past its time limit fails
            // as timed out, however late the pool looked.
            let mut overran = 0;
            let answered =
                shared.answered(state, w, seqs, (now, cost.elapsed_ns), false, |run, items| {
                    let list = values.take_list(items.len());
                    let over = shared.overran(run, cost.elapsed_ns).filter(|_| item.count == 1);
                    match over {
                        Some(limit) => {
                            overran += 1;
                            let error = TaskError::TimedOut { limit, still_running: false };
                            deliveries.add_failure(run, items.start, error);
                        }
                        None => deliveries.add_values(run, items.start, list, items.len(), each),
                    }
                });
            state.counters.timeouts += overran;
            answered
        }
        Err(_) if item.recalled => {
            let seqs = seq..seq.saturating_add(accepted as u64);
            shared.answered(state, w, seqs, (now, 0), true, |_, _| {})
        }
        Err(error) => shared.answered(
            state,
            w,
            seq..seq.saturating_add(1),
            (now, cost.elapsed_ns),
            false,
            |run, items| {
                deliveries.add_failure(run, items.start, error.clone());
            },
        ),
    };
    if let Err(reason) = answered {
        kill_for_protocol(&mut state.slots[w].conn, reason);
        return false;
    }
    state.counters.cost.add(cost);
    if accepted < item.count as usize {
        return false;
    }
    if matches!(item.outcome, Err(TaskError::ResourceLimit { .. })) {
        // The worker dies of it right after saying so: send it nothing more.
        if let Some(conn) = state.slots[w].conn.as_mut() {
            conn.kill(KillReason::LimitReached, None);
        }
        return false;
    }
    true
}

/// Records a worker's last words, in order, and delivers them.
fn settle_all(shared: &Shared, w: usize, last_words: LastWords) {
    let LastWords { items, bytes } = last_words;
    let mut deliveries = Deliveries::default();
    let now = Instant::now();
    let mut state = shared.lock();
    for item in items {
        let list = item.outcome.as_ref().map_or(&[][..], |list| &bytes[list.clone()]);
        if !settle(shared, &mut state, w, item, list, now, &mut deliveries) {
            break;
        }
    }
    let flushes = shared.pump(&mut state, w);
    shared.delivered(&mut state, deliveries.len());
    drop(state);
    shared.flush(flushes);
    deliveries.deliver_from(&|range: Range<usize>| &bytes[range], &shared.tally);
}

/// Why a worker's result pipe ended while it ran.
pub(crate) const PIPE_CLOSED: &str = "the worker's result pipe was closed while it ran (a task \
                                      closed descriptor 4 or replaced the process with exec)";

/// Kills a worker that broke the protocol, for the item it runs; if it runs none, for the
/// item it ran last if the pool has no answer for it, else for nobody (the items it holds
/// did not start). Without a status page, for its head item.
pub(crate) fn kill_for_protocol(conn: &mut Option<Conn>, reason: String) {
    if let Some(conn) = conn {
        let expected = conn.expect_seq;
        let seq = match conn.process.progress() {
            Some(p) => p.running().filter(|&r| r >= expected).or(p.last_unanswered(expected)),
            None => Some(expected),
        };
        conn.kill(KillReason::Protocol(reason), seq);
    }
}

/// Whether `fd` has bytes to read (or is at its end), without waiting.
pub(crate) fn readable(fd: BorrowedFd<'_>) -> bool {
    let interest = Interest { fd, read: true, write: false };
    sys::poll([interest], Some(Duration::ZERO)).is_ok_and(|[ready]| ready.read)
}

#[cfg(test)]
mod tests {
    use taskpool_core::Config;

    use super::*;
    use crate::config::ProcessConfig;
    use crate::protocol::OpenDone;
    use crate::run::Batching;
    use crate::scheduler::tests::{Recorder, connect, run, shared};
    use crate::usage::Cost;

    /// A worker's frame of consecutive values, the last of which came after the pool killed
    /// it for that item (cancelled as it ran): the values before it still reach their
    /// callers, read from the frame before the bytes after the kill are dropped.
    #[test]
    fn values_before_a_kill_in_the_frame_of_the_killed_item_are_delivered() {
        let s = shared(ProcessConfig::new(Config::new().workers(1)), 1);
        let rec = Arc::new(Recorder::default());
        s.submit(run(2, rec.clone(), Batching::Fixed(2)));
        let _fake = connect(&s, 0);
        s.lock().slots[0].conn.as_mut().unwrap().kill(KillReason::Cancelled, Some(1));
        let mut frames = Vec::new();
        let mut done = OpenDone::begin(&mut frames, 0);
        assert!(done.push(&mut frames, &[7], Cost::default()));
        assert!(done.push(&mut frames, &[8], Cost::default()));
        let mut reader = FrameReader::new(1 << 20);
        reader.push(&frames);
        let mut start = Start { ready: true, deadline: Instant::now(), refused: None };
        let (mut last_words, mut spare) = (LastWords::default(), Spare::default());
        let again =
            read_frames(&s, 0, &mut reader, &mut start, Origin::Ring, &mut last_words, &mut spare);
        assert!(!again);
        let got = rec.got.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert_eq!(got, [(0, None)], "the value before the kill");
        assert!(reader.is_empty(), "the bytes after the kill are dropped");
    }
}
