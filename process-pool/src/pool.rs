//! [`ProcessPool`]: the shared pool API on persistent worker processes.

use std::collections::BTreeMap;
use std::fmt;
use std::iter::Fuse;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde::Serialize;
use serde::de::DeserializeOwned;
use taskpool_core::backend::{
    Cancel, Completer, Execute, ImapPace, Job, Reorder, deadline_after, discard, promise,
    promise_of, recv_until,
};
use taskpool_core::{Config, IntoTask, NextTimeout, Pool, TaskError, TaskHandle, Timeout};

use crate::batching::Paced;
use crate::bulk;
use crate::codec;
use crate::config::ProcessConfig;
use crate::deliveries::Deliveries;
use crate::entry;
use crate::reception;
use crate::run::{ArgumentLimit, Batching, Run, RunBuilder};
use crate::scheduler::{KillReason, Shared, batching_for};
use crate::ship::Ship;
use crate::sink::{self, ChannelSink, Decoded, Decoder, Group, HandleSink};
use crate::supervisor;
use crate::sys;
use crate::usage::Usage;

/// The least stack of a supervisor thread, which decodes the results of the tasks its worker
/// runs: room for the codec's [`codec::STACK_BUDGET`] past the supervisor's own frames,
/// however little `RUST_MIN_STACK` asks for. Only the pages a decoding touches take memory.
const SUPERVISOR_STACK: usize = 4 << 20;

/// The stack a supervisor thread asks for: [`SUPERVISOR_STACK`], or what `RUST_MIN_STACK`
/// asks of every thread if that is more (as the standard library reads it, once).
fn supervisor_stack() -> usize {
    static SIZE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| {
        let asked = std::env::var("RUST_MIN_STACK").ok().and_then(|s| s.parse::<usize>().ok());
        asked.map_or(SUPERVISOR_STACK, |asked| asked.max(SUPERVISOR_STACK))
    })
}

/// Whether the calling thread has the stack to decode any result as a supervisor would: the
/// codec's whole budget, and its reserve past that. A thread spawned with the default 2 MiB
/// has, unless it is deep in calls already.
fn roomy_stack() -> bool {
    sys::stack_left(codec::stack_here())
        .is_some_and(|(left, size)| left >= codec::STACK_BUDGET + codec::stack_reserve(size))
}

/// Items of an `imap` window per batch a worker may hold, at first.
const IMAP_PER_BATCH: usize = 16;
/// Items of an `imap_stream` window per batch a worker may hold, at first: each goes as a
/// task of its own, whose size nothing bounds.
const STREAM_PER_BATCH: usize = 4;
/// Items of an `imap` window per batch a worker may hold, at most: once its items are
/// measured fast, a window holds a batch's worth of them per batch a worker may hold.
const IMAP_MOST_PER_BATCH: usize = 1024;
/// The most encoded bytes of an `imap`'s items per batch a worker may hold (and at least one
/// item): what copying takes about a batch's time (200 µs). A worker measures the time its
/// task takes, not the copy of a large argument (a byte string moves into its task whole),
/// so large items would otherwise count as fast ones; and the first [`IMAP_PER_BATCH`]
/// items per batch of a window of large items would hold that many of them, 64 MiB of items
/// of a mebibyte for two workers. A batch pulled ends once its items reach it, and the
/// window follows the items of the last batch, or the latest results if they are larger.
const IMAP_BATCH_BYTES: usize = 1 << 20;

/// The longest a caller that joins a task reads results itself (see `Cancel::help_wait`)
/// before it waits to be woken.
const WATCH: Duration = Duration::from_micros(100);

