//! [`ThreadPool`]: the shared pool API on a rayon thread pool.

use std::cell::{Cell, OnceCell};
use std::collections::VecDeque;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use rayon::iter::plumbing::{
    Consumer, Folder, Producer, ProducerCallback, UnindexedConsumer, bridge,
};
use rayon::prelude::*;
use taskpool_core::backend::{
    Cancel, Completer, Execute, Holds, ImapPace, Job, PanicScope, Slot, catch_panic, discard,
    handle_of, initializer_panicked, keep_hook_in_front, map_by_handles_with_progress, promise,
};
use taskpool_core::{Config, IntoTask, Pool, TaskError, TaskHandle};

use crate::carry::{self, Carry};
use crate::forks;
use crate::queue::Queue;
use crate::relief::{self, Relief};
use crate::tally::Tally;
use crate::watchdog::{Alarm, Watchdog};

/// How many items an `imap` pulls and queues at once at first, as one record that every idle
/// thread takes items from (see [`Grouped`]): a push and a wake-up per group rather than per
/// item.
const IMAP_GROUP: usize = 8;

/// How many items an `imap` keeps in flight per thread of the pool at first: enough whole
/// groups that the threads find the next one queued while the consumer takes the results of
/// the last.
const IMAP_WINDOW_PER_THREAD: usize = 16;

/// How many items an `imap` of fast items keeps in flight per thread at most, its window
/// doubling from [`IMAP_WINDOW_PER_THREAD`] (see [`ImapPace`]): a busy machine, where the
/// consumer waits for a CPU, then finds a few hundred results ready rather than a few.
const IMAP_MOST_PER_THREAD: usize = 256;

/// A pool of threads that runs tasks, scheduled by rayon.
///
/// A submitted task waits in the pool's own queue, which rayon's threads drain; it costs one
/// allocation (its record in the queue, which holds its handle's state, and with a time limit
/// its alarm too), which the submitting thread makes and, once it took the result, usually
/// frees. `map` runs as a rayon parallel iterator. An `imap` queues its items in groups, each
/// group once for every thread, which take its items one by one (a group is one allocation, its
/// items' handles included), so that a slow item holds back only its own thread: 8 items at a
/// time and 16 per thread in flight at first, both doubling while the items take under 10 µs
/// each, up to 256 per thread in flight ([`Pool::imap_window`]). A panic fails only its task.
/// See the crate documentation for what threads cannot do (survive a segfault, stop a hung
/// task).
///
/// # Work given while a `map` runs
///
/// A `map` (and `map_results`, `starmap`, `try_map`, the `_with_progress` kinds) keeps every
/// thread of the pool busy with its items until it ends, yet a task submitted meanwhile, or
/// an `imap`'s group of items, does not wait for the whole `map`: each thread running the
/// map's items looks at the pool's queue about every 50 µs of items (after every item, if
/// they take longer), and runs the next task waiting there before it goes on with its items.
/// So such a task starts once a thread finishes the item it runs, or 50 µs of items. On a
/// pool of 2, a `submit` and `join` of a no-op beside a `map` of items of 1 ms or 10 ms took
/// under 1 ms, where it took the whole `map` (5 s for 1,000 items of 10 ms) before. The
/// looks come between runs of items (up to 65,536), never inside one, so a `map` of no-ops
/// keeps its speed.
///
/// The task runs on the map's thread, between two of its items, as it would run on that
/// thread after the `map`: the items wait for it. A long task so makes the `map` longer by
/// its time, and a task that waits for something the `map`'s caller holds until the `map`
/// returns (a lock it took before calling `map`, say) waits for ever, and the `map` with it.
/// Do not hold across a `map` a lock that the pool's tasks take.
///
/// A `map` given from outside the pool while another given so runs goes through the queue
/// too, as one task: the first thread to look runs it, between two items of the other, and
/// the other threads take parts of it as they come to look for work. So two `map`s given at
/// once from two threads share the threads, where rayon would run the second only once
/// the threads had nothing of the first left: on a pool of 2, a `map` of 100 items of 1 ms
/// given beside one of 1,000 took 0.6 s, the time of both, and now 0.1 s.
///
/// # Dropping
///
/// Dropping the pool fails the tasks that have not started with [`TaskError::ShutDown`] and
/// returns at once; tasks already running finish on their threads in the background, since
/// threads cannot be killed. Call [`Pool::shutdown`] first to wait for everything submitted.
///
/// # Tasks that submit tasks
///
/// A task may submit tasks to its own pool and join them, as deep as it likes, on a pool of
/// any size: a task joined on one of the pool's threads before any thread took it runs right
/// there, inside the join, so the pool's threads never all wait for each other. The same
/// holds for a task's `map`, `imap` and `imap_unordered` over its own pool. (A join with
/// a deadline, [`TaskHandle::join_timeout`], waits instead, and so does an `imap`'s
/// [`next_timeout`](crate::NextTimeout::next_timeout): neither could keep its deadline
/// while running another task. So does a handle awaited by an executor's `block_on` inside a
/// task: a poll never runs the task; nor do [`TaskHandle::try_join`] and
/// [`TaskHandle::is_finished`], so a task that polls them in a loop on a pool of one thread
/// waits for ever. Join it there.)
///
/// This holds for a task's own pool only. A task that joins a task of another pool waits for
/// one of that pool's threads, as any thread does, so two pools whose tasks join each
/// other's tasks (a task of `a` joins one of `b`, which joins one of `a`) can deadlock: they
/// do when every thread of `a` waits so, as with one thread each.
///
/// A task may also call [`Pool::shutdown`] on its own pool: it waits for every other task,
/// running the queued ones on its own thread meanwhile, but not for itself, for the tasks it
/// runs inside, or for other tasks that called `shutdown` too (none of these could finish
/// before it returns). An item of a `map` (or `map_results`, `map_with_progress`) that calls
/// it closes the pool and returns without waiting: the map it is part of, and any task the
/// map was called from, cannot finish before the item does. Its other items still run, but
/// on a pool with a time limit, where each item is queued as a task of its own, those not
/// yet queued when it closed fail with [`TaskError::ShutDown`].
///
/// # Tasks that wait for each other
///
/// A task that blocks (on a `Barrier`, a channel, a `Condvar`, a lock) keeps its thread while
/// it waits, and the pool starts no thread in its place, as any fixed pool of threads does
/// (rayon's included). So tasks that wait for each other need a thread each, all at once: on
/// a pool of 2, four tasks that meet at a `Barrier::new(4)` wait for ever, the two that run
/// for two that never start, and so does whoever joins them, with no error. Give such a pool
/// as many workers as tasks that wait together, or pass values as results instead: a task
/// that joins another's handle runs it if no thread took it yet (above). With a time limit
/// ([`Config::timeout`]), the tasks that wait past it fail with [`TaskError::TimedOut`] and
/// relief threads run the others meanwhile: of the four above, with a limit of 200 ms, the
/// first two failed as timed out and the other two, once started, passed the barrier and
/// returned.
///
/// # A program that forks
///
/// A copy of the program made by `fork()` inherits the pool's memory but not its threads.
/// There the inherited pool takes no work: every task given to it fails at once with
/// [`TaskError::ShutDown`], and `shutdown` and dropping return at once. The original's pool
/// goes on as if nothing happened, and the copy can start pools of its own. A handle of a
/// task submitted before the fork settles in the original only: in the copy, joining it fails
/// at once with [`TaskError::ShutDown`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use taskpool_thread::{Config, Pool, TaskError, ThreadPool};
///
/// fn slow(ms: u64) -> u64 {
///     std::thread::sleep(Duration::from_millis(ms));
///     ms
/// }
///
/// # fn main() -> Result<(), TaskError> {
/// let config = Config::new().workers(2).timeout(Duration::from_millis(50));
/// let pool = ThreadPool::with_config(config)?;
/// assert_eq!(pool.apply(slow, 1)?, 1);
/// match pool.apply(slow, 500) {
///     Err(TaskError::TimedOut { still_running, .. }) => assert!(still_running),
///     other => panic!("expected a timeout, got {other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
pub struct ThreadPool {
    /// Shared with the batches queued behind another (see [`QueuedBatch`]).
    rayon: Arc<rayon::ThreadPool>,
    shared: Arc<Shared>,
}

/// How long a pool whose initializer failed `start_attempts` times in a row fails tasks before
/// it tries the initializer again (once, then pauses again if it fails).
const INIT_PAUSE: Duration = Duration::from_secs(1);

