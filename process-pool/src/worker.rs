//! The worker process: reads batches, runs them, streams one result per item back.
//!
//! A worker is the parent's executable, started with a private marker that [`crate::entry`]
//! recognizes before `main`. It never returns to `main`: it serves until its request pipe
//! reaches end of file, then exits 0. See `README.md` for the protocol and the failure paths.

use std::io::{self, Write as _};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use taskpool_core::backend::{PanicScope, catch_panic, initializer_panicked, keep_hook_in_front};
use taskpool_core::{PanicReport, Resource, Side};

use crate::aborting_panic;
use crate::bulk;
use crate::codec::{self, CodecError};
use crate::cpu_watch;
use crate::crowding::Crowding;
use crate::doorbell::Spin;
use crate::entry::ImageVerified;
use crate::flusher::Flusher;
use crate::handoff;
use crate::protocol::{
    self, BACKTRACES, CANCELLABLE, CHECK_DESCRIPTORS, FLUSH_EACH, FLUSH_SOON, Failure, Init,
    MEASURE, Meta, OFF_MACHINE, OpenDone, RINGS,
};
use crate::region::Region;
use crate::ring::{Broken, Consumer, Producer};
use crate::shared_bytes;
use crate::ship::{self, BatchFn};
use crate::status::StatusPage;
use crate::sys::{self, REQUEST_FD, RESULT_FD, SHARED_FD};
use crate::usage::Cost;
use crate::wire::{self, Body, FrameReader, Kind};

/// Exit code of a worker that received a malformed frame from its parent.
pub(crate) const EXIT_PROTOCOL: i32 = 70;
/// Exit code of a worker whose start checks or initializer failed (after saying why).
pub(crate) const EXIT_START: i32 = 71;
/// Exit code of a worker under a memory limit that had no room left to receive a request
/// (after saying so): the parent fails the request's item with the limit, not a crash.
pub(crate) const EXIT_NO_ROOM: i32 = 72;
/// Exit code of a worker whose result pipe a task closed (or whose descriptor number now
/// names another file), after writing the results it held to its ring: see
/// [`Outputs::check_descriptors`].
pub(crate) const EXIT_PIPE_CLOSED: i32 = 73;

/// Set once the parent could not be rung because the result pipe's descriptor is closed (a
/// task closed it): the parent is there, and reads the ring once the worker has left, which
/// it does after the item that runs ([`Outputs::check_descriptors`]).
static UNHEARD: AtomicBool = AtomicBool::new(false);

/// Flush results at least this often while a batch runs, so the parent sees progress.
const FLUSH_AGE: Duration = Duration::from_micros(200);
/// Flush results once this many bytes are buffered.
const FLUSH_BYTES: usize = 64 * 1024;
/// On the result ring: flush once this many bytes are buffered...
const RING_FLUSH_BYTES: usize = 4 * 1024;
/// ...or once the oldest buffered result is this old (and always at the end of a batch).
const RING_FLUSH_AGE: Duration = Duration::from_micros(20);
/// Longest panic message, location or backtrace sent back (longer ones are cut).
const MAX_REPORT: usize = 64 * 1024;
/// Read the worker's CPU time at most this often (also after the last item of a batch whose
/// callers want their own cost, or under a limit).
const MEASURE_EVERY: Duration = Duration::from_micros(100);
/// Items that take less than this on average are timed in groups...
const TINY_ITEM: Duration = Duration::from_micros(2);
/// ...of up to this many: the clock is read once per group, not once per item.
const MAX_STRIDE: u32 = 64;

/// Serves as a worker until the parent closes its requests. Never returns.
/// `later` are the program's constructors that the C library has not run yet: they run once
/// the worker has set up its descriptors and signals, before it reads its first request.
pub(crate) fn serve(image: Result<ImageVerified, String>, later: sys::LaterConstructors) -> ! {
    let request = sys::fixed_fd(REQUEST_FD);
    let result = sys::fixed_fd(RESULT_FD);
    let region = Region::adopt(SHARED_FD);
    sys::close_from(RESULT_FD + 1);
    sys::open_standard_fds();
    // Programs a task starts must not hold the pipes: the parent watches this process, and
    // the pipes' ends must be this process's alone.
    sys::set_cloexec(REQUEST_FD);
    sys::set_cloexec(RESULT_FD);
    sys::watch_forks();
    sys::ignore_sigpipe();
    sys::survive_interrupts();
    sys::ignore_terminal_stops();
    later.run();

    let mut reader = FrameReader::new(64 * 1024);
    let init = match next_frame(&mut reader, request) {
        Some((Kind::Init, body)) => {
            Init::decode(&body).unwrap_or_else(|_| sys::exit_now(EXIT_PROTOCOL))
        }
        _ => sys::exit_now(EXIT_PROTOCOL),
    };
    sys::set_process_name(&init.name);
    let image = match image {
        Ok(image) => image,
        Err(reason) => refuse(result, &reason, init.frame_limit),
    };
    let rings = init.flags & RINGS != 0;
    if init.flags & OFF_MACHINE != 0 {
        handoff::results_off_machine();
    }
    if rings && region.is_none() {
        refuse(result, "the worker did not receive its shared memory", init.frame_limit);
    }
    if let Some(offset) = init.initializer {
        let initializer = ship::initializer_at(offset, &image);
        aborting_panic::register(usize::try_from(init.frame_limit).unwrap_or(usize::MAX));
        aborting_panic::initializer_runs(true);
        let outcome = catch_panic(false, initializer);
        aborting_panic::initializer_runs(false);
        if let Err(report) = outcome {
            refuse(result, &initializer_panicked(&report), init.frame_limit);
        }
        // An initializer that sets up logging may install a panic hook of its own.
        keep_hook_in_front();
    }
    if init.cpu_time_limit.is_some() {
        if let Err(e) = cpu_watch::start() {
            let reason = format!("cannot start the CPU-time watchdog: {e}");
            refuse(result, &reason, init.frame_limit);
        }
    }
    if let Some(bytes) = init.memory_limit {
        if let Err(e) = sys::limit_memory(bytes) {
            let reason = format!("cannot set the memory limit of {bytes} bytes: {e}");
            refuse(result, &reason, init.frame_limit);
        }
    }
    let mut hello = Vec::new();
    let at = wire::begin_frame(&mut hello, Kind::Hello);
    wire::put_u32(&mut hello, sys::pid());
    wire::end_frame(&mut hello, at);
    if sys::write_all(result, &hello).is_err() {
        sys::exit_now(0);
    }

    let limit = usize::try_from(init.frame_limit).unwrap_or(usize::MAX);
    reader.set_limit(limit.saturating_add(wire::SLACK));
    let limits = Limits::new(init.memory_limit, init.cpu_time_limit);
    if init.memory_limit.is_some() {
        reader.refuse_when_full();
    }
    let page = region.as_ref().map(Region::status_page);
    let (mut input, output, flusher) = match region.filter(|_| rings) {
        Some(region) => (
            Requests::Ring {
                ring: region.requests_in(),
                spin: Spin::default(),
                crowding: Crowding::default(),
            },
            Results::Ring(Arc::new(Mutex::new(RingOut {
                ring: region.results_out(),
                spin: Spin::default(),
            }))),
            Flusher::new(true),
        ),
        None => (Requests::Pipe(request), Results::Pipe, Flusher::new(false)),
    };
    let backtraces = init.flags & BACKTRACES != 0;
    aborting_panic::register(limit);
    let mut out = Outputs::new(result, output, limit, backtraces, limits, page, flusher);
    sys::install_crash_flush();
    loop {
        loop {
            match reader.next_frame() {
                Ok(Some((Kind::Batch, range))) => {
                    out.more_waiting = reader.pending() > 0 || input.has_data();
                    let bulk = reader.take_bulk();
                    let body = reader.bytes(range);
                    let ran = codec::with_bulk(bulk, || run_batch(body, &mut out, &image));
                    if let Err(e) = ran {
                        out.flush();
                        broken(&e.to_string());
                    }
                }
                Ok(None) => break,
                Ok(Some((kind, _))) => {
                    out.flush();
                    broken(&format!("unexpected {kind:?} frame"));
                }
                Err(e) => {
                    out.flush();
                    no_room(&reader);
                    broken(&e.to_string());
                }
            }
        }
        out.flush();
        leave_if_unheard();
        match input.fill(&mut reader, result, &mut out) {
            Ok(0) | Err(_) => {
                no_room(&reader);
                if reader.pending() > 0 {
                    sys::exit_now(EXIT_PROTOCOL);
                }
                // End of input: a clean exit, which also flushes the program's stdout, once
                // the receivers of any `SharedBytes` sent have them. The parent gives the
                // exit handlers the pool's shutdown grace from here on.
                crate::shared_bytes::await_receivers();
                if let Some(page) = &out.page {
                    page.leave();
                }
                std::process::exit(0);
            }
            Ok(_) => {}
        }
    }
}

