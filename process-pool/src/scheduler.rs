//! The scheduler: the queue, what each worker slot holds, and the rules that move work between
//! them (sending, requeueing, deadlines, cancellation, retirement, start failures, accounting).
//!
//! Everything here runs under the pool's lock and never blocks. The OS side of a worker (kill
//! it, read its status page, ask it to skip an item) is behind [`Process`], so the rules are
//! unit-tested against a fake (see the tests at the end); frames go out through the worker's
//! [`Outlet`], written after the lock is released. Spawning, reading results and reaping are
//! the supervisor's (`supervisor.rs`).
//!
//! Each slot holds the slices it sent to its worker, in order, numbered by the worker's
//! sequence numbers; the worker answers strictly in order, so the first unanswered item is
//! the *head*. Which item is *running* is what the worker's status page says, and that item
//! alone is blamed when the worker ends.
//!
//! Lock order (see `README.md`): the pool's lock, then a handle's lock (`is_settled`), an
//! outlet's lock or the inbox's; sinks and cancellation hooks run with no pool lock held.
//! [`Shared::lock`] returns a [`Locked`], which takes in the inbox when it is released.

use std::collections::VecDeque;
use std::ops::Range;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use smallvec::SmallVec;

use taskpool_core::{Exit, Resource, TaskError};

use crate::batching::{self, BATCH_TARGET_NS, Pace, Paces};
use crate::bulk;
use crate::config::ProcessConfig;
use crate::deliveries::Deliveries;
use crate::inbox::Inbox;
use crate::oom;
use crate::outlet::{Flush, Flushes, Handover, Outlet, RequestPipe};
use crate::protocol::{CANCELLABLE, CHECK_DESCRIPTORS, FLUSH_EACH, FLUSH_SOON, MEASURE};
use crate::reception::{PIPE_CLOSED, Reception, kill_for_protocol};
use crate::run::{Batching, Run, Slice};
use crate::sink::{Sink, Tally};
use crate::sys;
use crate::usage::Cost;
use crate::waiting::Waiting;
use crate::worker::{EXIT_NO_ROOM, EXIT_PIPE_CLOSED};

mod stacking;

use stacking::{Crowd, TINY_OVERDUE, WORKERS_PER_CPU};

/// The OS side of one worker process, as the scheduler uses it.
pub(crate) trait Process: Send + Sync {
    /// Kills the worker and what it started (its process group) with SIGKILL. Safe to call
    /// until the supervisor reaps it, which it does only after taking it out of its slot.
    fn kill(&self);

    /// What the worker's status page says, if it has one.
    fn progress(&self) -> Option<Progress>;

    /// Asks the worker to skip item `seq` when it comes to it. Returns what the worker had
    /// started by then (if `seq` is not among it, the item will not run), or `None` if it
    /// cannot be asked (no status page).
    fn cancel(&self, seq: u64) -> Option<Progress>;

    /// Asks the worker to skip every batch it was sent that starts before item `before` and
    /// that it has not started. Returns what it had started by then: the batches that start
    /// at or after its `started` are skipped. `None` if it cannot be asked (no status page).
    fn recall(&self, before: u64) -> Option<Progress>;

    /// Whether the worker is dying of a signal (a crash, or a kill from outside): it ends of
    /// itself, once the kernel has written its core dump if it writes one.
    fn dying_of_signal(&self) -> bool;

    /// Tells the worker that its result pipe ended: it leaves after the item it runs, its
    /// results written to its ring (see `StatusPage::ask_to_leave`). Returns `false` if it
    /// cannot be told (no status page, and no ring to hand its results over).
    fn ask_to_leave(&self) -> bool;
}

/// How far a worker got, from its status page: it started items `0..started` and finished
/// items `0..finished` (its sequence numbers). `started == finished + 1` while an item runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    pub(crate) started: u64,
    pub(crate) finished: u64,
}

impl Progress {
    /// The item running now, if any.
    pub(crate) fn running(self) -> Option<u64> {
        (self.started > self.finished).then(|| self.started - 1)
    }

    /// The item the worker ran last, if it runs none now and the pool has not had its answer
    /// (the pool expects item `expected` next).
    pub(crate) fn last_unanswered(self, expected: u64) -> Option<u64> {
        self.finished.checked_sub(1).filter(|&last| last >= expected && self.running().is_none())
    }
}

/// How often a supervisor looks again at a worker dying of a signal past its item's deadline
/// (it watches for the worker's end meanwhile).
const DYING_LOOK: Duration = Duration::from_millis(20);

/// How many workers may die holding an item they had not started before the item fails
/// with their crash (see `Shared::worker_ended`).
const POISON_DEATHS: u32 = 3;

/// Why the pool killed a worker: decides the error of the item it was killed for.
#[derive(Debug, Clone)]
pub(crate) enum KillReason {
    Timeout(Duration),
    Cancelled,
    Shutdown,
    Protocol(String),
    /// The worker reported that its task hit a limit and is dying of it: the task has its
    /// error already, and the next item never started, so it runs again elsewhere.
    LimitReached,
    /// The worker, retired after its task quota with everything answered, did not end.
    Retired,
}

/// A kill, and the item it was for (the item running, or the head, at the time).
#[derive(Debug, Clone)]
pub(crate) struct Kill {
    pub(crate) reason: KillReason,
    pub(crate) seq: Option<u64>,
}

/// A live worker process, as the scheduler sees it.
pub(crate) struct Conn {
    pub(crate) pid: u32,
    pub(crate) process: Arc<dyn Process>,
    pub(crate) outlet: Arc<Outlet>,
    /// The request pipe is still open.
    pub(crate) open: bool,
    /// Said hello: may be sent work.
    pub(crate) ready: bool,
    next_seq: u64,
    /// The sequence number of the head item: the first not answered.
    pub(crate) expect_seq: u64,
    /// Items sent to this worker in its life, for `max_tasks_per_worker`.
    served: u64,
    pub(crate) killed: Option<Kill>,
    /// Set when it has ended of a SIGKILL the pool did not send, which the kernel's OOM
    /// killer sent: the memory limit of its cgroup (`oom.rs`).
    pub(crate) out_of_memory: Option<u64>,
    /// Where its results arrive, for a caller that reads its own (none in unit tests).
    pub(crate) reception: Option<Arc<Reception>>,
    /// Its result pipe ended while it ran and it was asked to leave: see
    /// [`Shared::pipe_closed`].
    unheard: Option<Unheard>,
}

/// A worker asked to leave because its result pipe ended (`Conn::unheard`): the item it ran
/// when last seen, and since when the pool has seen it run that item.
#[derive(Debug, Clone, Copy)]
struct Unheard {
    running: Option<u64>,
    since: Instant,
}

impl Conn {
    pub(crate) fn new(pid: u32, process: Arc<dyn Process>, request: Arc<dyn RequestPipe>) -> Self {
        Conn {
            pid,
            process,
            outlet: Arc::new(Outlet::new(request)),
            open: true,
            ready: false,
            next_seq: 0,
            expect_seq: 0,
            served: 0,
            killed: None,
            out_of_memory: None,
            reception: None,
            unheard: None,
        }
    }

    /// Kills the worker (once), for item `seq`, and remembers why.
    pub(crate) fn kill(&mut self, reason: KillReason, seq: Option<u64>) {
        if self.killed.is_none() {
            self.killed = Some(Kill { reason, seq });
            self.process.kill();
        }
    }

    /// Whether a result frame for item `seq` still counts: not after a kill, except for
    /// items before the one the kill was for (they finished before it).
    pub(crate) fn accepts(&self, seq: u64) -> bool {
        match &self.killed {
            None => true,
            Some(Kill { seq: Some(k), .. }) => seq < *k,
            Some(_) => false,
        }
    }

    /// Whether it may be sent work now (at most `quota` items in its life).
    fn takes_work(&self, quota: u64) -> bool {
        self.ready && self.killed.is_none() && self.open && self.served < quota
    }

    /// Closes the request pipe.
    pub(crate) fn close(&mut self) {
        self.open = false;
        self.outlet.close();
    }
}

/// How long an item estimated at `item_ns` may run before its worker counts as stuck on it
/// and is sent nothing more until it answers: four times the estimate, and at least
/// [`OVERDUE_FLOOR`].
fn overdue_after(item_ns: u64) -> Duration {
    Duration::from_nanos(item_ns.saturating_mul(4)).max(OVERDUE_FLOOR)
}

/// How long `head` may run before its worker counts as stuck on it: [`overdue_after`] its
/// job's estimate, or, where tiny work was stacked behind it (`stacked`, see `stacking.rs`),
/// [`TINY_OVERDUE`]: what waits behind it then goes to an idle worker soon. That holds
/// whatever the estimate says by then: a call of the same function that ran long elsewhere
/// may have raised it since the work was stacked (then the head, tiny as it was measured,
/// would keep that work from idle workers for four times the new estimate).
fn overdue_for(head: &Slice, stacked: bool) -> Duration {
    if stacked { TINY_OVERDUE } else { overdue_after(head.run.job.pace.item_ns()) }
}