struct Shared {
    config: Config,
    /// No new work is accepted.
    closed: AtomicBool,
    /// The pool was dropped: queued tasks must not start.
    dropped: AtomicBool,
    /// Tasks accepted and finished, for `shutdown` to wait on; submitting takes no lock.
    tally: Tally,
    /// Submitted tasks waiting for a thread.
    queue: Queue<Arc<dyn Run>>,
    /// The copy of the process that started the pool (see `forks.rs`).
    home: u64,
    /// Batches given from outside the pool that have not returned (see `count_batch`).
    batches: AtomicUsize,
    /// Initializer failures in a row; at `config.get_start_attempts()` the pool pauses.
    init_failures: AtomicU32,
    /// Why the initializer failed last, which tasks are told while the pool pauses, and when.
    init_error: Mutex<(String, Option<Instant>)>,
    /// Keeps the time limits of the tasks that have one (see [`Limit`]).
    watchdog: Watchdog,
}

thread_local! {
    static INITIALIZED: Cell<bool> = const { Cell::new(false) };
    /// The shared state of the pool this thread runs tasks for, set as the thread starts: a
    /// task finds it here rather than holding a reference of its own, whose count would move
    /// between the submitting thread and the pool's threads for every task.
    static POOL: OnceCell<Arc<Shared>> = const { OnceCell::new() };
    /// How many of its pool's submitted tasks this thread runs now, one inside another (a
    /// task that joins a task no thread took yet runs it inside the join).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    /// How many of the tasks this thread runs, from the outermost, called `shutdown` on
    /// their pool or run inside one that did: counted in its tally's parked tasks until
    /// they finish (see `Tally::park`).
    static PARKED: Cell<usize> = const { Cell::new(0) };
    /// How many queued tasks (or batches) this thread runs now, one inside another, that it
    /// took between a batch's items (see [`Turns`]).
    static TURNS_TAKEN: Cell<usize> = const { Cell::new(0) };
}

/// Counts a task in [`DEPTH`] while it runs, however it ends.
struct Running;

impl Running {
    fn enter() -> Running {
        DEPTH.set(DEPTH.get() + 1);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        DEPTH.set(DEPTH.get().saturating_sub(1));
    }
}

impl ThreadPool {
    /// Starts a pool of `workers` threads with default settings.
    ///
    /// # Errors
    ///
    /// [`TaskError::InvalidConfig`] for zero workers, [`TaskError::WorkerStart`] if the
    /// threads cannot be created.
    pub fn new(workers: usize) -> Result<Self, TaskError> {
        Self::with_config(Config::new().workers(workers))
    }

    /// Starts a pool with `config`.
    ///
    /// Of the settings, `max_tasks_per_worker` has no meaning for threads and is ignored: a
    /// thread has nothing to recycle.
    ///
    /// # Errors
    ///
    /// [`TaskError::InvalidConfig`] for a bad setting, [`TaskError::WorkerStart`] if the
    /// threads cannot be created.
    pub fn with_config(config: Config) -> Result<Self, TaskError> {
        config.validate()?;
        forks::watch_forks();
        let prefix = config.get_name_prefix().to_owned();
        let workers = config.get_workers();
        let shared = Arc::new(Shared::new(config));
        let theirs = shared.clone();
        let rayon = rayon::ThreadPoolBuilder::new()
            .num_threads(workers)
            .thread_name(move |i| format!("{prefix}-{i}"))
            .start_handler(move |_| POOL.with(|pool| drop(pool.set(theirs.clone()))))
            .build()
            .map_err(|e| TaskError::WorkerStart {
                reason: format!("cannot start a worker thread: {e}"),
            })?;
        Ok(ThreadPool { rayon: Arc::new(rayon), shared })
    }

    /// The pool's settings.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Whether a batch goes through one handle per item (the queue) rather than rayon's
    /// parallel iterator: when each task needs its own deadline, or while a task past its
    /// limit holds a thread (rayon's threads may all be held; relief threads serve only the
    /// queue).
    fn through_handles(&self) -> bool {
        self.shared.config.get_timeout().is_some() || self.shared.queue.relieved()
    }

    /// Whether this thread is one of this pool's (a relief thread too).
    fn runs_here(&self) -> bool {
        POOL.with(|pool| pool.get().is_some_and(|p| Arc::ptr_eq(p, &self.shared)))
    }

    /// Counts a batch that rayon runs without the pool's queue (`map` and its kin) as one
    /// accepted task until the guard drops, so that `shutdown` waits for it as for any task
    /// submitted; `None` if the pool takes no more work. A batch run from a task of this pool
    /// is not counted: the task it runs in is, and a `shutdown` called from inside the pool
    /// does not wait for the tasks it runs in.
    fn count_batch(&self) -> Option<Counted<'_>> {
        if self.runs_here() {
            return (!self.is_closed()).then_some(Counted { outside: None, behind: false });
        }
        let shared = &*self.shared;
        shared.tally.accept();
        let behind = shared.batches.fetch_add(1, Ordering::SeqCst) > 0;
        let counted = Counted { outside: Some(shared), behind };
        // Dropped if refused: counted finished.
        (!self.is_closed()).then_some(counted)
    }

    /// Runs `batch` on the pool's threads, with the turns it gives queued tasks (see
    /// [`Turns`]), and returns what it returns; `None` if it could not run (the pool's
    /// threads are gone). A batch given from outside the pool while another given so runs
    /// goes through the pool's queue (see [`QueuedBatch`]); any other runs at once, as rayon
    /// runs a batch.
    fn batch<R: Send + 'static>(
        &self,
        counted: &Counted<'_>,
        batch: impl FnOnce(&Turns<'_>) -> R + Send + 'static,
    ) -> Option<R> {
        if counted.behind {
            return self.queue_batch(batch).recv().ok();
        }
        let turns = Turns::new(&self.shared, counted.outside.is_some());
        Some(self.rayon.install(|| batch(&turns)))
    }

    /// Queues `batch`, given from outside the pool behind another, as a task of the pool (see
    /// [`QueuedBatch`]); its result comes on the receiver.
    fn queue_batch<R: Send + 'static>(
        &self,
        batch: impl FnOnce(&Turns<'_>) -> R + Send + 'static,
    ) -> crossbeam_channel::Receiver<R> {
        let (done, result) = crossbeam_channel::bounded(1);
        let record =
            QueuedBatch { batch: Mutex::new(Some(batch)), rayon: self.rayon.clone(), done };
        self.enqueue(Arc::new(record), false);
        result
    }

    /// Whether the pool takes no more work: it was closed, or this is a copy of the process
    /// that started it, made by `fork()`, where its threads do not exist.
    fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire) || self.shared.copied()
    }
}

impl Shared {
    /// The state of a new pool with `config`.
    fn new(config: Config) -> Self {
        let workers = config.get_workers();
        Shared {
            config,
            closed: AtomicBool::new(false),
            dropped: AtomicBool::new(false),
            tally: Tally::new(workers),
            queue: Queue::new(workers),
            home: forks::fork_generation(),
            batches: AtomicUsize::new(0),
            init_failures: AtomicU32::new(0),
            init_error: Mutex::new((String::new(), None)),
            watchdog: Watchdog::default(),
        }
    }

    /// Whether this is a copy of the process that started the pool, made by `fork()`.
    #[inline]
    fn copied(&self) -> bool {
        forks::fork_generation() != self.home
    }

    /// Runs one task on the current pool thread, initializing the thread first if needed.
    fn run<J: Job>(&self, job: &J, input: J::Input) -> Result<J::Output, TaskError> {
        self.ensure_initialized()?;
        catch_panic(self.config.get_backtraces(), || job.run(input)).map_err(TaskError::from)
    }

