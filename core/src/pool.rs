//! The [`Pool`] trait: two required methods (and [`Execute`]), everything else provided on top.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::Execute;
use crate::error::TaskError;
use crate::feed::Input;
use crate::handle::{TaskHandle, discard, promise, promise_notify};
use crate::imap::{NextTimeout, Ordered, Unordered};
use crate::pace::ImapPace;
use crate::task::{IntoTask, Job};
use crate::try_error::TryError;

/// A pool of workers that runs tasks: the API every backend implements.
///
/// Code written against this trait runs on threads, processes or a cluster unchanged. (A
/// backend implements [`Pool::workers`] and [`Pool::shutdown`] here and runs work through its
/// [`crate::backend::Execute`]; every other method is provided on top of that.)
///
/// # Examples
///
/// Import `Pool` and `TaskError` from the backend crate you depend on
/// (`taskpool_process`, `taskpool_thread` or `taskpool_cluster`); the code below is the same
/// for each.
///
/// ```
/// # use taskpool_core::{Pool, TaskError};
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// fn sum_of_squares(pool: &impl Pool, n: u64) -> Result<u64, TaskError> {
///     Ok(pool.map(square, 1..=n)?.into_iter().sum())
/// }
/// # let pool = taskpool_thread::ThreadPool::new(2).unwrap();
///
/// assert_eq!(sum_of_squares(&pool, 3)?, 14);
/// # Ok::<(), TaskError>(())
/// ```
///
/// Every backend's pool may be used from many threads at once, but the trait does not say
/// so: generic code that shares a pool between threads asks for `Sync` too.
///
/// ```
/// # use taskpool_core::{Pool, TaskError};
/// # fn square(x: u64) -> u64 {
/// #     x * x
/// # }
/// fn from_two_threads(pool: &(impl Pool + Sync)) -> Result<(Vec<u64>, u64), TaskError> {
///     std::thread::scope(|s| {
///         let batch = s.spawn(|| pool.map(square, 1..=3));
///         let one = pool.apply(square, 4)?;
///         Ok((batch.join().unwrap()?, one))
///     })
/// }
/// # let pool = taskpool_thread::ThreadPool::new(2)?;
///
/// assert_eq!(from_two_threads(&pool)?, (vec![1, 4, 9], 16));
/// # Ok::<(), TaskError>(())
/// ```
pub trait Pool: Execute {
    /// The number of workers.
    fn workers(&self) -> usize;

    /// Stops accepting tasks, finishes every task already submitted, then stops the workers.
    /// A task that never returns is waited for by a backend that cannot stop it (threads:
    /// even past its time limit); a process backend kills it at its time limit, and kills
    /// workers that do not end within the shutdown grace once their tasks are done.
    ///
    /// An `imap` running meanwhile (on another thread) submits its items as it pulls them
    /// from its input: those it had not submitted by then fail with
    /// [`TaskError::ShutDown`], each in its place (every item still yields one outcome).
    ///
    /// Idempotent: a call after one that returned returns at once, and one made meanwhile
    /// (on another thread) waits with it. Dropping a pool shuts it down too, with the
    /// backend's drop policy.
    fn shutdown(&self);

    /// Submits one task and returns a handle to its result, like Python's `apply_async`.
    fn submit<M, T: IntoTask<M>>(&self, task: T, input: T::Input) -> TaskHandle<T::Output> {
        let () = <T::Job as Job>::PORTABLE;
        let (completer, handle) = promise();
        let job = Arc::new(task.into_job());
        self.execute(&job, input, completer, None);
        // Sent: a panic in its `Drop` is the pool's, not the caller's, as where a pool's
        // thread drops it.
        discard(job);
        handle
    }

