//! Building runs: one job with the encoded inputs of its items, and slices of them.
//!
//! Work reaches the scheduler as a [`Run`], built on the submitting thread by a
//! [`RunBuilder`]. The scheduler moves [`Slice`]s of runs between its queue and its workers.

use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use taskpool_core::{Direction, Resource, Side, TaskError};

use crate::batching::Paced;
use crate::codec;
use crate::handoff::{self, Holds};
use crate::sink::Sink;

/// One job with the encoded inputs of its items, and where their results go: built with its
/// sink's own type, held as `Run` (the sink a trait object in the same allocation).
pub(crate) struct Run<S: Sink + ?Sized = dyn Sink> {
    /// Its job, and what the job's items cost as measured so far: shared by the runs of one
    /// `map` or `imap`, or of the single tasks of one function.
    pub(crate) job: Arc<Paced>,
    inputs: Inputs<Stored>,
    pub(crate) timeout: Option<Duration>,
    /// How many items travel in one batch.
    pub(crate) batching: Batching,
    /// What its inputs hold for the workers (queue handles, shared bytes), until each
    /// item's outcome is delivered or the run is dropped.
    pub(crate) holds: Holds,
    /// The slot of the worker its items were last sent to ([`NOT_SENT`] before): where the
    /// caller of a single task watches for its result (`reception::watch`). Read without the
    /// pool's lock: a reader may see an older slot, and then watches the wrong worker until
    /// its watch ends, as it would have waited anyway.
    sent_to: AtomicU32,
    pub(crate) sink: S,
}

/// [`Run::worker`] before any of the run's items was sent.
const NOT_SENT: u32 = u32::MAX;

/// How a run's items are grouped into batches.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Batching {
    /// As many as take about [`crate::batching::BATCH_TARGET_NS`] to run, up to this many.
    Adaptive(usize),
    /// Exactly this many (the user set a chunk size).
    Fixed(usize),
}

/// Every [`MARK_EVERY`]th input's offset is kept; the others are found by walking from it.
const MARK_EVERY: usize = 64;
/// The room for a small encoded input (a number: a tag and up to eight bytes, which the
/// encoder writes as nine and then shortens), for [`RunBuilder::reserve`].
const SMALL_INPUT: usize = 12;

/// The smallest input buffer worth keeping for the next run (see [`Spares`]).
const SPARE_MIN: usize = 64 << 10;
/// The most bytes of input buffers kept: the chunks of a `map` of a million numbers.
const SPARE_MAX: usize = 16 << 20;

/// How large an encoded argument (with its job's state) a worker can take: at most the
/// pool's frame limit, and less than the worker's memory limit, if it has one (a worker
/// cannot hold a frame as large as its whole address space, so sending it would only kill
/// workers as they receive it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ArgumentLimit {
    frame: usize,
    memory: Option<u64>,
    /// The smallest size refused: one past the frame limit, or the memory limit.
    least: usize,
}

impl ArgumentLimit {
    /// The limit of a pool whose frames take up to `frame` bytes and whose workers have
    /// `memory` bytes of address space, if capped.
    pub(crate) fn new(frame: usize, memory: Option<u64>) -> Self {
        let over_frame = frame.saturating_add(1);
        let least =
            memory.map_or(over_frame, |m| over_frame.min(usize::try_from(m).unwrap_or(usize::MAX)));
        ArgumentLimit { frame, memory, least }
    }

    /// The error for an argument of `size` bytes that is refused: over the frame limit, or
    /// failing for want of memory.
    fn refuse(self, size: usize) -> TaskError {
        match self.memory {
            Some(limit) if size <= self.frame => {
                TaskError::ResourceLimit { resource: Resource::Memory, limit }
            }
            _ => TaskError::TooLarge {
                side: Side::Argument,
                size: size as u64,
                limit: self.frame as u64,
            },
        }
    }
}

