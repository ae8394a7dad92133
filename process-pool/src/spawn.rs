//! A one-off task in a process of its own, like `multiprocessing.Process`.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use taskpool_core::backend::{Child, Job, catch_panic};
use taskpool_core::{Direction, Exit, IntoTask, Resource, Side, Spawned, TaskError};

use crate::config::ProcessConfig;

use crate::codec;
use crate::handoff;
use crate::launch::{self, Launched};
use crate::oom;
use crate::protocol::{self, Init};
use crate::region::Region;
use crate::ship::Ship;
use crate::sink;
use crate::sys::{self, ChildProcess, Interest};
use crate::wire::{self, FrameReader, Kind, SLACK};

/// How often a one-off is checked on where the kernel has no pidfds.
const POLL_EXIT: Duration = Duration::from_millis(20);

/// Runs `task` on `input` in a new worker process, like `multiprocessing.Process`.
///
/// The handle gives the process id, `is_alive`, `join` returning the task's value (or how the
/// process died: [`TaskError::Crashed`] with the signal or exit code), and `kill` (after
/// which `join` fails with [`TaskError::Cancelled`], unless the task had already finished).
/// Dropping the handle without joining kills the process and reaps it, so no process
/// outlives its handle unseen; programs the task started and left running are killed with it
/// (when it is reaped), unless the task detached them (`setsid`).
///
/// `join` fails with [`TaskError::Panicked`] for a panic, [`TaskError::Crashed`] for a
/// process that died (the signal or exit code), [`TaskError::ResourceLimit`] for one the
/// kernel's OOM killer ended under its cgroup's memory limit, and
/// [`TaskError::Serialization`] or [`TaskError::TooLarge`] for a result that could not
/// travel back.
///
/// # Errors
///
/// [`TaskError::WorkerStart`] if the process cannot be started (also where no thread can start,
/// when called from a thread other than the main one: the thread that starts every worker and
/// one-off cannot start then, and a process started by the calling thread itself would die when
/// that thread ends), [`TaskError::Serialization`] if the task's state or its argument cannot be
/// encoded, and [`TaskError::TooLarge`] if together they encode to more than the default frame
/// limit (1 GiB, [`crate::ProcessConfig::max_frame_bytes`]).
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
    let encode = || {
        let mut encoded = Vec::new();
        codec::encode_caught(&input, &mut encoded)
            .map(|()| encoded)
            .map_err(|e| TaskError::serialization(Side::Argument, Direction::Encode, e))
    };
    // Checked first without handing anything off: an argument that fails to encode or is too
    // large to send gives back the handles and shared bytes in it (the copies `holding`
    // kept go when this returns).
    let (checked, held) = handoff::holding(encode);
    let checked = checked?;
    if checked.len() + job.state.len() > limit {
        let size = (checked.len() + job.state.len()) as u64;
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
    // The OOM kills in this process's memory cgroup so far: one more by the time the process
    // dies of SIGKILL says that memory ran out (`oom.rs`).
    let oom_kills = oom::kills();
    // Where the launcher thread cannot start, the main thread, whose end ends the program,
    // may start the process itself; another thread may end before its one-off does, which
    // would kill it.
    let no_launcher = if sys::on_main_thread() {
        launch::NoLauncher::SpawnHere
    } else {
        launch::NoLauncher::Fail
    };
    // A one-off's task and result cross its pipes: there is nothing to batch.
    let Launched { child, region, request, result } = launch::launch(&init, false, no_launcher)
        .map_err(|failure| TaskError::WorkerStart { reason: failure.reason() })?;
    // Sent as handed off (the child takes back what it receives), so encoded again if the
    // first encoding held anything back; the handles counted as the child's, so that they
    // stop counting if it dies before it reads them.
    let child_pid = child.pid.unsigned_abs();
    let (encoded, held) = if held.is_empty() {
        (checked, held)
    } else {
        drop(held);
        let (encoded, held) = handoff::handed_to(child_pid, encode);
        (encoded?, held)
    };
    let mut batch = Vec::new();
    let mut framed = Vec::with_capacity(encoded.len() + 4);
    wire::put_bytes(&mut framed, &encoded);
    protocol::encode_batch(&mut batch, 0, &job, 0, 1, &framed);
    // The worker reads its batch after its hello; a write error means it already died, which
    // `join` reports with its exit status.
    let _ = sys::write_all_to_child(request.as_fd(), &batch);
    drop(request);
    let child = ProcessChild {
        child,
        _region: region,
        result,
        reader: FrameReader::new(limit + SLACK),
        frame_limit: limit,
        exit: None,
        outcome: None,
        joined: false,
        killed: false,
        oom_kills,
        held,
        kept: job.kept,
        _job: std::marker::PhantomData,
    };
    Ok(Spawned::new(Box::new(child)))
}