/// A pool of persistent worker processes that run tasks with crash isolation.
///
/// Workers are re-executions of the running program, started before `main` runs (no change
/// to `main`, tests or benches is needed). A task that panics fails alone; one that
/// segfaults, aborts, overflows its stack, exits or is killed fails with
/// [`TaskError::Crashed`] naming the signal or exit code, its worker is replaced, and every
/// other task still runs (exactly once, but for those whose results the worker could not
/// write before it died, as with `_exit` or SIGKILL: they run again). With a timeout, a task
/// that runs too long is killed with its worker.
///
/// Programs a task starts die with its worker (when it crashes, times out, is recycled or
/// shut down, and when the program exits normally with the pool never dropped, kept in a
/// `static`) unless the task detaches them on purpose, in a session of their own
/// (`setsid`). Descriptors a task closes or programs it leaves running do not blind the pool:
/// it watches each worker as a process (a pidfd), not through its pipes.
///
/// Arguments and results cross the process boundary encoded with serde in a self-describing
/// format: any value that round-trips through `serde_json` comes back unchanged (NaN and
/// infinities included), and a `Vec<u8>`, `String` or `serde_bytes::ByteBuf` crosses as one
/// copy of its bytes each way.
///
/// # Dropping
///
/// Dropping the pool fails tasks that were not yet sent to a worker with
/// [`TaskError::ShutDown`], lets workers finish what they hold for the configured grace
/// period ([`Config::shutdown_grace`], 1 s by default), then kills the rest; their tasks fail
/// with [`TaskError::ShutDown`] too. Every worker is reaped. Call [`Pool::shutdown`] first to
/// run everything submitted.
///
/// # A program that forks
///
/// A copy of the program made by `fork()` (a server that daemonizes or pre-forks after it
/// started a pool) inherits the pool's memory but not its threads, and the workers keep
/// serving the original. There the inherited pool takes no work: every task given to it
/// fails at once with [`TaskError::ShutDown`], and dropping it or shutting it down returns at
/// once and stops nothing. The original's pool goes on as if nothing happened, and the copy
/// can start pools of its own. A handle of a task submitted before the fork settles in the
/// original only: in the copy, joining it fails at once with [`TaskError::ShutDown`].
///
/// # Examples
///
/// ```
/// use taskpool_process::{Pool, ProcessPool, TaskError};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn crash(_: u64) -> u64 {
///     std::process::abort()
/// }
///
/// # fn main() -> Result<(), TaskError> {
/// let pool = ProcessPool::new(2)?;
/// assert_eq!(pool.map(square, 1..=5)?, [1, 4, 9, 16, 25]);
/// let err = pool.apply(crash, 0).unwrap_err();
/// assert_eq!(err.signal(), Some(6)); // SIGABRT, and the pool goes on
/// assert_eq!(pool.apply(square, 3)?, 9);
/// # Ok(())
/// # }
/// ```
pub struct ProcessPool {
    pub(crate) shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl ProcessPool {
    /// Starts a pool of `workers` processes with default settings.
    ///
    /// # Errors
    ///
    /// [`TaskError::InvalidConfig`] for zero workers, [`TaskError::WorkerStart`] if a worker
    /// process cannot be spawned.
    pub fn new(workers: usize) -> Result<Self, TaskError> {
        Self::with_config(Config::new().workers(workers))
    }

    /// Starts a pool with `config`: a [`Config`], or a [`ProcessConfig`] for the settings
    /// only processes have. Returns once every worker process is spawned (and listed by
    /// [`pids`](Self::pids)); workers finish starting (and run the initializer) in the
    /// background, and tasks submitted meanwhile wait for them.
    ///
    /// # Errors
    ///
    /// [`TaskError::InvalidConfig`] for a bad setting, [`TaskError::WorkerStart`] if a worker
    /// process cannot be spawned.
    pub fn with_config(config: impl Into<ProcessConfig>) -> Result<Self, TaskError> {
        let config = config.into();
        config.validate()?;
        entry::ensure_linked();
        sys::watch_forks();
        let n = config.get_config().get_workers();
        let wakes = (0..n).map(|_| sys::eventfd()).collect::<Result<Vec<_>, _>>().map_err(|e| {
            TaskError::WorkerStart {
                reason: format!("cannot make the supervisors' doorbells: {e}"),
            }
        })?;
        let shared = Arc::new(Shared::new(config, wakes));
        shared.lock().supervisors = n;
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::with_capacity(n);
        for w in 0..n {
            let (thread_shared, thread_tx) = (shared.clone(), tx.clone());
            let name = format!("{}-supervisor-{w}", shared.config.get_config().get_name_prefix());
            let spawned = sys::with_program_signals_blocked(|| {
                thread::Builder::new()
                    .name(name)
                    .stack_size(supervisor_stack())
                    .spawn(move || supervisor::supervise(thread_shared, w, thread_tx))
            });
            match spawned {
                Ok(handle) => threads.push(handle),
                Err(e) => {
                    shared.lock().supervisors -= 1;
                    let reason = format!("cannot start a supervisor thread: {e}");
                    let _ = tx.send(Err(TaskError::WorkerStart { reason }));
                }
            }
        }
        drop(tx);
        let pool = ProcessPool { shared, threads: Mutex::new(threads) };
        for _ in 0..n {
            match rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(TaskError::WorkerStart {
                        reason: "a supervisor thread stopped".into(),
                    });
                }
            }
        }
        Ok(pool)
    }

    /// The pool's settings.
    pub fn config(&self) -> &ProcessConfig {
        &self.shared.config
    }

    /// The process ids of the workers running now.
    pub fn pids(&self) -> Vec<u32> {
        let state = self.shared.lock();
        state.slots.iter().filter_map(|s| s.conn.as_ref()).map(|c| c.pid).collect()
    }

    /// What happened in the pool so far: tasks completed and failed, crashes, timeouts,
    /// worker starts, and what the tasks cost; and what it holds now: tasks waiting for a
    /// worker, and workers busy.
    ///
    /// The pool logs nothing: a crash, a timeout, a worker replaced or a failed start is
    /// told to the task's caller in its error, and counted here, which is what a service
    /// exports for its operators (the counts only grow; `queued` and `busy_workers` are
    /// gauges).
    pub fn stats(&self) -> PoolStats {
        let state = self.shared.lock();
        let (c, queued, busy_workers) =
            (state.counters, self.shared.queued(&state), Shared::busy_workers(&state));
        drop(state);
        let (completed, failed, discarded) = self.shared.tally.counts();
        PoolStats {
            queued,
            busy_workers,
            completed,
            failed,
            discarded,
            crashes: c.crashes,
            timeouts: c.timeouts,
            workers_started: c.workers_started,
            workers_retired: c.retired,
            requeued: c.requeued,
            failed_starts: c.start_failures.counted(),
            killed_starting: c.start_failures.killed,
            usage: Usage::from(c.cost),
        }
    }

    /// Submits one task, like [`Pool::submit`], and returns with its result what it cost in
    /// its worker: CPU time, wall-clock time and the worker's peak memory (see [`Usage`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use taskpool_process::{ProcessPool, TaskError};
    ///
    /// fn count_primes(below: u64) -> usize {
    ///     (2..below).filter(|n| (2..*n).take_while(|d| d * d <= *n).all(|d| n % d != 0)).count()
    /// }
    ///
    /// # fn main() -> Result<(), TaskError> {
    /// let pool = ProcessPool::new(1)?;
    /// let (primes, usage) = pool.submit_with_usage(count_primes, 10_000).join()?;
    /// assert_eq!(primes, 1229);
    /// assert!(usage.elapsed > std::time::Duration::ZERO);
    /// # Ok(())
    /// # }
    /// ```
    pub fn submit_with_usage<M, T: IntoTask<M>>(
        &self,
        task: T,
        input: T::Input,
    ) -> TaskHandle<(T::Output, Usage)> {
        let () = <T::Job as Job>::PORTABLE;
        self.submit_new(task.into_job(), input, sink::value_and_usage(), None)
    }

    /// Sends one task, whose outcome `decoder` makes what `to`'s handle holds; `timeout`
    /// overrides the pool's. Returns the handle a new promise asks for.
    fn submit_one<J: Job, R: Send + 'static>(
        &self,
        job: &J,
        input: J::Input,
        to: Promise<R>,
        decoder: Decoder<R>,
        timeout: Option<Duration>,
    ) -> Option<TaskHandle<R>> {
        let built = job.ship(Ship).and_then(|shipped| {
            let mut builder = RunBuilder::new(self.shared.paces.of(shipped, &self.shared));
            builder.reserve(1);
            builder.push(&input, self.argument_limit()).map(|()| builder)
        });
        let builder = match built {
            Ok(builder) => builder,
            Err(e) => {
                self.shared.tally.record(0, 1);
                let (completer, handle) = match to {
                    Promise::New => {
                        let (completer, handle) = promise();
                        (completer, Some(handle))
                    }
                    Promise::Given(completer) => (completer, None),
                };
                completer.complete(Err(e));
                discard(input);
                return handle;
            }
        };
        let mut handle = None;
        let run = Arc::new_cyclic(|run: &Weak<Run<HandleSink<R>>>| {
            // The run is the handle's record: its owner frees it, where it was allocated.
            let record: Weak<dyn Cancel> = run.clone();
            let completer = match to {
                Promise::New => {
                    let (completer, new) = promise_of(record);
                    handle = Some(new);
                    completer
                }
                Promise::Given(completer) => {
                    completer.on_cancel_of(record);
                    completer
                }
            };
            builder.finish(HandleSink { completer, decoder }, timeout, Batching::Fixed(1))
        });
        self.shared.submit(run);
        // The worker gets its own copy: a panic in this one's `Drop` fails nothing.
        discard(input);
        handle
    }

    /// Sends one task with a new handle, whose outcome `decoder` makes. The job is dropped
    /// once shipped, where a panic in its `Drop` goes no further (the worker has its copy),
    /// as a thread pool drops it on its thread.
    fn submit_new<J: Job, R: Send + 'static>(
        &self,
        job: J,
        input: J::Input,
        decoder: Decoder<R>,
        timeout: Option<Duration>,
    ) -> TaskHandle<R> {
        // A new promise always gets its handle; one settled as shut down stands in should it
        // not.
        let handle = self.submit_one(&job, input, Promise::New, decoder, timeout);
        discard(job);
        handle.unwrap_or_else(|| {
            let (completer, handle) = promise();
            completer.complete(Err(TaskError::ShutDown));
            handle
        })
    }

    /// Sends one task and returns its handle (the job is not boxed, as the provided
    /// [`Pool::submit`] boxes it for [`Execute::execute`]).
    fn submit_job<J: Job>(
        &self,
        job: J,
        input: J::Input,
        timeout: Option<Duration>,
    ) -> TaskHandle<J::Output> {
        self.submit_new(job, input, sink::value(), timeout)
    }

    /// Marks the runs that share `abandoned` as unwanted, and drops their items that no
    /// worker took yet (their caller left: a dropped `imap`, a `map` left by a panic).
    fn abandon(&self, abandoned: &AtomicBool) {
        abandoned.store(true, Ordering::Release);
        self.shared.discard_unwanted();
    }

    /// How large an argument its workers can take.
    fn argument_limit(&self) -> ArgumentLimit {
        let config = &self.shared.config;
        ArgumentLimit::new(config.get_max_frame_bytes(), config.get_memory_limit())
    }

    /// Ships the job of a batch, with a pace of its own.
    fn ship<J: Job>(job: &J) -> Result<Arc<Paced>, TaskError> {
        job.ship(Ship).map(Paced::new)
    }

    fn join_threads(&self) {
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for t in threads {
            let _ = t.join();
        }
    }

    /// Once the pool is closed: tells the workers to end, gives them the shutdown grace to do
    /// so, then kills those left (a worker stopped with SIGSTOP never reads its end of input;
    /// one being dropped may still run a task), and waits for the supervisors.
    fn stop_workers(&self) {
        self.wake_supervisors();
        if !self.wait_supervisors(Some(self.shared.config.get_config().get_shutdown_grace())) {
            let mut state = self.shared.lock();
            for conn in state.slots.iter_mut().filter_map(|s| s.conn.as_mut()) {
                conn.kill(KillReason::Shutdown, None);
            }
            drop(state);
            self.wait_supervisors(None);
        }
        self.join_threads();
    }

    /// Waits until every supervisor has ended, at most `limit` if given. Returns whether they
    /// all did.
    fn wait_supervisors(&self, limit: Option<Duration>) -> bool {
        // A limit too long to be an instant is none.
        let deadline = limit.and_then(|l| Instant::now().checked_add(l));
        let mut state = self.shared.lock();
        while state.supervisors > 0 {
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) => Some(left),
                    None => return false,
                },
                None => None,
            };
            state = self.shared.wait(state, left);
        }
        true
    }

    fn wake_supervisors(&self) {
        (0..self.shared.wakes.len()).for_each(|w| self.shared.wake(w));
    }
}