    /// Like [`Pool::submit`], with a time limit for this task that overrides the pool's.
    ///
    /// As the pool's [`Config::timeout`](crate::Config::timeout), the limit counts from when
    /// the task starts running: the time it waits for a worker (behind other tasks, or a
    /// `map`'s items) does not count. To bound how long the caller waits, wait on the handle
    /// with [`TaskHandle::join_timeout`](crate::TaskHandle::join_timeout) (and
    /// [`TaskHandle::cancel`](crate::TaskHandle::cancel) it if it should not run any more:
    /// a task still queued then never starts).
    ///
    /// A zero limit is allowed here (the task fails with [`TaskError::TimedOut`] as soon as
    /// it starts, as a computed deadline that has passed should; a thread backend, which
    /// cannot stop it, still runs it to its end and discards its value), where the pool's
    /// [`Config::timeout`](crate::Config::timeout) refuses it as a setting that can only be a
    /// mistake. A result already written when the limit is checked wins over it, unless the
    /// task ran past its limit: the process backend (and a cluster's agents, which run tasks
    /// in one) measures each task in its worker and fails one that ran longer than its
    /// limit as timed out, even if its result came before the pool could stop it (a stalled
    /// machine), so a zero limit always fails there. A limit too long to be a point in time,
    /// such as `Duration::MAX`, is none. How precise a limit is, and why one of microseconds
    /// fails a task by chance, is said at [`Config::timeout`](crate::Config::timeout).
    fn submit_timeout<M, T: IntoTask<M>>(
        &self,
        task: T,
        input: T::Input,
        limit: Duration,
    ) -> TaskHandle<T::Output> {
        let () = <T::Job as Job>::PORTABLE;
        let (completer, handle) = promise();
        let job = Arc::new(task.into_job());
        self.execute(&job, input, completer, Some(limit));
        discard(job);
        handle
    }

    /// Runs one task and waits for its result, like Python's `apply`.
    ///
    /// # Errors
    ///
    /// The task's failure: see [`TaskError`].
    fn apply<M, T: IntoTask<M>>(&self, task: T, input: T::Input) -> Result<T::Output, TaskError> {
        let () = <T::Job as Job>::PORTABLE;
        self.submit(task, input).join()
    }

    /// Runs `task` on every item and returns one outcome per item, in input order. Every item
    /// runs, whatever happens to the others.
    fn map_results<M, T, I>(&self, task: T, items: I) -> Vec<Result<T::Output, TaskError>>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
    {
        let () = <T::Job as Job>::PORTABLE;
        map_by_handles(self, task, items)
    }

    /// Runs `task` on every item and returns the results in input order, like Python's
    /// `Pool.map`. Items are sent in chunks where the backend gains from it; see
    /// [`crate::Config::chunk_size`].
    ///
    /// # Errors
    ///
    /// The first failure in input order among the items that ran. Once an item fails, a
    /// backend may skip items that have not started (the thread backend does, as rayon does;
    /// the process backend has usually sent them already). Use [`Pool::map_results`] to run
    /// every item and see every outcome.
    ///
    /// # Memory
    ///
    /// A `map` (and [`Pool::map_results`]) takes every item before it returns, and returns
    /// every result at once, so it holds about as much as its items and its results take
    /// together. The thread backend collects the items into a vector first; the process
    /// backend encodes the items as the workers go (the encoding takes about as many bytes as
    /// the items; each item itself is dropped once encoded), holding at most 64 MiB of
    /// encoded items that wait for their results, and gives back the memory of large batches
    /// once the pool has had nothing to do for a second. For results that do not fit, use
    /// [`Pool::imap`], which holds at most [`Pool::imap_window`] items and their results at a
    /// time.
    fn map<M, T, I>(&self, task: T, items: I) -> Result<Vec<T::Output>, TaskError>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
    {
        let () = <T::Job as Job>::PORTABLE;
        self.map_results(task, items).into_iter().collect()
    }