/// Whether the head of `sent`, running since `since`, has run past [`overdue_for`].
fn is_overdue(since: Option<Instant>, sent: &VecDeque<Slice>, stacked: bool) -> bool {
    since
        .zip(sent.front())
        .is_some_and(|(since, head)| since.elapsed() > overdue_for(head, stacked))
}

/// How long a worker asked to leave because its result pipe ended may run on with one item
/// before it is killed for it (see [`Shared::unheard_due`]): four times its job's estimate
/// (`item_ns`), and at least [`UNHEARD_GRACE_FLOOR`].
fn unheard_grace(item_ns: u64) -> Duration {
    Duration::from_nanos(item_ns.saturating_mul(4)).max(UNHEARD_GRACE_FLOOR)
}

/// The shortest time a worker that can no longer ring its parent may run on with the item
/// it ran then: an item of a job with no estimate yet, or of tiny items, that started just
/// after another closed the pipe, returns well before it.
const UNHEARD_GRACE_FLOOR: Duration = Duration::from_millis(100);

/// The shortest time an item runs before its worker counts as stuck on it: far past a
/// batch's worth of work, so that a worker busy as expected keeps its next batch in hand.
const OVERDUE_FLOOR: Duration = Duration::from_millis(10);

/// One worker position of the pool.
#[derive(Default)]
pub(crate) struct Slot {
    pub(crate) conn: Option<Conn>,
    /// Slices sent to the worker and not fully answered, in order.
    pub(crate) sent: VecDeque<Slice>,
    /// The work those slices hold, as their jobs' estimates said when they were sent.
    load_ns: u64,
    /// When the head item's clock started: when it was sent to an idle worker, or when the
    /// item before it was answered.
    head_since: Option<Instant>,
    /// The slot's last start failed (and counted): until it says hello again, it cannot be
    /// counted on to run what is queued.
    start_failing: bool,
    /// When its supervisor looks again at the latest, for work held behind the head item
    /// (see [`Shared::shed`]): work that goes behind the head wakes it if that is later than
    /// the head becomes overdue, or if it does not look.
    watch_at: Option<Instant>,
    /// Tiny work was stacked behind its head (see `stacking.rs`) since it last held nothing
    /// or had work taken back: its head is overdue sooner ([`overdue_for`]).
    stacked: bool,
    /// A head item with a time limit that had not started when its time would have run out
    /// (its worker stopped, or given no CPU): its time counts from when it was seen started.
    late_start: Option<LateStart>,
    /// The pace of the job whose items the worker answered last: if it leaves because its
    /// result pipe was closed ([`EXIT_PIPE_CLOSED`]) with every answer through, the item it
    /// ran last (of that job) closed it.
    last_pace: Option<Arc<Pace>>,
}

/// See [`Slot::late_start`].
#[derive(Debug, Clone, Copy)]
struct LateStart {
    /// The item's sequence number.
    seq: u64,
    /// When [`Shared::police`] first saw it started, if it has.
    seen_started: Option<Instant>,
}

/// How often [`Shared::police`] looks again at a head item that had not started when its
/// time limit would have run out: a fraction of the limit, so that a time limit runs that
/// much late at most when its worker was stopped.
fn start_look(limit: Duration) -> Duration {
    (limit / 16).clamp(Duration::from_millis(1), Duration::from_millis(20))
}

/// Whether a worker that holds `sent` holds work behind its head item that was not taken
/// back.
fn holds_behind(sent: &VecDeque<Slice>) -> bool {
    sent.front().is_some_and(|head| !head.recalled) && sent.iter().skip(1).any(|s| !s.recalled)
}

/// Why a worker did not start.
#[derive(Debug)]
pub(crate) enum StartFailure {
    /// The OS would not start a process or make its pipes (process, descriptor or memory
    /// limits): what it said.
    Os(String),
    /// The worker refused to serve (its initializer or start checks failed), and why.
    Refused(String),
    /// The worker ended before it said hello.
    Died(Exit),
    /// The worker said nothing in time.
    NotReady(Duration),
}

/// Whether a worker that ended so was most likely killed from outside: by SIGKILL (`kill
/// -9`, the OOM killer) or SIGTERM (what `kill PID` sends), which a worker does not raise
/// itself. That says nothing about its next start, nor about the item it was sent.
fn killed_from_outside(exit: Exit) -> bool {
    matches!(exit, Exit::Signal(libc::SIGKILL | libc::SIGTERM))
}

impl StartFailure {
    /// Whether it counts toward `start_attempts`: a worker killed from outside before its
    /// hello ([`killed_from_outside`]) says nothing about the next start.
    fn counts(&self) -> bool {
        !matches!(self, StartFailure::Died(exit) if killed_from_outside(*exit))
    }

    /// Why, for [`TaskError::WorkerStart`]: said once, with the OS's own words.
    pub(crate) fn reason(&self) -> String {
        match self {
            StartFailure::Os(cause) => format!("cannot start a worker process: {cause}"),
            StartFailure::Refused(reason) => reason.clone(),
            StartFailure::Died(exit @ Exit::Signal(_)) => {
                format!("the worker was {exit} before it was ready")
            }
            StartFailure::Died(exit) => format!("the worker {exit} before it was ready"),
            StartFailure::NotReady(limit) => format!(
                "the worker was not ready after {limit:?}, the most a worker's start, the \
                 pool's initializer included, may take (raise `ProcessConfig::start_limit`, \
                 or do longer set-up in the tasks, on first use)"
            ),
        }
    }
}

/// Failed starts by cause, over the pool's life.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StartFailures {
    pub(crate) os: u64,
    pub(crate) refused: u64,
    pub(crate) died: u64,
    pub(crate) killed: u64,
    pub(crate) not_ready: u64,
}

impl StartFailures {
    /// The failures that count toward `start_attempts` (all but workers killed from outside).
    pub(crate) fn counted(&self) -> u64 {
        self.os + self.refused + self.died + self.not_ready
    }
}

/// Counters of what happened in the pool's life.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) crashes: u64,
    pub(crate) timeouts: u64,
    pub(crate) workers_started: u64,
    /// Workers retired at their task quota (`max_tasks_per_worker`) while the pool served.
    pub(crate) retired: u64,
    pub(crate) requeued: u64,
    pub(crate) start_failures: StartFailures,
    /// What the items that reported it cost, summed.
    pub(crate) cost: Cost,
}

/// Everything under the pool's lock.
pub(crate) struct State {
    /// Work not yet sent, by job, the jobs served in turn.
    pub(crate) queue: Waiting,
    pub(crate) slots: Vec<Slot>,
    /// No new work is accepted.
    pub(crate) closed: bool,
    /// The pool is being dropped: nothing queued will run.
    pub(crate) dropping: bool,
    /// Items accepted and not yet delivered.
    pub(crate) outstanding: usize,
    /// Counted failed worker starts in a row.
    pub(crate) start_failures: u32,
    /// Workers that died of themselves before they started anything, since a worker last
    /// answered for the first time (see [`Shared::restart_pause`]).
    fruitless_deaths: u32,
    /// Set while starts fail `start_attempts` times in a row: work is refused with it until a
    /// worker starts again.
    pub(crate) start_error: Option<String>,
    /// Supervisor threads still running.
    pub(crate) supervisors: usize,
    /// Threads asleep on the pool's condition variable (shutdown, drop).
    waiters: usize,
    pub(crate) counters: Counters,
}

/// The longest pause between two attempts to start a worker.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The pause before the next attempt after `failures` in a row: 10 ms, doubling with each
/// failure, at most [`MAX_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(10);
    (Duration::from_millis(10) * (1 << doublings)).min(MAX_BACKOFF)
}

/// What every thread of a pool shares.
pub(crate) struct Shared {
    pub(crate) config: ProcessConfig,
    state: Mutex<State>,
    /// Signalled when `outstanding` reaches zero or a supervisor ends.
    changed: Condvar,
    /// Single tasks left by callers that found the lock taken.
    inbox: Inbox,
    /// One eventfd per slot, to wake its supervisor.
    pub(crate) wakes: Vec<OwnedFd>,
    /// Tasks that ended with a value or an error; kept outside the lock, see [`Tally`].
    pub(crate) tally: Tally,
    /// The time workers spend per item of single tasks, by function.
    pub(crate) paces: Paces,
    /// The copy of the process that started the pool (see `sys::fork_generation`).
    home: u64,
    /// The kernel's OOM kills in the pool's memory cgroup already put down to a worker.
    pub(crate) oom: oom::Ledger,
    /// The CPUs the pool's workers may use, as the thread that made the pool may (its
    /// workers inherit them): how many workers tiny work keeps busy at once on a pool of
    /// many more workers (see `stacking.rs`).
    pub(crate) cpus: usize,
}

/// The pool's lock, held ([`Shared::lock`]). Released, it takes in what callers left in the
/// inbox meanwhile (see `inbox.rs`).
pub(crate) struct Locked<'a> {
    // Declared first, so dropped first: the lock is released before `admission` looks.
    guard: MutexGuard<'a, State>,
    admission: Admission<'a>,
}