/// Where a single task's outcome goes.
enum Promise<R> {
    /// A new handle, for the caller of `submit`, whose record is the task's run.
    New,
    /// A completer made by whoever called [`Execute::execute`].
    Given(Completer<R>),
}

/// Counters of a pool's life, and what it holds now, from [`ProcessPool::stats`].
///
/// Every task given to the pool is counted once, in `completed` if it ended with a value, in
/// `failed` if it ended with an error of any kind: a panic, a crash, a timeout, a
/// cancellation, a value that could not travel, or a refusal by a pool that was shut down;
/// and in `discarded` if it never ran because its caller stopped waiting for it (an `imap`
/// dropped part-way). A task is counted before its caller receives its outcome, so counts
/// read after a `map` returns include all of its items. Tasks still queued or running are
/// in none of the three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PoolStats {
    /// Tasks submitted and not yet sent to a worker: the queue's depth. Tasks a worker holds
    /// (the one it runs, and up to [`ProcessConfig::in_flight`] batches in all) are not in
    /// it.
    pub queued: u64,
    /// Workers holding tasks sent to them and not yet answered: busy, out of
    /// [`Pool::workers`].
    pub busy_workers: u64,
    /// Tasks that ended with a value.
    pub completed: u64,
    /// Tasks that ended with an error.
    pub failed: u64,
    /// Tasks dropped without running because nobody waited for them any more: the items an
    /// `imap` or `imap_unordered` (or their `_stream` forms) had taken from its input and
    /// not yet sent to a worker when its iterator was dropped, and those of a `map` whose
    /// caller unwound (its progress callback panicked). No outcome is made for them, so
    /// they are not failures; the items a worker held by then run, and are counted as they
    /// end.
    pub discarded: u64,
    /// Workers that died while running a task, of their own accord: not those the pool
    /// killed, nor those that reported a task over a limit
    /// ([`TaskError::ResourceLimit`]) before dying of it.
    pub crashes: u64,
    /// Tasks that ran past their time limit: killed then, or, when the pool could not stop
    /// them in time (its process was stalled past the deadline), failed on their result.
    pub timeouts: u64,
    /// Worker processes started, the first ones included. A worker is started for each
    /// slot at first, and again in a slot whose worker ended: retired at its quota
    /// (`workers_retired`), crashed (`crashes`), killed by the pool for a task's time limit
    /// (`timeouts`), a cancellation or a resource limit, or killed from outside.
    pub workers_started: u64,
    /// Workers retired, and replaced, once they had run
    /// [`Config::max_tasks_per_worker`] items (counted when the pool stops sending them
    /// work), while the pool served: the planned part of `workers_started`.
    pub workers_retired: u64,
    /// Tasks sent again to another worker after theirs died before running them (or before
    /// its result of them reached the pool), or taken back, for a worker with nothing to do,
    /// from a worker whose task ran far past its estimate or that did not start it (stopped,
    /// say). Counted as they are sent again,
    /// once each time: a task taken back and then dropped unsent (cancelled meanwhile, or
    /// its `imap` dropped) was not sent twice, and is not counted. On a pool of 8 or more
    /// workers per CPU, tiny tasks held behind a task that runs past 1 ms are taken back so
    /// (see the `workers` setting): there a count of many thousands is the rule at work, not
    /// a sign of trouble.
    pub requeued: u64,
    /// Worker starts that failed: the OS refused a process or its pipes, the initializer or
    /// the start checks failed, or the worker died or hung before it was ready. After
    /// [`Config::start_attempts`] of them in a row, once the last start of every worker slot
    /// failed, waiting tasks fail with
    /// [`TaskError::WorkerStart`] and new ones are refused until a worker starts again; the
    /// pool keeps trying, further apart each time (up to a second). A worker that was ready
    /// and then died of itself before it started any task (a memory limit too small for the
    /// worker itself) is not counted here, though three times `start_attempts` of them in a
    /// row fail the waiting tasks with [`TaskError::WorkerStart`] too.
    pub failed_starts: u64,
    /// Workers killed with SIGKILL or SIGTERM before they were ready: most likely from
    /// outside, so not counted as failed starts.
    pub killed_starting: u64,
    /// What the tasks cost in their workers, summed over every task whose worker reported
    /// it (all but those whose worker crashed or was killed while running them); the peak
    /// resident memory is the highest of any worker. See [`Usage`].
    pub usage: Usage,
}