/// Where a worker's requests come from.
enum Requests {
    /// The request pipe.
    Pipe(BorrowedFd<'static>),
    /// The request ring of its shared memory.
    Ring { ring: Consumer, spin: Spin, crowding: Crowding },
}

impl Requests {
    /// Whether more requests wait to be read (known only for the ring).
    fn has_data(&self) -> bool {
        match self {
            Requests::Pipe(_) => false,
            Requests::Ring { ring, .. } => ring.has_data(),
        }
    }

    /// Reads more requests into `reader`, waiting for them; `Ok(0)` at the end of input.
    /// Rings the parent, through the result pipe `bell`, if it waits for room to write. Once
    /// it waited [`bulk::KEEP_IDLE`], gives back the memory `reader` and `out` kept for large
    /// frames, and the shared bytes it sent whose receivers have them (looking again every
    /// [`bulk::KEEP_IDLE`] while it keeps some that have not arrived).
    fn fill(
        &mut self,
        reader: &mut FrameReader,
        bell: BorrowedFd<'_>,
        out: &mut Outputs,
    ) -> io::Result<usize> {
        let (ring, spin, crowding) = match self {
            Requests::Pipe(request) => {
                linger(*request);
                while reader.holds_large()
                    || out.holds_large()
                    || shared_bytes::kept_for_receivers()
                {
                    let interest = sys::Interest { fd: *request, read: true, write: false };
                    let polled = sys::poll([interest], Some(bulk::KEEP_IDLE));
                    if !polled.is_ok_and(|[ready]| !ready.read) {
                        break;
                    }
                    release(reader, out);
                }
                return reader.fill(*request);
            }
            Requests::Ring { ring, spin, crowding } => (ring, spin, crowding),
        };
        let broken = |e: Broken| io::Error::other(e.to_string());
        loop {
            let n = reader.fill_with(|buf, most| ring.read_appending(buf, most).map_err(broken))?;
            if n > 0 {
                if ring.space_bell().take() {
                    ring_parent(bell);
                }
                return Ok(n);
            }
            // Closed, and nothing was left to read: the end.
            if ring.is_closed() && ring.available().map_err(broken)? == 0 {
                return Ok(0);
            }
            let ready = spin.spin(|| ring.has_data() || ring.is_closed());
            crowding.note(spin.handed_cpu());
            if ready {
                continue;
            }
            let ticket = ring.data_bell().arm();
            if !ring.has_data() && !ring.is_closed() {
                let holding =
                    reader.holds_large() || out.holds_large() || shared_bytes::kept_for_receivers();
                let slept = Instant::now();
                ring.data_bell().sleep(ticket, holding.then_some(bulk::KEEP_IDLE));
                if holding && slept.elapsed() >= bulk::KEEP_IDLE {
                    release(reader, out);
                }
            }
            ring.data_bell().disarm();
        }
    }
}

/// Gives back, once the worker has had nothing to do for [`bulk::KEEP_IDLE`], the memory its
/// buffers kept for large values, and what the allocator kept of the large values freed
/// ([`sys::trim_heap`]): an idle worker holds neither.
fn release(reader: &mut FrameReader, out: &mut Outputs) {
    reader.release();
    out.release();
    sys::trim_heap();
}

/// Where a worker's results go, besides the result pipe for its start and its last words.
#[derive(Debug)]
enum Results {
    /// The result pipe.
    Pipe,
    /// The result ring of its shared memory, which the flusher writes too (see
    /// `flusher.rs`), taking the lock only while the worker's thread runs a task.
    Ring(Arc<Mutex<RingOut>>),
}

/// The worker's end of its result ring.
#[derive(Debug)]
pub(crate) struct RingOut {
    ring: Producer,
    spin: Spin,
}

impl RingOut {
    /// Writes all of `bytes`, waiting for room while the ring is full, and rings the parent
    /// (on the result pipe `bell`) if it sleeps. Returns `false` if the parent broke the
    /// ring or is gone.
    pub(crate) fn write(&mut self, mut bytes: &[u8], bell: BorrowedFd<'_>) -> bool {
        let RingOut { ring, spin } = self;
        loop {
            let Ok(n) = ring.write(bytes) else { return false };
            bytes = &bytes[n..];
            if n > 0 && ring.data_bell().take() && !bell_rung(bell) {
                return false;
            }
            if bytes.is_empty() {
                return true;
            }
            if n > 0 || spin.spin(|| ring.room().map_or(true, |room| room > 0)) {
                continue;
            }
            let ticket = ring.space_bell().arm();
            if ring.room().is_ok_and(|room| room == 0) {
                ring.space_bell().sleep(ticket, None);
            }
            ring.space_bell().disarm();
        }
    }

