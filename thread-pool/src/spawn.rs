//! A one-off task on a thread of its own, with the same handle as a one-off process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use taskpool_core::backend::{Child, Job, catch_panic, promise};
use taskpool_core::{IntoTask, Spawned, TaskError, TaskHandle};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Runs `task` on `input` in a new thread, like `multiprocessing.Process` but a thread.
///
/// The handle has the same API as `taskpool_process::spawn`'s: an id (a number unique in this
/// process, since a thread has no pid), `is_alive`, `join` returning the value, and `kill`,
/// which returns [`TaskError::Unsupported`] because a thread cannot be killed. For the same
/// reason, dropping the handle unjoined lets the thread run on to its end (a one-off process
/// is killed then), its result discarded.
///
/// # Errors
///
/// [`TaskError::WorkerStart`] if the thread cannot be created.
///
/// # Examples
///
/// ```
/// fn shout(word: String) -> String {
///     word.to_uppercase()
/// }
///
/// # fn main() -> Result<(), taskpool_thread::TaskError> {
/// let mut child = taskpool_thread::spawn(shout, "hi".to_string())?;
/// assert!(child.kill().is_err()); // threads cannot be killed
/// assert_eq!(child.join()?, "HI");
/// # Ok(())
/// # }
/// ```
pub fn spawn<M, T: IntoTask<M>>(task: T, input: T::Input) -> Result<Spawned<T::Output>, TaskError> {
    let () = <T::Job as Job>::PORTABLE;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let job = task.into_job();
    let (completer, handle) = promise();
    let thread = thread::Builder::new()
        .name(format!("taskpool-spawn-{id}"))
        .spawn(move || {
            completer.complete(catch_panic(false, || job.run(input)).map_err(TaskError::from));
        })
        .map_err(|e| TaskError::WorkerStart { reason: format!("cannot start a thread: {e}") })?;
    Ok(Spawned::new(Box::new(ThreadChild { id, thread: Some(thread), handle: Some(handle) })))
}

struct ThreadChild<R> {
    id: u64,
    thread: Option<JoinHandle<()>>,
    handle: Option<TaskHandle<R>>,
}

impl<R: Send> Child<R> for ThreadChild<R> {
    fn id(&self) -> u64 {
        self.id
    }

    fn is_alive(&mut self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    fn kill(&mut self) -> Result<(), TaskError> {
        Err(TaskError::Unsupported { operation: "killing a thread" })
    }

    fn wait(&mut self, limit: Option<Duration>) -> Option<Result<R, TaskError>> {
        let Some(handle) = &mut self.handle else {
            return Some(Err(TaskError::AlreadyJoined));
        };
        let result = match limit {
            Some(limit) => match handle.join_timeout(limit) {
                Err(TaskError::TimedOut { still_running: true, .. }) => return None,
                other => other,
            },
            None => self.handle.take()?.join(),
        };
        self.handle = None;
        if let Some(thread) = self.thread.take() {
            // The task's panics were caught, so the thread ends cleanly.
            let _ = thread.join();
        }
        Some(result)
    }
}
