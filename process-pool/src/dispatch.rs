//! The pool's shared state: the queue, what each worker holds, and moving work between them.
//!
//! Work arrives as a [`Run`]: one job and the encoded inputs of one or more items. The queue
//! holds [`Slice`]s of runs not yet sent. Each worker slot holds the slices it was sent, in
//! order; the worker answers items strictly in order, so the first unanswered item of the
//! first slice (the *head*) is the one running. Everything here happens under one mutex,
//! never across a blocking call: writes to workers are non-blocking, and what does not fit in
//! the pipe waits in the worker's outbox for its supervisor to flush.

use std::collections::VecDeque;
use std::ops::Range;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use taskpool_core::{Direction, Exit, Side, TaskError};

use crate::codec;
use crate::config::ProcessConfig;
use crate::protocol::{self, FLUSH_EACH};
use crate::ship::Shipped;
use crate::sink::{Encoded, Sink, Tally, Value};
use crate::sys;
use crate::usage::Cost;

/// How long a batch of items should take in a worker: long enough to amortize a round trip,
/// short enough to balance load.
const BATCH_TARGET_NS: u64 = 200_000;
/// The most items sent in one batch frame.
pub(crate) const MAX_BATCH: usize = 4096;
/// Assumed time per item before any was measured: slow, so the first items go one by one.
const INITIAL_ITEM_NS: u64 = 1_000_000;

/// One job with the encoded inputs of its items.
pub(crate) struct Run {
    job: Arc<Shipped>,
    inputs: Vec<u8>,
    ends: Vec<usize>,
    pub(crate) sink: Box<dyn Sink>,
    timeout: Option<Duration>,
    /// How many items travel in one batch.
    batching: Batching,
}

/// How a run's items are grouped into batches.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Batching {
    /// As many as take about [`BATCH_TARGET_NS`] to run, up to this many.
    Adaptive(usize),
    /// Exactly this many (the user set a chunk size).
    Fixed(usize),
}

/// Encodes the inputs of a run before it is built.
pub(crate) struct RunBuilder {
    job: Arc<Shipped>,
    inputs: Vec<u8>,
    ends: Vec<usize>,
}

impl RunBuilder {
    pub(crate) fn new(job: Arc<Shipped>) -> Self {
        RunBuilder { job, inputs: Vec::new(), ends: Vec::new() }
    }

    /// Encodes one more input.
    ///
    /// # Errors
    ///
    /// The input cannot be serialized, or with the job's state it is over `limit` bytes.
    pub(crate) fn push<T: Serialize>(&mut self, input: &T, limit: usize) -> Result<(), TaskError> {
        let start = self.inputs.len();
        codec::encode_into(input, &mut self.inputs)
            .map_err(|e| TaskError::serialization(Side::Argument, Direction::Encode, e))?;
        let size = self.inputs.len() - start + self.job.state.len();
        if size > limit {
            self.inputs.truncate(start);
            return Err(TaskError::TooLarge {
                side: Side::Argument,
                size: size as u64,
                limit: limit as u64,
            });
        }
        self.ends.push(self.inputs.len());
        Ok(())
    }

    /// Appends one input that is already encoded (by [`codec`], in another process).
    pub(crate) fn push_encoded(&mut self, input: &[u8]) {
        self.inputs.extend_from_slice(input);
        self.ends.push(self.inputs.len());
    }

    /// How many inputs were encoded.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// The run, with where its results go.
    pub(crate) fn finish(
        self,
        sink: Box<dyn Sink>,
        timeout: Option<Duration>,
        batching: Batching,
    ) -> Run {
        let RunBuilder { job, inputs, ends } = self;
        Run { job, inputs, ends, sink, timeout, batching }
    }
}

impl Run {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn input(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.inputs[start..self.ends[i]]
    }
}

/// Items `items` of `run`.
pub(crate) struct Slice {
    pub(crate) run: Arc<Run>,
    pub(crate) items: Range<usize>,
}

/// Why the pool killed a worker: decides the error of the item it was running.
#[derive(Debug, Clone)]
pub(crate) enum KillReason {
    Timeout(Duration),
    Cancelled,
    Shutdown,
    Protocol(String),
    /// The worker reported that its task hit a limit and is dying of it: the task has its
    /// error already, and the next item never started, so it runs again elsewhere.
    LimitReached,
}