    /// Writes all of `bytes` if the ring has room for them now, without waiting and without
    /// ringing the parent (see [`Outputs::check_descriptors`]).
    fn write_quietly(&mut self, bytes: &[u8]) {
        if self.ring.room().is_ok_and(|room| room >= bytes.len()) {
            let _ = self.ring.write(bytes);
        }
    }
}

/// A [`Kind::Bell`] frame: wakes the parent's supervisor.
const BELL: [u8; wire::HEADER] = [1, 0, 0, 0, Kind::Bell as u8];

/// Wakes the parent's supervisor, asleep on a ring's doorbell, by a frame on the result pipe.
/// Returns `false` if the parent is gone. A descriptor a task closed is noted in
/// [`UNHEARD`] instead, and not written again (its number may name a file the task opened).
fn bell_rung(result: BorrowedFd<'_>) -> bool {
    if UNHEARD.load(Ordering::Relaxed) {
        return true;
    }
    match sys::write_all(result, &BELL) {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(libc::EBADF) => {
            UNHEARD.store(true, Ordering::Relaxed);
            true
        }
        Err(_) => false,
    }
}

/// Rings the parent between items, its results written: if the parent is gone there is
/// nobody to serve, and if a task closed the result pipe the worker cannot be heard: it
/// exits either way.
fn ring_parent(result: BorrowedFd<'_>) {
    if !bell_rung(result) {
        sys::exit_now(0);
    }
    leave_if_unheard();
}

/// Exits with [`EXIT_PIPE_CLOSED`] if a task closed the result pipe ([`UNHEARD`]), between
/// items, the results of those that ran written to the ring.
fn leave_if_unheard() {
    if UNHEARD.load(Ordering::Relaxed) {
        sys::exit_now(EXIT_PIPE_CLOSED);
    }
}

/// How long a worker that ran out of input keeps polling for more before it sleeps.
const LINGER: Duration = Duration::from_micros(50);

/// Polls `request` for up to [`LINGER`], yielding the CPU between polls, so that work sent
/// right after the last result finds the worker awake. On a virtual machine, waking a
/// process whose CPU went idle costs tens of microseconds, several times a whole round trip;
/// a pool's next task usually follows within a few.
fn linger(request: BorrowedFd<'_>) {
    let until = Instant::now() + LINGER;
    let interest = sys::Interest { fd: request, read: true, write: false };
    while Instant::now() < until {
        if sys::poll([interest], Some(Duration::ZERO)).is_ok_and(|[ready]| ready.read) {
            return;
        }
        std::thread::yield_now();
    }
}

/// Ends a worker whose parent sent something it cannot read. Says so on stderr, since the
/// parent will only see the exit code.
fn broken(reason: &str) -> ! {
    let pid = sys::pid();
    // Not `eprintln!`, which panics if standard error cannot be written.
    let _ =
        writeln!(io::stderr(), "taskpool worker {pid}: protocol error from the parent: {reason}");
    sys::exit_now(EXIT_PROTOCOL);
}

/// Ends a worker whose memory limit left no room to receive a request, if that is what
/// happened; says so on stderr.
fn no_room(reader: &FrameReader) {
    let Some(len) = reader.refused() else { return };
    let pid = sys::pid();
    let _ = writeln!(
        io::stderr(),
        "taskpool worker {pid}: no room under the memory limit to receive a request of {len} bytes"
    );
    sys::exit_now(EXIT_NO_ROOM);
}

/// Reads until one complete frame is available; `None` at end of input or on a bad frame.
fn next_frame(reader: &mut FrameReader, fd: BorrowedFd<'_>) -> Option<(Kind, Vec<u8>)> {
    loop {
        match reader.next_frame() {
            Ok(Some((kind, range))) => return Some((kind, reader.bytes(range).to_vec())),
            Ok(None) => {}
            Err(_) => return None,
        }
        if reader.fill(fd).ok()? == 0 {
            return None;
        }
    }
}

/// Tells the parent why this worker cannot serve, then exits.
pub(crate) fn refuse(result: BorrowedFd<'_>, reason: &str, frame_limit: u64) -> ! {
    let mut frame = Vec::new();
    let at = wire::begin_frame(&mut frame, Kind::InitFailed);
    let limit = usize::try_from(frame_limit).unwrap_or(usize::MAX).min(MAX_REPORT);
    frame.extend_from_slice(fit(reason, limit).as_bytes());
    wire::end_frame(&mut frame, at);
    let _ = sys::write_all(result, &frame);
    sys::exit_now(EXIT_START);
}

fn run_batch(body: &[u8], out: &mut Outputs, image: &ImageVerified) -> Result<(), wire::WireError> {
    let mut b = Body::new(body);
    let first_seq = b.u64("sequence number")?;
    let entry = b.i64("entry point")?;
    let flags = b.u8("flags")?;
    let state = b.bytes("job state")?;
    let count = b.u32("item count")?;
    let mut inputs = Inputs { body: b, left: count, malformed: false };
    if out.asked_to_leave() {
        // Its result pipe ended: nothing of this batch runs here (see `check_descriptors`).
        out.check_descriptors();
    }
    // The results of earlier batches go now: the first item of this one may run for a long
    // time, and nothing could write them meanwhile.
    out.flush();
    if count > 0 && !out.page.as_ref().is_none_or(|page| page.start_batch(first_seq)) {
        // Taken back while an earlier item ran long: the parent sends it elsewhere.
        out.skip_recalled(first_seq, count);
        return Ok(());
    }
    out.seq = first_seq;
    out.left_in_batch = count;
    // A frame of single tasks, each of its own caller.
    let soon = flags & FLUSH_SOON != 0;
    // Each task behind the frame's first may be taken back on its own: one that waits for
    // a task behind it in the frame must not hold that task for ever.
    out.recall_each_from = if soon { first_seq + 1 } else { u64::MAX };
    // Results not held back long: by the flusher where it covers the frame, else by writing
    // each at once.
    // Also for a function known to close descriptors: one of its items may close the result
    // pipe and run on until the pool kills the worker, which would lose results held back.
    out.flush_each = flags & (FLUSH_EACH | CHECK_DESCRIPTORS) != 0;
    out.early = soon && !out.flush_each && out.cover_frame();
    out.flush_each |= soon && !out.early;
    out.cancellable = flags & CANCELLABLE != 0;
    out.check_each = flags & CHECK_DESCRIPTORS != 0;
    out.measure = flags & MEASURE != 0;
    out.clock.restart();
    let run: BatchFn = ship::entry_at(entry, image);
    run(state, &mut inputs, out);
    if out.early {
        // Nothing is left to hold back: the frame's last item flushed.
        out.early = false;
        out.flusher.frame_ends();
    }
    if inputs.malformed || inputs.left > 0 {
        return Err(wire::WireError("batch items malformed".into()));
    }
    inputs.body.finish("batch items")
}

/// The encoded inputs of one batch, in order.
#[derive(Debug)]
pub(crate) struct Inputs<'a> {
    body: Body<'a>,
    left: u32,
    malformed: bool,
}

impl<'a> Iterator for Inputs<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        match self.body.bytes("input") {
            Ok(input) => Some(input),
            Err(_) => {
                self.malformed = true;
                self.left = 0;
                None
            }
        }
    }
}