impl Deref for Locked<'_> {
    type Target = State;

    #[inline]
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl DerefMut for Locked<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

/// What follows the release of a [`Locked`].
struct Admission<'a> {
    shared: &'a Shared,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.shared.admit_left();
    }
}

impl Shared {
    pub(crate) fn new(config: ProcessConfig, wakes: Vec<OwnedFd>) -> Self {
        let slots = (0..wakes.len()).map(|_| Slot::default()).collect();
        Shared {
            config,
            state: Mutex::new(State {
                queue: Waiting::default(),
                slots,
                closed: false,
                dropping: false,
                outstanding: 0,
                start_failures: 0,
                fruitless_deaths: 0,
                start_error: None,
                supervisors: 0,
                waiters: 0,
                counters: Counters::default(),
            }),
            changed: Condvar::new(),
            inbox: Inbox::default(),
            wakes,
            tally: Tally::default(),
            paces: Paces::default(),
            home: sys::fork_generation(),
            oom: oom::Ledger::new(),
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }

    /// Whether this is a copy of the process that started the pool, made by `fork()`: the
    /// workers and supervisor threads serve that process, and the copy has only their
    /// memory. Nothing here may touch them.
    #[inline]
    pub(crate) fn copied(&self) -> bool {
        sys::fork_generation() != self.home
    }

    pub(crate) fn lock(&self) -> Locked<'_> {
        Locked { guard: self.lock_state(), admission: Admission { shared: self } }
    }