/// The input buffers of runs that ended, kept for the next runs to encode into, in this
/// process.
///
/// A `map` of a million small items encodes them into chunk buffers of hundreds of
/// kilobytes, about 12 MiB in all. Allocated anew, each page of them costs a page fault and
/// a clearing on its first write; whether the allocator hands back memory it kept or memory
/// it must fault in again depends on what else the program allocated, so one program had
/// every `map` pay for ~3,000 faults where another, alike, paid none. Kept here, the
/// buffers stay faulted in: a reused pool encodes into warm memory. The supervisors give
/// them back when their pool has had nothing to do for [`crate::bulk::KEEP_IDLE`], as they
/// give back their own large buffers.
struct Spares {
    buffers: Vec<Vec<u8>>,
    /// Their capacities, added.
    bytes: usize,
}

static SPARES: Mutex<Spares> = Mutex::new(Spares::new());

impl Spares {
    const fn new() -> Self {
        Spares { buffers: Vec::new(), bytes: 0 }
    }

    /// An empty buffer kept, with room for `want` bytes if one has it (else the largest,
    /// for the caller to grow); none for a small `want`.
    fn take(&mut self, want: usize) -> Option<Vec<u8>> {
        if want < SPARE_MIN {
            return None;
        }
        let buffers = &self.buffers;
        let at = buffers
            .iter()
            .position(|b| b.capacity() >= want)
            .or_else(|| (0..buffers.len()).max_by_key(|&i| buffers[i].capacity()))?;
        let buffer = self.buffers.swap_remove(at);
        self.bytes -= buffer.capacity();
        Some(buffer)
    }

    /// Keeps `buffer`, emptied, if it is worth it and there is room.
    fn keep(&mut self, mut buffer: Vec<u8>) {
        let size = buffer.capacity();
        if (SPARE_MIN..=crate::bulk::LARGE).contains(&size) && self.bytes + size <= SPARE_MAX {
            buffer.clear();
            self.bytes += size;
            self.buffers.push(buffer);
        }
    }

    /// Gives back every buffer kept.
    fn release(&mut self) -> Vec<Vec<u8>> {
        self.bytes = 0;
        std::mem::take(&mut self.buffers)
    }
}

fn spares() -> std::sync::MutexGuard<'static, Spares> {
    SPARES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether input buffers are kept for later runs (see [`Spares`]).
pub(crate) fn holds_spares() -> bool {
    spares().bytes > 0
}

/// Gives back the input buffers kept for later runs (see [`Spares`]).
pub(crate) fn release_spares() {
    let buffers = spares().release();
    drop(buffers);
}

/// The most bytes of encoded inputs a run keeps inline, in its own allocation: a single
/// task's number or short string, framed.
const INLINE: usize = 30;

/// The most capacity of a single task's encoding buffer kept for the thread's next one.
const SCRATCH_MAX: usize = 4 << 10;

thread_local! {
    /// The buffer this thread encodes its single tasks' inputs into, kept between them (see
    /// [`Stored`]).
    static SCRATCH: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// A built run's encoded inputs: inline when they are few bytes, as a single task's usually
/// are, so that submitting one allocates no buffer for them. A buffer allocated by the
/// submitting thread and freed by a supervisor's (where a run ends) costs more than the
/// allocation itself: the freeing thread's allocator cache fills with memory the submitting
/// thread's lacks, which then allocates from its arena every time (`_int_malloc` and
/// `malloc_consolidate` in a profile of 1,000 tasks in flight).
#[derive(Debug)]
enum Stored {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Vec<u8>),
}

impl Stored {
    /// `bytes` as a run keeps them: copied inline if they fit, the buffer then kept for the
    /// thread's next single task; else the buffer itself.
    fn keep(mut bytes: Vec<u8>) -> Self {
        let Ok(len) = u8::try_from(bytes.len()) else { return Stored::Heap(bytes) };
        if bytes.len() > INLINE {
            return Stored::Heap(bytes);
        }
        let mut inline = [0; INLINE];
        inline[..bytes.len()].copy_from_slice(&bytes);
        if bytes.capacity() <= SCRATCH_MAX {
            bytes.clear();
            SCRATCH.set(bytes);
        }
        Stored::Inline { len, bytes: inline }
    }
}