/// The write side of a worker's request pipe. It has a lock of its own, taken after the
/// pool's: frames are queued under the pool's lock, but written after it is released, so a
/// write (and the wake-up of the worker inside it) never holds up the rest of the pool.
#[derive(Debug)]
pub(crate) struct Writer {
    /// `None` once closed (the worker then exits when done). The supervisor holds another
    /// reference, for polling; the descriptor closes when both are gone.
    request: Option<Arc<OwnedFd>>,
    outbox: Vec<u8>,
    written: usize,
}

impl Writer {
    /// Writes what the pipe takes without blocking; returns whether bytes are left. A broken
    /// pipe is left for the supervisor to notice as the worker's end.
    pub(crate) fn flush(&mut self) -> bool {
        let Some(request) = &self.request else {
            self.outbox.clear();
            self.written = 0;
            return false;
        };
        while self.written < self.outbox.len() {
            match sys::write(request.as_fd(), &self.outbox[self.written..]) {
                Ok(0) => return true,
                Ok(n) => self.written += n,
                Err(_) => self.written = self.outbox.len(),
            }
        }
        self.outbox.clear();
        self.written = 0;
        false
    }

    /// Closes the pipe: the worker finishes what it holds and exits.
    pub(crate) fn close(&mut self) {
        self.request = None;
        self.outbox.clear();
        self.written = 0;
    }
}

/// A [`Writer`] behind its lock, with a flag that says, without taking the lock, whether
/// bytes were left in the outbox (so the supervisor must watch the pipe for room).
#[derive(Debug)]
pub(crate) struct Outlet {
    writer: Mutex<Writer>,
    backlog: AtomicBool,
}

impl Outlet {
    /// Locks the writer. Writes leave it consistent at every step, so a poisoned lock is
    /// usable.
    fn lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes what the pipe takes; returns whether bytes are left (and records it).
    pub(crate) fn flush(&self) -> bool {
        let mut writer = self.lock();
        let left = writer.flush();
        self.backlog.store(left, Ordering::Release);
        left
    }

    /// Whether the last flush left bytes behind.
    pub(crate) fn has_backlog(&self) -> bool {
        self.backlog.load(Ordering::Acquire)
    }
}

/// A worker with frames to write once the pool's lock is released; see [`Shared::flush`].
#[derive(Debug)]
pub(crate) struct Flush {
    w: usize,
    outlet: Arc<Outlet>,
    /// Its supervisor must be woken: its head item has a new deadline.
    wake: bool,
}

/// A live worker process, as the dispatcher sees it.
pub(crate) struct Conn {
    pub(crate) pid: libc::pid_t,
    pub(crate) outlet: Arc<Outlet>,
    /// The request pipe is still open (mirrors the writer, readable under the pool's lock).
    pub(crate) open: bool,
    /// Said hello: may be sent work.
    pub(crate) ready: bool,
    next_seq: u64,
    pub(crate) expect_seq: u64,
    /// Items sent to this worker in its life, for `max_tasks_per_worker`.
    served: u64,
    pub(crate) killed: Option<KillReason>,
}

impl Conn {
    pub(crate) fn new(pid: libc::pid_t, request: Arc<OwnedFd>) -> Self {
        let writer = Writer { request: Some(request), outbox: Vec::new(), written: 0 };
        Conn {
            pid,
            outlet: Arc::new(Outlet {
                writer: Mutex::new(writer),
                backlog: AtomicBool::new(false),
            }),
            open: true,
            ready: false,
            next_seq: 0,
            expect_seq: 0,
            served: 0,
            killed: None,
        }
    }

    /// Kills the worker (once) and remembers why.
    pub(crate) fn kill(&mut self, reason: KillReason) {
        if self.killed.is_none() {
            self.killed = Some(reason);
            // The pid is unreaped while this conn is in its slot, so it still names our child.
            let _ = sys::kill(self.pid, libc::SIGKILL);
        }
    }