/// Where a worker's results go: the values of consecutive items in one frame, failures in
/// frames of their own, buffered and written in bursts: on the result pipe each burst is a
/// system call; on the result ring a copy, and a wake-up only if the parent sleeps, so bursts
/// there are small and frequent.
#[derive(Debug)]
pub(crate) struct Outputs {
    /// The result pipe.
    fd: BorrowedFd<'static>,
    /// The file `fd` names, `(device, inode)`: a task that closed it (or whose file took its
    /// number after) is found out by comparing (see [`Outputs::check_descriptors`]).
    fd_file: Option<(u64, u64)>,
    sink: Results,
    /// Result frames not yet written.
    pending: Vec<u8>,
    /// The [`Kind::Done`] frame at the end of `pending` that the next value joins, if any.
    open: Option<OpenDone>,
    /// The current item's encoded result.
    scratch: Vec<u8>,
    /// For a large result written from `scratch`: where its bytes to write start, and what
    /// follows them (see [`Outputs::frame_large`]).
    scratch_from: usize,
    trailer: Vec<u8>,
    /// When the item of the oldest frame in `pending` started, so that the result of an item
    /// that ran [`FLUSH_AGE`] or longer is written as soon as it exists.
    oldest: Option<Instant>,
    /// Sequence number of the next item.
    seq: u64,
    /// Items of the current batch not run yet.
    left_in_batch: u32,
    /// Write each result of the current frame as soon as it exists.
    flush_each: bool,
    /// The flusher may write the current frame's results while a task runs (see
    /// `flusher.rs`).
    early: bool,
    flusher: Flusher,
    limit: usize,
    limits: Limits,
    meter: Meter,
    /// Panic capture for this thread, entered once for the worker's life.
    panics: PanicScope,
    /// Times items, alone or in groups.
    clock: Clock,
    /// Where the parent sees which item runs, and asks to skip cancelled ones.
    page: Option<StatusPage>,
    /// The current batch's items may be cancelled after they were sent.
    cancellable: bool,
    /// Check the result pipe after each item of the current batch
    /// ([`Outputs::check_descriptors`]).
    check_each: bool,
    /// The sequence number from which the current batch's items are each checked for a
    /// recall before they start (the tasks of a frame of single tasks behind its first:
    /// `protocol::FLUSH_SOON`); `u64::MAX` for none.
    recall_each_from: u64,
    /// The current batch's callers want its items' own cost: the CPU time is read after its
    /// last item (see `protocol::MEASURE`).
    measure: bool,
    /// More requests wait after the current batch: its end is no reason to read the CPU
    /// time (the worker is not about to sleep).
    more_waiting: bool,
}

impl Outputs {
    fn new(
        fd: BorrowedFd<'static>,
        sink: Results,
        limit: usize,
        backtraces: bool,
        limits: Limits,
        page: Option<StatusPage>,
        flusher: Flusher,
    ) -> Self {
        Outputs {
            fd,
            fd_file: sys::identity(fd.as_raw_fd()),
            sink,
            pending: Vec::with_capacity(FLUSH_BYTES * 2),
            open: None,
            scratch: Vec::new(),
            scratch_from: 0,
            trailer: Vec::new(),
            oldest: None,
            seq: 0,
            left_in_batch: 0,
            flush_each: false,
            early: false,
            flusher,
            limit,
            limits,
            meter: Meter::new(),
            panics: PanicScope::enter(backtraces),
            clock: Clock::default(),
            page,
            cancellable: false,
            check_each: false,
            recall_each_from: u64::MAX,
            measure: false,
            more_waiting: false,
        }
    }

