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

use crate::deliveries::Deliveries;
use crate::launch::{self, Launched};
use crate::protocol::{self, BACKTRACES, Init};
use crate::scheduler::{Conn, KillReason, Process, Progress, Shared, StartFailure, State};
use crate::ship;
use crate::status::StatusPage;
use crate::sys::{self, ChildProcess, Interest};
use crate::wire::{FrameReader, Kind, SLACK};

/// How long a new worker may take to say hello (its initializer included).
const START_LIMIT: Duration = Duration::from_secs(30);

/// The most reads of a worker's result pipe after the worker ended (the pipe holds at most
/// 1 MiB, read 64 KiB or more at a time).
const MAX_DRAIN_READS: usize = 64;

/// How often a supervisor checks on its worker where the kernel has no pidfds.
const POLL_EXIT: Duration = Duration::from_millis(20);

/// Supervises slot `w` until the pool no longer needs it. `started` hears whether the first
/// worker process could be spawned.
pub(crate) fn supervise(shared: Arc<Shared>, w: usize, started: Sender<Result<(), TaskError>>) {
    let mut started = Some(started);
    loop {
        let launched = match launch::launch(&init_for(&shared, w)) {
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
        if let Some(tx) = started.take() {
            let _ = tx.send(Ok(()));
        }
        if !serve_one(&shared, w, launched) {
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
        flags: if shared_config.get_backtraces() { BACKTRACES } else { 0 },
        initializer: shared_config.get_initializer().map(|f| ship::offset_of(f as usize)),
        memory_limit: config.get_memory_limit(),
        // The kernel counts whole seconds: round up.
        cpu_time_limit: config
            .get_cpu_time_limit()
            .map(|limit| limit.as_secs() + u64::from(limit.subsec_nanos() > 0)),
        name: format!("{}-{w}", shared_config.get_name_prefix()),
    }
}

/// Records a failed start; returns whether to try again, after a pause that grows with the
/// failures in a row (cut short if the pool closes meanwhile).
fn start_failed(shared: &Shared, w: usize, failure: &StartFailure) -> bool {
    let mut deliveries = Deliveries::default();
    let mut state = shared.lock();
    let pause = shared.start_failed(&mut state, failure, &mut deliveries);
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
    page: StatusPage,
}

impl Process for Worker {
    fn kill(&self) {
        sys::kill_group(&self.child);
    }

    fn progress(&self) -> Option<Progress> {
        Some(self.page.progress())
    }

    fn cancel(&self, seq: u64) -> Option<Progress> {
        Some(self.page.cancel(seq))
    }
}

/// A supervisor's side of one worker's pipes, and how far the worker got in its start.
struct Link {
    w: usize,
    result: OwnedFd,
    /// The supervisor's reference to the request pipe, for polling; `None` once closed.
    request: Option<Arc<OwnedFd>>,
    reader: FrameReader,
    /// The result pipe has not reached its end.
    result_open: bool,
    /// The worker said hello.
    ready: bool,
    /// Before its hello: when it must have said it.
    start_deadline: Instant,
    /// Why the worker did not start, if it said.
    refused: Option<String>,
}

/// Runs one worker process from spawn to reaping. Returns whether the slot needs another.
fn serve_one(shared: &Shared, w: usize, launched: Launched) -> bool {
    let Launched { child, page, request, result } = launched;
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
    let worker = Arc::new(Worker { child, page });
    let request = Arc::new(request);
    {
        let mut state = shared.lock();
        let conn = Conn::new(pid.unsigned_abs(), worker.clone(), request.clone());
        state.slots[w].conn = Some(conn);
        state.counters.workers_started += 1;
    }
    let limit = shared.config.get_max_frame_bytes().saturating_add(SLACK);
    let mut link = Link {
        w,
        result,
        request: Some(request),
        reader: FrameReader::new(limit),
        result_open: true,
        ready: false,
        start_deadline: Instant::now() + START_LIMIT,
        refused: None,
    };
    serve(shared, &worker, &mut link);

    // The process ended. What it started and left in its group dies now (its zombie keeps
    // the group's id from being reused); then what it wrote last is read, and it is reaped.
    sys::kill_group(&worker.child);
    // What the pipe holds, not what a forked copy that escaped the group may still write.
    for _ in 0..MAX_DRAIN_READS {
        match link.reader.fill(link.result.as_fd()) {
            Ok(n) if n > 0 && link.result_open => read_frames(shared, &mut link),
            _ => break,
        }
    }
    let (conn, progress) = {
        let mut state = shared.lock();
        (state.slots[w].conn.take(), worker.progress())
    };
    let exit = sys::wait_child(&worker.child, true).ok().flatten().unwrap_or(Exit::Code(-1));
    if !link.ready {
        let killed = conn.as_ref().and_then(|c| c.killed.clone());
        let failure = match (link.refused.take(), killed) {
            (Some(reason), _) => StartFailure::Refused(reason),
            (None, Some(k)) if matches!(k.reason, KillReason::Timeout(_)) => {
                StartFailure::NotReady(START_LIMIT)
            }
            // Killed by the pool as it closed: not a failure.
            (None, Some(_)) => return !shared.lock().closed,
            (None, None) => StartFailure::Died(exit),
        };
        return start_failed(shared, w, &failure);
    }
    let mut deliveries = Deliveries::default();
    let mut state = shared.lock();
    let again = shared.worker_ended(&mut state, w, conn, exit, progress, &mut deliveries);
    let flushes = shared.pump_all(&mut state);
    drop(state);
    shared.flush(flushes);
    finish(shared, deliveries, &|_| &[]);
    again
}

/// What the supervisor waits for next.
struct Plan {
    /// When the head item (or, before its hello, the worker's start) runs out of time.
    deadline: Option<Instant>,
    /// Bytes wait in the outbox: watch the request pipe for room.
    want_write: bool,
    /// The worker holds work, so a result is due soon.
    busy: bool,
}

/// How long a supervisor whose worker holds work polls for its result before it sleeps; see
/// the worker's `linger`.
const LINGER: Duration = Duration::from_micros(50);

/// Polls `result` for up to [`LINGER`] (never past `deadline`), yielding between polls.
/// Returns whether it is readable.
fn linger(result: &OwnedFd, deadline: Option<Instant>) -> bool {
    let until = deadline.map_or(Instant::now() + LINGER, |d| d.min(Instant::now() + LINGER));
    while Instant::now() < until {
        if readable(result.as_fd()) {
            return true;
        }
        std::thread::yield_now();
    }
    false
}

/// Decides what to wait for, under the lock: kills for timeouts and cancellations (and a
/// worker that does not start in time), closes the request pipe of a worker that should
/// retire (dropping the supervisor's reference to it).
fn plan(shared: &Shared, state: &mut State, link: &mut Link) -> Plan {
    let w = link.w;
    if !link.ready {
        if Instant::now() >= link.start_deadline {
            if let Some(conn) = state.slots[w].conn.as_mut() {
                conn.kill(KillReason::Timeout(START_LIMIT), None);
            }
        }
        return Plan { deadline: Some(link.start_deadline), want_write: false, busy: false };
    }
    let result = link.result.as_fd();
    let deadline = shared.police(state, w, Instant::now(), || link.result_open && readable(result));
    if shared.should_retire(state, w) {
        if let Some(conn) = state.slots[w].conn.as_mut() {
            conn.close();
        }
        link.request = None;
    }
    let want_write = state.slots[w].conn.as_ref().is_some_and(|c| c.outlet.has_backlog());
    let busy = !state.slots[w].sent.is_empty();
    Plan { deadline, want_write, busy }
}

/// Serves a worker until its process ends.
fn serve(shared: &Shared, worker: &Worker, link: &mut Link) {
    let wake = shared.wakes[link.w].as_fd();
    let mut next = plan(shared, &mut shared.lock(), link);
    loop {
        if link.result_open && next.busy && !next.want_write && linger(&link.result, next.deadline)
        {
            read_some(shared, worker, link);
            next = plan(shared, &mut shared.lock(), link);
            continue;
        }
        let pidfd = worker.child.pidfd.as_ref().map(OwnedFd::as_fd);
        let mut timeout = next.deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if pidfd.is_none() {
            timeout = Some(timeout.map_or(POLL_EXIT, |t| t.min(POLL_EXIT)));
        }
        let result = link.result.as_fd();
        let request = link.request.as_deref().map(OwnedFd::as_fd);
        let ready = sys::poll(
            [
                Interest {
                    fd: or_wake(link.result_open.then_some(result), wake),
                    read: link.result_open,
                    write: false,
                },
                Interest { fd: wake, read: true, write: false },
                Interest {
                    fd: or_wake(request, wake),
                    read: false,
                    write: next.want_write && request.is_some(),
                },
                Interest { fd: or_wake(pidfd, wake), read: pidfd.is_some(), write: false },
            ],
            timeout,
        );
        let Ok([results, woken, write, ended]) = ready else { return };
        if ended.read || (pidfd.is_none() && sys::has_ended(&worker.child)) {
            return;
        }
        if woken.read {
            sys::drain(wake);
        }
        if write.write {
            let outlet = shared.lock().slots[link.w].conn.as_ref().map(|c| c.outlet.clone());
            if let Some(outlet) = outlet {
                outlet.flush();
            }
        }
        if results.read && link.result_open {
            read_some(shared, worker, link);
        }
        next = plan(shared, &mut shared.lock(), link);
    }
}

/// `fd`, or, for a descriptor not watched, the eventfd, which never hangs up.
fn or_wake<'a>(fd: Option<BorrowedFd<'a>>, wake: BorrowedFd<'a>) -> BorrowedFd<'a> {
    fd.unwrap_or(wake)
}

/// Reads what the result pipe holds and handles the frames. At the pipe's end with the
/// process still running (not exiting), the worker can never answer again: a task closed its
/// descriptor, or replaced the process with `exec`. It is killed for its running item.
fn read_some(shared: &Shared, worker: &Worker, link: &mut Link) {
    match link.reader.fill(link.result.as_fd()) {
        Ok(0) => {
            link.result_open = false;
            if !sys::is_exiting(worker.child.pid) {
                let mut state = shared.lock();
                let reason = "the worker's result pipe was closed while it ran (a task closed \
                              descriptor 4 or replaced the process with exec)";
                kill_for_protocol(&mut state.slots[link.w].conn, reason.into());
            }
        }
        Ok(_) => read_frames(shared, link),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(_) => link.result_open = false,
    }
}

/// Whether `fd` has bytes to read (or is at its end), without waiting.
fn readable(fd: BorrowedFd<'_>) -> bool {
    let interest = Interest { fd, read: true, write: false };
    sys::poll([interest], Some(Duration::ZERO)).is_ok_and(|[ready]| ready.read)
}

/// Handles every complete frame in the link's reader under one lock: the hello (or the
/// refusal) of a starting worker, then results: records the answers (and counts them as
/// delivered) and refills the worker; then hands the results to their sinks outside the
/// lock. Counting before handing over is safe: `shutdown` and `drop` also wait for this
/// thread to end, which it does only after handing over.
fn read_frames(shared: &Shared, link: &mut Link) {
    let w = link.w;
    let mut deliveries = Deliveries::default();
    let now = Instant::now();
    let mut state = shared.lock();
    let reader = &mut link.reader;
    let mut hello = false;
    loop {
        let Some(killed) = state.slots[w].conn.as_ref().map(|c| c.killed.is_some()) else {
            reader.discard();
            break;
        };
        let frame = match reader.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) if killed => {
                reader.discard();
                break;
            }
            Err(e) => {
                kill_for_protocol(&mut state.slots[w].conn, e.to_string());
                break;
            }
        };
        let (kind, range) = frame;
        if !link.ready {
            match kind {
                Kind::Hello => {
                    link.ready = true;
                    hello = true;
                    shared.started(&mut state);
                    if let Some(conn) = state.slots[w].conn.as_mut() {
                        conn.ready = true;
                    }
                    continue;
                }
                Kind::InitFailed => {
                    let reason = String::from_utf8_lossy(reader.bytes(range)).into_owned();
                    link.refused = Some(reason);
                }
                other => {
                    link.refused = Some(format!("the worker sent {other:?} before its hello"));
                    if let Some(conn) = state.slots[w].conn.as_mut() {
                        conn.kill(KillReason::Shutdown, None);
                    }
                }
            }
            reader.discard();
            break;
        }
        if !matches!(kind, Kind::Done | Kind::Panicked | Kind::Failed) {
            kill_for_protocol(&mut state.slots[w].conn, format!("unexpected {kind:?} frame"));
            break;
        }
        let item = match protocol::decode_result(kind, reader.bytes(range.clone()), range) {
            Ok(item) => item,
            Err(e) => {
                kill_for_protocol(&mut state.slots[w].conn, e.to_string());
                break;
            }
        };
        if state.slots[w].conn.as_ref().is_none_or(|c| !c.accepts(item.meta.seq)) {
            // After a kill, only results of items before the one it was for count: that
            // item gets the kill's error, whatever raced with it. Later bytes are dropped as
            // they come, so they cannot pile up until the worker ends.
            reader.discard();
            break;
        }
        match shared.answered(&mut state, w, item.meta.seq, now, item.meta.cost.elapsed_ns) {
            Ok((run, index)) => {
                let cost = item.meta.cost;
                state.counters.cost.add(cost);
                let limit_reached = matches!(item.outcome, Err(TaskError::ResourceLimit { .. }));
                let outcome = item
                    .outcome
                    .map(|range| (range, cost))
                    .map_err(|e| with_limit(e, shared.config.get_max_frame_bytes()));
                deliveries.add(&run, index, outcome);
                if limit_reached {
                    // The worker dies of it right after saying so: send it nothing more.
                    if let Some(conn) = state.slots[w].conn.as_mut() {
                        conn.kill(KillReason::LimitReached, None);
                    }
                    break;
                }
            }
            Err(reason) => {
                kill_for_protocol(&mut state.slots[w].conn, reason);
                break;
            }
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
    let reader = &link.reader;
    deliveries.deliver_from(&|range| reader.bytes(range), &shared.tally);
}

/// Kills a worker that broke the protocol, for the item it runs (or its head item).
fn kill_for_protocol(conn: &mut Option<Conn>, reason: String) {
    if let Some(conn) = conn {
        let running = conn.process.progress().and_then(Progress::running);
        let seq = running.filter(|&r| r >= conn.expect_seq).unwrap_or(conn.expect_seq);
        conn.kill(KillReason::Protocol(reason), Some(seq));
    }
}

/// Fills in the frame limit of a too-large error reported by a worker.
fn with_limit(error: TaskError, frame_limit: usize) -> TaskError {
    match error {
        TaskError::TooLarge { side, size, .. } => {
            TaskError::TooLarge { side, size, limit: frame_limit as u64 }
        }
        other => other,
    }
}

/// Delivers outcomes to their sinks and records them as delivered.
fn finish<'b>(
    shared: &Shared,
    deliveries: Deliveries,
    bytes: &dyn Fn(std::ops::Range<usize>) -> &'b [u8],
) {
    if deliveries.is_empty() {
        return;
    }
    let count = deliveries.deliver_from(bytes, &shared.tally);
    let mut state = shared.lock();
    shared.delivered(&mut state, count);
}
