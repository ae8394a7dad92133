//! One thread per worker slot: starts the worker, reads its results, watches the process, and
//! replaces it when it ends.
//!
//! The supervisor is the only reader of its worker's result pipe, the only closer of its
//! request pipe and the only reaper of its process. Other threads append frames to the
//! worker's outbox and write them without blocking (see `outlet.rs`), and kill the process
//! (under the pool's lock, while it is in its slot, so unreaped). The supervisor wakes on:
//! results, the end of the process (its pidfd), its eventfd (bytes left in the outbox, a new
//! deadline, shutdown), and the head item's deadline.
//!
//! A worker's end is seen from the process, never inferred from its pipes: anything a task
//! starts may hold or close descriptors. When the process has ended, the supervisor kills
//! what is left of its process group, reads what the worker wrote last, reaps it, and blames
//! the item its status page says was running.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use taskpool_core::{Exit, TaskError};

use crate::bulk;
use crate::deliveries::Deliveries;
use crate::doorbell::Spin;
use crate::launch::{self, Launched};
use crate::oom;
use crate::outlet::{Outlet, RequestPipe, RingRequests};
use crate::protocol::{BACKTRACES, Init, OFF_MACHINE};
use crate::reception::{Reader, Reception, kill_for_protocol, readable};
use crate::region::Region;
use crate::ring::Peek;
use crate::run;
use crate::scheduler::{Conn, KillReason, Process, Progress, Shared, StartFailure};
use crate::ship;
use crate::status::StatusPage;
use crate::sys::{self, ChildProcess, Interest};
use crate::wire::SLACK;

/// The longest start limit that is one: 2³² s, about 136 years (see
/// `ProcessConfig::start_limit`).
const NO_START_LIMIT: Duration = Duration::from_secs(1 << 32);

/// How long a worker retired after its task quota may wait, past its end of input, for the
/// receivers of shared bytes it sent before it begins to exit.
const RETIRE_WAIT: Duration = crate::shared_bytes::AWAIT_RECEIVERS;

/// The most reads of a worker's result pipe after the worker ended (the pipe holds at most
/// 1 MiB, read 64 KiB or more at a time).
const MAX_DRAIN_READS: usize = 64;

/// A CPU-time limit of this many seconds (about 136 years) or more is no limit.
const UNLIMITED_CPU_SECONDS: u64 = 1 << 32;

/// How often a supervisor checks on its worker where the kernel has no pidfds.
const POLL_EXIT: Duration = Duration::from_millis(20);

/// Supervises slot `w` until the pool no longer needs it. `started` hears whether the first
/// worker process could be spawned.
pub(crate) fn supervise(shared: Arc<Shared>, w: usize, started: Sender<Result<(), TaskError>>) {
    // It writes to its worker's pipe, which may have no reader left.
    sys::block_sigpipe_for_good();
    let mut started = Some(started);
    loop {
        let launched = match launch::launch_with(
            &init_for(&shared, w),
            Some(shared.config.get_ring_bytes()),
            // This thread reaps its worker before it ends.
            launch::NoLauncher::SpawnHere,
        ) {
            Ok(launched) => launched,
            Err(failure) => {
                if let Some(tx) = started.take() {
                    let _ = tx.send(Err(TaskError::WorkerStart { reason: failure.reason() }));
                    break;
                }
                if !start_failed(&shared, w, &failure) {
                    break;
                }
                continue;
            }
        };
        if !serve_one(&shared, w, launched, &mut started) {
            break;
        }
    }
    let mut state = shared.lock();
    state.supervisors -= 1;
    shared.notify();
}

fn init_for(shared: &Shared, w: usize) -> Init {
    let config = &shared.config;
    let shared_config = config.get_config();
    Init {
        frame_limit: config.get_max_frame_bytes() as u64,
        flags: if shared_config.get_backtraces() { BACKTRACES } else { 0 }
            | if config.get_off_machine() { OFF_MACHINE } else { 0 },
        initializer: shared_config.get_initializer().map(|f| ship::offset_of(f as usize)),
        memory_limit: config.get_memory_limit(),
        // The kernel counts whole seconds: round up. Past `UNLIMITED_CPU_SECONDS` its count
        // in nanoseconds would overflow (and fire at once): no limit.
        cpu_time_limit: config
            .get_cpu_time_limit()
            .map(|limit| limit.as_secs().saturating_add(u64::from(limit.subsec_nanos() > 0)))
            .filter(|&seconds| seconds < UNLIMITED_CPU_SECONDS),
        name: format!("{}-{w}", shared_config.get_name_prefix()),
    }
}