impl Execute for ProcessPool {
    fn execute<J: Job>(
        &self,
        job: &Arc<J>,
        input: J::Input,
        completer: Completer<J::Output>,
        timeout: Option<Duration>,
    ) {
        self.submit_one(&**job, input, Promise::Given(completer), sink::value(), timeout);
    }

    /// What `imap_stream` and `imap_unordered_stream` keep in flight (this pool's `imap` is
    /// its own): 4 items per batch a worker may hold at first, growing to `imap_window()`
    /// only while the items take under 10 µs each, so that a stream of slow or large items
    /// holds a few of them, and a task submitted beside it waits behind a few.
    fn imap_pace(&self) -> Option<ImapPace> {
        let window = STREAM_PER_BATCH * self.workers() * self.shared.config.get_in_flight();
        Some(ImapPace { group: 1, window })
    }
}

impl Pool for ProcessPool {
    fn workers(&self) -> usize {
        self.shared.wakes.len()
    }

    fn shutdown(&self) {
        if self.shared.copied() {
            // A copy made by `fork()`: the workers are the original's.
            return;
        }
        let mut state = self.shared.lock_to_close();
        state.closed = true;
        while state.outstanding > 0 && state.supervisors > 0 {
            state = self.shared.wait(state, None);
        }
        drop(state);
        self.stop_workers();
    }

    fn submit<M, T: IntoTask<M>>(&self, task: T, input: T::Input) -> TaskHandle<T::Output> {
        let () = <T::Job as Job>::PORTABLE;
        self.submit_job(task.into_job(), input, None)
    }

    fn submit_timeout<M, T: IntoTask<M>>(
        &self,
        task: T,
        input: T::Input,
        limit: Duration,
    ) -> TaskHandle<T::Output> {
        let () = <T::Job as Job>::PORTABLE;
        self.submit_job(task.into_job(), input, Some(limit))
    }

    /// Runs one task and waits for its value. The calling thread reads the result itself
    /// from its worker's result ring when it arrives soon, rather than wait for the worker's
    /// supervisor to read it and wake it (as `join` does).
    fn apply<M, T: IntoTask<M>>(&self, task: T, input: T::Input) -> Result<T::Output, TaskError> {
        let () = <T::Job as Job>::PORTABLE;
        self.submit_job(task.into_job(), input, None).join()
    }