    fn ensure_initialized(&self) -> Result<(), TaskError> {
        let Some(init) = self.config.get_initializer() else {
            return Ok(());
        };
        if INITIALIZED.with(Cell::get) {
            return Ok(());
        }
        // Tried again while the failures in a row stay under the attempts, as a process
        // backend replaces a worker whose initializer failed: a flaky one costs no task. Past
        // them, tasks fail, and one that comes [`INIT_PAUSE`] after the last failure tries
        // once more, as a process backend goes on starting workers: a pool recovers from an
        // outage of what its initializer needs.
        let mut retried = false;
        loop {
            if self.init_failures.load(Ordering::Relaxed) >= self.config.get_start_attempts() {
                let error = self.init_error.lock().unwrap_or_else(PoisonError::into_inner);
                let (reason, at) = &*error;
                if retried || at.is_some_and(|at| at.elapsed() < INIT_PAUSE) {
                    return Err(TaskError::WorkerStart { reason: reason.clone() });
                }
                retried = true;
            }
            match catch_panic(false, init) {
                Ok(()) => {
                    // An initializer that sets up logging may install a panic hook of its own.
                    keep_hook_in_front();
                    INITIALIZED.with(|c| c.set(true));
                    self.init_failures.store(0, Ordering::Relaxed);
                    return Ok(());
                }
                Err(report) => {
                    let reason = initializer_panicked(&report);
                    *self.init_error.lock().unwrap_or_else(PoisonError::into_inner) =
                        (reason, Some(Instant::now()));
                    self.init_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

impl Execute for ThreadPool {
    fn execute<J: Job>(
        &self,
        job: &Arc<J>,
        input: J::Input,
        completer: Completer<J::Output>,
        timeout: Option<Duration>,
    ) {
        let limit = timeout.or(self.shared.config.get_timeout());
        let record = Queued::record(&self.shared, job.clone(), input, completer, limit);
        self.start(record, false);
    }

    /// Queues the group as one record that holds the slots of the items' handles, once for
    /// each thread that may run its items, so that an `imap` costs a push and an
    /// allocation per group rather than per item and idle threads share the group's items.
    /// An item with a time limit (or of a group of one) is queued on its own, as a record
    /// that holds its handle's slot.
    fn start_group<J: Job>(
        &self,
        job: &Arc<J>,
        inputs: Vec<J::Input>,
        notes: Option<(&Sender<usize>, &[usize])>,
    ) -> Vec<TaskHandle<J::Output>> {
        let shared = &*self.shared;
        if shared.config.get_timeout().is_some() || inputs.len() < 2 {
            let limit = shared.config.get_timeout();
            let slot = |i| match notes {
                Some((tx, indices)) => Slot::notifying(tx.clone(), indices[i]),
                None => Slot::new(),
            };
            let start = |(i, input)| self.start_own(job.clone(), input, slot(i), limit, false);
            return inputs.into_iter().enumerate().map(start).collect();
        }
        let copies = inputs.len().min(self.shared.queue.most());
        shared.tally.accept_n(inputs.len());
        let record = Grouped::record(&self.shared, job.clone(), inputs, notes);
        let handles = (0..record.slots.len()).map(|i| handle_of(record.clone(), i)).collect();
        if shared.closed.load(Ordering::SeqCst) || shared.copied() {
            record.slots.iter().for_each(|_| shared.tally.finish(None));
            record.abandon();
            return handles;
        }
        for _ in 0..copies {
            self.enqueue(record.clone(), false);
        }
        handles
    }

    /// An `imap` hands its items to the pool 8 at a time, with 16 per thread in flight, at
    /// first.
    fn imap_pace(&self) -> Option<ImapPace> {
        Some(ImapPace { group: IMAP_GROUP, window: IMAP_WINDOW_PER_THREAD * self.workers() })
    }
}

/// A job owned by one task, so that a single submit needs no shared handle to its job.
struct Owned<J>(J);

impl<J> AsRef<J> for Owned<J> {
    fn as_ref(&self) -> &J {
        &self.0
    }
}

impl ThreadPool {
    /// Submits one task of the caller's, with its own time `limit` if it has one, which the
    /// caller waits for at once if `awaited`.
    fn submit_one<J: Job>(
        &self,
        job: Owned<J>,
        input: J::Input,
        limit: Option<Duration>,
        awaited: bool,
    ) -> TaskHandle<J::Output> {
        let Some(limit) = limit.or(self.shared.config.get_timeout()) else {
            return self.start_held(job.0, input, awaited);
        };
        self.start_own(job, input, Slot::new(), Some(limit), awaited)
    }

    /// Queues `job` on `input`, with the time `limit` if it has one, as a [`Queued`] record
    /// that holds its handle's `slot`, which the submitter waits for at once if `awaited`;
    /// returns the handle. One allocation, where a promise and a record would be two.
    fn start_own<A, J>(
        &self,
        job: A,
        input: J::Input,
        slot: Slot<J::Output>,
        limit: Option<Duration>,
        awaited: bool,
    ) -> TaskHandle<J::Output>
    where
        A: AsRef<J> + Send + Sync + 'static,
        J: Job,
    {
        let record = Queued::record(&self.shared, job, input, slot, limit);
        let handle = handle_of(record.clone(), 0);
        self.start(record, awaited);
        handle
    }

    /// `map_results` through one handle per item, as a pool whose items each need a deadline
    /// runs it (see `through_handles`): each item a [`Queued`] record that holds its handle's
    /// slot, one allocation per item.
    ///
    /// The batch's count (`counted`) goes once every item is a task accepted: a `shutdown`
    /// waits for those, and one called by an item, which does not wait for itself, must not
    /// wait for the batch it is part of either.
    fn map_by_records<M, T, I>(
        &self,
        task: T,
        items: I,
        counted: Counted<'_>,
    ) -> Vec<Result<T::Output, TaskError>>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
    {
        let job = Arc::new(task.into_job());
        let limit = self.shared.config.get_timeout();
        let start = |input| self.start_own(job.clone(), input, Slot::new(), limit, false);
        let handles: Vec<_> = items.into_iter().map(start).collect();
        drop(counted);
        handles.into_iter().map(TaskHandle::join).collect()
    }

    /// Queues `record` for the pool's threads, which its submitter waits for at once if
    /// `awaited`; settles it as shut down if the pool takes no more work.
    fn start<A, J, O>(&self, record: Arc<Queued<A, J, O>>, awaited: bool)
    where
        A: AsRef<J> + Send + Sync + 'static,
        J: Job,
        O: Outcome<J::Output>,
    {
        let shared = &*self.shared;
        shared.tally.accept();
        if shared.closed.load(Ordering::SeqCst) || shared.copied() {
            shared.tally.finish(None);
            record.abandon();
            return;
        }
        self.enqueue(record, awaited);
    }

    /// Queues `job` on `input`, a task with no time limit which its submitter waits for at
    /// once if `awaited`, as a [`Held`] record, and returns its handle.
    fn start_held<J: Job>(&self, job: J, input: J::Input, awaited: bool) -> TaskHandle<J::Output> {
        let shared = &*self.shared;
        shared.tally.accept();
        if shared.closed.load(Ordering::SeqCst) || shared.copied() {
            shared.tally.finish(None);
            // Dropping the completer settles the task as shut down.
            return promise::<J::Output>().1;
        }
        let record = Held::record(&self.shared, job, input);
        let handle = handle_of(record.clone(), 0);
        self.enqueue(record, awaited);
        handle
    }

    /// Queues `record` for the pool's threads, and starts a thread draining the queue if one
    /// more may.
    fn enqueue(&self, record: Arc<dyn Run>, awaited: bool) {
        if self.shared.queue.push(record, awaited) {
            self.rayon.spawn(|| {
                POOL.with(|pool| {
                    // Set by the start handler, which rayon runs on each of the pool's threads
                    // before the thread runs any job: only the pool's threads run this.
                    if let Some(shared) = pool.get() {
                        drain(shared);
                    }
                });
            });
        }
    }
}

/// What a drainer does (see `queue.rs`): runs the queued tasks of `shared`'s pool until the
/// queue stays empty, each timed task starting from the last one's end if it follows it
/// right away (see `carry.rs`).
fn drain(shared: &Shared) {
    let carry = Carry::default();
    shared.queue.drain(|task| task.run_next(shared, &carry), || carry.forget());
}

/// A queued task, as the pool's threads run it.
trait Run: Send + Sync {
    /// Runs the task on a thread of `shared`'s pool, settles its handle and counts it
    /// finished; unless it already ran (see `cancel_by_origin`).
    fn run(&self, shared: &Shared);

    /// [`Run::run`] by a thread that takes one task after another, with what the last timed
    /// one left (see `carry.rs`). A task with no time limit runs as alone, and its time is
    /// not the next one's.
    fn run_next(&self, shared: &Shared, carry: &Carry) {
        carry.forget();
        self.run(shared);
    }

    /// Settles the task as shut down unless it ran: the pool's queue is dropped with the
    /// record in it. Nothing by default: a record that holds a [`Completer`] drops it.
    fn abandon(&self) {}
}

/// A task submitted alone with no time limit: its record holds its handle's slot (see
/// [`Holds`]), so that a submit allocates once, for both. (A task with a time limit is a
/// [`Queued`] record, which holds its alarm too.)
struct Held<J: Job> {
    slot: Slot<J::Output>,
    origin: Origin,
    /// The job and its argument, taken by the thread that runs the task. Only these: a
    /// record is allocated, and read by two threads, for every task submitted.
    task: Mutex<Option<(J, J::Input)>>,
}

impl<J: Job> Held<J> {
    fn record(shared: &Arc<Shared>, job: J, input: J::Input) -> Arc<Self> {
        let task = Mutex::new(Some((job, input)));
        Arc::new(Held { slot: Slot::new(), origin: Origin::of(shared), task })
    }

    fn take(&self) -> Option<(J, J::Input)> {
        self.task.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

impl<J: Job> Run for Held<J> {
    fn run(&self, shared: &Shared) {
        let Some((job, input)) = self.take() else { return };
        let running = Running::enter();
        if !shared.dropped.load(Ordering::Acquire) && !self.slot.is_settled() {
            self.slot.complete(shared.run(&job, input));
        } else {
            // Dropped or cancelled: settled as shut down unless it is already.
            discard(input);
            self.slot.complete(Err(TaskError::ShutDown));
        }
        drop(running);
        // Here, on a pool's thread, the last task of a job may drop it: a panic in its `Drop`
        // would abort the program inside rayon.
        discard(job);
        finished(shared);
    }

    fn abandon(&self) {
        shut_down(self.take(), &self.slot);
    }
}

/// Implements [`Cancel`] for a queued record (a [`Queued`] task, a [`Held`] one, a
/// [`Grouped`] group) through its `origin` ([`Origin`]):
/// - `cancel` stops nothing: a task checks whether it was cancelled before it starts, and one
///   that runs is not interrupted;
/// - `help_wait` fails a task joined in a copy of the process made by `fork()` with
///   [`TaskError::ShutDown`]: the copy has none of the threads that would run it. On a thread
///   of the task's own pool, a join without a deadline runs the record right there if no
///   thread took it yet: a task that joins tasks it submitted to its own pool never waits for
///   a thread that it holds itself, and runs them one inside the other, as deep as the tasks
///   nest (the queue's copy is skipped when its turn comes);
/// - `forsaken` is [`TaskError::ShutDown`] in a copy of the process made by `fork()`, as for
///   a join.
macro_rules! cancel_by_origin {
    ($($head:tt)*) => {
        $($head)* {
            fn cancel(&self) {}

            fn help_wait(
                &self,
                deadline: Option<Instant>,
                done: &dyn Fn() -> bool,
            ) -> Result<(), TaskError> {
                self.origin.help_wait(deadline, done, self)
            }

            fn forsaken(&self) -> Option<TaskError> {
                self.origin.forsaken()
            }
        }
    };
}

impl<J: Job> Holds<J::Output> for Held<J> {
    fn slot(&self, _: usize) -> &Slot<J::Output> {
        &self.slot
    }
}

cancel_by_origin!(impl<J: Job> Cancel for Held<J>);

/// Where a queued record comes from: the copy of the process that queued it (see `forks.rs`)
/// and the pool it is queued in (the address of its [`Shared`], compared only).
#[derive(Clone, Copy)]
struct Origin {
    home: u64,
    pool: usize,
}

impl Origin {
    fn of(shared: &Arc<Shared>) -> Self {
        Origin { home: shared.home, pool: Arc::as_ptr(shared) as usize }
    }

    /// [`TaskError::ShutDown`] in a copy of the process made by `fork()`, as for a join.
    fn forsaken(self) -> Option<TaskError> {
        (forks::fork_generation() != self.home).then_some(TaskError::ShutDown)
    }

    /// What a join of a task of `record` does before it waits (see `cancel_by_origin`):
    /// fails in a copy of the process made by `fork()`; on a thread of the record's own
    /// pool, without a deadline, runs `record` there unless `done()`.
    fn help_wait(
        self,
        deadline: Option<Instant>,
        done: &dyn Fn() -> bool,
        record: &dyn Run,
    ) -> Result<(), TaskError> {
        if let Some(error) = self.forsaken() {
            return Err(error);
        }
        if deadline.is_none() {
            POOL.with(|pool| match pool.get() {
                Some(shared) if Arc::as_ptr(shared) as usize == self.pool && !done() => {
                    record.run(shared);
                }
                _ => {}
            });
        }
        Ok(())
    }
}

/// Where the outcome of a [`Queued`] task goes: the slot of the handle that its record holds
/// (a task submitted alone), or a completer made by whoever called [`Execute::execute`].
trait Outcome<R>: Send + Sync + 'static {
    /// Settles the task with `result`, unless it is settled already.
    fn complete(&self, result: Result<R, TaskError>) -> bool;

    /// Whether the task is settled already.
    fn is_settled(&self) -> bool;

    /// Registers the task's `record` for its handle: as the hook of a completer (see
    /// [`Completer::on_cancel_of`]); a slot the record holds is its handle's already.
    fn register(&self, record: Weak<dyn Cancel>) {
        let _ = record;
    }
}

impl<R: Send + 'static> Outcome<R> for Slot<R> {
    fn complete(&self, result: Result<R, TaskError>) -> bool {
        Slot::complete(self, result)
    }

    fn is_settled(&self) -> bool {
        Slot::is_settled(self)
    }
}

impl<R: Send + 'static> Outcome<R> for Completer<R> {
    fn complete(&self, result: Result<R, TaskError>) -> bool {
        Completer::complete(self, result)
    }

    fn is_settled(&self) -> bool {
        Completer::is_settled(self)
    }

    fn register(&self, record: Weak<dyn Cancel>) {
        self.on_cancel_of(record);
    }
}

/// The record of one queued task that [`Held`] does not cover: one with a time limit, or one
/// given with its completer ([`Execute::execute`]). It is the handle's record either way (see
/// `cancel_by_origin`), so that a join on one of the pool's threads can run it and a join in a
/// copy of the process made by `fork()` fails rather than waits. With a time limit it is also
/// the watchdog's alarm and holds the link to the relief thread, so that a timed task submitted
/// alone costs one allocation, as one without a limit does: whichever of the task and its
/// alarm settles the slot first wins.
struct Queued<A, J: Job, O> {
    origin: Origin,
    /// Where the outcome goes.
    outcome: O,
    /// The job (shared with other tasks, or owned by this one) and argument, taken by the
    /// thread that runs the task.
    task: Mutex<Option<(A, J::Input)>>,
    /// The time limit, if the task has one.
    limit: Option<Limit>,
}

/// A queued task's time limit and what keeps it.
struct Limit {
    limit: Duration,
    /// The task's record, as the alarm the watchdog rings at the deadline.
    alarm: Weak<dyn Alarm>,
    /// The pool, for the relief thread that the alarm starts: held weakly, as the pool's
    /// queue holds the record.
    pool: Weak<Shared>,
    /// Tells the relief thread, if the alarm started one, that the task returned.
    relief: Relief,
}

impl<A, J, O> Queued<A, J, O>
where
    A: AsRef<J> + Send + Sync + 'static,
    J: Job,
    O: Outcome<J::Output>,
{
    /// The record of `job` on `input` for `shared`'s pool, its outcome to `outcome`, with a
    /// time `limit` if it has one.
    fn record(
        shared: &Arc<Shared>,
        job: A,
        input: J::Input,
        outcome: O,
        limit: Option<Duration>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|record: &Weak<Self>| {
            outcome.register(record.clone());
            let limit = limit.map(|limit| Limit {
                limit,
                alarm: record.clone(),
                pool: Arc::downgrade(shared),
                relief: Relief::default(),
            });
            let task = Mutex::new(Some((job, input)));
            Queued { origin: Origin::of(shared), outcome, task, limit }
        })
    }

    fn take(&self) -> Option<(A, J::Input)> {
        self.task.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// Runs `job` on `input` under `limit` on a thread of `shared`'s pool and settles the
    /// outcome: with the watchdog's alarm armed at the deadline, which settles it as timed out
    /// should the task run past it. Counts from the last timed task's end if `carry` holds it,
    /// and leaves its own there (see `carry.rs`).
    fn run_timed(&self, shared: &Shared, limit: &Limit, job: &J, input: J::Input, carry: &Carry) {
        // From the last timed task's end, if this thread took this one right after it and
        // nothing of the user's ran in between (see `carry.rs`): one clock read per task.
        let start = carry.start();
        // A limit too long to be an instant never runs out.
        let Some(deadline) = start.checked_add(limit.limit) else {
            self.outcome.complete(shared.run(job, input));
            return;
        };
        let armed = match shared.watchdog.arm(deadline, limit.alarm.clone()) {
            Ok(armed) => armed,
            Err(e) => {
                // No deadline could be kept: the task does not run, rather than run past its
                // limit with nothing to end the caller's wait.
                let reason = format!("cannot start the thread that keeps time limits: {e}");
                self.outcome.complete(Err(TaskError::WorkerStart { reason }));
                discard(input);
                return;
            }
        };
        let outcome = shared.run(job, input);
        let ended = carry::now();
        limit.relief.end();
        if shared.queue.relieved() {
            // Its relief thread, if it has one, looks and leaves. One counted after this load
            // looks at `over` once woken, and leaves then (see `relief.rs`).
            shared.queue.wake_relief();
        }
        // A task that ends past its deadline timed out, even if the watchdog (on a busy
        // machine) has not rung yet.
        let delivered = if ended < deadline {
            self.outcome.complete(outcome)
        } else {
            self.outcome
                .complete(Err(TaskError::TimedOut { limit: limit.limit, still_running: true }));
            discard(outcome);
            false
        };
        shared.watchdog.disarm(armed);
        // The end is the start of the next timed task this thread takes right away, unless
        // something of the user's runs first: a result dropped (the task timed out or was
        // cancelled), or the job's `Drop` (after this returns).
        if delivered && !std::mem::needs_drop::<J>() {
            carry.leave(ended);
        }
    }
}

impl<A, J, O> Run for Queued<A, J, O>
where
    A: AsRef<J> + Send + Sync + 'static,
    J: Job,
    O: Outcome<J::Output>,
{
    fn run(&self, shared: &Shared) {
        // Alone: its end is no other task's start.
        self.run_next(shared, &Carry::default());
    }

    fn run_next(&self, shared: &Shared, carry: &Carry) {
        let Some((job, input)) = self.take() else { return };
        let running = Running::enter();
        if shared.dropped.load(Ordering::Acquire) || self.outcome.is_settled() {
            // Dropped or cancelled: settled as shut down unless it is already.
            carry.forget();
            discard(input);
            self.outcome.complete(Err(TaskError::ShutDown));
        } else if let Some(limit) = &self.limit {
            self.run_timed(shared, limit, job.as_ref(), input, carry);
        } else {
            carry.forget();
            self.outcome.complete(shared.run(job.as_ref(), input));
        }
        drop(running);
        // Here, on a pool's thread, the last task of a job may drop it: a panic in its `Drop`
        // would abort the program inside rayon.
        discard(job);
        finished(shared);
    }

    fn abandon(&self) {
        shut_down(self.take(), &self.outcome);
    }
}

impl<A, J, O> Alarm for Queued<A, J, O>
where
    A: AsRef<J> + Send + Sync + 'static,
    J: Job,
    O: Outcome<J::Output>,
{
    /// The task ran past its deadline: a relief thread takes its thread's place, in the
    /// queue's count before the caller learns of the timeout (a `map` then goes through the
    /// queue: `through_handles`), and the task is settled as timed out.
    fn ring(self: Arc<Self>) {
        let Some(limit) = &self.limit else { return };
        if let Some(pool) = limit.pool.upgrade() {
            let name = format!("{}-relief", pool.config.get_name_prefix());
            let record = self.clone();
            let over = move || record.limit.as_ref().is_none_or(|l| l.relief.is_over());
            let queue = pool.clone();
            relief::start(
                name,
                over,
                move |over| relieve(&pool, over),
                |thread| queue.queue.register_relief(thread),
            );
        }
        self.outcome.complete(Err(TaskError::TimedOut { limit: limit.limit, still_running: true }));
    }
}

impl<A, J> Holds<J::Output> for Queued<A, J, Slot<J::Output>>
where
    A: AsRef<J> + Send + Sync + 'static,
    J: Job,
{
    fn slot(&self, _: usize) -> &Slot<J::Output> {
        &self.outcome
    }
}

/// Settles a record's task that the pool's queue let go of unrun as shut down, if it was
/// still there to take (`taken`), dropping its argument and job (a panic in their `Drop`
/// is contained, see [`discard`]).
fn shut_down<J, I, R>(taken: Option<(J, I)>, outcome: &impl Outcome<R>) {
    if let Some((job, input)) = taken {
        discard(input);
        discard(job);
        outcome.complete(Err(TaskError::ShutDown));
    }
}

/// Counts a task that ran on this thread finished.
fn finished(shared: &Shared) {
    shared.tally.finish(rayon::current_thread_index());
    if PARKED.get() > DEPTH.get() {
        // This task was parked by its `shutdown` (or one run inside it): finished.
        PARKED.set(DEPTH.get());
        shared.tally.unpark();
    }
}

/// Items of one `imap` queued together (see [`Execute::start_group`]): the record is in the
/// queue once for each thread that may run them, and each thread that takes it runs the next
/// item until none is left, so that a slow item holds back only its own thread. It holds the
/// slots of the items' handles ([`Holds`]), so that the group is one allocation, not one per
/// item, and lives until the last of them is dropped.
struct Grouped<J: Job> {
    origin: Origin,
    /// Dropped through [`discard`] with the record.
    job: Option<Arc<J>>,
    /// The items no thread took yet, each with the index of its slot.
    items: Mutex<VecDeque<(usize, J::Input)>>,
    /// The items' handles' slots, in input order.
    slots: Box<[Slot<J::Output>]>,
}

impl<J: Job> Grouped<J> {
    fn record(
        shared: &Arc<Shared>,
        job: Arc<J>,
        inputs: Vec<J::Input>,
        notes: Option<(&Sender<usize>, &[usize])>,
    ) -> Arc<Self> {
        let slot = |i| match notes {
            Some((tx, indices)) => Slot::notifying(tx.clone(), indices[i]),
            None => Slot::new(),
        };
        Arc::new(Grouped {
            origin: Origin::of(shared),
            job: Some(job),
            slots: (0..inputs.len()).map(slot).collect(),
            items: Mutex::new(inputs.into_iter().enumerate().collect()),
        })
    }

    fn next(&self) -> Option<(usize, J::Input)> {
        self.items.lock().unwrap_or_else(PoisonError::into_inner).pop_front()
    }
}

impl<J: Job> Run for Grouped<J> {
    fn run(&self, shared: &Shared) {
        let Some(job) = &self.job else { return };
        while let Some((index, input)) = self.next() {
            let running = Running::enter();
            let slot = &self.slots[index];
            if !shared.dropped.load(Ordering::Acquire) && !slot.is_settled() {
                slot.complete(shared.run(job.as_ref(), input));
            } else {
                // Dropped or cancelled: settled as shut down unless it is already.
                discard(input);
                slot.complete(Err(TaskError::ShutDown));
            }
            drop(running);
            finished(shared);
        }
    }

    fn abandon(&self) {
        while let Some((index, input)) = self.next() {
            discard(input);
            self.slots[index].complete(Err(TaskError::ShutDown));
        }
    }
}

impl<J: Job> Holds<J::Output> for Grouped<J> {
    fn slot(&self, index: usize) -> &Slot<J::Output> {
        &self.slots[index]
    }
}

// A join runs the group's items that no thread took yet, right there.
cancel_by_origin!(impl<J: Job> Cancel for Grouped<J>);

impl<J: Job> Drop for Grouped<J> {
    fn drop(&mut self) {
        // On a pool's thread a panic in a `Drop` would abort the program inside rayon.
        let items = std::mem::take(self.items.get_mut().unwrap_or_else(PoisonError::into_inner));
        for (_, input) in items {
            discard(input);
        }
        if let Some(job) = self.job.take() {
            discard(job);
        }
    }
}

cancel_by_origin!(
    impl<A, J, O> Cancel for Queued<A, J, O>
    where
        A: AsRef<J> + Send + Sync + 'static,
        J: Job,
        O: Outcome<J::Output>,
);

/// What a relief thread does (see `relief.rs`): runs the queued tasks of `shared`'s pool as
/// its threads do, and sleeps while there are none, until `over()` or the pool is dropped.
fn relieve(shared: &Arc<Shared>, over: &dyn Fn() -> bool) {
    POOL.with(|pool| drop(pool.set(shared.clone())));
    shared.queue.await_relief_registration();
    loop {
        shared.queue.help(|task| task.run(shared));
        if over() || shared.dropped.load(Ordering::Acquire) {
            break;
        }
        shared.queue.wait_as_relief();
    }
    shared.queue.unregister_relief();
}

impl Pool for ThreadPool {
    fn workers(&self) -> usize {
        self.rayon.current_num_threads()
    }

    /// 256 per thread: the most items pulled and not yet yielded, once an `imap`'s items
    /// proved fast.
    fn imap_window(&self) -> usize {
        IMAP_MOST_PER_THREAD * self.workers()
    }

    fn apply<M, T: IntoTask<M>>(&self, task: T, input: T::Input) -> Result<T::Output, TaskError> {
        let () = <T::Job as Job>::PORTABLE;
        // Marked as waited for: a pool thread watches closely for the next task.
        self.submit_one(Owned(task.into_job()), input, None, true).join()
    }

    fn submit<M, T: IntoTask<M>>(&self, task: T, input: T::Input) -> TaskHandle<T::Output> {
        let () = <T::Job as Job>::PORTABLE;
        self.submit_one(Owned(task.into_job()), input, None, false)
    }

    fn submit_timeout<M, T: IntoTask<M>>(
        &self,
        task: T,
        input: T::Input,
        limit: Duration,
    ) -> TaskHandle<T::Output> {
        let () = <T::Job as Job>::PORTABLE;
        self.submit_one(Owned(task.into_job()), input, Some(limit), false)
    }

    fn shutdown(&self) {
        let shared = &*self.shared;
        if shared.copied() {
            // Nothing runs in a copy of the process: what was running is the original's.
            return;
        }
        shared.closed.store(true, Ordering::SeqCst);
        let inside = self.runs_here();
        if inside {
            // From a task of this pool: it cannot wait for itself, nor for the tasks it runs
            // inside, and the other threads may all be waiting here too.
            let depth = DEPTH.get();
            if depth == 0 {
                // From an item of a batch (`map` and its kin) that rayon runs on this thread:
                // the batch, and the task it may have been given from, cannot finish before
                // the item returns, and this thread does not know which they are. Closed,
                // without waiting.
                return;
            }
            shared.tally.park(depth.saturating_sub(PARKED.get()));
            PARKED.set(PARKED.get().max(depth));
            shared.tally.wait_idle_inside(|| shared.queue.help(|t| t.run(shared)));
        } else {
            shared.tally.wait_idle();
        }
    }

    fn map_results<M, T, I>(&self, task: T, items: I) -> Vec<Result<T::Output, TaskError>>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
    {
        let () = <T::Job as Job>::PORTABLE;
        let Some(counted) = self.count_batch() else {
            return items.into_iter().map(|_| Err(TaskError::ShutDown)).collect();
        };
        if self.through_handles() {
            return self.map_by_records(task, items, counted);
        }
        let job = task.into_job();
        let items: Vec<T::Input> = items.into_iter().collect();
        let total = items.len();
        let batch = move |turns: &Turns<'_>| outcome_list(turns, &job, items, None);
        self.batch(&counted, batch)
            .unwrap_or_else(|| (0..total).map(|_| Err(TaskError::ShutDown)).collect())
    }

    fn map_results_with_progress<M, T, I, F>(
        &self,
        task: T,
        items: I,
        mut progress: F,
    ) -> Vec<Result<T::Output, TaskError>>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
        F: FnMut(usize, usize),
    {
        let () = <T::Job as Job>::PORTABLE;
        let counted = if self.through_handles() { None } else { self.count_batch() };
        let Some(counted) = counted else {
            // Through handles: refused, or see `through_handles`.
            return map_by_handles_with_progress(self, task, items, progress);
        };
        let job = task.into_job();
        let items: Vec<T::Input> = items.into_iter().collect();
        let total = items.len();
        let shut_down = || (0..total).map(|_| Err(TaskError::ShutDown)).collect();
        if !counted.behind {
            progress(0, total);
        }
        if self.rayon.current_thread_index().is_some() {
            // Called from a task of this pool: this thread must help run the items rather
            // than wait for them, so the count comes at the end.
            let batch = move |turns: &Turns<'_>| outcome_list(turns, &job, items, None);
            let outcomes = self.batch(&counted, batch).unwrap_or_else(shut_down);
            progress(total, total);
            return outcomes;
        }
        // The items run in the pool while this thread counts them as they finish.
        let (tx, rx) = crossbeam_channel::unbounded::<()>();
        if counted.behind {
            // Through the queue (see `batch`): the count ends when the batch drops its sender.
            let result = self
                .queue_batch(move |turns: &Turns<'_>| outcome_list(turns, &job, items, Some(&tx)));
            // Once queued.
            progress(0, total);
            let mut done = 0;
            while done < total && rx.recv().is_ok() {
                done += 1 + rx.try_iter().count();
                progress(done, total);
            }
            return result.recv().unwrap_or_else(|_| shut_down());
        }
        let turns = Turns::new(&self.shared, true);
        let mut results = Vec::new();
        self.rayon.in_place_scope(|scope| {
            let (turns, job, results) = (&turns, &job, &mut results);
            scope.spawn(move |_| *results = outcome_list(turns, job, items, Some(&tx)));
            let mut done = 0;
            while done < total && rx.recv().is_ok() {
                done += 1 + rx.try_iter().count();
                progress(done, total);
            }
        });
        results
    }

    fn map<M, T, I>(&self, task: T, items: I) -> Result<Vec<T::Output>, TaskError>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
    {
        let () = <T::Job as Job>::PORTABLE;
        let Some(counted) = self.count_batch() else {
            // Refused item by item, as by `map_results`: no items, nothing refused.
            return match items.into_iter().next() {
                Some(_) => Err(TaskError::ShutDown),
                None => Ok(Vec::new()),
            };
        };
        if self.through_handles() {
            return self.map_by_records(task, items, counted).into_iter().collect();
        }
        // Optimistic: collect the outputs straight into place, as rayon does. A failure is
        // recorded and aborts the batch (items not yet started are skipped), so no output
        // needs a placeholder.
        let job = task.into_job();
        let items: Vec<T::Input> = items.into_iter().collect();
        let batch = move |turns: &Turns<'_>| {
            let failures: Mutex<Vec<(usize, TaskError)>> = Mutex::new(Vec::new());
            let run = if std::mem::needs_drop::<T::Output>() {
                // The values made before a failure are dropped as it unwinds the batch, where
                // a panic of their `Drop` would abort the program: each is held so that its
                // drop is printed and goes no further, and let go of in place once all
                // succeeded.
                collect_optimistic(turns, &job, items, &failures, |value| Quiet(Some(value)))
                    .map(|held| held.into_iter().filter_map(|mut q| q.0.take()).collect())
            } else {
                collect_optimistic(turns, &job, items, &failures, |value| value)
            };
            (run, failures.into_inner().unwrap_or_else(PoisonError::into_inner))
        };
        let Some((run, failures)) = self.batch(&counted, batch) else {
            return Err(TaskError::ShutDown);
        };
        match (run, failures.into_iter().min_by_key(|(i, _)| *i)) {
            (Ok(outputs), None) => Ok(outputs),
            (_, Some((_, first))) => Err(first),
            // Only the abort marker unwinds out of the batch, and it is always recorded first.
            (Err(_), None) => Err(TaskError::ShutDown),
        }
    }
}

/// A value of a batch that may be abandoned half made (see `ThreadPool::map`): dropped with
/// [`taskpool_core::backend::discard`], so that a panic of its `Drop` during the unwind that
/// abandons the batch is printed instead of aborting the program.
struct Quiet<T>(Option<T>);

impl<T> Drop for Quiet<T> {
    fn drop(&mut self) {
        if let Some(value) = self.0.take() {
            taskpool_core::backend::discard(value);
        }
    }
}

/// Runs `job` on every item on the pool's threads (called on one of them) and collects
/// `wrap` of each output in place, in order. A failing item records itself in `failures` and
/// unwinds the batch (the `Err` of the outcome), which drops the outputs collected so far.
fn collect_optimistic<J: Job, O: Send>(
    turns: &Turns<'_>,
    job: &J,
    items: Vec<J::Input>,
    failures: &Mutex<Vec<(usize, TaskError)>>,
    wrap: impl Fn(J::Output) -> O + Sync,
) -> std::thread::Result<Vec<O>> {
    let shared = turns.shared;
    let backtraces = shared.config.get_backtraces();
    panic::catch_unwind(AssertUnwindSafe(|| {
        taking_turns(turns, items.into_par_iter().enumerate())
            .map_init(
                || {
                    if let Err(e) = shared.ensure_initialized() {
                        fail(failures, 0, e);
                    }
                    PanicScope::enter(backtraces)
                },
                |scope, (i, input)| match scope.catch(|| job.run(input)) {
                    Ok(value) => wrap(value),
                    Err(report) => fail(failures, i, report.into()),
                },
            )
            .collect::<Vec<O>>()
    }))
}

/// A batch given from outside the pool is counted in its tally (see
/// `ThreadPool::count_batch`), and among the batches that run, until this drops, however the
/// batch ends.
struct Counted<'a> {
    /// The pool, for a batch given from outside it.
    outside: Option<&'a Shared>,
    /// Whether another batch from outside the pool ran when this one was given.
    behind: bool,
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        if let Some(shared) = self.outside {
            shared.batches.fetch_sub(1, Ordering::SeqCst);
            shared.tally.finish(None);
        }
    }
}

/// A batch given from outside the pool while another given so runs, queued as a task: the
/// threads running the other give it its turn between their items (see [`Turns`]), where
/// rayon would run it only once they have nothing of the other left. It runs on the thread
/// that takes it, and the other threads take parts of it as they come to look for work. Its
/// caller counted it (see `ThreadPool::count_batch`).
struct QueuedBatch<F, R> {
    /// Taken by the thread that runs it.
    batch: Mutex<Option<F>>,
    /// The pool's threads, to which a relief thread that takes the batch from the queue
    /// hands it.
    rayon: Arc<rayon::ThreadPool>,
    /// Where its result goes.
    done: crossbeam_channel::Sender<R>,
}

impl<F, R> Run for QueuedBatch<F, R>
where
    F: FnOnce(&Turns<'_>) -> R + Send + 'static,
    R: Send + 'static,
{
    fn run(&self, shared: &Shared) {
        let batch = self.batch.lock().unwrap_or_else(PoisonError::into_inner).take();
        let Some(batch) = batch else { return };
        if self.rayon.current_thread_index().is_none() {
            // A relief thread, there to run the queued tasks while a task past its limit
            // holds a pool thread: it hands the batch to rayon, as a batch given alone goes,
            // rather than wait for the pool's threads.
            let done = self.done.clone();
            self.rayon.spawn(move || {
                POOL.with(|pool| {
                    // Set on every pool thread (see `ThreadPool::enqueue`).
                    if let Some(shared) = pool.get() {
                        let _ = done.send(batch(&Turns::new(shared, true)));
                    }
                });
            });
            return;
        }
        let result = batch(&Turns::new(shared, true));
        let _ = self.done.send(result);
    }
}

/// How long a thread running a batch's items on rayon (`map` and its kin) goes at most
/// between looks at the pool's queue, unless one item takes longer: a task submitted (or an
/// `imap`'s group queued) while the batch runs waits about this long, or one item, for a
/// thread, rather than for the whole batch.
const TURN_EVERY: Duration = Duration::from_micros(50);

/// The most queued tasks a thread runs one inside another, each taken between the items of a
/// batch (see [`Turns`]): each brings a batch's frames and its own onto the thread's stack,
/// and a batch given behind another, or a task that calls `map`, would otherwise nest as
/// deep as callers give batches (256 callers of `map` at once overflowed a pool thread's
/// stack). A thread this deep takes none between its items; the others still do, and so
/// does this one once it comes back up.
const TURNS_MOST_NESTED: usize = 4;

/// The most items between two looks at the queue, however fast they are: a look reads the
/// clock and costs tens of nanoseconds, which would cost a `map` of no-ops (a fraction of a
/// nanosecond each) its speed if it came every few thousand items.
const TURN_MOST_ITEMS: usize = 1 << 16;

/// Gives the tasks queued while a batch runs on rayon a turn between its items: every
/// thread running the batch's items looks at the queue about every [`TURN_EVERY`] (after
/// every item, if they take longer), and runs the next task waiting there, if any, before
/// it goes on. Rayon's threads are all busy with the batch meanwhile, so without this a
/// task would wait for the whole batch, in the queue and in rayon's (where a drainer's job
/// waits).
///
/// A look costs the items nothing: each rayon split of the batch runs its items in chunks
/// (see [`TakingTurns`]), each as tight a loop as the split's items without looks, and
/// looks between them. A chunk holds as many items as took [`TURN_EVERY`] in the last one,
/// at most eight times as many as the last and [`TURN_MOST_ITEMS`]; the batch's threads
/// share what they learned (`chunk`), so that each new split starts from it.
struct Turns<'a> {
    shared: &'a Shared,
    /// Whether the batch is counted in the tally as a task of its own (run from outside the
    /// pool): a task run between its items counts it as one it runs inside (see `DEPTH`),
    /// so that a `shutdown` there does not wait for it.
    counted: bool,
    /// Items per chunk, as the batch's threads learned it.
    chunk: AtomicUsize,
}

/// The chunks of one rayon split of a batch (see [`Turns`]).
struct Pace {
    /// Items in the next chunk.
    chunk: usize,
    /// When the last chunk started, if it was timed.
    since: Option<Instant>,
}

impl<'a> Turns<'a> {
    fn new(shared: &'a Shared, counted: bool) -> Self {
        Turns { shared, counted, chunk: AtomicUsize::new(1) }
    }

    /// The chunks of a new rayon split, at the size learned so far.
    fn pace(&self) -> Pace {
        Pace { chunk: self.chunk.load(Ordering::Relaxed), since: None }
    }

    /// Before the first chunk of a split: runs the next task waiting in the queue, if any.
    /// (A split starts when a thread took it from another, or found it on its own deque.)
    fn look_first(&self) {
        if let Some(task) = self.next_waiting() {
            self.run(&*task);
        }
    }

    /// The next task waiting in the queue, unless this thread already runs as many taken
    /// between items as it may (see [`TURNS_MOST_NESTED`]).
    fn next_waiting(&self) -> Option<Arc<dyn Run>> {
        if TURNS_TAKEN.get() >= TURNS_MOST_NESTED {
            return None;
        }
        self.shared.queue.next_waiting()
    }

    /// Between two chunks of a split: sets the next chunk's size from the time per item of
    /// the last, then runs the next task waiting in the queue, if any.
    #[cold]
    #[inline(never)]
    fn look(&self, pace: &mut Pace, done: usize) {
        let now = Instant::now();
        if let Some(since) = pace.since {
            let per_item =
                (now.saturating_duration_since(since).as_nanos() / done.max(1) as u128).max(1);
            let most = (pace.chunk * 8).min(TURN_MOST_ITEMS) as u128;
            let fits = (TURN_EVERY.as_nanos() / per_item).clamp(1, most) as usize;
            // A power of two, as a rule: the size moves only when the time per item does.
            let next = 1 << fits.ilog2();
            if next != pace.chunk {
                pace.chunk = next;
                self.chunk.store(next, Ordering::Relaxed);
            }
        }
        pace.since = Some(now);
        if let Some(task) = self.next_waiting() {
            self.run(&*task);
            // The task's time is not the items'.
            pace.since = Some(Instant::now());
        }
    }

    /// Runs a queued task between the batch's items, as a drainer would.
    fn run(&self, task: &dyn Run) {
        let _taken = Taken::enter();
        if !self.counted {
            return task.run(self.shared);
        }
        // The batch, counted as a task, is one this thread runs the task inside: a
        // `shutdown` in the task parks it with the task (see `Pool::shutdown`), for it
        // cannot finish before the task returns.
        let inside = Running::enter();
        task.run(self.shared);
        drop(inside);
        if PARKED.get() > DEPTH.get() {
            PARKED.set(DEPTH.get());
            self.shared.tally.unpark();
        }
    }
}

/// Counts a task taken between a batch's items in [`TURNS_TAKEN`] while it runs, however it
/// ends.
struct Taken;

impl Taken {
    fn enter() -> Taken {
        TURNS_TAKEN.set(TURNS_TAKEN.get() + 1);
        Taken
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        TURNS_TAKEN.set(TURNS_TAKEN.get().saturating_sub(1));
    }
}

/// `items`, whose rayon splits give queued tasks their `turns` between chunks of items.
fn taking_turns<'t, I: IndexedParallelIterator>(
    turns: &'t Turns<'t>,
    items: I,
) -> TakingTurns<'t, I> {
    TakingTurns { items, turns }
}