    /// Like [`Pool::map_results`], calling `progress(done, total)` on the calling thread as
    /// items finish: first when every item is sent (`done` counts the items that failed
    /// before they could be sent, and the results that arrived while the items of a long
    /// input were being sent), then as results arrive, last with `done == total`. `done` only
    /// grows; results that arrive together are reported in one call.
    ///
    /// Results are counted as they reach the caller. The process backend streams them back
    /// as workers finish them, even when items travel to the workers in batches; the thread
    /// backend counts each item as its thread finishes it. Without a progress callback
    /// nothing of this is paid: `map` and `map_results` do not count.
    ///
    /// # Examples
    ///
    /// ```
    /// # use taskpool_core::{Pool, TaskError};
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    /// # let pool = taskpool_thread::ThreadPool::new(2)?;
    ///
    /// let mut seen = Vec::new();
    /// let outcomes = pool.map_results_with_progress(square, 1..=100, |done, total| {
    ///     seen.push(done);
    ///     assert_eq!(total, 100);
    /// });
    /// assert_eq!(outcomes.len(), 100);
    /// assert_eq!((seen.first(), seen.last()), (Some(&0), Some(&100)));
    /// assert!(seen.is_sorted());
    /// # Ok::<(), TaskError>(())
    /// ```
    fn map_results_with_progress<M, T, I, F>(
        &self,
        task: T,
        items: I,
        progress: F,
    ) -> Vec<Result<T::Output, TaskError>>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
        F: FnMut(usize, usize),
    {
        let () = <T::Job as Job>::PORTABLE;
        map_by_handles_with_progress(self, task, items, progress)
    }

    /// Like [`Pool::map`], reporting progress as [`Pool::map_results_with_progress`] does.
    /// Every item runs, so `done` reaches `total` even when an item fails.
    ///
    /// For a terminal progress bar, call the bar's update from the callback (with
    /// `indicatif`: `bar.set_length(total as u64); bar.set_position(done as u64)`).
    ///
    /// # Errors
    ///
    /// The first failure in input order.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io::Write;
    /// # use taskpool_core::{Pool, TaskError};
    ///
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    /// # let pool = taskpool_thread::ThreadPool::new(2)?;
    ///
    /// let squares = pool.map_with_progress(square, 1..=1000, |done, total| {
    ///     eprint!("\r{done}/{total} squared");
    ///     let _ = std::io::stderr().flush();
    /// })?;
    /// eprintln!();
    /// assert_eq!(squares.len(), 1000);
    /// # Ok::<(), TaskError>(())
    /// ```
    fn map_with_progress<M, T, I, F>(
        &self,
        task: T,
        items: I,
        progress: F,
    ) -> Result<Vec<T::Output>, TaskError>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
        F: FnMut(usize, usize),
    {
        let () = <T::Job as Job>::PORTABLE;
        self.map_results_with_progress(task, items, progress).into_iter().collect()
    }

    /// Like [`Pool::map`] for a task that returns a `Result`: one flat result, the values in
    /// input order or the first failure in input order, either a task's own error
    /// ([`TryError::Returned`]) or a task that produced no result ([`TryError::Failed`]).
    ///
    /// Every item runs, as in [`Pool::map_results`]. The error type travels like any result,
    /// so it must be serializable: a `String`, or an enum of your own that derives
    /// `Serialize` and `Deserialize` (most library errors, such as `std::io::Error`, are not).
    ///
    /// # Errors
    ///
    /// The first failure in input order: see [`TryError`].
    ///
    /// # Examples
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// # use taskpool_core::{Pool, TaskError, TryError};
    ///
    /// #[derive(Debug, PartialEq, Serialize, Deserialize)]
    /// enum CheckError {
    ///     Odd(u64),
    /// }
    ///
    /// fn half(x: u64) -> Result<u64, CheckError> {
    ///     if x.is_multiple_of(2) { Ok(x / 2) } else { Err(CheckError::Odd(x)) }
    /// }
    /// # let pool = taskpool_thread::ThreadPool::new(2)?;
    ///
    /// assert_eq!(pool.try_map(half, [2, 4, 6]).ok(), Some(vec![1, 2, 3]));
    /// match pool.try_map(half, [2, 3, 5]) {
    ///     Err(TryError::Returned(e)) => assert_eq!(e, CheckError::Odd(3)), // the first in order
    ///     other => panic!("unexpected {other:?}"),
    /// }
    /// # Ok::<(), TaskError>(())
    /// ```
    fn try_map<M, T, I, V, E>(&self, task: T, items: I) -> Result<Vec<V>, TryError<E>>
    where
        T: IntoTask<M, Output = Result<V, E>>,
        I: IntoIterator<Item = T::Input>,
    {
        let () = <T::Job as Job>::PORTABLE;
        self.map_results(task, items)
            .into_iter()
            .map(|outcome| outcome.map_err(TryError::Failed)?.map_err(TryError::Returned))
            .collect()
    }