    fn map_results<M, T, I>(&self, task: T, items: I) -> Vec<Result<T::Output, TaskError>>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
    {
        let () = <T::Job as Job>::PORTABLE;
        self.map_results_with_progress(task, items, |_, _| {})
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
        let items = items.into_iter();
        let mut results = bulk::results_with_capacity(items.size_hint().0);
        let total = self.run_batch(task.into_job(), items, &mut progress, &mut |first, values| {
            // Items a dead pool never answered fill the gaps.
            results.resize_with(first, || Err(TaskError::ShutDown));
            results.extend(values.into_results());
        });
        results.resize_with(total, || Err(TaskError::ShutDown));
        results
    }

    fn map<M, T, I>(&self, task: T, items: I) -> Result<Vec<T::Output>, TaskError>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
    {
        let () = <T::Job as Job>::PORTABLE;
        let items = items.into_iter();
        let mut outputs = bulk::results_with_capacity(items.size_hint().0);
        let mut failure = None;
        let total = self.run_batch(task.into_job(), items, &mut |_, _| {}, &mut |first, values| {
            if failure.is_some() {
                return;
            }
            if first != outputs.len() {
                failure = Some(TaskError::ShutDown);
                return;
            }
            match values {
                Decoded::Values(values) => outputs.extend(values),
                Decoded::Mixed(values) => {
                    for value in values {
                        match value {
                            Ok(value) => outputs.push(value),
                            Err(e) => {
                                failure = Some(e);
                                return;
                            }
                        }
                    }
                }
            }
        });
        match failure {
            Some(e) => Err(e),
            None if outputs.len() == total => Ok(outputs),
            None => Err(TaskError::ShutDown),
        }
    }

    /// `workers × in_flight × 1024` at most; an `imap` starts with a sixty-fourth of it
    /// (`× 16`) and grows its window to a batch's worth per batch a worker may hold as its
    /// items are measured: enough for fast items to travel in batches, few enough that a slow
    /// consumer holds little (a batch's worth is what the workers do in 200 µs). Whatever
    /// their speed, the window holds at most 1 MiB of encoded items (or of their results, if
    /// larger) per batch a worker may hold, and one item at least: large items, which take
    /// time to copy, and large results keep a window sized by their bytes (4 items of a
    /// mebibyte for two workers).
    ///
    /// [`Pool::imap_stream`] and [`Pool::imap_unordered_stream`] keep 4 items per batch a
    /// worker may hold in flight at first, and grow to this window only while their items
    /// take under 10 µs each, whatever their size: use `imap` for an input that does not wait
    /// for its items.
    fn imap_window(&self) -> usize {
        self.workers() * self.shared.config.get_in_flight() * IMAP_MOST_PER_BATCH
    }

    fn imap<M, T, I>(
        &self,
        task: T,
        items: I,
    ) -> impl NextTimeout<Item = Result<T::Output, TaskError>>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
    {
        let () = <T::Job as Job>::PORTABLE;
        Stream::new(self, task.into_job(), items.into_iter(), true)
    }

    fn imap_unordered<M, T, I>(
        &self,
        task: T,
        items: I,
    ) -> impl NextTimeout<Item = Result<T::Output, TaskError>>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
    {
        let () = <T::Job as Job>::PORTABLE;
        Stream::new(self, task.into_job(), items.into_iter(), false)
    }
}

impl ProcessPool {
    /// Runs a batch: encodes every item, submits them as one run, and hands the outcome
    /// groups to `place` in input order as they arrive (a group waits while one before it is
    /// missing), telling `progress` how many items are done. Returns the number of items.
    fn run_batch<J: Job>(
        &self,
        job: J,
        items: impl IntoIterator<Item = J::Input>,
        progress: &mut dyn FnMut(usize, usize),
        place: &mut dyn FnMut(usize, Decoded<J::Output>),
    ) -> usize {
        let mut order = InOrder::default();
        let shipped = match Self::ship(&job) {
            Ok(shipped) => shipped,
            Err(e) => {
                let failed: Vec<_> = items.into_iter().map(|_| Err(e.clone())).collect();
                let total = failed.len();
                self.shared.tally.record(0, total);
                progress(total, total);
                place(0, Decoded::Mixed(failed));
                return total;
            }
        };
        let items = items.into_iter();
        let hint = items.size_hint().0;
        let (tx, rx) = crossbeam_channel::unbounded();
        let abandon = AbandonOnUnwind { pool: self, abandoned: Arc::new(AtomicBool::new(false)) };
        // The items go in runs of growing size that share one job and pace, so the workers
        // start on the first while the caller still encodes the rest.
        let mut chunk = Chunk::new(&shipped, 0, FIRST_CHUNK, hint);
        let (mut total, mut sent, mut received, mut sent_bytes) = (0, 0, 0, 0);
        let limit = self.argument_limit();
        for (i, item) in items.enumerate() {
            total += 1;
            if let Err(e) = chunk.push(i, &item, limit) {
                order.add(i, Decoded::Mixed(vec![Err(e)]), place);
            }
            // The worker has its own copy: a panic in this one's `Drop` fails nothing.
            discard(item);
            if total - chunk.start == chunk.len || chunk.builder.bytes() >= MAX_CHUNK_BYTES {
                let next = Chunk::new(&shipped, total, (chunk.len * 2).min(MAX_CHUNK), hint);
                let chunk = std::mem::replace(&mut chunk, next);
                sent_bytes += chunk.builder.bytes();
                sent += self.submit_chunk(chunk, hint, &tx, &abandon.abandoned);
                // At most `AHEAD_BYTES` of encoded items wait for their results (counted at
                // the average size so far): a long input is encoded as the workers go, not
                // all before them.
                while received < sent && (sent - received) * (sent_bytes / sent) > AHEAD_BYTES {
                    let Ok((first, group)) = rx.recv() else { break };
                    received += group.len();
                    order.add(first, group, place);
                }
            }
        }
        sent += self.submit_chunk(chunk, hint, &tx, &abandon.abandoned);
        drop(tx);
        // Items that failed to encode count as failed tasks.
        self.shared.tally.record(0, total - sent);
        progress(total - sent + received, total);
        while received < sent {
            // Every sent item is delivered exactly once; the channel only closes early if the
            // run was dropped undelivered, and then the gaps read as shut down.
            let Ok((first, group)) = rx.recv() else { break };
            received += group.len();
            order.add(first, group, place);
            progress(total - sent + received, total);
        }
        if received < sent {
            // The gaps read as shut down: they are done too.
            progress(total, total);
        }
        order.finish(place);
        total
    }
}