/// A parallel iterator that gives queued tasks their turns (see [`Turns`]) between chunks
/// of its items.
struct TakingTurns<'t, I> {
    items: I,
    turns: &'t Turns<'t>,
}

impl<I: IndexedParallelIterator> ParallelIterator for TakingTurns<'_, I> {
    type Item = I::Item;

    fn drive_unindexed<C: UnindexedConsumer<Self::Item>>(self, consumer: C) -> C::Result {
        bridge(self, consumer)
    }

    fn opt_len(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

impl<I: IndexedParallelIterator> IndexedParallelIterator for TakingTurns<'_, I> {
    fn len(&self) -> usize {
        self.items.len()
    }

    fn drive<C: Consumer<Self::Item>>(self, consumer: C) -> C::Result {
        bridge(self, consumer)
    }

    fn with_producer<CB: ProducerCallback<Self::Item>>(self, callback: CB) -> CB::Output {
        let len = self.items.len();
        let turns = self.turns;
        self.items.with_producer(TurnsCallback { callback, turns, len })
    }
}

/// Wraps the producer of a [`TakingTurns`]' items.
struct TurnsCallback<'t, CB> {
    callback: CB,
    turns: &'t Turns<'t>,
    len: usize,
}

impl<'t, T, CB: ProducerCallback<T>> ProducerCallback<T> for TurnsCallback<'t, CB> {
    type Output = CB::Output;