    /// Like [`Pool::map`] for a function of several arguments, each item a tuple of them, like
    /// Python's `starmap`. Any [`Pool::map`] accepts such functions too; this name is for
    /// readers coming from Python.
    ///
    /// # Errors
    ///
    /// The first failure in input order.
    fn starmap<M, T, I>(&self, task: T, items: I) -> Result<Vec<T::Output>, TaskError>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
    {
        let () = <T::Job as Job>::PORTABLE;
        self.map(task, items)
    }

    /// How many items [`Pool::imap`] and [`Pool::imap_unordered`] keep in flight at most:
    /// pulled from the input and not yet yielded. By default 4 per worker; a backend that
    /// hands items over in groups keeps more (the thread backend: 16 per thread at first,
    /// queued 8 at a time, both doubling while the items take under 10 µs each, up to 256 per
    /// thread; the process backend: 16 per batch a worker may hold at first, up to 1,024 as
    /// its items prove fast and small, and no more than 1 MiB of encoded items or results per
    /// batch; see its `ProcessConfig::in_flight`).
    fn imap_window(&self) -> usize {
        4 * self.workers()
    }

    /// Runs `task` over `items` lazily and yields the outcomes in input order, like Python's
    /// `imap`. At most [`Pool::imap_window`] items are pulled ahead of the consumer (a few
    /// per worker while the items are slow; more as they prove fast, on the backends that
    /// hand items over in groups), so an endless iterator runs in bounded memory. Behind an
    /// item slower than the rest, the outcomes that finished count only against that most,
    /// so a second slow item further on runs beside the first rather than after it (on the
    /// backends that hand items over in groups, and on processes). Dropping the iterator cancels
    /// the items it pulled that no worker took yet; those a worker took (a process worker
    /// takes a batch at a time) may still run, and their outcomes are discarded. Once the
    /// pool refuses an item as shut down ([`TaskError::ShutDown`]: [`Pool::shutdown`] was
    /// called), the iterator pulls no more items: it yields the outcomes of those it pulled
    /// (that one among them) and ends, endless input or not. So does every `imap`.
    ///
    /// The input is pulled on the consumer's thread, inside `next`, which fills the window
    /// (or reaches the input's end) before it waits for a result. So an input whose `next`
    /// waits for its items (a channel's receiver, lines read from a socket) holds back every
    /// result until the window's worth of items has come or the input ended, and an input
    /// that waits for the consumer's own results never gets them. For such input, use
    /// [`Pool::imap_stream`], which pulls it on a thread of its own.
    ///
    /// The iterator is an [`Iterator`] that also waits at most a given time for its next
    /// outcome, like Python's `next(timeout)`: [`NextTimeout::next_timeout`], whose timeout
    /// takes nothing, so that the outcome comes at a later call, in order. So is every
    /// `imap`'s.
    ///
    /// # Examples
    ///
    /// ```
    /// # use taskpool_core::{Pool, TaskError};
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    /// # let pool = taskpool_thread::ThreadPool::new(2)?;
    ///
    /// let first: Vec<u64> = pool.imap(square, 1..).take(3).collect::<Result<_, _>>()?;
    /// assert_eq!(first, [1, 4, 9]);
    /// # Ok::<(), TaskError>(())
    /// ```
    ///
    /// In async code, the stream form of `imap` is `futures`' `buffered` over awaitable
    /// handles (`buffer_unordered` for `imap_unordered`): each item is submitted when the
    /// stream pulls it, with at most the given number in flight, on any runtime.
    ///
    /// ```
    /// use futures_util::{StreamExt, stream};
    /// # use taskpool_core::{Pool, TaskError};
    /// # fn square(x: u64) -> u64 {
    /// #     x * x
    /// # }
    /// # let pool = taskpool_thread::ThreadPool::new(2)?;
    ///
    /// let squares = stream::iter(1..=5).map(|x| pool.submit(square, x)).buffered(4);
    /// let squares: Vec<Result<u64, TaskError>> = futures_executor::block_on(squares.collect());
    /// assert_eq!(squares.into_iter().collect::<Result<Vec<_>, _>>()?, [1, 4, 9, 16, 25]);
    /// # Ok::<(), TaskError>(())
    /// ```
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
        let items = Input::pulled(items.into_iter());
        Ordered::new(self, Arc::new(task.into_job()), items, self.imap_window())
    }

    /// Like [`Pool::imap`], yielding outcomes as they finish rather than in input order.
    /// The same window bounds it, dropping it cancels the same way, and it pulls its input
    /// the same way: an input that waits for its items holds back the results
    /// ([`Pool::imap_unordered_stream`] does not).
    ///
    /// An outcome does not say which item it came from. A result can (return the item's
    /// key with it), but a failure cannot: a [`TaskError`] (a panic, a crash, a time limit)
    /// names no item. Where a failure must be told to its item, take the outcomes in input
    /// order ([`Pool::imap`], [`Pool::map_results`]), or [`Pool::submit`] each item and keep
    /// its handle with it.
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
        let items = Input::pulled(items.into_iter());
        Unordered::new(self, Arc::new(task.into_job()), items, self.imap_window())
    }

    /// Like [`Pool::imap`], for an input whose items arrive over time (a channel's
    /// receiver, lines read from a socket, a queue of jobs): the input is pulled on a thread
    /// of its own, as Python's `Pool.imap` does, so each result is yielded as soon as it and
    /// those before it are ready, while the input waits for its next item; an input that
    /// waits for the consumer's own results gets them. Results come in input order, at most
    /// [`Pool::imap_window`] items are in flight (on a backend that grows the window while
    /// items prove fast, only its first window while they do not: on threads what `imap`
    /// keeps at first, on processes 4 items per batch a worker may hold, a quarter of it),
    /// and at most as many more as that first window, and one the thread holds, wait for
    /// room, pulled; dropping the iterator cancels as `imap` does.
    ///
    /// A panic of the input's `next` reaches the consumer at the item where it happened. The
    /// thread ends when the input ends, or, after the iterator was dropped, once the input's
    /// `next` returns again (an input that never yields again keeps its thread waiting, as
    /// it would keep any thread that reads it). If no thread can be started, the input is
    /// pulled as `imap` pulls it.
    ///
    /// # Examples
    ///
    /// Each job is sent once the result of the one before came back: `imap` would wait for
    /// a window of jobs before it yields anything, here for ever.
    ///
    /// ```
    /// # use taskpool_core::{Pool, TaskError};
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    /// # let pool = taskpool_thread::ThreadPool::new(2)?;
    ///
    /// let (jobs, queue) = std::sync::mpsc::channel();
    /// let mut results = pool.imap_stream(square, queue);
    /// jobs.send(3).unwrap();
    /// let first = results.next().unwrap()?;
    /// jobs.send(first).unwrap();
    /// assert_eq!(results.next().unwrap()?, 81);
    /// drop(jobs);
    /// assert!(results.next().is_none());
    /// # Ok::<(), TaskError>(())
    /// ```
    fn imap_stream<M, T, I>(
        &self,
        task: T,
        items: I,
    ) -> impl NextTimeout<Item = Result<T::Output, TaskError>>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
        I::IntoIter: Send + 'static,
        T::Input: Send + 'static,
    {
        let () = <T::Job as Job>::PORTABLE;
        let window = self.imap_window();
        let items = Input::fed(items.into_iter(), stream_ahead(self.imap_pace(), window));
        Ordered::new(self, Arc::new(task.into_job()), items, window)
    }

    /// Like [`Pool::imap_stream`], yielding outcomes as they finish rather than in input
    /// order, as [`Pool::imap_unordered`] does.
    fn imap_unordered_stream<M, T, I>(
        &self,
        task: T,
        items: I,
    ) -> impl NextTimeout<Item = Result<T::Output, TaskError>>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
        I::IntoIter: Send + 'static,
        T::Input: Send + 'static,
    {
        let () = <T::Job as Job>::PORTABLE;
        let window = self.imap_window();
        let items = Input::fed(items.into_iter(), stream_ahead(self.imap_pace(), window));
        Unordered::new(self, Arc::new(task.into_job()), items, window)
    }
}