impl AsRef<[u8]> for Stored {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        match self {
            Stored::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Stored::Heap(bytes) => bytes,
        }
    }
}

/// Encoded inputs, each a `u32` length and its bytes, as a batch frame carries them: a batch
/// of consecutive items is one copy of one range. Built in a vector, kept as [`Stored`].
#[derive(Debug, Default)]
struct Inputs<B = Vec<u8>> {
    bytes: B,
    /// Where input `k × MARK_EVERY` starts, for every `k` from 1 (input 0 starts at 0): a
    /// run of one input allocates no marks.
    marks: Vec<usize>,
    len: usize,
}

impl Inputs {
    /// Starts an input: its length, to be set by [`Inputs::end`].
    #[inline]
    fn begin(&mut self) -> usize {
        if self.len > 0 && self.len.is_multiple_of(MARK_EVERY) {
            self.marks.push(self.bytes.len());
        }
        self.len += 1;
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&[0; 4]);
        at
    }

    /// Ends the input begun at `at`; `false` if it is over `u32::MAX` bytes (then it must
    /// be withdrawn).
    #[inline]
    fn end(&mut self, at: usize) -> bool {
        let Ok(len) = u32::try_from(self.bytes.len() - at - 4) else {
            return false;
        };
        self.bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
        true
    }

    /// Withdraws the input begun at `at`.
    fn undo(&mut self, at: usize) {
        self.bytes.truncate(at);
        self.len -= 1;
        if self.len > 0 && self.len.is_multiple_of(MARK_EVERY) {
            self.marks.pop();
        }
    }

    /// The inputs as a run keeps them.
    fn stored(self) -> Inputs<Stored> {
        let Inputs { bytes, marks, len } = self;
        Inputs { bytes: Stored::keep(bytes), marks, len }
    }
}

impl<B: AsRef<[u8]>> Inputs<B> {
    /// Where input `i` starts (its length first); the end of the bytes past the last.
    #[inline]
    fn offset(&self, i: usize) -> usize {
        let bytes = self.bytes.as_ref();
        if i >= self.len {
            return bytes.len();
        }
        let mut at = match i / MARK_EVERY {
            0 => 0,
            k => self.marks.get(k - 1).copied().unwrap_or(bytes.len()),
        };
        for _ in 0..i % MARK_EVERY {
            at = self.next(at);
        }
        at
    }

    /// Where the input after the one at `at` starts.
    #[inline]
    fn next(&self, at: usize) -> usize {
        let bytes = self.bytes.as_ref();
        match bytes.get(at..at + 4) {
            Some(len) => at + 4 + u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize,
            None => bytes.len(),
        }
    }
}

/// Encodes the inputs of a run before it is built.
pub(crate) struct RunBuilder {
    job: Arc<Paced>,
    inputs: Inputs,
    holds: Holds,
}

impl RunBuilder {
    pub(crate) fn new(job: Arc<Paced>) -> Self {
        RunBuilder { job, inputs: Inputs::default(), holds: Holds::default() }
    }

    /// Makes room for `n` more small inputs (a few bytes each), so a long run does not grow
    /// its buffer by copying it over and over.
    pub(crate) fn reserve(&mut self, n: usize) {
        let want = n.saturating_mul(4 + SMALL_INPUT);
        if self.inputs.bytes.capacity() == 0 && n == 1 {
            // A single task: the buffer the thread's last one encoded into.
            self.inputs.bytes = SCRATCH.take();
        }
        // Checked before the lock: a single task, which reserves room for one input, takes
        // no lock shared by every submitting thread.
        if self.inputs.bytes.capacity() == 0 && want >= SPARE_MIN {
            if let Some(spare) = spares().take(want) {
                self.inputs.bytes = spare;
            }
        }
        self.inputs.bytes.reserve(want);
        self.inputs.marks.reserve(n / MARK_EVERY);
    }

    /// Encodes one more input.
    ///
    /// # Errors
    ///
    /// The input cannot be serialized, or with the job's state it is over `limit`.
    /// What it held for its worker is let go then.
    #[inline]
    pub(crate) fn push<T: Serialize>(
        &mut self,
        input: &T,
        limit: ArgumentLimit,
    ) -> Result<(), TaskError> {
        if handoff::may_hold() {
            self.push_holding(input, limit)
        } else {
            // Nothing this process made can be in it: no handles to collect.
            self.encode(input, limit)
        }
    }