    fn callback<P: Producer<Item = T>>(self, items: P) -> CB::Output {
        self.callback.callback(TurnsProducer { items, turns: self.turns, len: self.len })
    }
}

/// The items of a rayon split of a [`TakingTurns`], and how many there are.
struct TurnsProducer<'t, P> {
    items: P,
    turns: &'t Turns<'t>,
    len: usize,
}

impl<P: Producer> Producer for TurnsProducer<'_, P> {
    type Item = P::Item;
    type IntoIter = P::IntoIter;

    fn into_iter(self) -> P::IntoIter {
        self.items.into_iter()
    }

    fn min_len(&self) -> usize {
        self.items.min_len()
    }

    fn max_len(&self) -> usize {
        self.items.max_len()
    }

    fn split_at(self, index: usize) -> (Self, Self) {
        let (left, right) = self.items.split_at(index);
        let turns = self.turns;
        (
            TurnsProducer { items: left, turns, len: index },
            TurnsProducer { items: right, turns, len: self.len - index },
        )
    }

    /// Runs the split's items in chunks, each as the items' own producer runs them, with a
    /// look at the queue before the first and between two.
    fn fold_with<F: Folder<Self::Item>>(self, mut folder: F) -> F {
        let turns = self.turns;
        turns.look_first();
        let mut pace = turns.pace();
        let (mut rest, mut left) = (self.items, self.len);
        loop {
            let take = pace.chunk.min(left);
            if take == left {
                return rest.fold_with(folder);
            }
            let (chunk, after) = rest.split_at(take);
            folder = chunk.fold_with(folder);
            if folder.full() {
                return folder;
            }
            (rest, left) = (after, left - take);
            turns.look(&mut pace, take);
        }
    }
}