    /// Runs one item: `work` decodes the input, runs the job and encodes the result into the
    /// buffer it is given. Records the outcome: its value joins the open [`Kind::Done`]
    /// frame; a failure gets a frame of its own. Once a batch's items prove tiny, most take a
    /// short way ([`Outputs::run_tiny`]) with the same outcomes.
    #[inline(always)]
    pub(crate) fn run(
        &mut self,
        work: impl FnOnce(&mut Scratch<'_>) -> Result<(), (Side, String)>,
    ) {
        if self.tiny_ready() {
            self.run_tiny(work);
        } else {
            self.run_any(work);
        }
    }

    /// [`Outputs::run`] for any item.
    #[inline(never)]
    fn run_any(&mut self, work: impl FnOnce(&mut Scratch<'_>) -> Result<(), (Side, String)>) {
        self.scratch.clear();
        self.left_in_batch = self.left_in_batch.saturating_sub(1);
        if self.recalled() {
            return;
        }
        if let Some(page) = &mut self.page {
            if !page.start(self.seq, self.cancellable) {
                self.skip_cancelled();
                return;
            }
        }
        aborting_panic::item_starts(self.seq);
        self.limits.prepare(self.seq, self.meter.cpu_ns());
        let (on_memory, on_cpu_time) = (self.limits.on_memory(), self.limits.on_cpu_time());
        sys::arm_crash_flush(&self.pending, on_memory, on_cpu_time, self.early);
        let started = self.clock.start();
        let mut sent_apart = false;
        let (sink, fd, limit, apart_from) = (&self.sink, self.fd, self.limit, self.apart_from());
        // Only with nothing pending: the bytes go first, ahead of the frame that refers to
        // them, and nothing armed for the crash-time flush changes.
        let quiet = self.pending.is_empty();
        let mut apart = |head: &[u8], bytes: &[u8]| {
            // Not from a copy of this worker that a task forked: only the worker writes.
            if !quiet
                || bytes.len() < apart_from
                || head.len() + bytes.len() > limit
                || sys::forked()
            {
                return false;
            }
            send_apart(sink, fd, bytes);
            sent_apart = true;
            true
        };
        let mut scratch =
            Scratch { buf: &mut self.scratch, apart: &mut apart, handed_off: None, begun: None };
        let outcome = self.panics.catch(|| work(&mut scratch));
        let (handed_off, begun) = (scratch.handed_off, scratch.begun);
        let started = self.clock.begun(started, begun);
        // What the task's C code printed goes out now, not with the batch's results: a
        // later item of the batch may crash the worker first (tiny items, which take the
        // short way, leave theirs for the batch's results). It is part of the task, as the
        // status page says: a write that blocks runs into the task's time limit. Not from
        // a copy of this worker that a task forked, whose copy of the output is the
        // worker's to write.
        if !sys::forked() {
            sys::flush_c_output();
        }
        self.task_returned();
        // The parent keeps what this item's argument held until it has the outcome.
        let sender_waits = handoff::take_sender_waits();
        self.settle(outcome, Settle { started, sent_apart, sender_waits, handed_off });
        if self.check_each || UNHEARD.load(Ordering::Relaxed) || self.asked_to_leave() {
            self.check_descriptors();
        }
    }

    /// After each item of a job that closed a worker's result pipe before
    /// (`protocol::CHECK_DESCRIPTORS`): if the item closed the pipe's descriptor (as a daemon
    /// closes every descriptor from 3 up), the worker can no longer be heard on it, and a
    /// write there could land in a file that took its number. It writes the results it holds
    /// to its ring and exits before another item runs in it, so the parent blames that item,
    /// if its result did not come through, and sends the rest elsewhere. Without the check
    /// (one `fstat`, some hundreds of nanoseconds: a tenth of a round trip, so not made for
    /// every job), the worker goes on with the next items until its parent notices the
    /// pipe's end and kills it for whichever item runs then; the item that closed the pipe,
    /// unanswered, was then sent again to the next worker, and did the same there.
    ///
    /// A worker that could not ring its parent since ([`UNHEARD`]) leaves the same way, and
    /// so does one whose parent saw the pipe end ([`Outputs::asked_to_leave`]).
    fn check_descriptors(&mut self) {
        let unheard = UNHEARD.load(Ordering::Relaxed) || self.asked_to_leave();
        if !unheard
            && (self.fd_file.is_none() || sys::identity(self.fd.as_raw_fd()) == self.fd_file)
        {
            return;
        }
        if let Results::Ring(ring) = &self.sink {
            // Without a bell, which is a write to that descriptor: the parent reads the ring
            // once the worker has exited. Results that do not fit are sent elsewhere again.
            ring.lock().unwrap_or_else(PoisonError::into_inner).write_quietly(&self.pending);
        }
        sys::exit_now(EXIT_PIPE_CLOSED);
    }

    /// Whether the parent saw the result pipe end (a task closed it, this worker or one
    /// before it in the batch) and asks the worker to leave after the item it runs
    /// (`StatusPage::ask_to_leave`): checked after each item that does not take the short
    /// way, and before each batch.
    #[inline]
    fn asked_to_leave(&self) -> bool {
        self.page.as_ref().is_some_and(StatusPage::asked_to_leave)
    }

    /// Whether the next item can take the short way, [`Outputs::run_tiny`]: the items of this
    /// batch proved tiny, so that the clock is not read after the next one (which is not the
    /// batch's last), and no limit, cancellation or flush after each item needs to be set up
    /// around it.
    #[inline]
    fn tiny_ready(&self) -> bool {
        self.left_in_batch > 1
            && self.clock.skips_next()
            && !self.flush_each
            && !self.cancellable
            && !self.check_each
            && !self.limits.any()
    }

    /// [`Outputs::run`] for one of many tiny items (see [`Outputs::tiny_ready`]): what the
    /// item's value needs in the common case, a few stores and the copy into the open
    /// [`Kind::Done`] frame, and [`Outputs::settle`] for any other outcome. A large byte
    /// string is not sent apart as it is encoded (that needs nothing pending, which is rare
    /// among tiny items): it is encoded whole, then framed as any large value.
    #[inline]
    fn run_tiny(&mut self, work: impl FnOnce(&mut Scratch<'_>) -> Result<(), (Side, String)>) {
        self.scratch.clear();
        self.left_in_batch -= 1;
        if self.recalled() {
            return;
        }
        if let Some(page) = &mut self.page {
            // Not cancellable: nothing to skip.
            page.start(self.seq, false);
        }
        aborting_panic::item_starts(self.seq);
        sys::arm_crash_flush(&self.pending, &[], &[], self.early);
        let started = self.clock.start();
        let mut scratch = Scratch {
            buf: &mut self.scratch,
            apart: &mut |_, _| false,
            handed_off: None,
            begun: None,
        };
        let outcome = self.panics.catch(|| work(&mut scratch));
        let (handed_off, begun) = (scratch.handed_off, scratch.begun);
        let started = self.clock.begun(started, begun);
        self.task_returned();
        let sender_waits = handoff::take_sender_waits();
        let plain = matches!(outcome, Ok(Ok(())))
            && !sender_waits
            && handed_off.is_none()
            && self.scratch.len() <= self.limit
            && self.pending.len() + self.scratch.len() < self.flush_bytes();
        if plain {
            // `tiny_ready`: the clock is not read after this item, so it reports no cost.
            let timed = self.clock.end(false);
            debug_assert!(timed.is_none());
            self.push_value(Cost::default());
            self.seq += 1;
            self.oldest.get_or_insert(started);
            return;
        }
        self.settle(outcome, Settle { started, sent_apart: false, sender_waits, handed_off });
    }

    /// What follows every task's return: a copy of this worker that a task made with `fork()`
    /// leaves, and the worker marks the item finished and disarms the crash-time flush,
    /// dropping the pending results if the flusher wrote them meanwhile.
    #[inline]
    fn task_returned(&mut self) {
        if sys::forked() {
            // A copy of this worker made by a task's `fork()`, back from the task: the worker
            // is the other copy. This one leaves without a word.
            sys::exit_now(0);
        }
        if let Some(page) = &self.page {
            page.finish(self.seq);
        }
        if sys::disarm_crash_flush(self.early) {
            self.written();
            self.flusher.task_ended();
        }
    }

    /// Starts covering a frame with the flusher; returns whether it does: only on the result
    /// ring, with a flusher that could start, in a worker without limits (whose address space
    /// and CPU time are the tasks' alone, as they were before the flusher).
    fn cover_frame(&mut self) -> bool {
        match &self.sink {
            Results::Ring(ring) if !self.limits.any() => self.flusher.frame_begins(ring),
            _ => false,
        }
    }

    /// From how many bytes a result goes in a frame of its own, written from its own buffer
    /// ([`bulk::apart_from`]): on the result pipe, where that costs system calls of its own,
    /// only from [`bulk::LARGE`].
    #[inline]
    fn apart_from(&self) -> usize {
        bulk::apart_from(matches!(self.sink, Results::Ring(_)))
    }

    /// How many bytes of pending results are worth a write.
    #[inline]
    fn flush_bytes(&self) -> usize {
        match self.sink {
            Results::Ring(_) => RING_FLUSH_BYTES,
            Results::Pipe => FLUSH_BYTES,
        }
    }

    /// Records the outcome of the item that just ran: its value joins the open
    /// [`Kind::Done`] frame, a large one or a failure gets a frame of its own, and pending
    /// results are written when due.
    #[inline(never)]
    fn settle(
        &mut self,
        outcome: Result<Result<(), (Side, String)>, PanicReport>,
        Settle { started, sent_apart, sender_waits, handed_off }: Settle,
    ) {
        let value = matches!(outcome, Ok(Ok(()))) && self.scratch.len() <= self.limit;
        if let Some(handed_off) = handed_off {
            if value { handed_off.sent() } else { handed_off.take_back() }
        }
        let flush_bytes = self.flush_bytes();
        let read = !value
            || sent_apart
            || sender_waits
            || self.flush_each
            || self.left_in_batch == 0
            || self.pending.len() + self.scratch.len() >= flush_bytes;
        let timed = self.clock.end(read);
        let cost = match timed {
            Some((now, elapsed_ns)) => {
                // After a batch's last item, with nothing more to do, when its callers want
                // their own cost or a limit counts the CPU time from this reading.
                let idle_next = self.left_in_batch == 0 && !self.more_waiting;
                let force = idle_next && (self.measure || self.limits.any());
                let used = self.meter.read(now, force, idle_next && self.measure);
                Cost {
                    elapsed_ns,
                    user_ns: used.user_ns,
                    system_ns: used.system_ns,
                    peak_rss: used.peak_rss,
                }
            }
            None => Cost::default(),
        };
        // A large value is written from its own buffer, in a frame of its own after the
        // frames before it, rather than copied into `pending` (see `bulk.rs`).
        let large = value && (sent_apart || self.scratch.len() >= self.apart_from());
        if large {
            self.open = None;
            self.frame_large(Meta { seq: self.seq, cost }, sent_apart);
        } else if value {
            self.push_value(cost);
        } else {
            self.frame_failure(Meta { seq: self.seq, cost }, outcome);
        }
        self.seq += 1;
        let oldest = *self.oldest.get_or_insert(started);
        let Some((now, _)) = timed else { return };
        let due = match self.sink {
            // A copy into shared memory, and a wake-up only if the parent sleeps: cheap, but
            // not free per item (the ring's positions move between CPUs). Written at the end
            // of a batch, or once a few results or a few microseconds are pending; what is
            // pending when the worker dies goes on the result pipe (the crash-time flush).
            Results::Ring(_) => {
                self.left_in_batch == 0
                    || self.pending.len() >= RING_FLUSH_BYTES
                    || now - oldest >= RING_FLUSH_AGE
            }
            Results::Pipe => self.pending.len() >= FLUSH_BYTES || now - oldest >= FLUSH_AGE,
        };
        if self.flush_each || due || large || sender_waits {
            self.flush_with(large);
        }
    }

    /// Answers that the `count` items of a batch from `first_seq` were skipped because the
    /// parent recalled them before the batch started.
    #[cold]
    #[inline(never)]
    fn skip_recalled(&mut self, first_seq: u64, count: u32) {
        let meta = Meta { seq: first_seq, cost: Cost::default() };
        self.open = None;
        protocol::encode_failed(&mut self.pending, meta, Failure::Recalled { count });
        self.seq = first_seq + u64::from(count);
        if let Some(page) = &self.page {
            page.finish(self.seq - 1);
        }
        self.clock.restart();
        self.flush();
    }

    /// Whether the current item, a task of a frame of single tasks behind the frame's first
    /// (see `recall_each_from`), was taken back by the parent while an earlier task of the
    /// frame ran long: then it is answered as skipped and never runs here (`status.rs` has
    /// why the parent and the worker agree on which items go).
    #[inline]
    fn recalled(&mut self) -> bool {
        if self.seq < self.recall_each_from {
            return false;
        }
        let Some(page) = &self.page else { return false };
        if page.start_batch(self.seq) {
            return false;
        }
        self.skip_recalled(self.seq, 1);
        true
    }

    /// Records that the current item was cancelled before it started: it never runs.
    #[cold]
    #[inline(never)]
    fn skip_cancelled(&mut self) {
        let meta = Meta { seq: self.seq, cost: Cost::default() };
        self.open = None;
        protocol::encode_failed(&mut self.pending, meta, Failure::Cancelled);
        self.seq += 1;
        self.clock.restart();
        self.flush();
    }

    /// Frames the current item's failure, `outcome`: a value over the frame limit (in
    /// `scratch`), one that did not encode, or a panic.
    #[cold]
    #[inline(never)]
    fn frame_failure(
        &mut self,
        meta: Meta,
        outcome: Result<Result<(), (Side, String)>, PanicReport>,
    ) {
        self.open = None;
        let out = &mut self.pending;
        match outcome {
            Ok(Ok(())) => {
                let too_large =
                    Failure::TooLarge { side: Side::Result, size: self.scratch.len() as u64 };
                protocol::encode_failed(out, meta, too_large);
            }
            Ok(Err((side, message))) => {
                let message = fit(&message, self.limit.min(MAX_REPORT));
                protocol::encode_failed(
                    out,
                    meta,
                    Failure::Serialization { side, message: &message },
                );
            }
            Err(report) => {
                let [message, location, backtrace] = fit_report(&report, self.limit);
                protocol::encode_panicked(out, meta, &message, &location, &backtrace);
            }
        }
    }

    /// Adds the current item's value, which cost `cost`, to the open [`Kind::Done`] frame
    /// (opening one if needed).
    #[inline]
    fn push_value(&mut self, cost: Cost) {
        if let Some(open) = &mut self.open {
            if open.push(&mut self.pending, &self.scratch, cost) {
                return;
            }
        }
        let mut open = OpenDone::begin(&mut self.pending, self.seq);
        // A fresh frame holds any value under the frame limit.
        let _ = open.push(&mut self.pending, &self.scratch, cost);
        self.open = Some(open);
    }

    /// Frames the current item's large value, which is in `scratch`, to follow `pending`. One
    /// byte string goes as a [`Kind::Bulk`] frame of its bytes, written from `scratch`, then
    /// a [`Kind::Done`] frame in `trailer` that refers to them (see `codec.rs`): the parent
    /// reads the bytes straight into the vector it hands over. Any other value goes as a
    /// [`Kind::Done`] frame whose head is in `pending` and whose value is `scratch`. A byte
    /// string whose bytes were `sent_apart` as it was encoded (see [`Outputs::run`]) left only
    /// its head in `scratch`: its frame refers to them.
    fn frame_large(&mut self, meta: Meta, sent_apart: bool) {
        self.trailer.clear();
        if sent_apart {
            let mut reference = Vec::new();
            codec::bulk_reference(&mut reference, &self.scratch);
            protocol::encode_done_head(&mut self.pending, meta, reference.len());
            self.pending.extend_from_slice(&reference);
            self.scratch_from = self.scratch.len();
            return;
        }
        match codec::byte_string_head(&self.scratch) {
            Some(head) => {
                wire::put_bulk_head(&mut self.pending, self.scratch.len() - head);
                let mut reference = Vec::new();
                codec::bulk_reference(&mut reference, &self.scratch[..head]);
                protocol::encode_done_head(&mut self.trailer, meta, reference.len());
                self.trailer.extend_from_slice(&reference);
                self.scratch_from = head;
            }
            None => {
                protocol::encode_done_head(&mut self.pending, meta, self.scratch.len());
                self.scratch_from = 0;
            }
        }
    }

    /// Writes every pending result. If the parent is gone there is nobody to serve: exit.
    fn flush(&mut self) {
        self.flush_with(false);
    }

    /// Writes every pending result, then (`with_scratch`) the current item's large result as
    /// [`Outputs::frame_large`] framed it. If the parent is gone there is nobody to serve:
    /// exit.
    fn flush_with(&mut self, with_scratch: bool) {
        if self.pending.is_empty() {
            return;
        }
        // What tiny items' C code printed goes first, so that it is out by the time the
        // caller has the result (other items wrote theirs as they returned). Not for items
        // with a time limit, which are never tiny: the worker has marked them finished, so a
        // write that blocked here would not run into their limit.
        if !self.flush_each {
            sys::flush_c_output();
        }
        let parts: [&[u8]; 3] = if with_scratch {
            [&self.pending, &self.scratch[self.scratch_from..], &self.trailer]
        } else {
            [&self.pending, &[], &[]]
        };
        let written = write_out(&self.sink, self.fd, parts);
        if !written {
            sys::exit_now(0);
        }
        self.written();
        self.flusher.flushed();
    }

    /// Forgets the pending results, written.
    fn written(&mut self) {
        self.pending.clear();
        self.open = None;
        self.oldest = None;
    }

    /// Whether a buffer kept the memory of a large result (see `bulk.rs`).
    fn holds_large(&self) -> bool {
        bulk::is_large(&self.pending) || bulk::is_large(&self.scratch)
    }

    /// Gives back the memory the buffers kept for large results, once every result is
    /// written.
    fn release(&mut self) {
        if self.pending.is_empty() {
            self.scratch.clear();
            bulk::release(&mut self.scratch);
            bulk::release(&mut self.pending);
        }
    }
}

/// What [`Outputs::settle`] needs to know of how an item ran besides its outcome.
#[derive(Debug)]
struct Settle {
    /// When the item's group of tiny items (or the item) started.
    started: Instant,
    /// Its result's bytes went ahead as it was encoded.
    sent_apart: bool,
    /// Its argument held something its sender keeps until it has the outcome.
    sender_waits: bool,
    /// What its result handed off as it was encoded (handles, shared bytes): taken back if
    /// the result is not sent (too large, or its encoding failed or panicked).
    handed_off: Option<handoff::HandedOff>,
}

/// Where an item's result is encoded (see [`Outputs::run`]): the worker's buffer, and, for a
/// result that is one large byte string, the way its bytes go to the parent at once, in a
/// bulk frame, while the value still holds them (see `codec::encode_apart`), rather than
/// through the buffer.
pub(crate) struct Scratch<'a> {
    buf: &'a mut Vec<u8>,
    apart: codec::Apart<'a>,
    /// What the result handed off as it was encoded, if anything (see [`Settle`]).
    handed_off: Option<handoff::HandedOff>,
    /// When the item's own work began, if not when it started ([`Scratch::begins_now`]).
    begun: Option<Instant>,
}

impl Scratch<'_> {
    /// The item's own work begins now: what it did before (decoding its batch's job state,
    /// done once for all the batch's items) is not counted in its time. Counted there, a
    /// state that takes longer to decode than an item to run would make every item look
    /// slow, and every batch would stay one item long, decoding the state for each.
    pub(crate) fn begins_now(&mut self) {
        self.begun = Some(Instant::now());
    }

    /// Encodes the result `value`.
    ///
    /// # Errors
    ///
    /// As `codec::encode_into`.
    #[inline]
    pub(crate) fn encode<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CodecError> {
        if handoff::may_hold() {
            return self.encode_noting(value);
        }
        codec::encode_apart(value, self.buf, &mut *self.apart)
    }

    /// [`Scratch::encode`] in a process that made or opened a handle or shared bytes: notes
    /// what the result hands off, to take back if it is not sent.
    #[inline(never)]
    fn encode_noting<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CodecError> {
        let (encoded, handed_off) = handoff::undoable(|| {
            handoff::encode_result(|| codec::encode_apart(value, self.buf, &mut *self.apart))
        });
        if !handed_off.is_empty() {
            self.handed_off = Some(handed_off);
        }
        encoded
    }
}

/// Sends a large result's `bytes` as a [`Kind::Bulk`] frame of their own, ahead of the frame
/// that will refer to them (see [`Outputs::run`]). If the parent is gone there is nobody to
/// serve: exit.
#[cold]
#[inline(never)]
fn send_apart(sink: &Results, fd: BorrowedFd<'_>, bytes: &[u8]) {
    let mut bulk = Vec::with_capacity(wire::HEADER);
    wire::put_bulk_head(&mut bulk, bytes.len());
    if !write_out(sink, fd, [&bulk, bytes]) {
        sys::exit_now(0);
    }
}

/// Writes `parts` in order to the result ring (see [`RingOut::write`]) or pipe `fd`. Returns
/// `false` if the parent broke the ring or is gone.
fn write_out<const N: usize>(sink: &Results, fd: BorrowedFd<'_>, parts: [&[u8]; N]) -> bool {
    match sink {
        Results::Pipe => parts.iter().all(|part| sys::write_all(fd, part).is_ok()),
        Results::Ring(ring) => {
            let mut ring = ring.lock().unwrap_or_else(PoisonError::into_inner);
            parts.iter().all(|part| ring.write(part, fd))
        }
    }
}

/// Times items: one clock reading per item, or, while items take less than [`TINY_ITEM`],
/// one per group of up to [`MAX_STRIDE`] items (reading the clock costs as much as a tiny
/// item). A group's time is reported on its last item; the others report none.
#[derive(Debug)]
struct Clock {
    /// When the current group started; `None` at the start of a batch.
    since: Option<Instant>,
    /// Items of the current group that ended without a reading.
    unread: u32,
    /// Items per group.
    stride: u32,
}

impl Default for Clock {
    fn default() -> Self {
        Clock { since: None, unread: 0, stride: 1 }
    }
}

impl Clock {
    /// A batch starts: its first item reads the clock, and its items are timed one by one
    /// until they prove tiny (the batch may be another job's, of slow items).
    #[inline]
    fn restart(&mut self) {
        self.since = None;
        self.unread = 0;
        self.stride = 1;
    }