    /// Closes the request pipe.
    pub(crate) fn close(&mut self) {
        self.open = false;
        self.outlet.lock().close();
        self.outlet.backlog.store(false, Ordering::Release);
    }
}

/// One worker position of the pool.
#[derive(Default)]
pub(crate) struct Slot {
    pub(crate) conn: Option<Conn>,
    /// Slices sent to the worker and not fully answered, in order.
    pub(crate) sent: VecDeque<Slice>,
    sent_items: usize,
    /// When the head item's clock started: when it was sent to an idle worker, or when the
    /// item before it was answered.
    head_since: Option<Instant>,
}

/// Counters of what happened in the pool's life.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) crashes: u64,
    pub(crate) timeouts: u64,
    pub(crate) workers_started: u64,
    pub(crate) requeued: u64,
    /// What the items that reported it cost, summed.
    pub(crate) cost: Cost,
}

/// Everything under the pool's lock.
pub(crate) struct State {
    pub(crate) queue: VecDeque<Slice>,
    pub(crate) slots: Vec<Slot>,
    /// No new work is accepted.
    pub(crate) closed: bool,
    /// The pool is being dropped: nothing queued will run.
    pub(crate) dropping: bool,
    /// Items accepted and not yet delivered.
    pub(crate) outstanding: usize,
    /// Failed worker starts in a row.
    pub(crate) start_failures: u32,
    /// Set when starts failed too often: the pool runs nothing more.
    pub(crate) start_error: Option<String>,
    /// Supervisor threads still running.
    pub(crate) supervisors: usize,
    /// Threads asleep on the pool's condition variable (shutdown, drop).
    waiters: usize,
    pub(crate) counters: Counters,
}

/// An item's outcome before delivery: its encoded result, as a range of a supervisor's read
/// buffer, and what it cost; or the failure.
pub(crate) type Outcome = Result<(Range<usize>, Cost), TaskError>;

/// Outcomes of consecutive items of a run, from the first item's index.
type Group = (Arc<Run>, usize, Vec<Outcome>);

/// Outcomes to hand to sinks once the lock is released.
#[derive(Default)]
pub(crate) struct Deliveries {
    groups: Vec<Group>,
    count: usize,
}

impl Deliveries {
    /// Adds the outcome of item `index` of `run`, joining the previous group when it continues.
    pub(crate) fn add(&mut self, run: &Arc<Run>, index: usize, outcome: Outcome) {
        self.count += 1;
        if let Some((last, first, outcomes)) = self.groups.last_mut() {
            if Arc::ptr_eq(last, run) && *first + outcomes.len() == index {
                outcomes.push(outcome);
                return;
            }
        }
        self.groups.push((run.clone(), index, vec![outcome]));
    }