/// Records the failure of item `index` and aborts the batch.
#[cold]
fn fail(failures: &Mutex<Vec<(usize, TaskError)>>, index: usize, error: TaskError) -> ! {
    failures.lock().unwrap_or_else(PoisonError::into_inner).push((index, error));
    panic::resume_unwind(Box::new(Aborted))
}

/// The payload that unwinds a batch once one of its tasks failed; the failure itself was
/// recorded before. It never reaches a panic hook (`resume_unwind` skips the hook).
struct Aborted;

/// Runs a batch as a rayon parallel iterator of `(index, outcome)`, in input order, giving
/// queued tasks their `turns` between items. Panic capture and the initializer check are set
/// up once per rayon split, not per item.
fn outcomes<'a, J: Job>(
    turns: &'a Turns<'a>,
    job: &'a J,
    items: Vec<J::Input>,
) -> impl IndexedParallelIterator<Item = (usize, Result<J::Output, TaskError>)> + 'a {
    let shared = turns.shared;
    let backtraces = shared.config.get_backtraces();
    taking_turns(turns, items.into_par_iter().enumerate()).map_init(
        move || (shared.ensure_initialized(), PanicScope::enter(backtraces)),
        move |(init, scope), (i, input)| {
            let outcome = match init {
                Ok(()) => scope.catch(|| job.run(input)).map_err(TaskError::from),
                Err(e) => Err(e.clone()),
            };
            (i, outcome)
        },
    )
}