/// Items of the first run of a `map`; each next run has twice as many, up to [`MAX_CHUNK`].
const FIRST_CHUNK: usize = 4096;
/// The most items of one run of a `map`.
const MAX_CHUNK: usize = 1 << 16;
/// A run of a `map` is sent once its encoded items take this many bytes, however few: the
/// workers start on large items while the caller encodes the next.
const MAX_CHUNK_BYTES: usize = 4 << 20;
/// The most bytes of a `map`'s encoded items that may wait for their results while the
/// caller encodes more: far more than keeps the workers busy, and a bound on what a `map`
/// of a long input holds beyond its items and results.
const AHEAD_BYTES: usize = 64 << 20;

/// The items of a `map` from the caller's item `start` on, encoded into one run.
struct Chunk {
    builder: RunBuilder,
    start: usize,
    /// How many of the caller's items it takes.
    len: usize,
    /// The caller's index of each item encoded, once one failed to encode (until then, the
    /// run's item `k` is the caller's `start + k`).
    indices: Option<Vec<usize>>,
}

impl Chunk {
    /// The chunk of `len` items from `start`, of a `map` of about `hint` items.
    fn new(shipped: &Arc<Paced>, start: usize, len: usize, hint: usize) -> Self {
        let mut builder = RunBuilder::new(shipped.clone());
        builder.reserve(len.min(hint.saturating_sub(start)));
        Chunk { builder, start, len, indices: None }
    }

    /// Encodes the caller's item `i`.
    ///
    /// The outcome is matched, not passed on: a `Result` this large moved whole after the
    /// callee wrote only its tag costs a stalled load per item.
    #[inline]
    fn push<T: Serialize>(
        &mut self,
        i: usize,
        item: &T,
        limit: ArgumentLimit,
    ) -> Result<(), TaskError> {
        match self.builder.push(item, limit) {
            Ok(()) => {
                if let Some(indices) = &mut self.indices {
                    indices.push(i);
                }
                Ok(())
            }
            Err(e) => {
                self.indices.get_or_insert_with(|| (self.start..i).collect());
                Err(e)
            }
        }
    }
}

impl ProcessPool {
    /// Submits `chunk` as one run of a `map` of about `hint` items whose outcomes go to
    /// `tx`, and which nobody wants once `abandoned` is set; returns how many items it sent.
    fn submit_chunk<R: DeserializeOwned + Send + 'static>(
        &self,
        chunk: Chunk,
        hint: usize,
        tx: &Sender<Group<R>>,
        abandoned: &Arc<AtomicBool>,
    ) -> usize {
        let Chunk { builder, start, indices, .. } = chunk;
        let sent = builder.len();
        if sent > 0 {
            let batching = batching_for(&self.shared.config, hint.max(start + sent));
            let abandoned = Some(abandoned.clone());
            let sink =
                ChannelSink { tx: tx.clone(), base: start, indices, abandoned, result_bytes: None };
            self.shared.submit(Arc::new(builder.finish(sink, None, batching)));
        }
        sent
    }
}

/// Abandons the runs of a `map` that a panic leaves (one from its input iterator, its
/// progress callback or its caller's placing of values): the items no worker took yet are
/// dropped unsent, as when an `imap` is dropped, rather than run for nobody.
struct AbandonOnUnwind<'p> {
    pool: &'p ProcessPool,
    abandoned: Arc<AtomicBool>,
}

impl Drop for AbandonOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.pool.abandon(&self.abandoned);
        }
    }
}

/// Outcome groups put in input order as they arrive: a group that continues the ones placed
/// goes at once, a later one waits (in a map by first index) until the gap before it fills.
/// Placing as they come, the caller moves values while the workers still run.
struct InOrder<R> {
    /// Items placed so far.
    placed: usize,
    waiting: BTreeMap<usize, Decoded<R>>,
}

impl<R> Default for InOrder<R> {
    fn default() -> Self {
        InOrder { placed: 0, waiting: BTreeMap::new() }
    }
}

impl<R> InOrder<R> {
    /// Adds the group of outcomes from item `first`, placing what is in order.
    fn add(&mut self, first: usize, group: Decoded<R>, place: &mut dyn FnMut(usize, Decoded<R>)) {
        if first != self.placed {
            self.waiting.insert(first, group);
            return;
        }
        self.placed += group.len();
        place(first, group);
        while let Some(next) = self.waiting.first_entry() {
            if *next.key() != self.placed {
                break;
            }
            let (first, group) = (self.placed, next.remove());
            self.placed += group.len();
            place(first, group);
        }
    }

    /// Places the groups still waiting: those after a gap that will not fill (a dead pool
    /// never answered the items in it).
    fn finish(self, place: &mut dyn FnMut(usize, Decoded<R>)) {
        for (first, group) in self.waiting {
            place(first, group);
        }
    }
}

/// Cancels the single task of `run`: removes it from the queue, has the worker that holds it
/// skip it, or kills the worker running it.
pub(crate) fn cancel(shared: &Weak<Shared>, run: &Weak<Run>) {
    let (Some(shared), Some(run)) = (shared.upgrade(), run.upgrade()) else { return };
    shared.cancel(&*run);
}