/// How many items an `imap_stream`'s input thread may pull ahead of those taken: the first
/// window of a backend whose window grows (see [`ImapPace`]), or its whole window.
fn stream_ahead(pace: Option<ImapPace>, window: usize) -> usize {
    pace.map_or(window, |pace| pace.window.clamp(1, window.max(1)))
}

/// `map_results` through one handle per item: what [`Pool::map_results`] does by default.
///
/// For a backend (see [`crate::backend`]) whose batch path cannot serve some case (a per-task
/// timeout, say) and that wants the default behaviour back.
pub fn map_by_handles<P, M, T, I>(pool: &P, task: T, items: I) -> Vec<Result<T::Output, TaskError>>
where
    P: Pool + ?Sized,
    T: IntoTask<M>,
    I: IntoIterator<Item = T::Input>,
{
    let () = <T::Job as Job>::PORTABLE;
    let job = Arc::new(task.into_job());
    let handles: Vec<_> = items
        .into_iter()
        .map(|input| {
            let (completer, handle) = promise();
            pool.execute(&job, input, completer, None);
            handle
        })
        .collect();
    handles.into_iter().map(TaskHandle::join).collect()
}

/// `map_results_with_progress` through one handle per item: what
/// [`Pool::map_results_with_progress`] does by default.
///
/// For a backend (see [`crate::backend`]) whose batch path cannot serve some case and that
/// wants the default behaviour back. Each handle tells a channel when it settles, so the
/// count follows completions in any order.
///
/// # Examples
///
/// ```
/// use taskpool_core::backend::map_by_handles_with_progress;
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let pool = taskpool_thread::ThreadPool::new(2).unwrap();
/// let mut last = None;
/// let outcomes = map_by_handles_with_progress(&pool, square, 1..=3, |done, total| {
///     last = Some((done, total));
/// });
/// assert_eq!(outcomes.len(), 3);
/// assert_eq!(last, Some((3, 3)));
/// ```
pub fn map_by_handles_with_progress<P, M, T, I, F>(
    pool: &P,
    task: T,
    items: I,
    mut progress: F,
) -> Vec<Result<T::Output, TaskError>>
where
    P: Pool + ?Sized,
    T: IntoTask<M>,
    I: IntoIterator<Item = T::Input>,
    F: FnMut(usize, usize),
{
    let () = <T::Job as Job>::PORTABLE;
    let job = Arc::new(task.into_job());
    let (tx, rx) = crossbeam_channel::unbounded();
    let handles: Vec<_> = items
        .into_iter()
        .enumerate()
        .map(|(index, input)| {
            let (completer, handle) = promise_notify(tx.clone(), index);
            pool.execute(&job, input, completer, None);
            handle
        })
        .collect();
    let total = handles.len();
    progress(0, total);
    let (mut done, mut first_unsettled) = (0, 0);
    // Every handle sends once when it settles (a dropped completer settles it too), and we
    // hold them all, so `total` messages arrive.
    while done < total {
        if rx.is_empty() {
            // None settled since the last look: before sleeping, let the backend use this
            // thread for a task in flight, as a join would (a thread of the pool itself,
            // mapping inside a task, runs it if no thread took it: otherwise every thread
            // could wait). Handles settle in any order; the first unsettled only moves on.
            while handles.get(first_unsettled).is_some_and(TaskHandle::is_finished) {
                first_unsettled += 1;
            }
            if let Some(waiting) = handles.get(first_unsettled) {
                waiting.help(None);
            }
        }
        if rx.recv().is_err() {
            break;
        }
        done += 1 + rx.try_iter().count();
        progress(done, total);
    }
    handles.into_iter().map(TaskHandle::join).collect()
}
