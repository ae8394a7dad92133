//! A one-off task in a process of its own, like `multiprocessing.Process`.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use taskpool_core::backend::{Child, Job};
use taskpool_core::{Direction, Exit, IntoTask, Side, Spawned, TaskError};

use crate::config::ProcessConfig;

use crate::codec;
use crate::launch::{self, Launched};
use crate::protocol::{self, Init};
use crate::ship::Ship;
use crate::sys::{self, Interest};
use crate::wire::{FrameReader, Kind, SLACK};

/// Runs `task` on `input` in a new worker process, like `multiprocessing.Process`.
///
/// The handle gives the process id, `is_alive`, `join` returning the task's value (or how the
/// process died: [`TaskError::Crashed`] with the signal or exit code), and `kill`.
/// Dropping the handle without joining kills the process and reaps it, so no process
/// outlives its handle unseen.
///
/// # Errors
///
/// [`TaskError::WorkerStart`] if the process cannot be started, or a serialization error for
/// the task or its argument.
///
/// # Examples
///
/// ```
/// fn shout(word: String) -> String {
///     format!("{} from pid {}", word.to_uppercase(), std::process::id())
/// }
///
/// # fn main() -> Result<(), taskpool_process::TaskError> {
/// let child = taskpool_process::spawn(shout, "hi".to_string())?;
/// let pid = child.id();
/// assert_eq!(child.join()?, format!("HI from pid {pid}"));
/// # Ok(())
/// # }
/// ```
pub fn spawn<M, T: IntoTask<M>>(task: T, input: T::Input) -> Result<Spawned<T::Output>, TaskError> {
    let () = <T::Job as Job>::PORTABLE;
    let limit = ProcessConfig::default().get_max_frame_bytes();
    let job = task.into_job().ship(Ship)?;
    let mut encoded = Vec::new();
    codec::encode_into(&input, &mut encoded)
        .map_err(|e| TaskError::serialization(Side::Argument, Direction::Encode, e))?;
    if encoded.len() + job.state.len() > limit {
        let size = (encoded.len() + job.state.len()) as u64;
        return Err(TaskError::TooLarge { side: Side::Argument, size, limit: limit as u64 });
    }
    let init = Init {
        frame_limit: limit as u64,
        flags: 0,
        initializer: None,
        memory_limit: None,
        cpu_time_limit: None,
        name: "taskpool-spawn".into(),
    };
    let Launched { pid, request, result } = launch::launch(&init)
        .map_err(|failure| TaskError::WorkerStart { reason: failure.reason() })?;
    let mut batch = Vec::new();
    protocol::encode_batch(&mut batch, 0, &job, 0, std::iter::once(&encoded[..]));
    // The worker reads its batch after its hello; a write error means it already died, which
    // `join` reports with its exit status.
    let _ = sys::write_all(request.as_fd(), &batch);
    drop(request);
    let child = ProcessChild {
        pid,
        result,
        reader: FrameReader::new(limit + SLACK),
        exit: None,
        outcome: None,
        joined: false,
        _job: std::marker::PhantomData,
    };
    Ok(Spawned::new(Box::new(child)))
}

struct ProcessChild<R> {
    pid: libc::pid_t,
    result: OwnedFd,
    reader: FrameReader,
    /// Set once the process is reaped.
    exit: Option<Exit>,
    /// The task's outcome, once read.
    outcome: Option<Result<R, TaskError>>,
    /// The outcome was handed out.
    joined: bool,
    _job: std::marker::PhantomData<fn() -> R>,
}

impl<R: serde::de::DeserializeOwned> ProcessChild<R> {
    /// Reads frames until the task's outcome arrives or the pipe ends. Returns `false` on
    /// timeout.
    fn read_outcome(&mut self, deadline: Option<Instant>) -> bool {
        while self.outcome.is_none() {
            match self.reader.next_frame() {
                Ok(Some((Kind::Hello, _))) => continue,
                Ok(Some((Kind::InitFailed, body))) => {
                    let reason = String::from_utf8_lossy(self.reader.bytes(body)).into_owned();
                    self.outcome = Some(Err(TaskError::WorkerStart { reason }));
                }
                Ok(Some((kind, range))) => {
                    self.outcome = Some(
                        match protocol::decode_result(kind, self.reader.bytes(range.clone()), range)
                        {
                            Ok(item) => item.outcome.and_then(|value| {
                                codec::decode(self.reader.bytes(value)).map_err(|e| {
                                    TaskError::serialization(Side::Result, Direction::Decode, e)
                                })
                            }),
                            Err(e) => Err(TaskError::Protocol { reason: e.to_string() }),
                        },
                    );
                }
                Ok(None) => {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if left.is_some_and(|l| l.is_zero()) {
                        return false;
                    }
                    let interest = Interest { fd: self.result.as_fd(), read: true, write: false };
                    match sys::poll([interest], left) {
                        Ok([ready]) if ready.read => {
                            if !matches!(self.reader.fill(self.result.as_fd()), Ok(n) if n > 0) {
                                return true; // End of output without an outcome: it died.
                            }
                        }
                        Ok(_) => return false,
                        Err(_) => return true,
                    }
                }
                Err(e) => self.outcome = Some(Err(TaskError::Protocol { reason: e.to_string() })),
            }
        }
        true
    }

    fn reap(&mut self) -> Exit {
        *self.exit.get_or_insert_with(|| sys::wait(self.pid).unwrap_or(Exit::Code(-1)))
    }
}

impl<R: serde::de::DeserializeOwned + Send> Child<R> for ProcessChild<R> {
    fn id(&self) -> u64 {
        u64::from(self.pid.unsigned_abs())
    }

    fn is_alive(&mut self) -> bool {
        if self.exit.is_none() {
            if let Ok(Some(exit)) = sys::try_wait(self.pid) {
                self.exit = Some(exit);
            }
        }
        self.exit.is_none()
    }

    fn kill(&mut self) -> Result<(), TaskError> {
        if self.exit.is_none() {
            sys::kill(self.pid, libc::SIGKILL)?;
        }
        Ok(())
    }

    fn wait(&mut self, limit: Option<Duration>) -> Option<Result<R, TaskError>> {
        let deadline = limit.and_then(|l| Instant::now().checked_add(l));
        if !self.read_outcome(deadline) {
            return None;
        }
        let exit = self.reap();
        if std::mem::replace(&mut self.joined, true) {
            return Some(Err(TaskError::AlreadyJoined));
        }
        // No outcome means the process died before it could send one, even if it exited 0.
        Some(self.outcome.take().unwrap_or(Err(TaskError::Crashed(exit))))
    }
}

impl<R> Drop for ProcessChild<R> {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = sys::kill(self.pid, libc::SIGKILL);
            let _ = sys::wait(self.pid);
        }
    }
}