    /// [`RunBuilder::push`] in a process that made or opened a handle or shared bytes: keeps
    /// what the input holds until the item is done.
    #[inline(never)]
    fn push_holding<T: Serialize>(
        &mut self,
        input: &T,
        limit: ArgumentLimit,
    ) -> Result<(), TaskError> {
        let (encoded, held) = handoff::holding(|| self.encode(input, limit));
        if encoded.is_ok() {
            self.holds.add(self.inputs.len - 1, held);
        }
        encoded
    }

    /// [`RunBuilder::push`]'s encoding.
    #[inline]
    fn encode<T: Serialize>(&mut self, input: &T, limit: ArgumentLimit) -> Result<(), TaskError> {
        let at = self.inputs.begin();
        if let Err(e) = codec::encode_caught(input, &mut self.inputs.bytes) {
            self.inputs.undo(at);
            return Err(TaskError::serialization(Side::Argument, Direction::Encode, e));
        }
        let size = self.inputs.bytes.len() - at - 4 + self.job.shipped.state.len();
        if size >= limit.least || !self.inputs.end(at) {
            self.inputs.undo(at);
            return Err(limit.refuse(size));
        }
        Ok(())
    }

    /// Adds an input that is encoded already (by the codec, in another process).
    pub(crate) fn push_encoded(&mut self, input: &[u8]) {
        let at = self.inputs.begin();
        self.inputs.bytes.extend_from_slice(input);
        if !self.inputs.end(at) {
            // Over 4 GiB: nothing encodes that much under a frame limit.
            self.inputs.undo(at);
        }
    }

    /// How many inputs were encoded.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.inputs.len
    }

    /// How many bytes the encoded inputs take, their lengths included.
    pub(crate) fn bytes(&self) -> usize {
        self.inputs.bytes.len()
    }

    /// The run, with where its results go.
    pub(crate) fn finish<S: Sink>(
        self,
        sink: S,
        timeout: Option<Duration>,
        batching: Batching,
    ) -> Run<S> {
        let RunBuilder { job, inputs, holds } = self;
        let sent_to = AtomicU32::new(NOT_SENT);
        Run { job, inputs: inputs.stored(), timeout, batching, holds, sent_to, sink }
    }
}

impl<S: Sink + ?Sized> Run<S> {
    /// How many items it has.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.inputs.len
    }

    /// Notes that items of the run were sent to the worker in slot `w` (under the pool's
    /// lock).
    #[inline]
    pub(crate) fn sent_to(&self, w: usize) {
        let w = u32::try_from(w).unwrap_or(NOT_SENT);
        self.sent_to.store(w, Ordering::Relaxed);
    }

    /// The slot of the worker the run's items were last sent to, if any was (see
    /// [`Run::sent_to`]).
    #[inline]
    pub(crate) fn worker(&self) -> Option<usize> {
        let w = self.sent_to.load(Ordering::Relaxed);
        (w != NOT_SENT).then_some(w as usize)
    }

    /// The encoded input of item `i` (empty past the last).
    #[cfg(test)]
    #[inline]
    pub(crate) fn input(&self, i: usize) -> &[u8] {
        let at = self.inputs.offset(i);
        self.inputs.bytes.as_ref().get(at + 4..self.inputs.next(at)).unwrap_or_default()
    }

    /// How many of the `take` items from item `start` fit, framed, in `room` bytes: at least
    /// one (a single item over the limit travels alone and fails there). Whole blocks of
    /// [`MARK_EVERY`] items are measured from their marks, not item by item.
    pub(crate) fn fitting(&self, start: usize, take: usize, room: usize) -> usize {
        let end = start.saturating_add(take).min(self.len());
        let base = self.inputs.offset(start);
        let (mut i, mut at) = (start, base);
        while i < end {
            if i.is_multiple_of(MARK_EVERY) && i + MARK_EVERY <= end {
                let next = self.inputs.offset(i + MARK_EVERY);
                if next - base <= room {
                    (i, at) = (i + MARK_EVERY, next);
                    continue;
                }
            }
            let next = self.inputs.next(at);
            if next - base > room {
                break;
            }
            (i, at) = (i + 1, next);
        }
        (i - start).max(1)
    }

    /// Items `items`' inputs, each a `u32` length and its bytes, as a batch frame carries
    /// them.
    #[inline]
    pub(crate) fn framed(&self, items: Range<usize>) -> &[u8] {
        let start = self.inputs.offset(items.start);
        let end = self.inputs.offset(items.end).max(start);
        self.inputs.bytes.as_ref().get(start..end).unwrap_or_default()
    }
}