    /// An item starts: when its group started.
    #[inline]
    fn start(&mut self) -> Instant {
        *self.since.get_or_insert_with(Instant::now)
    }

    /// An item that `started` found its own work `begun` later (see
    /// [`Scratch::begins_now`]): its group starts then, if it is the group's only item (the
    /// first of a batch, where a job's state is decoded). Returns when the item started.
    #[inline]
    fn begun(&mut self, started: Instant, begun: Option<Instant>) -> Instant {
        match begun {
            Some(begun) if self.unread == 0 => {
                self.since = Some(begun);
                begun
            }
            _ => started,
        }
    }

    /// Whether [`Clock::end`] after the next item reads the clock only if forced.
    #[inline]
    fn skips_next(&self) -> bool {
        self.unread + 1 < self.stride
    }

    /// An item ended: reads the clock if `force`d or its group is complete, and returns when,
    /// and the group's time in nanoseconds.
    #[inline]
    fn end(&mut self, force: bool) -> Option<(Instant, u64)> {
        let items = self.unread + 1;
        if !force && items < self.stride {
            self.unread = items;
            return None;
        }
        let now = Instant::now();
        let elapsed = now - self.since.unwrap_or(now);
        self.stride =
            if elapsed < TINY_ITEM * items { (self.stride * 2).min(MAX_STRIDE) } else { 1 };
        self.since = Some(now);
        self.unread = 0;
        Some((now, u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)))
    }
}