    /// The pool's lock, to close the pool: what callers left in the inbox before it was taken
    /// (their `submit` returned) is queued first, and sent if a worker is idle, as if they had
    /// found the lock free; what they leave later may be refused.
    pub(crate) fn lock_to_close(&self) -> Locked<'_> {
        let state = self.lock();
        if self.inbox.has_runs() {
            return self.taken_in(state);
        }
        state
    }

    /// Releases `state` having taken in the inbox, and takes the lock again.
    fn taken_in<'a>(&'a self, state: Locked<'a>) -> Locked<'a> {
        let Locked { guard, admission } = state;
        self.take_in(guard, None, true);
        // Its look after the release, for what was left meanwhile.
        drop(admission);
        self.lock()
    }

    /// The pool's lock, without taking in the inbox when it is released: for the paths that
    /// hand it to [`Shared::take_in`], which does.
    fn lock_state(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent before anything that could
        // panic, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The pool's lock if it is free (as [`Shared::lock_state`]).
    fn try_lock_state(&self) -> Option<MutexGuard<'_, State>> {
        match self.state.try_lock() {
            Ok(state) => Some(state),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Waits on the pool's condition variable. Returns at once, as a spurious wake-up, if
    /// the inbox holds tasks: they are taken in first (the condition variable releases the
    /// lock without looking at the inbox, see `inbox.rs`).
    pub(crate) fn wait<'a>(&'a self, state: Locked<'a>, limit: Option<Duration>) -> Locked<'a> {
        if self.inbox.has_runs() {
            return self.taken_in(state);
        }
        let Locked { guard: mut state, admission } = state;
        state.waiters += 1;
        let mut state = match limit {
            None => self.changed.wait(state).unwrap_or_else(PoisonError::into_inner),
            Some(limit) => {
                self.changed.wait_timeout(state, limit).unwrap_or_else(PoisonError::into_inner).0
            }
        };
        state.waiters -= 1;
        Locked { guard: state, admission }
    }

    /// Wakes everyone waiting on the pool's condition variable.
    pub(crate) fn notify(&self) {
        self.changed.notify_all();
    }

    /// Wakes the supervisor of slot `w`.
    pub(crate) fn wake(&self, w: usize) {
        sys::notify(self.wakes[w].as_fd());
    }

    /// The time limit of items of `run`.
    fn limit_of(&self, run: &Run) -> Option<Duration> {
        run.timeout.or(self.config.get_config().get_timeout())
    }

    /// The time limit of `run`'s items that an item of it ran past, taking `elapsed_ns` in
    /// its worker: its result came, but the pool did not stop it in time (its process was
    /// stalled past the deadline, or its supervisor ran late), and it fails as timed out.
    pub(crate) fn overran(&self, run: &Run, elapsed_ns: u64) -> Option<Duration> {
        let limit = self.limit_of(run)?;
        (Duration::from_nanos(elapsed_ns) > limit).then_some(limit)
    }

    /// Queues a run and sends what the workers can take. A fast single task that finds the
    /// lock taken is left in the inbox instead, for the lock's holder (`inbox.rs`).
    pub(crate) fn submit(&self, run: Arc<Run>) {
        let n = run.len();
        if n == 0 {
            return;
        }
        // A copy of the process refuses before the lock, which a thread that is not in the
        // copy may have held at the fork.
        if self.copied() {
            return self.refuse(run, TaskError::ShutDown);
        }
        let fast = Self::is_fast(&run);
        let state = if fast {
            let Some(state) = self.try_lock_state() else {
                // The lock's holder takes it in when it releases the lock (`inbox.rs`).
                self.inbox.leave(run);
                return self.admit_left();
            };
            state
        } else {
            self.lock_state()
        };
        self.take_in(state, Some(run), fast);
        self.admit_left();
    }

    /// Whether `run` is a fast single task: while every worker is busy, it waits for the
    /// next answer, whose supervisor sends it with the others that arrived meanwhile, in
    /// one frame: a burst of them costs its caller no write and no wake-up per task. (A
    /// slow one would travel alone anyway: it goes now to any worker with room.)
    #[inline]
    fn is_fast(run: &Run) -> bool {
        run.len() == 1 && run.job.pace.batch_target() > 1
    }

    /// Queues what the inbox holds, then `run` (`fast` if it is a fast single task, as every
    /// task in the inbox is), and sends what the workers can take, unless all of them are
    /// fast and no worker is idle. Releases the lock (without looking at the inbox again: see
    /// [`Shared::admit_left`]).
    fn take_in(&self, mut state: MutexGuard<'_, State>, run: Option<Arc<Run>>, fast: bool) {
        let left = if self.inbox.has_runs() { self.inbox.take() } else { Vec::new() };
        let runs = left.into_iter().chain(run);
        let refusal = if state.closed {
            Some(TaskError::ShutDown)
        } else {
            state.start_error.clone().map(|reason| TaskError::WorkerStart { reason })
        };
        if let Some(error) = refusal {
            drop(state);
            return runs.for_each(|run| self.refuse(run, error.clone()));
        }
        for run in runs {
            let n = run.len();
            state.outstanding += n;
            state.queue.push_back(Slice::new(run, 0..n));
        }
        if fast && !self.has_idle(&state) {
            return;
        }
        let mut crowd = Crowd::count(self, &state);
        let flushes = if crowd.as_ref().is_some_and(|c| c.holds_back(&state.queue)) {
            // Idle workers are not sent it: those that run tiny work take it.
            self.stack(&mut state, &mut crowd)
        } else {
            self.pump_each(&mut state, &mut crowd)
        };
        drop(state);
        self.flush(flushes);
    }

    /// Takes in what callers left in the inbox, for as long as the pool's lock is free when
    /// the inbox holds some: a holder of the lock calls it after releasing it (see
    /// `inbox.rs`).
    fn admit_left(&self) {
        while self.inbox.has_runs_after_release() {
            let Some(state) = self.try_lock_state() else { return };
            self.take_in(state, None, true);
        }
    }

    /// Fails every item of `run` with `error`, as [`Shared::submit`] does when the pool
    /// takes no work.
    #[cold]
    #[inline(never)]
    fn refuse(&self, run: Arc<Run>, error: TaskError) {
        let n = run.len();
        let mut deliveries = Deliveries::default();
        deliveries.fail(Slice::new(run, 0..n), &error);
        deliveries.deliver_from(&|_| &[], &self.tally);
    }

    /// Tasks accepted and not yet sent to a worker: those queued, and those left in the
    /// inbox.
    pub(crate) fn queued(&self, state: &State) -> u64 {
        let queued: usize = state.queue.iter().map(|slice| slice.items.len()).sum();
        (queued + self.inbox.len()) as u64
    }

    /// Workers that hold tasks sent to them and not yet answered.
    pub(crate) fn busy_workers(state: &State) -> u64 {
        state.slots.iter().filter(|slot| slot.conn.is_some() && !slot.sent.is_empty()).count()
            as u64
    }

    /// How many items a worker may run in its life (`max_tasks_per_worker`).
    fn quota(&self) -> u64 {
        self.config.get_config().get_max_tasks_per_worker().unwrap_or(u64::MAX)
    }

    /// Whether some worker takes work and holds none.
    fn has_idle(&self, state: &State) -> bool {
        let quota = self.quota();
        let idle = |slot: &Slot| slot.sent.is_empty();
        state
            .slots
            .iter()
            .any(|slot| idle(slot) && slot.conn.as_ref().is_some_and(|c| c.takes_work(quota)))
    }

    /// The flags of the batch frames that carry items of `run`.
    fn flags_of(&self, run: &Run) -> u8 {
        let mut flags = if self.limit_of(run).is_some() { FLUSH_EACH } else { 0 };
        if run.sink.is_cancellable() {
            flags |= CANCELLABLE;
        }
        if run.sink.wants_usage() {
            flags |= MEASURE;
        }
        if run.job.pace.closes_descriptors() {
            flags |= CHECK_DESCRIPTORS;
        }
        flags
    }

    /// Worker `w`'s result pipe ended while it ran: notes the jobs of the items it started
    /// and had not answered, and of the one it answered last (one of them may have closed
    /// it: see `Pace::suspect_descriptors`), sends it nothing more and asks it, through its
    /// status page, to leave after the item it runs: it writes the results it holds to its
    /// ring and exits ([`EXIT_PIPE_CLOSED`]), or, idle, sees its requests end. The item it
    /// runs may be the one that closed the pipe, or one after it: it fails only if it runs
    /// on past [`unheard_grace`] ([`Shared::unheard_due`]); the items after it run
    /// elsewhere. Without a status page (no ring either) it is killed at once for its
    /// running item ([`kill_for_protocol`]).
    pub(crate) fn pipe_closed(&self, state: &mut State, w: usize) {
        let slot = &mut state.slots[w];
        let Some(conn) = slot.conn.as_mut() else { return };
        let progress = conn.process.progress();
        let started = progress.map_or(u64::MAX, |p| p.started);
        let mut seq = conn.expect_seq;
        for slice in &slot.sent {
            if seq >= started {
                break;
            }
            slice.run.job.pace.suspect_descriptors();
            seq += slice.items.len() as u64;
        }
        if let Some(pace) = &slot.last_pace {
            pace.suspect_descriptors();
        }
        if conn.unheard.is_some() || conn.killed.is_some() {
            return;
        }
        if !conn.process.ask_to_leave() {
            kill_for_protocol(&mut slot.conn, PIPE_CLOSED.into());
            return;
        }
        conn.close();
        // Read after the request: an item the worker starts later is seen at the next look.
        let running = conn.process.progress().and_then(Progress::running);
        conn.unheard = Some(Unheard { running, since: Instant::now() });
    }

    /// For worker `w`, asked to leave because its result pipe ended ([`Shared::pipe_closed`]):
    /// kills it for the item it runs if it has run that item for [`unheard_grace`] since the
    /// pool first saw it so (it may have closed the pipe and run on, or hang): the item
    /// fails with `Protocol`, and what the worker answered before it counts. Returns when to
    /// look again (`None`: not asked, or killed now).
    pub(crate) fn unheard_due(&self, state: &mut State, w: usize, now: Instant) -> Option<Instant> {
        let slot = &mut state.slots[w];
        let conn = slot.conn.as_mut().filter(|c| c.killed.is_none())?;
        let unheard = conn.unheard.as_mut()?;
        let running = conn.process.progress().and_then(Progress::running);
        if running != unheard.running {
            *unheard = Unheard { running, since: now };
        }
        let mut seq = conn.expect_seq;
        let job = slot.sent.iter().find(|slice| {
            seq += slice.items.len() as u64;
            running.is_some_and(|r| r < seq)
        });
        let due =
            unheard.since + unheard_grace(job.map_or(0, |slice| slice.run.job.pace.item_ns()));
        match running {
            Some(item) if now >= due => {
                conn.kill(KillReason::Protocol(PIPE_CLOSED.into()), Some(item));
                None
            }
            _ => Some(due),
        }
    }

    /// Whether the pool has so many more workers than CPUs ([`WORKERS_PER_CPU`] or more per
    /// CPU) that tiny work is stacked on as many workers as there are CPUs (`stacking.rs`).
    fn oversubscribed(&self, state: &State) -> bool {
        state.slots.len() >= self.cpus.saturating_mul(WORKERS_PER_CPU)
    }

    /// Queues work for every worker with room, the least loaded first. Returns what to
    /// write once the lock is released.
    pub(crate) fn pump_all(&self, state: &mut State) -> Flushes {
        let mut crowd = Crowd::count(self, state);
        self.pump_each(state, &mut crowd)
    }

    /// [`Shared::pump_all`], with the workers that run tiny work counted in `crowd`.
    fn pump_each(&self, state: &mut State, crowd: &mut Option<Crowd>) -> Flushes {
        let mut order: SmallVec<[usize; 8]> = (0..state.slots.len()).collect();
        order.sort_by_key(|&w| state.slots[w].load_ns);
        let mut flushes: Flushes =
            order.iter().filter_map(|&w| self.pump_with(state, w, crowd)).collect();
        // A worker that took one batch while others were idle may take more now that each
        // took its own. Where tiny work is stacked, again while work moves: an idle worker
        // passed over while tiny work was held back may take what came after it, and a
        // worker that runs tiny work takes what is held back (`stacking.rs`).
        let mut passes = 1;
        while !state.queue.is_empty() && (passes < 2 || crowd.is_some()) {
            passes += 1;
            let mut moved = false;
            for &w in &order {
                let Some(flush) = self.pump_with(state, w, crowd) else { continue };
                moved = true;
                merge(&mut flushes, flush);
            }
            if !moved {
                break;
            }
        }
        flushes
    }

    /// Where the front of the queue is held back from idle workers (`stacking.rs`): sends it
    /// to the workers that run tiny work, the least loaded first, each taking what it has
    /// room for behind its head; and the rest as [`Shared::pump_all`] does, if what is left
    /// is not held back. Returns what to write once the lock is released.
    fn stack(&self, state: &mut State, crowd: &mut Option<Crowd>) -> Flushes {
        let Some(counted) = crowd.as_ref() else { return Flushes::new() };
        let mut runners: SmallVec<[usize; 8]> =
            (0..state.slots.len()).filter(|&w| counted.runs_tiny(&state.slots[w])).collect();
        runners.sort_by_key(|&w| state.slots[w].load_ns);
        let mut flushes = Flushes::new();
        for w in runners {
            if !crowd.as_ref().is_some_and(|c| c.holds_back(&state.queue)) {
                break;
            }
            if let Some(flush) = self.pump_with(state, w, crowd) {
                merge(&mut flushes, flush);
            }
        }
        let held = crowd.as_ref().is_some_and(|c| c.holds_back(&state.queue));
        if !state.queue.is_empty() && !held {
            for flush in self.pump_each(state, crowd) {
                merge(&mut flushes, flush);
            }
        }
        flushes
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

    /// Queues work for worker `w` while it has room, after it answered. Returns what to
    /// write once the pool's lock is released: for `w`, and for the other workers if work is
    /// left that they would take: where tiny work is held back from idle workers, the
    /// workers that run tiny work take it (`stacking.rs`); else idle workers take what `w`
    /// did not (work `w` skipped as taken back, which the pool had seen start, queued again
    /// by [`Shared::answered`]: nobody else would send it).
    pub(crate) fn pump(&self, state: &mut State, w: usize) -> Flushes {
        let mut crowd = Crowd::count(self, state);
        let mut flushes: Flushes = self.pump_with(state, w, &mut crowd).into_iter().collect();
        if state.queue.is_empty() {
            return flushes;
        }
        let more = if crowd.as_ref().is_some_and(|c| c.holds_back(&state.queue)) {
            self.stack(state, &mut crowd)
        } else if self.has_idle(state) {
            self.pump_each(state, &mut crowd)
        } else {
            Flushes::new()
        };
        for flush in more {
            merge(&mut flushes, flush);
        }
        flushes
    }

    /// Queues work for worker `w` while it has room, with the workers that run tiny work
    /// counted in `crowd`. Returns what to write once the pool's lock is released, if
    /// anything.
    fn pump_with(&self, state: &mut State, w: usize, crowd: &mut Option<Crowd>) -> Option<Flush> {
        let mut dropped = 0;
        let flush = self.fill(state, w, crowd, &mut dropped);
        if dropped > 0 {
            self.delivered(state, dropped);
        }
        flush
    }

    /// [`Shared::pump_with`]'s work; counts in `dropped` the items it discarded unsent
    /// because nobody wants them any more (cancelled, or their iterator was dropped).
    fn fill(
        &self,
        state: &mut State,
        w: usize,
        crowd: &mut Option<Crowd>,
        dropped: &mut usize,
    ) -> Option<Flush> {
        let quota = self.quota();
        // Tiny work held back goes to the workers that run tiny work (`stacking.rs`).
        let held = |crowd: &Option<Crowd>, queue: &Waiting| {
            crowd.as_ref().is_some_and(|c| c.holds_back(queue))
        };
        if held(crowd, &state.queue) && state.slots[w].sent.is_empty() {
            return None;
        }
        // While another worker is idle or about to say hello, this one takes no more than
        // one batch: tasks that wait for each other (a consumer submitted before its
        // producer) then run side by side, and a quick task does not queue behind a long one.
        let others_free = state.slots.iter().enumerate().any(|(other, slot)| {
            other != w
                && slot.conn.as_ref().is_some_and(|c| {
                    let starting = !c.ready && c.open && c.killed.is_none();
                    starting || (slot.sent.is_empty() && c.takes_work(quota))
                })
        });
        let State { queue, slots, counters, .. } = state;
        let slot = &mut slots[w];
        let conn = slot.conn.as_mut()?;
        if !conn.takes_work(quota) {
            return None;
        }
        // What it holds can be taken back (it has a status page), so it may take held-back
        // tiny work. Asked (a read of the page) only when it decides.
        let mut stackable: Option<bool> = None;
        let budget = self.config.get_in_flight() as u64 * BATCH_TARGET_NS;
        let limit = self.config.get_max_frame_bytes();
        let was_idle = slot.sent.is_empty();
        // A worker whose item runs far past its estimate (it hangs, or waits for something)
        // takes nothing more: what it took would wait behind that item, however long, while
        // other workers could run it as soon as they answer. Asked (a clock read) only when
        // it decides, once: the head stays while this call adds behind it.
        let mut overdue = None;
        // Taken only once there is something to send: a caller may be writing meanwhile.
        let mut writer = None;
        loop {
            // It takes held-back tiny work behind the tiny work it runs, each task in a
            // frame of its own (which may be taken back on its own: see `recall`).
            let stacking = held(crowd, queue)
                && crowd.as_ref().is_some_and(|c| c.fresh(&slot.sent, slot.head_since))
                && *stackable.get_or_insert_with(|| conn.process.progress().is_some());
            // Stacking, its head is not overdue at the time the crowd was counted (which
            // counted it): it takes what is held back, as the count said it would.
            let more = slot.sent.is_empty()
                || (slot.load_ns < budget
                    && (stacking
                        || (!others_free
                            && !*overdue.get_or_insert_with(|| {
                                is_overdue(slot.head_since, &slot.sent, slot.stacked)
                            }))));
            if !more || conn.served >= quota {
                break;
            }
            let Some(front) = queue.front_mut() else { break };
            if unwanted(front) {
                *dropped += self.discard(front);
                queue.pop_front();
                continue;
            }
            let run = front.run.clone();
            let left_in_quota = usize::try_from(quota - conn.served).unwrap_or(usize::MAX);
            // Each item counts its job's estimate; an idle worker always takes one.
            let load_ns = run.job.pace.load_ns();
            let room = budget.saturating_sub(slot.load_ns) / load_ns;
            let room_left = usize::try_from(room).unwrap_or(usize::MAX).max(1).min(left_in_quota);
            let start = front.items.start;
            let target = run.job.pace.batch_target();
            let count =
                batching::batch_len(&run, start, front.items.len(), target, room_left, limit);
            let items = start..start + count;
            front.items.start += count;
            // The deaths were its first item's, which goes now.
            let deaths = std::mem::take(&mut front.deaths);
            let front_requeued = front.requeued;
            if front.items.is_empty() {
                queue.pop_front();
            }
            let flags = self.flags_of(&run);
            let writer = writer.get_or_insert_with(|| conn.outlet.lock());
            let first_seq = conn.next_seq;
            conn.next_seq += count as u64;
            conn.served += count as u64;
            slot.load_ns += load_ns * count as u64;
            let sent_before = slot.sent.len();
            slot.sent.push_back(Slice {
                load_ns,
                deaths,
                frame_start: true,
                requeued: front_requeued,
                ..Slice::new(run.clone(), items.clone())
            });
            if sent_before == 0 {
                // Its clock starts: it was idle.
                slot.head_since = Some(Instant::now());
                if let Some(crowd) = crowd.as_mut() {
                    let page =
                        || *stackable.get_or_insert_with(|| conn.process.progress().is_some());
                    crowd.started(&slot.sent, slot.head_since, page);
                }
            }
            // Single tasks of one function queued behind this one travel in its frame.
            let most = if others_free || stacking { 1 } else { target.min(room_left) };
            slot.stacked |= stacking;
            if run.len() == 1 && most > 1 {
                let room = budget.saturating_sub(slot.load_ns);
                let (joined, load) = self.join_singles(
                    queue,
                    &mut slot.sent,
                    (&run, flags),
                    most - 1,
                    room,
                    dropped,
                );
                conn.next_seq += joined as u64;
                conn.served += joined as u64;
                slot.load_ns += load;
            }
            for sent in slot.sent.range(sent_before..) {
                sent.run.sent_to(w);
                if sent.requeued {
                    // Sent again, after a worker held it.
                    counters.requeued += sent.items.len() as u64;
                }
            }
            let joined = slot.sent.len() - sent_before - 1;
            if joined == 0 {
                writer.push_batch(first_seq, &run, flags, items);
            } else {
                // Each task has its own caller: its result must not be held back by a longer
                // task after it in the frame.
                let parts = slot.sent.range(sent_before..);
                let inputs = parts.map(|s| s.run.framed(s.items.clone()));
                writer.push_parts(
                    first_seq,
                    &run.job.shipped,
                    flags | FLUSH_SOON,
                    1 + joined,
                    inputs,
                );
            }
            if flags & FLUSH_EACH != 0 {
                // Items with a time limit: their clocks wait for the frame to be written.
                writer.time_from_write(first_seq..conn.next_seq, conn.expect_seq);
            }
            // Its job waits behind the others now (`waiting.rs`).
            queue.served(&run);
        }
        let added = writer.is_some();
        drop(writer);
        let mut wake = false;
        if was_idle {
            if let Some(head) = slot.sent.front() {
                wake = self.limit_of(&head.run).is_some();
            }
        }
        // Work behind the head waits for it: the supervisor watches how long it runs.
        if added && holds_behind(&slot.sent) {
            let due = slot
                .head_since
                .zip(slot.sent.front())
                .and_then(|(since, head)| since.checked_add(overdue_for(head, slot.stacked)));
            if slot.watch_at.is_none_or(|at| due.is_none_or(|due| at > due)) {
                slot.watch_at = due.or(slot.head_since);
                wake = true;
            }
        }
        (added || wake).then(|| Flush { w, outlet: conn.outlet.clone(), wake })
    }

    /// Moves to `sent` the single tasks at the front of `queue` that can share a batch frame
    /// with the single task of `run` (sent last, with `flags`): at most `most` of them, while
    /// their load fits in `room` nanoseconds and the frame in the frame limit. Returns how
    /// many joined and their load; counts in `dropped` those discarded on the way (see
    /// [`Shared::fill`]).
    fn join_singles(
        &self,
        queue: &mut Waiting,
        sent: &mut VecDeque<Slice>,
        (run, flags): (&Run, u8),
        most: usize,
        room: u64,
        dropped: &mut usize,
    ) -> (usize, u64) {
        let limit = self.config.get_max_frame_bytes().saturating_sub(run.job.shipped.state.len());
        let mut bytes = run.framed(0..1).len();
        let (mut joined, mut load) = (0, 0);
        while joined < most && load < room {
            let Some(next) = queue.front() else { break };
            if unwanted(next) {
                *dropped += self.discard(next);
                queue.pop_front();
                continue;
            }
            let input = next.run.framed(next.items.clone()).len();
            let fits = bytes + input <= limit && bytes + input < bulk::LARGE;
            let same = next.run.len() == 1
                && Arc::ptr_eq(&next.run.job, &run.job)
                && self.flags_of(&next.run) == flags;
            if !(fits && same) {
                break;
            }
            let Some(mut next) = queue.pop_front() else { break };
            next.load_ns = next.run.job.pace.load_ns();
            next.frame_start = false;
            bytes += input;
            joined += 1;
            load += next.load_ns;
            sent.push_back(next);
        }
        (joined, load)
    }

    /// Kills worker `w` if its running head item was cancelled or ran out of time. Returns
    /// when the head item's time runs out, if it has a limit.
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
        let limit_of = |run: &Run| self.limit_of(run);
        let slot = &mut state.slots[w];
        // Recalled items are skipped, not run: nothing to police.
        let head = slot.sent.front().filter(|head| !head.recalled)?;
        let conn = slot.conn.as_mut()?;
        if conn.killed.is_some() {
            return None;
        }
        let seq = conn.expect_seq;
        // Read only when needed: the worker writes the page on every item.
        let progress = || conn.process.progress();
        if head.run.sink.is_settled(head.items.start) {
            // A cancelled item that has not started is skipped by the worker; one that runs
            // is stopped with its worker.
            if progress().is_none_or(|p| p.running() == Some(seq)) {
                conn.kill(KillReason::Cancelled, Some(seq));
            }
            return None;
        }
        let limit = limit_of(&head.run)?;
        let since = match slot.late_start.filter(|late| late.seq == seq) {
            Some(LateStart { seen_started: Some(at), .. }) => at,
            Some(late) => {
                if progress().is_some_and(|p| p.started <= seq) {
                    return now.checked_add(start_look(limit));
                }
                slot.late_start = Some(LateStart { seen_started: Some(now), ..late });
                now
            }
            None => slot.head_since.unwrap_or(now),
        };
        // A limit too long to be an instant never runs out.
        let deadline = since.checked_add(limit)?;
        if now >= deadline {
            // Its frame is written once the pool's lock is released, by a thread that may be
            // descheduled in between: the item's clock starts no earlier than that.
            match conn.outlet.lock().handover(seq) {
                Handover::Pending => return now.checked_add(limit),
                Handover::At(at) => {
                    if let Some(due) = at.checked_add(limit).filter(|&due| now < due) {
                        return Some(due);
                    }
                }
                Handover::Unknown => {}
            }
            let progress = progress();
            if progress.is_some_and(|p| p.finished > seq) || answer_waiting() {
                return Some(now);
            }
            if progress.is_some_and(|p| p.started <= seq) {
                // Its time counts from when it starts: it waits for its worker (and is taken
                // back if another worker is idle first, see `relieve`).
                slot.late_start = Some(LateStart { seq, seen_started: None });
                return now.checked_add(start_look(limit));
            }
            if conn.process.dying_of_signal() {
                // The task crashed in its time, and its worker is ending: the kernel may be
                // writing its core (a large one takes seconds), or freeing its memory. It
                // ends of itself, and the task fails with its crash: a kill would cut the
                // core short and call the crash a timeout.
                return Some(now + DYING_LOOK);
            }
            conn.kill(KillReason::Timeout(limit), Some(seq));
            state.counters.timeouts += 1;
            return None;
        }
        Some(deadline)
    }

    /// What idle worker `w` does for the others: it takes back the batches another worker
    /// holds behind an item that has run past [`overdue_after`] its job's estimate (they
    /// would wait for that item, however long), and queues them again, for itself. Returns
    /// the flushes that send them (to write once the lock is released), and when to look
    /// again: when the next such item becomes overdue.
    pub(crate) fn relieve(
        &self,
        state: &mut State,
        w: usize,
        now: Instant,
    ) -> (Flushes, Option<Instant>) {
        let quota = self.quota();
        let idle = state.slots[w].sent.is_empty()
            && state.slots[w].conn.as_ref().is_some_and(|c| c.takes_work(quota));
        if !idle || !state.queue.is_empty() || state.dropping {
            return (Flushes::new(), None);
        }
        let mut next: Option<Instant> = None;
        for other in (0..state.slots.len()).filter(|&other| other != w) {
            if let Some(due) = self.recall(state, other, now, false) {
                next = Some(next.map_or(due, |next| next.min(due)));
            }
        }
        let flushes = if state.queue.is_empty() { Flushes::new() } else { self.pump_all(state) };
        (flushes, next)
    }

    /// What the supervisor of worker `w` does for the work `w` holds behind its head item:
    /// once that item is overdue (it waits for something, perhaps for that work), and
    /// another worker is idle, it takes the work back ([`Shared::recall`]) and sends it to
    /// the idle workers. Returns the flushes that send it (to write once the lock is
    /// released), and when to look again: when the head becomes overdue, and after that, while
    /// no other worker is idle, again each time it has run as long once more.
    ///
    /// So work behind an item never waits for it for ever while a worker is idle: from the
    /// moment work is held behind a head, its supervisor looks again by the time the head
    /// becomes overdue ([`Shared::fill`] wakes it if it would look later or not at all: see
    /// [`Slot::watch_at`]) and keeps a time to look while the work stays; and an idle
    /// worker's supervisor takes overdue work back as it finds itself idle
    /// ([`Shared::relieve`]).
    pub(crate) fn shed(
        &self,
        state: &mut State,
        w: usize,
        now: Instant,
    ) -> (Flushes, Option<Instant>) {
        let next = self.shed_due(state, w, now);
        let mut flushes = Flushes::new();
        if next == Some(now) {
            let _ = self.recall(state, w, now, true);
            if !state.queue.is_empty() {
                flushes = self.pump_all(state);
            }
        }
        let next = next.filter(|&at| at > now);
        state.slots[w].watch_at = next;
        (flushes, next)
    }

    /// [`Shared::shed`]'s decision: `None` if worker `w` holds nothing behind its head that
    /// can be taken back, `now` if it is to be taken back now, else when to look again.
    fn shed_due(&self, state: &State, w: usize, now: Instant) -> Option<Instant> {
        let quota = self.quota();
        let slot = &state.slots[w];
        let conn = slot.conn.as_ref().filter(|c| c.killed.is_none())?;
        if !holds_behind(&slot.sent) || state.dropping || conn.process.progress().is_none() {
            // Without a status page, nothing can be taken back.
            return None;
        }
        let head = slot.sent.front()?;
        let after = overdue_for(head, slot.stacked);
        let due = slot.head_since?.checked_add(after)?;
        if now < due {
            return Some(due);
        }
        let idle = |(other, s): (usize, &Slot)| {
            other != w && s.sent.is_empty() && s.conn.as_ref().is_some_and(|c| c.takes_work(quota))
        };
        if state.slots.iter().enumerate().any(idle) { Some(now) } else { now.checked_add(after) }
    }

    /// Recalls, once worker `w`'s head item is overdue, what it holds and has not started:
    /// they are queued again at the front, and stay in `sent` marked recalled until the
    /// worker answers that it skipped them. A batch goes whole, unless it started; each task
    /// of a frame of single tasks goes on its own, also from the head's frame (the worker
    /// checks each before it starts it), so a task that waits for a task sent behind it in
    /// its frame does not wait for ever. The head item goes too if the worker has not started
    /// it (it was stopped, or got no CPU since it was sent): a worker that is not running does
    /// not keep a task from the idle ones for as long as it stays so. Returns when the head
    /// becomes overdue, if it is not yet and something can be taken back then.
    ///
    /// `stacked`: a head with tiny work stacked behind it is overdue sooner ([`overdue_for`]);
    /// its worker's supervisor looks then ([`Shared::shed`]), while the idle workers'
    /// supervisors ([`Shared::relieve`]) wait the general time: they do not all wake for it.
    fn recall(&self, state: &mut State, w: usize, now: Instant, stacked: bool) -> Option<Instant> {
        let State { queue, slots, .. } = state;
        let slot = &mut slots[w];
        let conn = slot.conn.as_mut().filter(|c| c.killed.is_none())?;
        let head = slot.sent.front().filter(|head| !head.recalled)?;
        let behind = slot.sent.iter().skip(1).any(|s| !s.recalled);
        // Alone, the head is taken back only if it has not started: a read of the page,
        // made only then, which also keeps an idle worker from looking again and again at
        // a long task that runs.
        let head_waits =
            || !head.begun && conn.process.progress().is_some_and(|p| p.started <= conn.expect_seq);
        if !behind && !head_waits() {
            return None;
        }
        let due = slot.head_since?.checked_add(overdue_for(head, stacked && slot.stacked))?;
        if now < due {
            return Some(due);
        }
        let mut seq = conn.expect_seq;
        let started = conn.process.recall(conn.next_seq)?.started;
        let mut taken = SmallVec::<[Slice; 4]>::new();
        // A slice is a batch of its own (`frame_start`), a task of a frame of single tasks,
        // or the rest of a batch the worker answered part of (`begun`, only the head): the
        // worker skips it unless it started its first item, or began it.
        for slice in slot.sent.iter_mut() {
            let (first, len) = (seq, slice.items.len() as u64);
            seq += len;
            if first < started || slice.recalled || slice.begun {
                continue;
            }
            slice.recalled = true;
            slot.load_ns = slot.load_ns.saturating_sub(slice.load_ns * len);
            slice.load_ns = 0;
            conn.served = conn.served.saturating_sub(len);
            taken.push(Slice::taken_back(slice.run.clone(), slice.items.clone()));
        }
        for slice in taken.into_iter().rev() {
            queue.push_front(slice);
        }
        slot.stacked = false;
        None
    }

    /// Records the answered items `seqs` of worker `w` (its head items), read at
    /// `now`, which took the worker `elapsed_ns` together (their jobs' paces learn it), and
    /// calls `each` with the run and indices of each run's items among them, in order.
    ///
    /// Items the worker skipped because they were recalled (`skipped`) are not outcomes:
    /// those the pool had queued again already are dropped, the others are queued again now
    /// (the worker saw the recall of a batch the pool saw start: see `status.rs`).
    ///
    /// # Errors
    ///
    /// The worker answered an item it was not sent, or out of order, or ran an item that
    /// was recalled. The items before it are recorded.
    pub(crate) fn answered(
        &self,
        state: &mut State,
        w: usize,
        seqs: Range<u64>,
        (now, elapsed_ns): (Instant, u64),
        skipped: bool,
        mut each: impl FnMut(&Arc<Run>, Range<usize>),
    ) -> Result<(), String> {
        let (seq, count) = (seqs.start, seqs.end.saturating_sub(seqs.start));
        if seq == 0 {
            // A worker's first answer: workers can work.
            state.fruitless_deaths = 0;
        }
        let slot = &mut state.slots[w];
        let Some(conn) = slot.conn.as_mut() else {
            return Err("answer from a closed worker".into());
        };
        if seq != conn.expect_seq {
            return Err(format!("result for item {seq}, expected {}", conn.expect_seq));
        }
        let item_ns = elapsed_ns / count.max(1);
        let mut left = count;
        let mut again = SmallVec::<[Slice; 2]>::new();
        while left > 0 {
            let Some(head) = slot.sent.front_mut() else {
                let seq = conn.expect_seq;
                return Err(format!("result for item {seq}, which was never sent"));
            };
            if head.recalled && !skipped {
                let seq = conn.expect_seq;
                return Err(format!("result for item {seq}, which was recalled"));
            }
            let n = (head.items.len() as u64).min(left);
            let items = head.items.start..head.items.start + n as usize;
            if !skipped {
                each(&head.run, items);
                head.run.job.pace.record(item_ns);
            } else if !head.recalled {
                conn.served = conn.served.saturating_sub(n);
                again.push(Slice::taken_back(head.run.clone(), items));
            }
            conn.expect_seq += n;
            head.items.start += n as usize;
            head.begun = true;
            left -= n;
            slot.load_ns = slot.load_ns.saturating_sub(head.load_ns * n);
            if head.items.is_empty() {
                let pace = &head.run.job.pace;
                if !slot.last_pace.as_ref().is_some_and(|last| Arc::ptr_eq(last, pace)) {
                    slot.last_pace = Some(pace.clone());
                }
                slot.sent.pop_front();
            }
        }
        slot.head_since = Some(now);
        slot.stacked &= !slot.sent.is_empty();
        for slice in again.into_iter().rev() {
            state.queue.push_front(slice);
        }
        Ok(())
    }

    /// Whether worker `w`'s head item is one [`police`](Self::police) watches: it has a time
    /// limit, or was cancelled. A caller that read the results before it (see
    /// `reception::watch`) made it the head without its supervisor, which must look again.
    pub(crate) fn head_is_policed(&self, state: &State, w: usize) -> bool {
        state.slots[w].sent.front().is_some_and(|head| {
            !head.recalled
                && (self.limit_of(&head.run).is_some()
                    || head.run.sink.is_settled(head.items.start))
        })
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

    /// Accounts for the end of worker `w`, which exited with `exit` after starting and
    /// finishing what `progress` says: fails the item it was killed for or was running (and
    /// only that one), puts the rest back in the queue, and says whether the slot should
    /// start a new worker.
    pub(crate) fn worker_ended(
        &self,
        state: &mut State,
        w: usize,
        conn: Option<Conn>,
        exit: Exit,
        progress: Option<Progress>,
        deliveries: &mut Deliveries,
    ) -> bool {
        let slot = &mut state.slots[w];
        let mut sent = std::mem::take(&mut slot.sent);
        slot.load_ns = 0;
        slot.head_since = None;
        slot.late_start = None;
        let last_pace = slot.last_pace.take();
        slot.watch_at = None;
        slot.stacked = false;
        let head_seq = conn.as_ref().map_or(0, |c| c.expect_seq);
        let killed = conn.as_ref().and_then(|c| c.killed.clone());
        let natural = killed.is_none();
        // It left because a task closed its result pipe (`Outputs::check_descriptors`), or,
        // asked to leave for that between items, saw its requests end.
        let asked = conn.as_ref().is_some_and(|c| c.unheard.is_some());
        let between_items = progress.is_some_and(|p| p.running().is_none());
        let pipe_closed = natural
            && (exit == Exit::Code(EXIT_PIPE_CLOSED)
                || asked && between_items && exit == Exit::Code(0));
        // Who is to blame: the item a kill was for; otherwise the item the worker was running
        // (without a status page, the head); for a closed pipe, the task that ran last, if
        // its result did not come through.
        let (mut blamed, mut error) = match killed {
            Some(Kill { reason: KillReason::LimitReached, .. }) => (None, None),
            Some(Kill { reason, seq }) => (seq, Some(kill_error(reason))),
            None if pipe_closed => {
                let last = progress.and_then(|p| p.last_unanswered(head_seq));
                (last, Some(TaskError::Protocol { reason: PIPE_CLOSED.into() }))
            }
            None => {
                let running = match progress {
                    Some(p) => p.running(),
                    None => (!sent.is_empty()).then_some(head_seq),
                };
                // A SIGKILL the pool did not send, while the cgroup's count of OOM kills
                // rose: the kernel ended the worker because the cgroup's memory ran out.
                let error = match conn.as_ref().and_then(|c| c.out_of_memory) {
                    Some(limit) => TaskError::ResourceLimit { resource: Resource::Memory, limit },
                    None => TaskError::Crashed(exit),
                };
                (running, Some(error))
            }
        };
        if pipe_closed {
            // The item it ran last closed the pipe: the workers of its job check the pipe
            // after each of its items from now on (its result came through, or it is blamed).
            let mut seq = head_seq;
            let blamed_slice = sent.iter().find(|slice| {
                let first = seq;
                seq += slice.items.len() as u64;
                blamed.is_some_and(|b| (first..seq).contains(&b))
            });
            if let Some(pace) = blamed_slice.map(|slice| &slice.run.job.pace).or(last_pace.as_ref())
            {
                pace.suspect_descriptors();
            }
        }
        // A worker that died of itself before it started its first item, which it held: the
        // item may be what kills workers as they receive it (an argument too large for the
        // worker's memory limit, say). After `POISON_DEATHS` such deaths it fails with the
        // crash (or with the memory limit, when the workers said they had no room for it)
        // rather than go round for ever. A kill from outside says nothing about the item.
        let of_itself = natural && !killed_from_outside(exit) && !pipe_closed;
        // A worker that had no room under the memory limit for what it was sent: the item
        // is too large for the limit, the worker itself could work.
        let no_room = of_itself
            && exit == Exit::Code(EXIT_NO_ROOM)
            && self.config.get_memory_limit().is_some();
        let unstarted = of_itself && progress.is_some_and(|p| p.started <= head_seq);
        // Dead before it started anything: the worker, not an item, failed.
        let started_nothing = progress.map_or(head_seq == 0 && sent.is_empty(), |p| p.started == 0);
        if of_itself && started_nothing && !no_room {
            state.fruitless_deaths += 1;
        }
        if let Some(head) = sent.front_mut().filter(|_| unstarted && blamed.is_none()) {
            head.deaths += 1;
            if head.deaths >= POISON_DEATHS {
                blamed = Some(head_seq);
                if let Some(limit) = self.config.get_memory_limit().filter(|_| no_room) {
                    error = Some(TaskError::ResourceLimit { resource: Resource::Memory, limit });
                }
            }
        }
        let mut requeue = Vec::new();
        let mut seq = head_seq;
        for slice in sent {
            let first = seq;
            seq += slice.items.len() as u64;
            if slice.recalled {
                // Queued again when recalled; never run here.
                continue;
            }
            let Some(at) = blamed.filter(|b| (first..seq).contains(b)) else {
                requeue.push(Slice { requeued: true, ..slice });
                continue;
            };
            let index = slice.items.start + usize::try_from(at - first).unwrap_or(0);
            if let Some(error) = error.clone() {
                if natural && !no_room && !pipe_closed {
                    state.counters.crashes += 1;
                }
                deliveries.add_failure(&slice.run, index, error);
            }
            let (before, after) = (slice.items.start..index, index + 1..slice.items.end);
            for items in [before, after] {
                if !items.is_empty() {
                    requeue.push(Slice::taken_back(slice.run.clone(), items));
                }
            }
        }
        if state.dropping {
            for slice in requeue {
                deliveries.fail(slice, &TaskError::ShutDown);
            }
        } else {
            for slice in requeue.into_iter().rev() {
                state.queue.push_front(slice);
            }
            self.give_up_if_workers_cannot_work(state, exit, deliveries);
        }
        Self::needs_worker(state)
    }

    /// After `start_attempts` times [`POISON_DEATHS`] workers in a row died of themselves
    /// before they started anything, the workers, not the items, are at fault (a memory
    /// limit too small for the worker itself, a library that aborts as it loads): fails
    /// everything queued and refuses new work until the next hello, as failed starts do.
    /// While workers go on dying so, each death fails what was queued meanwhile, so that no
    /// item goes round for ever; a worker's first answer ends it.
    fn give_up_if_workers_cannot_work(
        &self,
        state: &mut State,
        exit: Exit,
        deliveries: &mut Deliveries,
    ) {
        let attempts = self.config.get_config().get_start_attempts();
        if state.fruitless_deaths < attempts.saturating_mul(POISON_DEATHS) {
            return;
        }
        let mut reason = format!(
            "{} workers in a row ended before they started any task, the last {exit}",
            state.fruitless_deaths
        );
        if let Some(limit) = self.config.get_memory_limit() {
            // The usual cause when one is set: the worker itself does not fit.
            reason += &format!(
                "; under a memory_limit of {limit} bytes, which may be too small for a worker \
                 itself (it needs a few MiB, more for a large program)"
            );
        }
        let error = TaskError::WorkerStart { reason: reason.clone() };
        for slice in state.queue.take_all() {
            deliveries.fail(slice, &error);
        }
        state.start_error = Some(reason);
        self.notify();
    }

    /// Whether a slot whose worker ended needs another: unless the pool closed and nothing
    /// queued is to run.
    pub(crate) fn needs_worker(state: &State) -> bool {
        !(state.closed && (state.dropping || state.queue.is_empty()))
    }

    /// Records that `count` items were delivered.
    pub(crate) fn delivered(&self, state: &mut State, count: usize) {
        state.outstanding -= count;
        // Waking nobody still costs a system call: only a shutdown or drop waits here.
        if state.outstanding == 0 && state.waiters > 0 {
            self.notify();
        }
    }

    /// Whether some slot's last start did not fail: its worker serves, or starts, or is
    /// replaced after it ended, and queued items wait for it rather than fail for the starts
    /// that fail in other slots meanwhile.
    fn serving(state: &State) -> bool {
        state.slots.iter().any(|slot| !slot.start_failing)
    }

    /// Records that the worker of slot `w` said hello: starts work again if starts had been
    /// failing.
    pub(crate) fn started(&self, state: &mut State, w: usize) {
        state.start_failures = 0;
        state.start_error = None;
        state.slots[w].start_failing = false;
    }

    /// Records a failed start in slot `w`. After `start_attempts` counted failures in a row,
    /// once the last start of every slot failed (starts that fail in one slot, an initializer
    /// that fails for its index say, must not stop a pool whose other workers run its tasks),
    /// fails every queued item and refuses new work until a worker starts again. Returns how
    /// long to wait before the next attempt (longer the more attempts failed in a row).
    pub(crate) fn start_failed(
        &self,
        state: &mut State,
        w: usize,
        failure: &StartFailure,
        deliveries: &mut Deliveries,
    ) -> Duration {
        let causes = &mut state.counters.start_failures;
        match failure {
            StartFailure::Os(_) => causes.os += 1,
            StartFailure::Refused(_) => causes.refused += 1,
            StartFailure::Died(_) if !failure.counts() => causes.killed += 1,
            StartFailure::Died(_) => causes.died += 1,
            StartFailure::NotReady(_) => causes.not_ready += 1,
        }
        if !failure.counts() {
            return Duration::ZERO;
        }
        state.start_failures += 1;
        state.slots[w].start_failing = true;
        if state.start_failures >= self.config.get_config().get_start_attempts()
            && !Self::serving(state)
        {
            let reason = failure.reason();
            let error = TaskError::WorkerStart { reason: reason.clone() };
            for slice in state.queue.take_all() {
                deliveries.fail(slice, &error);
            }
            state.start_error = Some(reason);
            self.notify();
        }
        backoff(state.start_failures)
    }

    /// How long to wait before replacing a worker that just ended. Workers that die of
    /// themselves before they start anything, over and over (a memory limit too small for
    /// the worker itself, a library that aborts as it loads), would otherwise be replaced
    /// hundreds of times a second: after [`POISON_DEATHS`] of them in a row, each
    /// replacement waits longer, as a failed start does, until a worker answers.
    pub(crate) fn restart_pause(&self, state: &State) -> Duration {
        match state.fruitless_deaths.checked_sub(POISON_DEATHS) {
            Some(beyond) => backoff(beyond + 1),
            None => Duration::ZERO,
        }
    }

    /// Cancels the single-item `run` (its handle is settled already): counts it as failed
    /// (that is how it ends, whatever it was doing), and removes it from the queue, or asks
    /// the worker that holds it to skip it, or kills that worker if it runs it.
    pub(crate) fn cancel<S: Sink + ?Sized>(&self, run: &Run<S>) {
        self.tally.record(0, 1);
        let is_run = |slice: &Slice| std::ptr::addr_eq(Arc::as_ptr(&slice.run), run);
        let mut state = self.lock();
        if state.queue.remove_first(is_run).is_some() {
            self.delivered(&mut state, 1);
            return;
        }
        for slot in &mut state.slots {
            let Some(conn) = slot.conn.as_mut() else { continue };
            let mut seq = conn.expect_seq;
            for slice in &slot.sent {
                if is_run(slice) && !slice.recalled {
                    let runs = match conn.process.cancel(seq) {
                        Some(p) => p.started > seq && p.finished <= seq,
                        // Without a status page, the head is taken to be running.
                        None => seq == conn.expect_seq,
                    };
                    if runs {
                        conn.kill(KillReason::Cancelled, Some(seq));
                    }
                    return;
                }
                seq += slice.items.len() as u64;
            }
        }
    }

    /// Kills every worker running an item of `run`, a batch nobody wants any more (its queued
    /// items are discarded by [`Shared::discard_unwanted`]): as a time limit does, the item
    /// fails and its worker is replaced; the items it held and had not started run elsewhere,
    /// unless they are `run`'s.
    pub(crate) fn stop<S: Sink + ?Sized>(&self, run: &Run<S>) {
        if self.copied() {
            return;
        }
        let is_run = |slice: &Slice| std::ptr::addr_eq(Arc::as_ptr(&slice.run), run);
        let mut state = self.lock();
        for slot in &mut state.slots {
            let Some(conn) = slot.conn.as_mut() else { continue };
            if conn.killed.is_some() {
                continue;
            }
            // Without a status page, the head is taken to be running.
            let running = conn.process.progress().map_or(Some(conn.expect_seq), Progress::running);
            let Some(running) = running else { continue };
            let mut seq = conn.expect_seq;
            for slice in &slot.sent {
                let end = seq + slice.items.len() as u64;
                if (seq..end).contains(&running) {
                    if is_run(slice) && !slice.recalled {
                        conn.kill(KillReason::Cancelled, Some(running));
                    }
                    break;
                }
                seq = end;
            }
        }
    }

    /// Where the results of the worker in slot `w` arrive, or, with no slot named, those of
    /// every worker: for a caller that reads its own (none in a copy of the process, which
    /// has none of the workers).
    pub(crate) fn receptions(&self, w: Option<usize>) -> SmallVec<[Arc<Reception>; 4]> {
        if self.copied() {
            return SmallVec::new();
        }
        let state = self.lock();
        let reception = |slot: &Slot| slot.conn.as_ref()?.reception.clone();
        match w.and_then(|w| state.slots.get(w)) {
            Some(slot) => reception(slot).into_iter().collect(),
            None => state.slots.iter().filter_map(reception).collect(),
        }
    }

    /// Drops the queued items of runs nobody wants any more (their iterator was dropped).
    pub(crate) fn discard_unwanted(&self) {
        if self.copied() {
            return;
        }
        let mut state = self.lock();
        let mut dropped = 0;
        state.queue.retain(|slice| {
            let keep = !unwanted(slice);
            if !keep {
                dropped += self.discard(slice);
            }
            keep
        });
        if dropped > 0 {
            self.delivered(&mut state, dropped);
        }
    }
}

impl Shared {
    /// Accounts for the items of an unwanted slice, dropped unsent; returns how many. A
    /// cancelled task was counted when its handle was settled; the items of an abandoned
    /// iterator are counted here, as discarded: nobody is told of them.
    fn discard(&self, slice: &Slice) -> usize {
        if slice.run.sink.is_abandoned() {
            self.tally.discard(slice.items.len());
        }
        slice.items.len()
    }
}

/// Whether nobody wants the items of `slice` any more: a cancelled single task, or the rest
/// of a run whose iterator was dropped. Their outcomes were settled and counted already.
fn unwanted(slice: &Slice) -> bool {
    slice.run.sink.is_abandoned()
        || (slice.items.len() == 1 && slice.run.sink.is_settled(slice.items.start))
}

/// The error of the item a kill was for.
fn kill_error(reason: KillReason) -> TaskError {
    match reason {
        KillReason::Timeout(limit) => TaskError::TimedOut { limit, still_running: false },
        KillReason::Cancelled => TaskError::Cancelled,
        KillReason::Shutdown | KillReason::LimitReached | KillReason::Retired => {
            TaskError::ShutDown
        }
        KillReason::Protocol(reason) => TaskError::Protocol { reason },
    }
}

/// Run batching for `map`-like runs: the user's chunk size, or adaptive batches capped by
/// the automatic chunk for `n` items.
pub(crate) fn batching_for(config: &ProcessConfig, n: usize) -> Batching {
    match config.get_config().get_chunk_size() {
        Some(size) => Batching::Fixed(size),
        None => Batching::Adaptive(config.get_config().chunk_for(n).min(batching::MAX_BATCH)),
    }
}

/// Adds `flush` to `flushes`, once per worker.
fn merge(flushes: &mut Flushes, flush: Flush) {
    match flushes.iter_mut().find(|f| f.w == flush.w) {
        Some(earlier) => earlier.wake |= flush.wake,
        None => flushes.push(flush),
    }
}

#[cfg(test)]
pub(crate) mod tests;