impl<S: Sink + ?Sized> Drop for Run<S> {
    fn drop(&mut self) {
        if let Stored::Heap(bytes) = &mut self.inputs.bytes {
            if bytes.capacity() >= SPARE_MIN {
                spares().keep(std::mem::take(bytes));
            }
        }
    }
}

/// Items `items` of `run`.
pub(crate) struct Slice {
    pub(crate) run: Arc<Run>,
    pub(crate) items: Range<usize>,
    /// Once sent: what each item counts against its worker's budget (see `batching.rs`).
    pub(crate) load_ns: u64,
    /// How many workers died holding the first item, before they started it (see
    /// `Shared::worker_ended`).
    pub(crate) deaths: u32,
    /// Once sent: its first item is the first of a batch frame (the worker can skip a
    /// batch, not part of one: see `Shared::recall`).
    pub(crate) frame_start: bool,
    /// Once sent: the worker answered some of its items, so it started their batch and will
    /// not skip the rest (a batch is skipped whole or not at all: see `Shared::recall`).
    pub(crate) begun: bool,
    /// Once sent: the items were recalled before the worker started them and were queued
    /// again; the worker's answers for them are dropped.
    pub(crate) recalled: bool,
    /// A worker held the items before and they were queued again: sending them once more
    /// counts them as requeued (dropping them unsent, cancelled or unwanted, does not).
    pub(crate) requeued: bool,
}

impl Slice {
    /// Items `items` of `run`, not sent.
    pub(crate) fn new(run: Arc<Run>, items: Range<usize>) -> Self {
        Slice {
            run,
            items,
            load_ns: 0,
            deaths: 0,
            frame_start: false,
            begun: false,
            recalled: false,
            requeued: false,
        }
    }