/// The worker's limits, and the frames its crash handler writes for the running task when it
/// hits one (see `sys::arm_crash_flush`).
#[derive(Debug)]
struct Limits {
    memory: Option<u64>,
    /// Seconds of CPU time each task may use.
    cpu_time: Option<u64>,
    /// The soft CPU-time limit set last, in seconds of the worker's CPU time.
    cpu_armed: u64,
    /// The running task's memory frame, then its CPU-time frame.
    frames: Vec<u8>,
    memory_frame: usize,
}

impl Limits {
    fn new(memory: Option<u64>, cpu_time: Option<u64>) -> Self {
        Limits { memory, cpu_time, cpu_armed: 0, frames: Vec::new(), memory_frame: 0 }
    }

    /// Prepares for item `seq`: builds its frames, and gives it its CPU time on top of the
    /// `used_ns` the worker used so far (the kernel counts the whole process, in whole
    /// seconds).
    #[inline]
    fn prepare(&mut self, seq: u64, used_ns: u64) {
        if self.any() {
            self.prepare_frames(seq, used_ns);
        }
    }

    /// [`Limits::prepare`] when there are limits.
    fn prepare_frames(&mut self, seq: u64, used_ns: u64) {
        self.frames.clear();
        let meta = Meta { seq, ..Meta::default() };
        if let Some(limit) = self.memory {
            let failure = Failure::ResourceLimit { resource: Resource::Memory, limit };
            protocol::encode_failed(&mut self.frames, meta, failure);
        }
        self.memory_frame = self.frames.len();
        if let Some(limit) = self.cpu_time {
            let failure = Failure::ResourceLimit { resource: Resource::CpuTime, limit };
            protocol::encode_failed(&mut self.frames, meta, failure);
            let until = used_ns.saturating_add(limit.saturating_mul(1_000_000_000));
            let until = until.div_ceil(1_000_000_000);
            if until > self.cpu_armed && sys::limit_cpu_time(until).is_ok() {
                self.cpu_armed = until;
                cpu_watch::soft_limit_set(until);
            }
        }
    }