impl<R: Send + 'static> Cancel for Run<HandleSink<R>> {
    /// Cancels the single task of this run, as [`cancel`] does.
    fn cancel(&self) {
        if let Some(shared) = self.job.pool.upgrade() {
            shared.cancel(self);
        }
    }

    /// Reads results as the pool's supervisors do, for up to [`WATCH`], while the task is not
    /// settled: a result that arrives soon reaches its caller without waking a supervisor and
    /// then the caller. It watches the worker the task was sent to (every worker while the
    /// task is queued). Not for a task whose function's tasks take longer than that (as
    /// measured so far; a function not measured yet counts as slow). In a copy of the process
    /// made by `fork()`, which has none of the pool's threads or workers, the task can never be
    /// settled: [`TaskError::ShutDown`].
    fn help_wait(
        &self,
        deadline: Option<Instant>,
        done: &dyn Fn() -> bool,
    ) -> Result<(), TaskError> {
        let Some(shared) = self.job.pool.upgrade() else { return Ok(()) };
        if shared.copied() {
            return Err(TaskError::ShutDown);
        }
        if Duration::from_nanos(self.job.pace.item_ns()) > WATCH {
            // Its function's tasks take longer than a watch: the result would not be there
            // before the watch ends (the handle still spins briefly before it sleeps).
            return Ok(());
        }
        if !roomy_stack() {
            // The results it would read may be other tasks' too: they decode on a supervisor,
            // where each has the room it would have anywhere (`codec::STACK_BUDGET`).
            return Ok(());
        }
        let watch = Instant::now() + WATCH;
        let deadline = deadline.map_or(watch, |d| d.min(watch));
        // The worker that holds the task, once sent: a pool of many workers would have the
        // caller spin on every ring.
        reception::watch(&shared.receptions(self.worker()), &shared, deadline, done);
        Ok(())
    }

    /// [`TaskError::ShutDown`] in a copy of the process made by `fork()`, as for a join.
    fn forsaken(&self) -> Option<TaskError> {
        let copied = self.job.pool.upgrade().is_some_and(|shared| shared.copied());
        copied.then_some(TaskError::ShutDown)
    }
}

/// `imap` and `imap_unordered`: pulls items lazily in batches, keeping at most the pool's
/// `imap_window` pulled and not yet yielded. Dropping it discards the items not yet sent to a
/// worker; those sent (at most `in_flight` batches per worker) finish.
struct Stream<'p, J: Job, I> {
    pool: &'p ProcessPool,
    /// The job, with what its items cost, learned over all of this iterator's runs.
    job: Result<Arc<Paced>, TaskError>,
    items: Fuse<I>,
    /// Batches the workers may hold together: the window counts items per batch of these.
    batches: usize,
    /// Index of the next item to pull.
    pulled: usize,
    /// The encoded bytes per item of the last batch pulled (0 before the first).
    item_bytes: usize,
    /// The encoded bytes per item of the latest results (0 before the first).
    result_bytes: Arc<AtomicUsize>,
    /// The items pulled and not yet yielded.
    order: Reorder<Result<J::Output, TaskError>>,
    /// Outcomes to yield before the window has room for a batch again (counted from the last
    /// [`refill`](Stream::refill), which found it had not; an outcome received sets it to 0):
    /// until then a refill would send nothing, and reading the pace the supervisors write
    /// costs the consumer more per item than the item costs a worker.
    unfilled: usize,
    tx: Sender<Group<J::Output>>,
    rx: Receiver<Group<J::Output>>,
    /// Set when the iterator is dropped: its items not sent yet are discarded.
    abandoned: Arc<AtomicBool>,
    /// Whether the pool refused an item as shut down: no more items are pulled.
    refused: bool,
}

impl<'p, J: Job, I: Iterator<Item = J::Input>> Stream<'p, J, I> {
    fn new(pool: &'p ProcessPool, job: J, items: I, ordered: bool) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        let batches = pool.workers() * pool.shared.config.get_in_flight();
        Stream {
            pool,
            job: ProcessPool::ship(&job),
            items: items.fuse(),
            batches,
            pulled: 0,
            item_bytes: 0,
            result_bytes: Arc::default(),
            order: Reorder::new(ordered),
            unfilled: 0,
            tx,
            rx,
            abandoned: Arc::new(AtomicBool::new(false)),
            refused: false,
        }
    }

    /// Pulls and submits batches while the window has room for one: a whole batch, or half
    /// the window if a batch is larger. (Topping the window up as each result is yielded
    /// would send the items one at a time, a round trip each.)
    fn refill(&mut self) {
        let workers = self.pool.workers();
        loop {
            let target = self.job.as_ref().map_or(1, |job| job.pace.batch_target());
            // The most items pulled and not yet yielded (see `imap_window`): a batch's
            // worth per batch the workers may hold, of items measured fast and small.
            let per_batch = target.clamp(IMAP_PER_BATCH, IMAP_MOST_PER_BATCH);
            let most_per_batch = self.most_per_batch();
            let window = self.batches * per_batch.min(most_per_batch);
            // Outcomes that wait for an earlier item still out (a slow one, when ordered) do
            // not count against it, but against the most it grows to: the workers go on past
            // a slow item as far as that reaches, and a second slow item runs beside it rather
            // than after it.
            let held = self.order.held();
            let most = self.batches * most_per_batch;
            let room =
                window.saturating_sub(held - self.order.waiting()).min(most.saturating_sub(held));
            let least = target.min(window / 2);
            if room == 0 || (room < least && self.order.out() > 0) {
                // Each outcome yielded makes room for one more.
                self.unfilled = least.max(1) - room;
                return;
            }
            let batch = target.min(room).max(1);
            let base = self.pulled;
            let job = match &self.job {
                Ok(job) => job.clone(),
                Err(e) => {
                    let Some(_) = self.items.next() else { return self.input_done() };
                    self.pool.shared.tally.record(0, 1);
                    self.order.settled(base, Err(e.clone()));
                    self.pulled += 1;
                    continue;
                }
            };
            let mut builder = RunBuilder::new(job);
            let mut indices = Vec::new();
            let mut count = 0;
            for item in self.items.by_ref().take(batch) {
                match builder.push(&item, self.pool.argument_limit()) {
                    Ok(()) => indices.push(base + count),
                    Err(e) => {
                        self.order.settled(base + count, Err(e));
                    }
                }
                discard(item);
                count += 1;
                if builder.bytes() >= IMAP_BATCH_BYTES {
                    // Items that turned large: the next batches are sized by them.
                    break;
                }
            }
            if count == 0 {
                return self.input_done();
            }
            self.pulled += count;
            self.item_bytes = builder.bytes() / count;
            self.order.sent(builder.len());
            self.pool.shared.tally.record(0, count - builder.len());
            let skipped = builder.len() < count;
            let sink = ChannelSink {
                tx: self.tx.clone(),
                base,
                indices: skipped.then_some(indices),
                abandoned: Some(self.abandoned.clone()),
                result_bytes: Some(self.result_bytes.clone()),
            };
            let cap = (batch / workers).max(1);
            self.pool.shared.submit(Arc::new(builder.finish(sink, None, Batching::Adaptive(cap))));
        }
    }