struct ProcessChild<R> {
    child: ChildProcess,
    /// The worker's shared memory, if any, which a one-off does not read; kept for its life.
    _region: Option<Region>,
    result: OwnedFd,
    reader: FrameReader,
    /// The largest frame either side sends.
    frame_limit: usize,
    /// Set once the process is reaped.
    exit: Option<Exit>,
    /// The task's outcome, once read.
    outcome: Option<Result<R, TaskError>>,
    /// The outcome was handed out.
    joined: bool,
    /// `kill` was called.
    killed: bool,
    /// The OOM kills of this process's memory cgroup when the process was started.
    oom_kills: Option<u64>,
    /// The shared bytes the argument holds, kept until the process has ended: it opened
    /// them, or never will (see `handoff::handed_to`).
    held: Vec<handoff::Held>,
    /// What the task's own state holds, kept as long.
    kept: crate::ship::Kept,
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
                    // A large byte string result comes in a bulk frame before its frame.
                    let bulk = self.reader.take_bulk();
                    self.outcome = Some(
                        match protocol::decode_result(
                            kind,
                            self.reader.bytes(range.clone()),
                            range,
                            self.frame_limit,
                        ) {
                            Ok(item) => match &item.outcome {
                                Ok(list) => {
                                    let mut values = item.values(self.reader.bytes(list.clone()));
                                    let value = values.next().unwrap_or_default();
                                    let value = self.reader.bytes(value);
                                    // A panic of its `Deserialize` fails it, as in a pool.
                                    catch_panic(false, || {
                                        codec::with_bulk(bulk, || codec::decode(value)).map_err(
                                            |e| {
                                                TaskError::serialization(
                                                    Side::Result,
                                                    Direction::Decode,
                                                    e,
                                                )
                                            },
                                        )
                                    })
                                    .unwrap_or_else(|report| Err(sink::panicked_decoding(&report)))
                                }
                                Err(e) => Err(e.clone()),
                            },
                            Err(e) => Err(TaskError::Protocol { reason: e.to_string() }),
                        },
                    );
                }
                Ok(None) => {
                    // Polled even when the deadline has passed (a wait of no time): what the
                    // process sent before it ended is read, not taken for a timeout.
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
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

    /// Waits until the process has ended (at most until `deadline`); returns whether it has.
    fn await_end(&self, deadline: Option<Instant>) -> bool {
        loop {
            if self.exit.is_some() || sys::has_ended(&self.child) {
                return true;
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                return false;
            }
            match &self.child.pidfd {
                Some(fd) => {
                    let _ =
                        sys::poll([Interest { fd: fd.as_fd(), read: true, write: false }], left);
                }
                None => std::thread::sleep(left.map_or(POLL_EXIT, |l| l.min(POLL_EXIT))),
            }
        }
    }

    /// The error of a process that ended with `exit` and sent no outcome: `Cancelled` for
    /// the SIGKILL that `kill` sent, the cgroup's memory limit for a SIGKILL that `kill` did
    /// not send while the memory cgroup's count of OOM kills rose, the crash otherwise.
    fn crash(&self, exit: Exit) -> TaskError {
        if exit == Exit::Signal(libc::SIGKILL) && self.killed {
            return TaskError::Cancelled;
        }
        if exit == Exit::Signal(libc::SIGKILL) {
            let reading = oom::Reading::take();
            if let Some((reading, before)) = reading.zip(self.oom_kills) {
                if reading.kills > before {
                    return TaskError::ResourceLimit {
                        resource: Resource::Memory,
                        limit: reading.limit,
                    };
                }
            }
        }
        TaskError::Crashed(exit)
    }

    /// Reaps the ended process, after killing what it left in its process group.
    fn reap(&mut self) -> Exit {
        let child = &self.child;
        let exit = *self.exit.get_or_insert_with(|| {
            sys::kill_group(child);
            sys::wait_child(child, true).ok().flatten().unwrap_or(Exit::Code(-1))
        });
        self.held.clear();
        self.kept = crate::ship::Kept::default();
        exit
    }
}

impl<R: serde::de::DeserializeOwned + Send> Child<R> for ProcessChild<R> {
    fn id(&self) -> u64 {
        u64::from(self.child.pid.unsigned_abs())
    }

    fn is_alive(&mut self) -> bool {
        self.exit.is_none() && !sys::has_ended(&self.child)
    }

    fn kill(&mut self) -> Result<(), TaskError> {
        if self.exit.is_none() {
            self.killed = true;
            sys::kill_group(&self.child);
            // SIGKILL cannot be caught: wait the moment it takes to land, so that the
            // process has ended when `kill` returns and `is_alive` says so.
            self.await_end(None);
        }
        Ok(())
    }

    fn wait(&mut self, limit: Option<Duration>) -> Option<Result<R, TaskError>> {
        let deadline = limit.and_then(|l| Instant::now().checked_add(l));
        if !self.read_outcome(deadline) || !self.await_end(deadline) {
            return None;
        }
        let exit = self.reap();
        if std::mem::replace(&mut self.joined, true) {
            return Some(Err(TaskError::AlreadyJoined));
        }
        // No outcome means the process died before it could send one, even if it exited 0.
        Some(self.outcome.take().unwrap_or_else(|| Err(self.crash(exit))))
    }
}

impl<R> Drop for ProcessChild<R> {
    fn drop(&mut self) {
        if self.exit.is_none() {
            sys::kill_group(&self.child);
            let _ = sys::wait_child(&self.child, true);
        }
    }
}