    /// Whether there is any limit.
    #[inline]
    fn any(&self) -> bool {
        self.memory.is_some() || self.cpu_time.is_some()
    }

    #[inline]
    fn on_memory(&self) -> &[u8] {
        &self.frames[..self.memory_frame]
    }

    #[inline]
    fn on_cpu_time(&self) -> &[u8] {
        &self.frames[self.memory_frame..]
    }
}

/// Reads what items cost from the kernel (`getrusage`): after an item when
/// [`MEASURE_EVERY`] has passed since the last reading, or when asked to (after the last item
/// of a batch when no more requests wait, if its callers want their own cost or a limit
/// applies), so that a stream of tiny items, or of tiny round trips, pays for few system
/// calls. A reading gives the CPU time used since the one
/// before; in between, items report none.
///
/// The peak resident memory `getrusage` gives is never below the parent's at the time it
/// started this worker: the kernel carries it across `execve` from the memory the new
/// program replaced, which was the parent's. Above that floor the figure is the worker's
/// own; at it, the worker's own peak is read from `/proc/self/status` (`VmHWM`), when the
/// caller wants its cost or at most every [`OWN_PEAK_EVERY`].
#[derive(Debug)]
struct Meter {
    last: sys::ResourceUsage,
    at: Instant,
    /// `getrusage`'s peak when the worker started: what it inherited, or its own if larger.
    floor: u64,
    /// The worker's own peak resident memory, as last read.
    peak: u64,
    /// When `/proc` was last read for it.
    peak_read: Option<Instant>,
}

/// How often the worker's own peak memory is read from `/proc` when `getrusage` cannot tell
/// it, unless a caller wants its task's cost.
const OWN_PEAK_EVERY: Duration = Duration::from_millis(10);

impl Meter {
    fn new() -> Self {
        let last = sys::resource_usage();
        let peak = sys::own_peak_rss().unwrap_or(last.peak_rss);
        Meter { last, at: Instant::now(), floor: last.peak_rss, peak, peak_read: None }
    }

    /// CPU time used since the last reading, if it is time to read (`now`) or `force`d; none
    /// otherwise. The peak resident memory is the latest known, read from `/proc` if needed
    /// when `exact` (a caller wants its task's cost).
    fn read(&mut self, now: Instant, force: bool, exact: bool) -> sys::ResourceUsage {
        if !force && now - self.at < MEASURE_EVERY {
            return sys::ResourceUsage { peak_rss: self.peak, ..Default::default() };
        }
        let usage = sys::resource_usage();
        if usage.peak_rss > self.floor {
            self.peak = usage.peak_rss;
        } else if exact || self.peak_read.is_none_or(|at| now - at >= OWN_PEAK_EVERY) {
            self.peak = sys::own_peak_rss().unwrap_or(self.peak);
            self.peak_read = Some(now);
        }
        let used = sys::ResourceUsage {
            user_ns: usage.user_ns.saturating_sub(self.last.user_ns),
            system_ns: usage.system_ns.saturating_sub(self.last.system_ns),
            peak_rss: self.peak,
        };
        (self.last, self.at) = (usage, now);
        used
    }

    /// The worker's CPU time at the last reading, in nanoseconds.
    fn cpu_ns(&self) -> u64 {
        self.last.cpu_ns()
    }
}

/// What ends a text that was cut to fit.
const CUT_MARKER: &str = " [cut to fit the frame limit]";

/// `text`, cut on a character boundary to at most `max` bytes, the marker included when it
/// is cut.
fn fit(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let Some(mut end) = max.checked_sub(CUT_MARKER.len()) else {
        return "".into();
    };
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{CUT_MARKER}", &text[..end]).into()
}

/// A panic report's message, location and backtrace, cut so that together they take at most
/// [`MAX_REPORT`] bytes each and, all three, no more than the frame `limit` less room for the
/// frame's own fields: the location whole if it is short, then the message, then what is left
/// for the backtrace.
pub(crate) fn fit_report(report: &PanicReport, limit: usize) -> [std::borrow::Cow<'_, str>; 3] {
    // A result frame's fields besides the three texts: the result header and three lengths.
    const FIELDS: usize = 64;
    let mut budget = limit.saturating_sub(FIELDS);
    let location = fit(report.location.as_deref().unwrap_or(""), (budget / 4).min(MAX_REPORT));
    budget -= location.len();
    let message = fit(&report.message, budget.min(MAX_REPORT));
    budget -= message.len();
    let backtrace = fit(report.backtrace.as_deref().unwrap_or(""), budget.min(MAX_REPORT));
    [message, location, backtrace]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_read_once_per_group_and_when_forced() {
        let mut clock = Clock { since: None, unread: 0, stride: 4 };
        clock.start();
        assert!(clock.end(false).is_none());
        assert!(clock.end(false).is_none());
        assert!(clock.end(false).is_none());
        let (_, elapsed) = clock.end(false).expect("the group's fourth item reads the clock");
        assert!(clock.stride == 1 || clock.stride == 8, "{}", clock.stride);
        assert!(elapsed < 60_000_000_000);
        assert!(clock.end(true).is_some(), "a forced reading");
        clock.restart();
        assert_eq!((clock.since, clock.unread, clock.stride), (None, 0, 1));
        clock.start();
        assert!(clock.end(false).is_some(), "a batch's first item is timed alone");
    }

    #[test]
    fn long_reports_are_cut_on_a_char_boundary_with_a_marker() {
        let long = "é".repeat(MAX_REPORT);
        let short = fit(&long, MAX_REPORT);
        assert!(short.len() <= MAX_REPORT);
        assert!(short.ends_with(CUT_MARKER));
        assert!(long.starts_with(short.trim_end_matches(CUT_MARKER)));
        assert_eq!(fit("short", 100), "short");
    }

    #[test]
    fn a_panic_report_fits_the_frame_limit() {
        let report = PanicReport {
            message: "m".repeat(10_000),
            location: Some("src/lib.rs:1:1".into()),
            backtrace: Some("b".repeat(10_000)),
        };
        let [message, location, backtrace] = fit_report(&report, 1000);
        assert_eq!(location, "src/lib.rs:1:1");
        assert!(message.ends_with(CUT_MARKER));
        assert!(message.len() + location.len() + backtrace.len() <= 1000 - 64);
        let [message, _, backtrace] = fit_report(&report, 1 << 30);
        assert_eq!((message.len(), backtrace.len()), (10_000, 10_000));
    }
}