    /// Fails every item of `slice` with `error`.
    pub(crate) fn fail(&mut self, slice: Slice, error: &TaskError) {
        for index in slice.items {
            self.add(&slice.run, index, Err(error.clone()));
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// How many outcomes are held.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Hands every outcome to its sink, reading encoded results from `buffer` and counting
    /// the outcomes in `tally`. Returns how many there were.
    pub(crate) fn deliver_from<'b>(
        self,
        buffer: &dyn Fn(Range<usize>) -> &'b [u8],
        tally: &Tally,
    ) -> usize {
        let count = self.count;
        for (run, first, outcomes) in self.groups {
            let outcomes: Vec<Encoded<'b>> = outcomes
                .into_iter()
                .map(|o| o.map(|(range, cost)| Value { bytes: buffer(range), cost }))
                .collect();
            run.sink.deliver(first, outcomes, tally);
        }
        count
    }
}

/// What every thread of a pool shares.
pub(crate) struct Shared {
    pub(crate) config: ProcessConfig,
    state: Mutex<State>,
    /// Signalled when `outstanding` reaches zero or a supervisor ends.
    changed: Condvar,
    /// One eventfd per slot, to wake its supervisor.
    pub(crate) wakes: Vec<OwnedFd>,
    /// Tasks that ended with a value or an error; kept outside the lock, see [`Tally`].
    pub(crate) tally: Tally,
    /// Moving average of the time a worker spends per item.
    item_ns: AtomicU64,
}

impl Shared {
    pub(crate) fn new(config: ProcessConfig, wakes: Vec<OwnedFd>) -> Self {
        let slots = (0..wakes.len()).map(|_| Slot::default()).collect();
        Shared {
            config,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                slots,
                closed: false,
                dropping: false,
                outstanding: 0,
                start_failures: 0,
                start_error: None,
                supervisors: 0,
                waiters: 0,
                counters: Counters::default(),
            }),
            changed: Condvar::new(),
            wakes,
            tally: Tally::default(),
            item_ns: AtomicU64::new(INITIAL_ITEM_NS),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent before anything that could
        // panic, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits on the pool's condition variable.
    pub(crate) fn wait<'a>(
        &self,
        mut state: MutexGuard<'a, State>,
        limit: Option<Duration>,
    ) -> MutexGuard<'a, State> {
        state.waiters += 1;
        let mut state = match limit {
            None => self.changed.wait(state).unwrap_or_else(PoisonError::into_inner),
            Some(limit) => {
                self.changed.wait_timeout(state, limit).unwrap_or_else(PoisonError::into_inner).0
            }
        };
        state.waiters -= 1;
        state
    }

    /// Wakes everyone waiting on the pool's condition variable.
    pub(crate) fn notify(&self) {
        self.changed.notify_all();
    }

    /// Wakes the supervisor of slot `w`.
    pub(crate) fn wake(&self, w: usize) {
        sys::notify(self.wakes[w].as_fd());
    }

    /// Records how long a worker spent on one item.
    pub(crate) fn record_item_time(&self, ns: u64) {
        let old = self.item_ns.load(Ordering::Relaxed);
        let new = old - old / 8 + ns / 8;
        self.item_ns.store(new.max(1), Ordering::Relaxed);
    }

    /// How many items make one batch, from the measured time per item.
    pub(crate) fn batch_target(&self) -> usize {
        let per_item = self.item_ns.load(Ordering::Relaxed).max(1);
        usize::try_from(BATCH_TARGET_NS / per_item).unwrap_or(MAX_BATCH).clamp(1, MAX_BATCH)
    }

    /// Queues a run and sends what the workers can take.
    pub(crate) fn submit(&self, run: Arc<Run>) {
        let n = run.len();
        if n == 0 {
            return;
        }
        let mut state = self.lock();
        let refusal = if state.closed {
            Some(TaskError::ShutDown)
        } else {
            state.start_error.clone().map(|reason| TaskError::WorkerStart { reason })
        };
        if let Some(error) = refusal {
            drop(state);
            let mut deliveries = Deliveries::default();
            deliveries.fail(Slice { run, items: 0..n }, &error);
            deliveries.deliver_from(&|_| &[], &self.tally);
            return;
        }
        state.outstanding += n;
        state.queue.push_back(Slice { run, items: 0..n });
        let flushes = self.pump_all(&mut state);
        drop(state);
        self.flush(flushes);
    }

    /// Queues work for every worker with room. Returns what to write once the lock is
    /// released.
    pub(crate) fn pump_all(&self, state: &mut State) -> Vec<Flush> {
        (0..state.slots.len()).filter_map(|w| self.pump(state, w)).collect()
    }

    /// Writes queued frames, without the pool's lock; wakes the supervisors that must watch
    /// their pipe (bytes left over) or a new deadline.
    pub(crate) fn flush(&self, flushes: impl IntoIterator<Item = Flush>) {
        for f in flushes {
            let left = f.outlet.flush();
            if left || f.wake {
                self.wake(f.w);
            }
        }
    }

    /// Queues work for worker `w` while it has room. Returns what to write once the pool's
    /// lock is released, if anything.
    pub(crate) fn pump(&self, state: &mut State, w: usize) -> Option<Flush> {
        let mut dropped = 0;
        let flush = self.fill(state, w, &mut dropped);
        if dropped > 0 {
            self.delivered(state, dropped);
        }
        flush
    }

    /// [`Shared::pump`]'s work; counts in `dropped` the cancelled tasks it discarded.
    fn fill(&self, state: &mut State, w: usize, dropped: &mut usize) -> Option<Flush> {
        let State { queue, slots, .. } = state;
        let slot = &mut slots[w];
        let conn = slot.conn.as_mut()?;
        if !conn.ready || conn.killed.is_some() || !conn.open {
            return None;
        }
        let target = self.batch_target();
        let room = self.config.get_in_flight() * target;
        let quota = self.config.get_config().get_max_tasks_per_worker().unwrap_or(u64::MAX);
        let limit = self.config.get_max_frame_bytes();
        let was_idle = slot.sent.is_empty();
        // Taken only once there is something to send: a caller may be writing meanwhile.
        let mut writer = None;
        while slot.sent_items < room && conn.served < quota {
            let Some(front) = queue.front_mut() else { break };
            if front.items.len() == 1 && front.run.sink.is_settled(front.items.start) {
                // A cancelled task: its handle is settled (and counted) already; drop it
                // unsent.
                queue.pop_front();
                *dropped += 1;
                continue;
            }
            let run = front.run.clone();
            let left_in_quota = usize::try_from(quota - conn.served).unwrap_or(usize::MAX);
            let batch = match run.batching {
                Batching::Adaptive(cap) => target.min(cap),
                Batching::Fixed(size) => size,
            };
            let take =
                batch.min(room - slot.sent_items).min(left_in_quota).clamp(1, front.items.len());
            // Cut the batch so that the frame stays within the limit.
            let mut bytes = run.job.state.len();
            let start = front.items.start;
            let mut count = 0;
            while count < take {
                let size = run.input(start + count).len() + 4;
                if count > 0 && bytes + size > limit {
                    break;
                }
                bytes += size;
                count += 1;
            }
            let items = start..start + count;
            front.items.start += count;
            if front.items.is_empty() {
                queue.pop_front();
            }
            let timeout = run.timeout.or(self.config.get_config().get_timeout());
            let flags = if timeout.is_some() { FLUSH_EACH } else { 0 };
            let writer = writer.get_or_insert_with(|| conn.outlet.lock());
            protocol::encode_batch(
                &mut writer.outbox,
                conn.next_seq,
                &run.job,
                flags,
                items.clone().map(|i| run.input(i)),
            );
            conn.next_seq += count as u64;
            conn.served += count as u64;
            slot.sent_items += count;
            slot.sent.push_back(Slice { run, items });
        }
        let added = writer.is_some();
        drop(writer);
        let mut wake = false;
        if was_idle {
            if let Some(head) = slot.sent.front() {
                slot.head_since = Some(Instant::now());
                wake = head.run.timeout.or(self.config.get_config().get_timeout()).is_some();
            }
        }
        (added || wake).then(|| Flush { w, outlet: conn.outlet.clone(), wake })
    }

    /// Kills worker `w` if its head item was cancelled or ran out of time. Returns when the
    /// head item's time runs out, if it has a limit.
    ///
    /// `answer_waiting` says whether the worker wrote something not read yet. It is asked only
    /// once the time is up: a result that arrived before the deadline but was not read yet
    /// (the supervisor was slow to run) wins over the timeout, so the deadline is returned as
    /// due and the caller reads first.
    pub(crate) fn police(
        &self,
        state: &mut State,
        w: usize,
        now: Instant,
        answer_waiting: impl FnOnce() -> bool,
    ) -> Option<Instant> {
        let slot = &mut state.slots[w];
        let head = slot.sent.front()?;
        let conn = slot.conn.as_mut()?;
        if conn.killed.is_some() {
            return None;
        }
        if head.run.sink.is_settled(head.items.start) {
            conn.kill(KillReason::Cancelled);
            return None;
        }
        let limit = head.run.timeout.or(self.config.get_config().get_timeout())?;
        let deadline = slot.head_since.unwrap_or(now) + limit;
        if now >= deadline {
            if answer_waiting() {
                return Some(now);
            }
            conn.kill(KillReason::Timeout(limit));
            state.counters.timeouts += 1;
            return None;
        }
        Some(deadline)
    }

    /// Records one answered item of worker `w` (the head item), read at `now`. Returns its
    /// run and index.
    ///
    /// # Errors
    ///
    /// The worker answered an item it was not sent, or out of order.
    pub(crate) fn answered(
        &self,
        state: &mut State,
        w: usize,
        seq: u64,
        now: Instant,
    ) -> Result<(Arc<Run>, usize), String> {
        let slot = &mut state.slots[w];
        let Some(conn) = slot.conn.as_mut() else {
            return Err("answer from a closed worker".into());
        };
        if seq != conn.expect_seq {
            return Err(format!("result for item {seq}, expected {}", conn.expect_seq));
        }
        let Some(head) = slot.sent.front_mut() else {
            return Err(format!("result for item {seq}, which was never sent"));
        };
        conn.expect_seq += 1;
        let index = head.items.start;
        let run = head.run.clone();
        head.items.start += 1;
        if head.items.is_empty() {
            slot.sent.pop_front();
        }
        slot.sent_items -= 1;
        slot.head_since = Some(now);
        Ok((run, index))
    }

    /// Whether worker `w` has answered everything it was sent and may be retired: it reached
    /// its task quota, or the pool is closing with nothing left to do.
    pub(crate) fn should_retire(&self, state: &State, w: usize) -> bool {
        let slot = &state.slots[w];
        let Some(conn) = &slot.conn else { return false };
        if !slot.sent.is_empty() && !state.dropping {
            return false;
        }
        let quota_done =
            self.config.get_config().get_max_tasks_per_worker().is_some_and(|q| conn.served >= q);
        state.dropping || quota_done || (state.closed && state.queue.is_empty())
    }

    /// Accounts for the end of worker `w`, which exited with `exit`: fails the item it was
    /// running, puts the rest back in the queue, and says whether the slot should start a new
    /// worker.
    pub(crate) fn worker_ended(
        &self,
        state: &mut State,
        w: usize,
        conn: Option<Conn>,
        exit: Exit,
        deliveries: &mut Deliveries,
    ) -> bool {
        let slot = &mut state.slots[w];
        let mut sent = std::mem::take(&mut slot.sent);
        slot.sent_items = 0;
        slot.head_since = None;
        let killed = conn.as_ref().and_then(|c| c.killed.clone());
        // A worker that reported a limit dies of it: the task that hit the limit has its
        // error already, and the next one never started.
        let head = match killed {
            Some(KillReason::LimitReached) => None,
            _ => sent.pop_front(),
        };
        if let Some(mut head) = head {
            let index = head.items.start;
            head.items.start += 1;
            let error = match killed {
                Some(KillReason::Timeout(limit)) => {
                    TaskError::TimedOut { limit, still_running: false }
                }
                Some(KillReason::Cancelled) => TaskError::Cancelled,
                Some(KillReason::Shutdown | KillReason::LimitReached) => TaskError::ShutDown,
                Some(KillReason::Protocol(reason)) => TaskError::Protocol { reason },
                None => {
                    state.counters.crashes += 1;
                    TaskError::Crashed(exit)
                }
            };
            deliveries.add(&head.run, index, Err(error));
            if !head.items.is_empty() {
                sent.push_front(head);
            }
        }
        if state.dropping {
            for slice in sent {
                deliveries.fail(slice, &TaskError::ShutDown);
            }
        } else {
            for slice in sent.into_iter().rev() {
                state.counters.requeued += slice.items.len() as u64;
                state.queue.push_front(slice);
            }
        }
        state.start_error.is_none() && !(state.closed && (state.dropping || state.queue.is_empty()))
    }

    /// Records that `count` items were delivered.
    pub(crate) fn delivered(&self, state: &mut State, count: usize) {
        state.outstanding -= count;
        // Waking nobody still costs a system call: only a shutdown or drop waits here.
        if state.outstanding == 0 && state.waiters > 0 {
            self.notify();
        }
    }

    /// Records a failed worker start. After too many in a row, fails every queued item and
    /// refuses new work.
    pub(crate) fn start_failed(
        &self,
        state: &mut State,
        reason: String,
        deliveries: &mut Deliveries,
    ) {
        state.start_failures += 1;
        if state.start_failures >= self.config.get_config().get_start_attempts() {
            let error = TaskError::WorkerStart { reason: reason.clone() };
            for slice in std::mem::take(&mut state.queue) {
                deliveries.fail(slice, &error);
            }
            state.start_error = Some(reason);
            self.notify();
        }
    }
}