/// The outcomes of a batch (see [`outcomes`]) in input order, each told to `done` as it
/// comes, if given.
fn outcome_list<J: Job>(
    turns: &Turns<'_>,
    job: &J,
    items: Vec<J::Input>,
    done: Option<&crossbeam_channel::Sender<()>>,
) -> Vec<Result<J::Output, TaskError>> {
    let told = |(_, outcome)| {
        if let Some(done) = done {
            let _ = done.send(());
        }
        outcome
    };
    outcomes(turns, job, items).map(told).collect()
}

impl Drop for Shared {
    /// Settles the tasks left in the queue as shut down: the pool's threads are gone.
    fn drop(&mut self) {
        self.queue.help(|task| task.abandon());
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.dropped.store(true, Ordering::Release);
        // Relief threads asleep leave now; those running tasks leave after them.
        self.shared.queue.wake_relief();
    }
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool")
            .field("workers", &self.workers())
            .field("closed", &self.is_closed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// The pool the tasks below look at.
    static TESTED: OnceLock<ThreadPool> = OnceLock::new();

    /// How many tasks the tested pool's `shutdown` would wait for now.
    fn unfinished(_: u64) -> usize {
        TESTED.get().expect("the pool is set").shared.tally.unfinished()
    }

    #[test]
    fn shutdown_counts_a_map_run_from_outside_the_pool() {
        let pool = TESTED.get_or_init(|| ThreadPool::new(2).unwrap());
        let counted = |seen: &[usize]| seen.iter().all(|&n| n >= 1);
        let seen = pool.map(unfinished, 0..8).unwrap();
        assert!(counted(&seen), "map: {seen:?}");
        let seen: Vec<usize> = pool.map_results(unfinished, 0..8).into_iter().flatten().collect();
        assert!(counted(&seen), "map_results: {seen:?}");
        let seen = pool.map_with_progress(unfinished, 0..8, |_, _| {}).unwrap();
        assert!(counted(&seen), "map_with_progress: {seen:?}");
        assert_eq!(unfinished(0), 0, "nothing is counted once the maps returned");
    }

    fn square(x: u64) -> u64 {
        x * x
    }

    /// The size of the record of a task of `job` submitted alone.
    fn held_size<J: Job>(_: &J) -> usize {
        size_of::<Held<J>>()
    }

    /// A task submitted alone, with no time limit, is one allocation that two threads read
    /// and write: it holds its handle's slot, where it comes from, and its job and argument,
    /// nothing more (no limit, no watchdog, no mark of whether its submitter waits).
    #[test]
    fn the_record_of_a_task_submitted_alone_holds_only_its_slot_origin_and_work() {
        let parts = size_of::<Slot<u64>>() + size_of::<Origin>();
        let taken_once = size_of::<Mutex<Option<u64>>>();
        assert_eq!(held_size(&square.into_job()), parts + taken_once);
    }

    /// Queues `tasks` timed tasks of `job()` on `shared`'s pool, each on its index, and drains
    /// the queue on this thread; returns the results and the clock reads of the tasks.
    fn burst<J: Job<Input = u64>>(
        shared: &Arc<Shared>,
        job: impl Fn() -> J,
        tasks: u64,
    ) -> (Vec<J::Output>, usize) {
        let limit = shared.config.get_timeout();
        let handles: Vec<_> = (0..tasks)
            .map(|i| {
                let record = Queued::record(shared, Owned(job()), i, Slot::new(), limit);
                let handle = handle_of(record.clone(), 0);
                let _ = shared.queue.push(record, false);
                handle
            })
            .collect();
        let reads = carry::READS.get();
        drain(shared);
        let reads = carry::READS.get() - reads;
        (handles.into_iter().map(|h| h.join().unwrap()).collect(), reads)
    }

    fn timed_pool() -> Arc<Shared> {
        let config = Config::new().workers(1).timeout(Duration::from_secs(600));
        Arc::new(Shared::new(config))
    }

    /// A task taken right after a timed one returned counts from that one's end: a burst
    /// reads the clock once per task, and one more for the first start. Before, twice per
    /// task.
    #[test]
    fn a_burst_of_timed_tasks_reads_the_clock_once_per_task() {
        let (squares, reads) = burst(&timed_pool(), || square.into_job(), 100);
        assert_eq!(squares, (0..100).map(square).collect::<Vec<_>>());
        assert_eq!(reads, 100 + 1);
    }

    /// A task with something to drop.
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Labelled {
        label: String,
    }

    impl taskpool_core::Task for Labelled {
        type Input = u64;
        type Output = usize;

        fn run(&self, input: u64) -> usize {
            self.label.len() + input as usize
        }
    }

    /// A job whose `Drop` runs after the task returns (user code) does not lend the task's
    /// end to the next: each task reads the clock as it starts.
    #[test]
    fn a_job_that_runs_code_as_it_drops_does_not_lend_its_end_to_the_next_task() {
        let job = || Labelled { label: "ab".into() }.into_job();
        let (lengths, reads) = burst(&timed_pool(), job, 100);
        assert_eq!(lengths, (0..100).map(|i| i + 2).collect::<Vec<_>>());
        assert_eq!(reads, 2 * 100);
    }

    /// Should a pool's threads end with tasks still in its queue, the queue, dropped with
    /// them, settles them.
    #[test]
    fn a_task_left_in_a_dropped_queue_settles_as_shut_down() {
        let shared = Arc::new(Shared::new(Config::new().workers(1)));
        let record = Held::record(&shared, square.into_job(), 3);
        let mut handle = handle_of(record.clone(), 0);
        assert!(shared.queue.push(record, false), "the first push asks for a drainer");
        drop(shared);
        let outcome = handle.join_timeout(Duration::from_secs(60));
        assert!(matches!(outcome, Err(TaskError::ShutDown)), "{outcome:?}");
    }

    /// As above, for an `imap`'s group, whose record holds every item's slot: each item's
    /// handle, told of the end by its own slot, settles.
    #[test]
    fn the_items_of_a_group_left_in_a_dropped_queue_settle_as_shut_down() {
        let shared = Arc::new(Shared::new(Config::new().workers(1)));
        let (tx, rx) = crossbeam_channel::unbounded();
        let notes = [4, 2, 9];
        let record = Grouped::record(&shared, Arc::new(square.into_job()), vec![1, 2, 3], {
            Some((&tx, &notes[..]))
        });
        let handles: Vec<_> = (0..3).map(|i| handle_of(record.clone(), i)).collect();
        assert!(shared.queue.push(record, false), "the first push asks for a drainer");
        drop(shared);
        for mut handle in handles {
            let outcome = handle.join_timeout(Duration::from_secs(60));
            assert!(matches!(outcome, Err(TaskError::ShutDown)), "{outcome:?}");
        }
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), notes, "each slot's own note, once");
    }

    #[test]
    fn the_group_of_an_imap_on_a_closed_pool_is_refused_item_by_item_and_ends_it() {
        let pool = ThreadPool::new(2).unwrap();
        pool.shutdown();
        let refused =
            |outcome: &Result<u64, TaskError>| matches!(outcome, Err(TaskError::ShutDown));
        let ordered: Vec<_> = pool.imap(square, 0..40).collect();
        let all = |outcomes: &[_]| !outcomes.is_empty() && outcomes.iter().all(refused);
        assert!(ordered.len() < 40 && all(&ordered), "{ordered:?}");
        let unordered: Vec<_> = pool.imap_unordered(square, 0..40).collect();
        assert!(unordered.len() < 40 && all(&unordered), "{unordered:?}");
        assert_eq!(pool.shared.tally.unfinished(), 0, "each counted finished");
    }
}
