//! One thread per worker slot: starts the worker, reads its results, and replaces it when it
//! ends.
//!
//! The supervisor is the only reader of its worker's result pipe, the only closer of its
//! request pipe and the only reaper of its process. Other threads only write to the request
//! pipe (non-blocking, under the pool's lock) and kill the process (under the lock, while it is
//! unreaped). The supervisor wakes on: results, its eventfd (bytes left in the outbox, a new
//! deadline, shutdown), and the head item's deadline.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::thread;
use std::time::{Duration, Instant};

use taskpool_core::{Exit, TaskError};

use crate::deliveries::Deliveries;
use crate::launch::{self, Launched};
use crate::protocol::{self, BACKTRACES, Init};
use crate::scheduler::{Conn, KillReason, Process, Progress, Shared, StartFailure, State};
use crate::ship;
use crate::sys::{self, Interest};
use crate::wire::{FrameReader, Kind, SLACK};

/// How long a new worker may take to say hello (its initializer included).
const START_LIMIT: Duration = Duration::from_secs(30);

/// Supervises slot `w` until the pool no longer needs it. `started` hears whether the first
/// worker process could be spawned.
pub(crate) fn supervise(shared: Arc<Shared>, w: usize, started: Sender<Result<(), TaskError>>) {
    let mut started = Some(started);
    loop {
        let launched = match launch::launch(&init_for(&shared, w)) {
            Ok(launched) => launched,
            Err(error) => {
                if let Some(tx) = started.take() {
                    let _ = tx.send(Err(TaskError::WorkerStart { reason: error.reason() }));
                    break;
                }
                if !start_failed(&shared, &error) {
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

/// Records a failed start; returns whether to try again (after a pause that grows with the
/// failures in a row).
fn start_failed(shared: &Shared, failure: &StartFailure) -> bool {
    let mut deliveries = Deliveries::default();
    let mut state = shared.lock();
    let pause = shared.start_failed(&mut state, failure, &mut deliveries);
    let again = !state.closed;
    drop(state);
    finish(shared, deliveries, &|_| &[]);
    if again && !pause.is_zero() {
        thread::sleep(pause);
    }
    again
}

/// The OS side of a worker, for the scheduler.
struct Worker {
    pid: libc::pid_t,
}

impl Process for Worker {
    fn kill(&self) {
        // The pid is unreaped while its conn is in its slot, so it still names our child.
        let _ = sys::kill(self.pid, libc::SIGKILL);
    }

    fn progress(&self) -> Option<Progress> {
        None
    }

    fn cancel(&self, _seq: u64) -> Option<Progress> {
        None
    }
}

/// Runs one worker process from hello to exit. Returns whether the slot needs another.
fn serve_one(shared: &Shared, w: usize, launched: Launched) -> bool {
    let Launched { pid, request, result } = launched;
    // Writers hold the pool's lock: a full pipe must make them stop, not block.
    if let Err(e) = sys::set_nonblocking(request.as_fd()) {
        let _ = sys::kill(pid, libc::SIGKILL);
        let _ = sys::wait(pid);
        return start_failed(shared, &StartFailure::Os(e.to_string()));
    }
    let request = Arc::new(request);
    {
        let mut state = shared.lock();
        let process = Arc::new(Worker { pid });
        state.slots[w].conn = Some(Conn::new(pid.unsigned_abs(), process, request.clone()));
        state.counters.workers_started += 1;
    }
    let limit = shared.config.get_max_frame_bytes().saturating_add(SLACK);
    let mut reader = FrameReader::new(limit);
    match launch::handshake(result.as_fd(), &mut reader, START_LIMIT) {
        Ok(()) => {
            let mut state = shared.lock();
            shared.started(&mut state);
            if let Some(conn) = state.slots[w].conn.as_mut() {
                conn.ready = true;
            }
            let flushes = shared.pump_all(&mut state);
            drop(state);
            shared.flush(flushes);
            serve(shared, w, &result, request, &mut reader);
        }
        Err(failure) => {
            if let Some(conn) = shared.lock().slots[w].conn.as_mut() {
                conn.kill(KillReason::Shutdown, None);
            }
            drop(request);
            // It never said hello, so it holds no work.
            let (_, exit) = reap(shared, w, pid);
            let failure = match failure {
                StartFailure::Died(_) => StartFailure::Died(exit),
                other => other,
            };
            return start_failed(shared, &failure);
        }
    }
    let (conn, exit) = reap(shared, w, pid);
    let mut deliveries = Deliveries::default();
    let mut state = shared.lock();
    let again = shared.worker_ended(&mut state, w, conn, exit, None, &mut deliveries);
    let flushes = shared.pump_all(&mut state);
    drop(state);
    shared.flush(flushes);
    finish(shared, deliveries, &|_| &[]);
    again
}

/// Detaches the worker from its slot, so nobody signals it any more (once reaped, its pid
/// may be reused), then reaps it.
fn reap(shared: &Shared, w: usize, pid: libc::pid_t) -> (Option<Conn>, Exit) {
    let conn = shared.lock().slots[w].conn.take();
    (conn, sys::wait(pid).unwrap_or(Exit::Code(-1)))
}

/// What the supervisor waits for next.
struct Plan {
    /// When the head item runs out of time.
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
        if readable(result) {
            return true;
        }
        std::thread::yield_now();
    }
    false
}

/// Decides what to wait for, under the lock: kills for timeouts and cancellations, closes
/// the request pipe of a worker that should retire (dropping `request`, the supervisor's
/// reference to it).
fn plan(
    shared: &Shared,
    state: &mut State,
    w: usize,
    result: &OwnedFd,
    request: &mut Option<Arc<OwnedFd>>,
) -> Plan {
    let deadline = shared.police(state, w, Instant::now(), || readable(result));
    if shared.should_retire(state, w) {
        if let Some(conn) = state.slots[w].conn.as_mut() {
            conn.close();
        }
        *request = None;
    }
    let want_write = state.slots[w].conn.as_ref().is_some_and(|c| c.outlet.has_backlog());
    let busy = !state.slots[w].sent.is_empty();
    Plan { deadline, want_write, busy }
}

/// Serves a ready worker until its result pipe ends.
fn serve(
    shared: &Shared,
    w: usize,
    result: &OwnedFd,
    request: Arc<OwnedFd>,
    reader: &mut FrameReader,
) {
    let mut request = Some(request);
    let wake = shared.wakes[w].as_fd();
    let mut next = plan(shared, &mut shared.lock(), w, result, &mut request);
    loop {
        if next.busy && !next.want_write && linger(result, next.deadline) {
            match reader.fill(result.as_fd()) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    next = read_results(shared, w, reader, result, &mut request);
                    continue;
                }
            }
        }
        let timeout = next.deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let writable = request.as_deref().map_or(result.as_fd(), |r| r.as_fd());
        let ready = sys::poll(
            [
                Interest { fd: result.as_fd(), read: true, write: false },
                Interest { fd: wake, read: true, write: false },
                Interest { fd: writable, read: false, write: next.want_write && request.is_some() },
            ],
            timeout,
        );
        let Ok([results, woken, write]) = ready else { return };
        if woken.read {
            sys::drain(wake);
        }
        if write.write {
            let outlet = shared.lock().slots[w].conn.as_ref().map(|c| c.outlet.clone());
            if let Some(outlet) = outlet {
                outlet.flush();
            }
        }
        if results.read {
            match reader.fill(result.as_fd()) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    next = read_results(shared, w, reader, result, &mut request);
                    continue;
                }
            }
        }
        next = plan(shared, &mut shared.lock(), w, result, &mut request);
    }
}

