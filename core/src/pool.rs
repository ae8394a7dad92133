//! The [`Pool`] trait: three required methods, everything else provided on top of them.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::Execute;
use crate::error::TaskError;
use crate::handle::{TaskHandle, promise};
use crate::imap::{Ordered, Unordered};
use crate::task::{IntoTask, Job};

/// A pool of workers that runs tasks: the API both backends implement.
///
/// Code written against this trait runs on threads or processes unchanged. (A backend
/// implements [`Pool::workers`] and [`Pool::shutdown`] here and runs work through its
/// [`crate::backend::Execute`]; every other method is provided on top of that.)
///
/// # Examples
///
/// Import `Pool` and `TaskError` from the backend crate you depend on
/// (`taskpool_process` or `taskpool_thread`); the code below is the same for both.
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
pub trait Pool: Execute {
    /// The number of workers.
    fn workers(&self) -> usize;

    /// Stops accepting tasks, finishes every task already submitted, then stops the workers.
    ///
    /// Idempotent: a second call returns at once. Dropping a pool shuts it down too, with the
    /// backend's drop policy.
    fn shutdown(&self);

    /// Submits one task and returns a handle to its result, like Python's `apply_async`.
    fn submit<M, T: IntoTask<M>>(&self, task: T, input: T::Input) -> TaskHandle<T::Output> {
        let () = <T::Job as Job>::PORTABLE;
        let (completer, handle) = promise();
        self.execute(&Arc::new(task.into_job()), input, completer, None);
        handle
    }

    /// Like [`Pool::submit`], with a time limit for this task that overrides the pool's.
    fn submit_timeout<M, T: IntoTask<M>>(
        &self,
        task: T,
        input: T::Input,
        limit: Duration,
    ) -> TaskHandle<T::Output> {
        let () = <T::Job as Job>::PORTABLE;
        let (completer, handle) = promise();
        self.execute(&Arc::new(task.into_job()), input, completer, Some(limit));
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
    fn map<M, T, I>(&self, task: T, items: I) -> Result<Vec<T::Output>, TaskError>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
    {
        let () = <T::Job as Job>::PORTABLE;
        self.map_results(task, items).into_iter().collect()
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

    /// Runs `task` over `items` lazily and yields the outcomes in input order, like Python's
    /// `imap`. At most a bounded window of items (a few per worker) is in flight, so an
    /// endless iterator runs in bounded memory.
    fn imap<M, T, I>(&self, task: T, items: I) -> impl Iterator<Item = Result<T::Output, TaskError>>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
    {
        let () = <T::Job as Job>::PORTABLE;
        Ordered::new(self, Arc::new(task.into_job()), items.into_iter(), 4 * self.workers())
    }

    /// Like [`Pool::imap`], yielding outcomes as they finish rather than in input order.
    fn imap_unordered<M, T, I>(
        &self,
        task: T,
        items: I,
    ) -> impl Iterator<Item = Result<T::Output, TaskError>>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
    {
        let () = <T::Job as Job>::PORTABLE;
        Unordered::new(self, Arc::new(task.into_job()), items.into_iter(), 4 * self.workers())
    }
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
