//! A one-off task in its own worker, like Python's `multiprocessing.Process`.

use std::fmt;
use std::time::Duration;

use crate::error::TaskError;

/// What a backend provides for one spawned worker. Users hold a [`Spawned`] instead.
pub trait Child<R>: Send {
    /// The worker's id: the process id for processes, a unique number for threads.
    fn id(&self) -> u64;
    /// Whether the worker is still running.
    fn is_alive(&mut self) -> bool;
    /// Stops the worker at once, if the backend can.
    ///
    /// # Errors
    ///
    /// [`TaskError::Unsupported`] where a worker cannot be killed, or an OS error.
    fn kill(&mut self) -> Result<(), TaskError>;
    /// Waits for the worker, at most `limit` if given, and returns its result. On timeout,
    /// returns `None` and the worker keeps running.
    fn wait(&mut self, limit: Option<Duration>) -> Option<Result<R, TaskError>>;
}

/// A task running in a worker of its own, started by a backend's `spawn`: a process (with a
/// pid) or a thread, with the same API.
///
/// Dropping it without joining differs: a process is killed (and reaped), unlike a process
/// of Python's `multiprocessing`, which runs on; a thread, which cannot be stopped, runs on
/// to its end and its result is discarded. Keep the handle for as long as the task should
/// run.
///
/// # Examples
///
/// `spawn` is the backend crate's: `taskpool_process::spawn` starts a process,
/// `taskpool_thread::spawn` a thread.
///
/// ```
/// # use taskpool_core::TaskError;
/// # use taskpool_thread::spawn;
/// fn greet(name: String) -> String {
///     format!("hello, {name}")
/// }
///
/// let child = spawn(greet, "world".to_string())?;
/// assert_eq!(child.join()?, "hello, world");
/// # Ok::<(), TaskError>(())
/// ```
///
/// A handle left unused warns, as a process it stood for would be killed at once, before it
/// printed or did anything (`#[deny(unused_must_use)]` makes that an error):
///
/// ```compile_fail
/// # #![deny(unused_must_use)]
/// # use taskpool_core::TaskError;
/// # use taskpool_thread::spawn;
/// fn greet(name: String) -> String {
///     format!("hello, {name}")
/// }
///
/// spawn(greet, "world".to_string())?;
/// # Ok::<(), TaskError>(())
/// ```
#[must_use = "a process is killed when its handle is dropped unjoined (a thread runs on, its result lost): keep the handle and `join` it"]
pub struct Spawned<R> {
    child: Box<dyn Child<R>>,
}

impl<R> Spawned<R> {
    /// Wraps a backend's child. Backends call this; see [`crate::backend::Child`].
    pub fn new(child: Box<dyn Child<R>>) -> Self {
        Spawned { child }
    }

    /// The worker's id: the process id for processes, a unique number for threads.
    pub fn id(&self) -> u64 {
        self.child.id()
    }

    /// Whether the worker is still running.
    pub fn is_alive(&mut self) -> bool {
        self.child.is_alive()
    }

    /// Stops the worker at once. On processes it returns once the process has ended, so
    /// [`Spawned::is_alive`] is then false, and a later [`Spawned::join`] fails with
    /// [`TaskError::Cancelled`]: the caller ended the task, which did not crash (a signal
    /// sent to the process from elsewhere, `SIGKILL` included, is [`TaskError::Crashed`]). A
    /// task that had finished first, or crashed, still gives its outcome or its crash.
    ///
    /// # Errors
    ///
    /// [`TaskError::Unsupported`] on threads, which cannot be killed; an OS error otherwise.
    pub fn kill(&mut self) -> Result<(), TaskError> {
        self.child.kill()
    }

    /// Waits for the worker and returns the task's result.
    ///
    /// # Errors
    ///
    /// The task's failure, typed: a panic ([`TaskError::Panicked`]), or for processes the
    /// signal or exit code it died with ([`TaskError::Crashed`]), [`TaskError::Cancelled`]
    /// after [`Spawned::kill`], and the other failures the backend's `spawn` lists;
    /// [`TaskError::AlreadyJoined`] if a [`Spawned::join_timeout`] already took the outcome.
    pub fn join(mut self) -> Result<R, TaskError> {
        self.child.wait(None).unwrap_or(Err(TaskError::AlreadyJoined))
    }

    /// Waits at most `limit`; on timeout returns [`TaskError::TimedOut`] with
    /// `still_running: true` and the worker keeps running.
    ///
    /// # Errors
    ///
    /// As [`Spawned::join`], plus the timeout ([`TaskError::TimedOut`], after which the
    /// handle can be joined again).
    pub fn join_timeout(&mut self, limit: Duration) -> Result<R, TaskError> {
        self.child
            .wait(Some(limit))
            .unwrap_or(Err(TaskError::TimedOut { limit, still_running: true }))
    }
}

impl<R> fmt::Debug for Spawned<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spawned").field("id", &self.id()).finish()
    }
}