/// Whether `fd` has bytes to read (or is at its end), without waiting.
fn readable(fd: &OwnedFd) -> bool {
    let interest = Interest { fd: fd.as_fd(), read: true, write: false };
    sys::poll([interest], Some(Duration::ZERO)).is_ok_and(|[ready]| ready.read)
}

/// Handles every complete frame in `reader` under one lock: records the answers (and counts
/// them as delivered), refills the worker, and plans the next wait; then hands the results to
/// their sinks outside the lock. Counting before handing over is safe: `shutdown` and `drop`
/// also wait for this thread to end, which it does only after handing over.
fn read_results(
    shared: &Shared,
    w: usize,
    reader: &mut FrameReader,
    result: &OwnedFd,
    request: &mut Option<Arc<OwnedFd>>,
) -> Plan {
    let mut deliveries = Deliveries::default();
    let now = Instant::now();
    let mut state = shared.lock();
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
                kill(&mut state.slots[w].conn, e.to_string());
                break;
            }
        };
        let (kind, range) = frame;
        if !matches!(kind, Kind::Done | Kind::Panicked | Kind::Failed) {
            kill(&mut state.slots[w].conn, format!("unexpected {kind:?} frame"));
            break;
        }
        let item = match protocol::decode_result(kind, reader.bytes(range.clone()), range) {
            Ok(item) => item,
            Err(e) => {
                kill(&mut state.slots[w].conn, e.to_string());
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
        match shared.answered(&mut state, w, item.meta.seq, now) {
            Ok((run, index)) => {
                let cost = item.meta.cost;
                shared.pace.record(cost.elapsed_ns);
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
                kill(&mut state.slots[w].conn, reason);
                break;
            }
        }
    }
    let flush = shared.pump(&mut state, w);
    shared.delivered(&mut state, deliveries.len());
    let next = plan(shared, &mut state, w, result, request);
    drop(state);
    shared.flush(flush);
    deliveries.deliver_from(&|range| reader.bytes(range), &shared.tally);
    next
}

/// Kills a worker that broke the protocol, for its head item.
fn kill(conn: &mut Option<Conn>, reason: String) {
    if let Some(conn) = conn {
        let seq = conn.expect_seq;
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