    /// Notes that every item is pulled: no refill sends anything again.
    fn input_done(&mut self) {
        self.unfilled = usize::MAX;
    }
}

impl<J: Job, I: Iterator<Item = J::Input>> Stream<'_, J, I> {
    /// The next outcome, waiting for it until `deadline` (none: for ever). Past it, the
    /// outcomes still out stay out, for a later call.
    fn next_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Result<J::Output, TaskError>>, Timeout> {
        loop {
            if self.unfilled == 0 && !self.refused {
                self.refill();
            }
            if let Some(value) = self.order.pop() {
                self.unfilled = self.unfilled.saturating_sub(1);
                self.refused |= matches!(value, Err(TaskError::ShutDown));
                return Ok(Some(value));
            }
            if self.order.out() == 0 {
                if self.refused {
                    return Ok(None);
                }
                // Nothing out and nothing here: the window is empty, only a refill sends more.
                self.refill();
                if let Some(value) = self.order.pop() {
                    self.refused |= matches!(value, Err(TaskError::ShutDown));
                    return Ok(Some(value));
                }
                if self.order.out() == 0 {
                    return Ok(None);
                }
            }
            let received = recv_until(&self.rx, deadline)?;
            let Some((first, values)) = received else { return Ok(None) };
            self.order.received(first, values.into_results());
            // Outcomes that came behind a slow one make room (they no longer count against
            // the window): look again.
            self.unfilled = 0;
        }
    }
}

impl<J: Job, I> Stream<'_, J, I> {
    /// The most items per batch the workers may hold that the window takes by their size: as
    /// many of the last batch's items, or of the latest results if larger, as
    /// [`IMAP_BATCH_BYTES`] holds, and at least one.
    fn most_per_batch(&self) -> usize {
        match self.item_bytes.max(self.result_bytes.load(Ordering::Relaxed)) {
            0 => IMAP_MOST_PER_BATCH,
            bytes => (IMAP_BATCH_BYTES / bytes).clamp(1, IMAP_MOST_PER_BATCH),
        }
    }
}

impl<J: Job, I: Iterator<Item = J::Input>> Iterator for Stream<'_, J, I> {
    type Item = Result<J::Output, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        // With no deadline, nothing times out.
        self.next_until(None).unwrap_or(None)
    }
}

impl<J: Job, I: Iterator<Item = J::Input>> NextTimeout for Stream<'_, J, I> {
    fn next_timeout(&mut self, limit: Duration) -> Result<Option<Self::Item>, Timeout> {
        self.next_until(deadline_after(limit))
    }
}

impl<J: Job, I> Drop for Stream<'_, J, I> {
    fn drop(&mut self) {
        if self.order.out() > 0 {
            self.pool.abandon(&self.abandoned);
        }
    }
}

impl Drop for ProcessPool {
    fn drop(&mut self) {
        if self.shared.copied() {
            // A copy made by `fork()` has the memory of the pool, not its threads or its
            // workers, which the original process keeps using: nothing to stop, wait for or
            // free here. The threads' handles name threads of the original.
            std::mem::forget(std::mem::take(
                self.threads.get_mut().unwrap_or_else(PoisonError::into_inner),
            ));
            return;
        }
        let mut deliveries = Deliveries::default();
        {
            let mut state = self.shared.lock();
            state.closed = true;
            state.dropping = true;
            for slice in state.queue.take_all() {
                deliveries.fail(slice, &TaskError::ShutDown);
            }
        }
        let count = deliveries.deliver_from(&|_| &[], &self.shared.tally);
        {
            let mut state = self.shared.lock();
            self.shared.delivered(&mut state, count);
        }
        self.stop_workers();
    }
}

impl fmt::Debug for ProcessPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessPool")
            .field("workers", &self.workers())
            .field("pids", &self.pids())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_placed_in_input_order_whatever_order_they_arrive_in() {
        let mut order = InOrder::default();
        let mut placed: Vec<(usize, Vec<u32>)> = Vec::new();
        let mut place = |first, group: Decoded<u32>| {
            placed.push((first, group.into_results().into_iter().map(Result::unwrap).collect()))
        };
        // Items 3..5 arrive first, then 0..3 (placing both), then 7..8 after a gap at 5..7.
        order.add(3, Decoded::Values(vec![3, 4]), &mut place);
        order.add(0, Decoded::Values(vec![0, 1, 2]), &mut place);
        order.add(7, Decoded::Values(vec![7]), &mut place);
        // The gap never fills (a dead pool never answered 5 and 6): the rest comes at the end.
        order.finish(&mut place);
        assert_eq!(placed, [(0, vec![0, 1, 2]), (3, vec![3, 4]), (7, vec![7])]);
    }
}