/// Records a failed start; returns whether to try again, after a pause that grows with the
/// failures in a row (cut short if the pool closes meanwhile).
fn start_failed(shared: &Shared, w: usize, failure: &StartFailure) -> bool {
    let mut deliveries = Deliveries::default();
    let mut state = shared.lock();
    let pause = shared.start_failed(&mut state, w, failure, &mut deliveries);
    let again = !state.closed;
    drop(state);
    finish(shared, deliveries, &|_| &[]);
    again && pause_for(shared, w, pause)
}

/// Waits `pause`, or until the pool closes; returns whether it is still open.
fn pause_for(shared: &Shared, w: usize, pause: Duration) -> bool {
    let until = Instant::now() + pause;
    let wake = shared.wakes[w].as_fd();
    loop {
        if shared.lock().closed {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        let _ = sys::poll([Interest { fd: wake, read: true, write: false }], Some(left));
        sys::drain(wake);
    }
}

/// The OS side of a worker, for the scheduler.
struct Worker {
    child: ChildProcess,
    /// Its status page, where it has shared memory.
    page: Option<StatusPage>,
}

impl Process for Worker {
    fn kill(&self) {
        sys::kill_group(&self.child);
    }

    fn progress(&self) -> Option<Progress> {
        self.page.as_ref().map(StatusPage::progress)
    }

    fn cancel(&self, seq: u64) -> Option<Progress> {
        self.page.as_ref().map(|page| page.cancel(seq))
    }

    fn recall(&self, before: u64) -> Option<Progress> {
        self.page.as_ref().map(|page| page.recall(before))
    }

    fn dying_of_signal(&self) -> bool {
        sys::is_dying_of_signal(self.child.pid)
    }

    fn ask_to_leave(&self) -> bool {
        self.page.as_ref().map(StatusPage::ask_to_leave).is_some()
    }
}

/// A supervisor's side of one worker's transport.
struct Link {
    w: usize,
    /// The supervisor's reference to the requests, for polling; `None` once closed.
    request: Option<Arc<dyn RequestPipe>>,
    /// Where the worker's results arrive; callers waiting for their own result read there
    /// too.
    reception: Arc<Reception>,
    /// How long to spin on the result ring before sleeping, while the worker holds work.
    spin: Spin,
    /// The worker's outbox, whose memory goes back once idle after a large frame.
    outlet: Arc<Outlet>,
    /// When its requests were closed to retire it after its task quota.
    retired: Option<Instant>,
}

/// Runs one worker process from spawn to reaping. Returns whether the slot needs another.
/// Tells `started`, if still there, once the worker is in its slot, so that the pool's
/// [`pids`](crate::ProcessPool::pids) lists it when the pool's constructor returns.
fn serve_one(
    shared: &Shared,
    w: usize,
    launched: Launched,
    started: &mut Option<Sender<Result<(), TaskError>>>,
) -> bool {
    let Launched { child, region, request, result } = launched;
    // Writers hold no lock while writing, but must not block either; the supervisor drains
    // the result pipe after the worker ended without waiting for writers it may have left.
    let configured =
        sys::set_nonblocking(request.as_fd()).and_then(|()| sys::set_nonblocking(result.as_fd()));
    if let Err(e) = configured {
        sys::kill_group(&child);
        let _ = sys::wait_child(&child, true);
        return start_failed(shared, w, &StartFailure::Os(e.to_string()));
    }
    let pid = child.pid;
    let worker = Arc::new(Worker { child, page: region.as_ref().map(Region::status_page) });
    let limit = shared.config.get_max_frame_bytes().saturating_add(SLACK);
    let request: Arc<dyn RequestPipe> = match &region {
        Some(region) => Arc::new(RingRequests::new(region.requests_out(), request)),
        None => Arc::new(request),
    };
    let ring = region.as_ref().map(Region::results_in);
    let deadline = Instant::now() + shared.config.get_start_limit().min(NO_START_LIMIT);
    let reception = Arc::new(Reception::new(w, pid, result, ring, limit, deadline));
    let outlet = {
        let mut state = shared.lock();
        let mut conn = Conn::new(pid.unsigned_abs(), worker.clone(), request.clone());
        conn.reception = Some(reception.clone());
        let outlet = conn.outlet.clone();
        state.slots[w].conn = Some(conn);
        state.counters.workers_started += 1;
        outlet
    };
    if let Some(tx) = started.take() {
        let _ = tx.send(Ok(()));
    }
    let mut link =
        Link { w, request: Some(request), reception, spin: Spin::default(), outlet, retired: None };
    serve(shared, &worker, &mut link);

    // The process ended. What it started and left in its group dies now (its zombie keeps
    // the group's id from being reused); then what it wrote last is read, and it is reaped.
    sys::kill_group(&worker.child);
    link.reception.drain(shared, MAX_DRAIN_READS);
    let (conn, progress) = {
        let mut state = shared.lock();
        (state.slots[w].conn.take(), worker.progress())
    };
    let exit = sys::wait_child(&worker.child, true).ok().flatten().unwrap_or(Exit::Code(-1));
    let mut receiving = link.reception.lock();
    if !receiving.start.ready {
        let killed = conn.as_ref().and_then(|c| c.killed.clone());
        let failure = match (receiving.start.refused.take(), killed) {
            (Some(reason), _) => StartFailure::Refused(reason),
            (None, Some(k)) if matches!(k.reason, KillReason::Timeout(_)) => {
                StartFailure::NotReady(shared.config.get_start_limit())
            }
            // Killed by the pool as it closed: not a failure.
            (None, Some(_)) => return !shared.lock().closed,
            (None, None) => StartFailure::Died(exit),
        };
        drop(receiving);
        return start_failed(shared, w, &failure);
    }
    drop(receiving);
    let mut conn = conn;
    if let Some(conn) = conn.as_mut().filter(|c| c.killed.is_none()) {
        // Killed from outside, or by the kernel's OOM killer: its memory cgroup says which.
        if exit == Exit::Signal(libc::SIGKILL) {
            let reading = oom::Reading::take().filter(|&r| shared.oom.blame(r));
            conn.out_of_memory = reading.map(|r| r.limit);
        }
    }
    let mut deliveries = Deliveries::default();
    let mut state = shared.lock();
    let again = shared.worker_ended(&mut state, w, conn, exit, progress, &mut deliveries);
    let pause = shared.restart_pause(&state);
    let flushes = shared.pump_all(&mut state);
    drop(state);
    shared.flush(flushes);
    finish(shared, deliveries, &|_| &[]);
    if again && !pause.is_zero() {
        // Cut short if the pool closes, which may leave this slot with nothing to run.
        pause_for(shared, w, pause);
        return Shared::needs_worker(&shared.lock());
    }
    again
}

/// What the supervisor waits for next.
struct Plan {
    /// When the head item (or, before its hello, the worker's start) runs out of time.
    deadline: Option<Instant>,
    /// Bytes wait in the outbox: watch for room to write them.
    want_write: bool,
    /// The worker holds work, so a result is due soon.
    busy: bool,
    /// The worker said hello.
    ready: bool,
    /// Its result pipe is open: it can ring the supervisor (only the supervisor reads the
    /// pipe, and it plans again after each read, so this holds until then).
    heard: bool,
}

/// How often a supervisor reads the result ring of a worker whose result pipe ended, which
/// can no longer ring it: until the worker leaves, after the item it runs.
const UNHEARD_LOOK: Duration = Duration::from_millis(1);

/// How long a supervisor whose worker holds work polls its result pipe before it sleeps;
/// see the worker's `linger`.
const LINGER: Duration = Duration::from_micros(50);

/// Polls `result` for up to [`LINGER`] (never past `deadline`), yielding between polls.
/// Returns whether it is readable.
fn linger(result: BorrowedFd<'_>, deadline: Option<Instant>) -> bool {
    let until = deadline.map_or(Instant::now() + LINGER, |d| d.min(Instant::now() + LINGER));
    while Instant::now() < until {
        if readable(result) {
            return true;
        }
        std::thread::yield_now();
    }
    false
}

/// Decides what to wait for, under the lock: kills for timeouts and cancellations (and a
/// worker that does not start in time, or that broke its request ring), closes the requests
/// of a worker that should retire (dropping the supervisor's reference to them), and kills a
/// retired worker that does not end (see [`retire_by`]).
fn plan(shared: &Shared, worker: &Worker, link: &mut Link) -> Plan {
    let w = link.w;
    let receiving = link.reception.lock();
    let mut state = shared.lock();
    if !receiving.start.ready {
        if Instant::now() >= receiving.start.deadline {
            if let Some(conn) = state.slots[w].conn.as_mut() {
                conn.kill(KillReason::Timeout(shared.config.get_start_limit()), None);
            }
        }
        let deadline = Some(receiving.start.deadline);
        return Plan { deadline, want_write: false, busy: false, ready: false, heard: true };
    }
    if link.request.as_ref().is_some_and(|r| r.is_broken()) {
        let reason = "the worker broke its request ring (an impossible position)";
        kill_for_protocol(&mut state.slots[w].conn, reason.into());
    }
    let reception = &link.reception;
    let now = Instant::now();
    let mut deadline = shared.police(&mut state, w, now, || reception.has_unread(&receiving));
    if let Some(at) = shared.unheard_due(&mut state, w, now) {
        deadline = Some(deadline.map_or(at, |d| d.min(at)));
    }
    if shared.should_retire(&state, w) {
        if let Some(conn) = state.slots[w].conn.as_mut() {
            conn.close();
        }
        if link.request.take().is_some() && !state.dropping && !state.closed {
            link.retired = Some(now);
            state.counters.retired += 1;
        }
    }
    if let Some(by) = link.retired.and_then(|since| retire_by(shared, worker, since, now)) {
        if now >= by {
            if let Some(conn) = state.slots[w].conn.as_mut() {
                conn.kill(KillReason::Retired, None);
            }
        } else {
            deadline = Some(deadline.map_or(by, |d| d.min(by)));
        }
    }
    // An idle worker takes back what another holds behind a task that runs long.
    let (flushes, relieve_at) = shared.relieve(&mut state, w, now);
    if let Some(at) = relieve_at {
        deadline = Some(deadline.map_or(at, |d| d.min(at)));
    }
    // And this worker's own: what waits behind a task that runs long goes to an idle worker.
    let (shed, shed_at) = shared.shed(&mut state, w, now);
    if let Some(at) = shed_at {
        deadline = Some(deadline.map_or(at, |d| d.min(at)));
    }
    let want_write = state.slots[w].conn.as_ref().is_some_and(|c| c.outlet.has_backlog());
    let busy = !state.slots[w].sent.is_empty();
    let heard = receiving.result_open;
    drop(state);
    drop(receiving);
    shared.flush(flushes);
    shared.flush(shed);
    Plan { deadline, want_write, busy, ready: true, heard }
}

/// When a worker whose requests were closed at `since` to retire it is killed if it has not
/// ended, as seen at `now`: the pool's shutdown grace after it began to exit, as its status
/// page says (an exit handler or a thread-local destructor of a task's that never returns,
/// or a worker stopped with SIGSTOP, would hold its slot for ever); at most [`RETIRE_WAIT`]
/// later without a page, or while it waits for the receivers of shared bytes it sent. It was
/// sent nothing more and answered everything: the kill costs no item. `None`: never.
fn retire_by(shared: &Shared, worker: &Worker, since: Instant, now: Instant) -> Option<Instant> {
    let grace = shared.config.get_config().get_shutdown_grace();
    let first = since.checked_add(grace)?;
    let leaving = worker.page.as_ref().is_some_and(StatusPage::leaving);
    if leaving || now < first { Some(first) } else { first.checked_add(RETIRE_WAIT) }
}

/// Serves a worker until its process ends.
fn serve(shared: &Shared, worker: &Worker, link: &mut Link) {
    let wake = shared.wakes[link.w].as_fd();
    let mut next = plan(shared, worker, link);
    loop {
        let reception = link.reception.clone();
        let peek = reception.peek().filter(|_| next.ready);
        if let Some(peek) = peek {
            // Ring mode: take what arrived; while the worker holds work and no caller waits
            // on the ring for its own result, spin a while for the next.
            let spin = next.busy && !next.want_write && !reception.is_watched();
            if peek.has_data() || (spin && link.spin.spin(|| peek.has_data())) {
                reception.take_ring(shared, &mut reception.lock(), Reader::Supervisor);
                next = plan(shared, worker, link);
                continue;
            }
        } else if next.busy
            && !next.want_write
            && reception.lock().result_open
            && linger(reception.pipe(), next.deadline)
        {
            reception.read(shared, &mut reception.lock());
            next = plan(shared, worker, link);
            continue;
        }
        // Ask the worker to ring before sleeping (ring mode), then look once more. Not once
        // its result pipe ended (a task closed it): the bell is a write there, which could
        // land in a file that took its number. Its ring is read every `UNHEARD_LOOK` then.
        if let Some(peek) = peek.filter(|_| next.heard) {
            peek.data_bell().arm();
        }
        let request = link.request.clone();
        let pollable = request.as_deref().and_then(RequestPipe::pollable);
        let watching = next.want_write && pollable.is_none();
        let room = watching && request.as_deref().is_some_and(RequestPipe::watch_room);
        if peek.is_some_and(Peek::has_data) || room {
            disarm(peek, request.as_deref().filter(|_| watching));
            if room {
                flush_outlet(shared, link.w);
            }
            next = plan(shared, worker, link);
            continue;
        }
        let pidfd = worker.child.pidfd.as_ref().map(OwnedFd::as_fd);
        let mut timeout = next.deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if pidfd.is_none() {
            timeout = Some(timeout.map_or(POLL_EXIT, |t| t.min(POLL_EXIT)));
        }
        // Buffers kept for large frames go back once the worker had nothing to do for a
        // while (see `bulk.rs`), and so do the input buffers kept for later runs (`run.rs`).
        let holding = !next.busy
            && (reception.holds_large() || link.outlet.holds_large() || run::holds_spares());
        if holding {
            timeout = Some(timeout.map_or(bulk::KEEP_IDLE, |t| t.min(bulk::KEEP_IDLE)));
        }
        if peek.is_some() && !next.heard {
            timeout = Some(timeout.map_or(UNHEARD_LOOK, |t| t.min(UNHEARD_LOOK)));
        }
        let slept = Instant::now();
        let result_open = reception.lock().result_open;
        let polled = sys::poll(
            [
                Interest {
                    fd: or_wake(result_open.then_some(reception.pipe()), wake),
                    read: result_open,
                    write: false,
                },
                Interest { fd: wake, read: true, write: false },
                Interest {
                    fd: or_wake(pollable, wake),
                    read: false,
                    write: next.want_write && pollable.is_some(),
                },
                Interest { fd: or_wake(pidfd, wake), read: pidfd.is_some(), write: false },
            ],
            timeout,
        );
        disarm(peek, request.as_deref().filter(|_| watching));
        drop(request);
        let Ok([results, woken, write, ended]) = polled else { return };
        if holding && slept.elapsed() >= bulk::KEEP_IDLE {
            reception.release();
            link.outlet.release();
            run::release_spares();
        }
        if ended.read || (pidfd.is_none() && sys::has_ended(&worker.child)) {
            return;
        }
        if woken.read {
            sys::drain(wake);
        }
        if write.write || watching {
            flush_outlet(shared, link.w);
        }
        if results.read && result_open || peek.is_some_and(Peek::has_data) {
            reception.read(shared, &mut reception.lock());
        }
        next = plan(shared, worker, link);
    }
}

/// Withdraws the supervisor's requests to be rung: for results (`peek`), and for room if
/// `request`.
fn disarm(peek: Option<&Peek>, request: Option<&dyn RequestPipe>) {
    if let Some(peek) = peek {
        peek.data_bell().disarm();
    }
    if let Some(request) = request {
        request.unwatch_room();
    }
}

/// Writes what waits in worker `w`'s outbox.
fn flush_outlet(shared: &Shared, w: usize) {
    let outlet = shared.lock().slots[w].conn.as_ref().map(|c| c.outlet.clone());
    if let Some(outlet) = outlet {
        outlet.flush();
    }
}

/// `fd`, or, for a descriptor not watched, the eventfd, which never hangs up.
fn or_wake<'a>(fd: Option<BorrowedFd<'a>>, wake: BorrowedFd<'a>) -> BorrowedFd<'a> {
    fd.unwrap_or(wake)
}

/// Delivers outcomes to their sinks and records them as delivered.
fn finish<'b>(
    shared: &Shared,
    deliveries: Deliveries,
    bytes: &'b dyn Fn(std::ops::Range<usize>) -> &'b [u8],
) {
    if deliveries.is_empty() {
        return;
    }
    let count = deliveries.deliver_from(bytes, &shared.tally);
    let mut state = shared.lock();
    shared.delivered(&mut state, count);
}