    /// Items `items` of `run`, taken back from a worker to be sent again.
    pub(crate) fn taken_back(run: Arc<Run>, items: Range<usize>) -> Self {
        Slice { requeued: true, ..Slice::new(run, items) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value whose serialization fails after it wrote part of itself.
    struct HalfWritten;

    impl Serialize for HalfWritten {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::{Error, SerializeSeq};
            let mut seq = s.serialize_seq(Some(2))?;
            seq.serialize_element(&7u64)?;
            Err(S::Error::custom("cannot write the rest"))
        }
    }

    /// Room for any input the tests push.
    const ROOM: ArgumentLimit =
        ArgumentLimit { frame: 1 << 20, memory: None, least: (1 << 20) + 1 };

    fn builder() -> RunBuilder {
        RunBuilder::new(Paced::new(crate::ship::Shipped {
            entry: 0,
            state: Vec::new(),
            kept: Default::default(),
        }))
    }

    fn encoded(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        codec::encode_into(&v, &mut out).unwrap();
        out
    }

    /// Buffers are kept up to the bound, each found again by a run that fits in it (or the
    /// largest, to grow), and all given back at once; small ones are not kept.
    #[test]
    fn input_buffers_are_kept_for_later_runs_within_a_bound() {
        let mut spares = Spares::new();
        spares.keep(Vec::with_capacity(SPARE_MIN / 2));
        assert_eq!(spares.bytes, 0, "too small to keep");
        let mut kept = Vec::with_capacity(SPARE_MIN);
        kept.extend_from_slice(b"old");
        let at = kept.as_ptr();
        spares.keep(kept);
        assert_eq!(spares.take(SPARE_MIN / 2), None, "a small run allocates its own");
        let again = spares.take(SPARE_MIN).unwrap();
        assert_eq!((again.as_ptr(), again.len(), spares.bytes), (at, 0, 0), "the same, emptied");
        for _ in 0..SPARE_MAX / SPARE_MIN + 5 {
            spares.keep(Vec::with_capacity(SPARE_MIN));
        }
        assert!(spares.bytes <= SPARE_MAX);
        spares.keep(Vec::with_capacity(2 * SPARE_MIN));
        let larger = spares.take(3 * SPARE_MIN).unwrap();
        assert!(larger.capacity() >= SPARE_MIN, "none large enough: the largest");
        assert_eq!(spares.release().len(), SPARE_MAX / SPARE_MIN - 1);
        assert_eq!((spares.bytes, spares.take(SPARE_MIN)), (0, None));
    }

    fn same(x: u64) -> u64 {
        x
    }

    /// Waits until `check` holds, for at most a minute; panics with `what` if it never does.
    fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !check() {
            assert!(std::time::Instant::now() < deadline, "never: {what}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// The wiring of [`Spares`]: a run's drop keeps its input buffer, the next large run
    /// encodes into it, and a pool's supervisor gives every kept buffer back once its worker
    /// had nothing to do for [`crate::bulk::KEEP_IDLE`]. (No other test of this binary makes a
    /// run this large.)
    #[test]
    fn a_large_runs_input_buffer_is_reused_and_given_back_when_the_pool_idles() {
        release_spares();
        let mut b = builder();
        b.reserve(10_000);
        for v in 0..10_000u64 {
            b.push(&v, ROOM).unwrap();
        }
        let run = b.finish(crate::scheduler::tests::NullSink, None, Batching::Fixed(1));
        let at = run.inputs.bytes.as_ref().as_ptr();
        drop(run);
        assert!(holds_spares(), "a dropped run keeps its input buffer");
        let mut again = builder();
        again.reserve(10_000);
        assert_eq!(again.inputs.bytes.as_ptr(), at, "the next large run encodes into it");
        assert!(!holds_spares(), "taken");
        drop(again);

        release_spares();
        let pool = crate::ProcessPool::new(1).unwrap();
        let out = taskpool_core::Pool::map(&pool, same, 0..100_000u64).unwrap();
        assert_eq!(out, (0..100_000).collect::<Vec<_>>());
        eventually("a finished map's input buffers are kept", holds_spares);
        eventually("the idle pool gives them back", || !holds_spares());
    }

    #[test]
    fn an_argument_a_worker_could_not_hold_is_refused_for_want_of_memory() {
        let mut b = builder();
        let limit = ArgumentLimit::new(1000, Some(100));
        b.push(&vec![0u8; 90], limit).unwrap();
        let refused = b.push(&vec![0u8; 100], limit);
        assert!(
            matches!(
                refused,
                Err(TaskError::ResourceLimit { resource: Resource::Memory, limit: 100 })
            ),
            "{refused:?}"
        );
        // Over the frame limit too: that is what it is refused for.
        let refused = b.push(&vec![0u8; 2000], limit);
        assert!(
            matches!(refused, Err(TaskError::TooLarge { size: 2003, limit: 1000, .. })),
            "{refused:?}"
        );
        // A memory limit above the frame limit changes nothing.
        let roomy = ArgumentLimit::new(1000, Some(1 << 30));
        b.push(&vec![0u8; 990], roomy).unwrap();
        assert!(matches!(b.push(&vec![0u8; 1000], roomy), Err(TaskError::TooLarge { .. })));
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn inputs_that_fail_to_encode_leave_nothing_behind() {
        let mut b = builder();
        b.push(&1u64, ROOM).unwrap();
        assert!(matches!(b.push(&HalfWritten, ROOM), Err(TaskError::Serialization { .. })));
        let small = ArgumentLimit::new(10, None);
        assert!(matches!(b.push(&vec![0u8; 100], small), Err(TaskError::TooLarge { .. })));
        b.push(&2u64, ROOM).unwrap();
        b.push_encoded(&encoded(3));
        let run = b.finish(crate::scheduler::tests::NullSink, None, Batching::Fixed(1));
        assert_eq!(run.len(), 3);
        for (i, v) in [1, 2, 3].into_iter().enumerate() {
            assert_eq!(run.input(i), encoded(v), "input {i}");
        }
        assert_eq!(run.input(3), b"", "past the last");
    }

    /// Single inputs of every size around the inline room are kept whole, inline up to it;
    /// the thread's encoding buffer is reused by the next single task, not by a larger run.
    #[test]
    fn a_single_small_input_is_kept_inline_and_a_larger_one_in_its_buffer() {
        for len in 0..2 * INLINE {
            let text = "x".repeat(len);
            let mut b = builder();
            b.reserve(1);
            b.push(&text, ROOM).unwrap();
            let run = b.finish(crate::scheduler::tests::NullSink, None, Batching::Fixed(1));
            let mut expected = Vec::new();
            codec::encode_into(&text, &mut expected).unwrap();
            assert_eq!(run.input(0), expected, "{len}");
            let framed = run.framed(0..1);
            assert_eq!((framed.len(), &framed[4..]), (4 + expected.len(), &expected[..]));
            let inline = matches!(run.inputs.bytes, Stored::Inline { .. });
            assert_eq!(inline, 4 + expected.len() <= INLINE, "{len}");
        }
        let mut b = builder();
        b.reserve(1);
        b.push(&1u64, ROOM).unwrap();
        let kept = b.inputs.bytes.as_ptr();
        drop(b.finish(crate::scheduler::tests::NullSink, None, Batching::Fixed(1)));
        let mut many = builder();
        many.reserve(2);
        assert_ne!(many.inputs.bytes.as_ptr(), kept, "a run of many has its own buffer");
        let mut next = builder();
        next.reserve(1);
        assert_eq!(next.inputs.bytes.as_ptr(), kept, "the next single task encodes into it");
    }

    #[test]
    fn a_single_input_is_the_whole_buffer() {
        let mut b = builder();
        b.push(&5u64, ROOM).unwrap();
        let run = b.finish(crate::scheduler::tests::NullSink, None, Batching::Fixed(1));
        assert_eq!((run.len(), run.input(0)), (1, &encoded(5)[..]));
    }

    #[test]
    fn many_inputs_are_found_by_index_and_framed_by_range() {
        let mut b = builder();
        let values: Vec<u64> = (0..300u64).map(|i| i * i * 1_000_003).collect();
        for (i, v) in values.iter().enumerate() {
            b.push(v, ROOM).unwrap();
            if i % 63 == 0 {
                // A failure right at and around the marks leaves no trace.
                assert!(b.push(&HalfWritten, ROOM).is_err());
            }
        }
        let run = b.finish(crate::scheduler::tests::NullSink, None, Batching::Fixed(1));
        assert_eq!(run.len(), values.len());
        for (i, v) in values.iter().enumerate() {
            assert_eq!(run.input(i), encoded(*v), "input {i}");
        }
        for range in [0..1, 0..300, 63..65, 64..128, 127..129, 299..300, 5..5] {
            let mut expected = Vec::new();
            for v in &values[range.clone()] {
                crate::wire::put_bytes(&mut expected, &encoded(*v));
            }
            assert_eq!(run.framed(range.clone()), expected, "{range:?}");
        }
        for (start, take) in [(0, 300), (1, 200), (63, 130), (64, 64), (250, 100), (299, 1)] {
            for room in [0, 5, 40, 200, 900, 1 << 20] {
                // Item by item: as many as fit, at least one.
                let mut fit = 0;
                let mut bytes = 0;
                for v in values.iter().skip(start).take(take) {
                    bytes += encoded(*v).len() + 4;
                    if bytes > room {
                        break;
                    }
                    fit += 1;
                }
                let fit = fit.max(1);
                assert_eq!(run.fitting(start, take, room), fit, "{start} {take} {room}");
            }
        }
    }
}
