//! The typed errors of a task: what went wrong, told apart without parsing text.

use std::error::Error;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// Why a task produced no result.
///
/// Every variant is a distinct cause that a caller can match on: a panic is not a crash, a
/// crash by signal is not an exit code, a timeout is not a cancellation. `Display` is
/// lowercase with no trailing period.
///
/// # Examples
///
/// ```
/// # use taskpool_core::{Exit, TaskError};
///
/// fn describe(e: &TaskError) -> &'static str {
///     match e {
///         TaskError::Panicked(_) => "the task panicked",
///         TaskError::Crashed(Exit::Signal(_)) => "a signal killed the worker",
///         TaskError::Crashed(_) => "the worker exited",
///         TaskError::TimedOut { .. } => "too slow",
///         _ => "something else",
///     }
/// }
///
/// assert_eq!(describe(&TaskError::Crashed(Exit::Signal(11))), "a signal killed the worker");
/// assert_eq!(TaskError::Crashed(Exit::Signal(11)).to_string(), "worker killed by signal SIGSEGV (11)");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked. The worker survived and keeps serving. (Boxed: it is the largest
    /// variant, and boxing keeps every `Result<T, TaskError>` small.)
    Panicked(Box<PanicReport>),
    /// The worker process running the task died: killed by a signal or exited on its own.
    /// Only the task it was running fails; the pool replaces the worker.
    Crashed(Exit),
    /// The task ran longer than `limit`, or a `join_timeout` waited that long.
    TimedOut {
        /// The limit that was exceeded.
        limit: Duration,
        /// Whether the task may still be running: true on threads, which cannot be stopped,
        /// and after a `join_timeout`; false on processes, where the pool killed the worker,
        /// or the task returned but its worker measured it past its limit (the worker then
        /// lives on, and the result is discarded).
        still_running: bool,
    },
    /// The task was cancelled through its handle before it produced a result: by
    /// [`TaskHandle::cancel`](crate::TaskHandle::cancel), or, for a one-off process, by
    /// [`Spawned::kill`](crate::Spawned::kill).
    Cancelled,
    /// The pool shut down before the task could run, or was dropped while it ran and gave up
    /// on it once `shutdown_grace` ran out (a process pool kills its worker then; threads
    /// cannot be stopped, and a thread pool's drop gives up on none).
    ShutDown,
    /// The argument, the result or the task's state could not be encoded or decoded on its
    /// way between the caller and a worker process.
    ///
    /// `side` and `direction` say where it failed: an argument and a task's state are
    /// encoded in the caller and decoded in the worker, a result the other way round.
    Serialization {
        /// Which value failed.
        side: Side,
        /// Whether encoding or decoding it failed.
        direction: Direction,
        /// What the codec reported, or the message of the value's own `Serialize` or
        /// `Deserialize` implementation.
        message: String,
    },
    /// The encoded argument or result is larger than the pool's frame limit: on a process
    /// pool, its `ProcessConfig::max_frame_bytes` (1 GiB by default, and always for a one-off
    /// process); on a cluster pool, what one message may carry (the server's `max_payload`,
    /// and a little under 32 MiB at most, what a stream keeps). `Display` names both
    /// settings and both sizes.
    TooLarge {
        /// Which value was too large.
        side: Side,
        /// Its encoded size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// A worker could not be started, or its initializer failed, more times than the pool
    /// allows.
    WorkerStart {
        /// What went wrong on the last attempt.
        reason: String,
    },
    /// The task went over a limit set on its worker process (the process backend's memory
    /// and CPU-time limits, or the memory limit of its cgroup, a container's, where the
    /// kernel's OOM killer ended the worker); the worker was replaced.
    ResourceLimit {
        /// Which resource ran out.
        resource: Resource,
        /// The limit: bytes of address space for [`Resource::Memory`] (bytes of memory for a
        /// cgroup's limit), whole seconds for [`Resource::CpuTime`].
        limit: u64,
    },
    /// A worker broke the wire protocol (for example, wrote garbage to its pipe) and was killed.
    Protocol {
        /// What was wrong with what it sent.
        reason: String,
    },
    /// The pool or one-off was configured with a value it cannot use.
    InvalidConfig {
        /// Which setting, and why.
        reason: String,
    },
    /// The backend cannot do this, for example kill a thread.
    Unsupported {
        /// What was asked for.
        operation: &'static str,
    },
    /// The result was already taken from this handle by an earlier join.
    AlreadyJoined,
    /// An operating-system call failed. `Display` includes what the system said, so
    /// [`Error::source`] gives what is behind that, if anything, not the [`io::Error`]
    /// itself: match this variant for it.
    Io(Arc<io::Error>),
    /// No worker able to run the task was available for `waited`, so it did not run: a
    /// cluster pool had no agent of the caller's program alive.
    NoWorker {
        /// How long the task waited for one.
        waited: Duration,
        /// Agents heard alive then that run another executable (another build of the
        /// program, say, whose agents were not restarted after a rebuild): they cannot run
        /// this program's tasks. Zero if none were heard.
        other_agents: usize,
        /// Agents of the caller's own executable heard alive then that serve streams of
        /// another name (a stream name set on one side only, in the caller's configuration or
        /// the agents'): they never see this caller's tasks. Zero if none were heard.
        other_streams: usize,
    },
    /// The task was handed to a worker `deliveries` times and no delivery ended with an
    /// outcome (each worker died or lost contact while it held the task). It is not handed
    /// out again, so a task that kills whatever runs it cannot circle for ever.
    DeliveryLimit {
        /// How many times it was handed out: the pool's limit.
        deliveries: u32,
    },
    /// The service the pool sends its tasks through (a cluster's message server) could not
    /// be reached, or did not take the task or its result, within `waited`; `source` says
    /// why, and its text ends the error's `Display` (so [`Error::source`] gives what is
    /// behind it, if anything).
    Unreachable {
        /// How long the pool kept trying (zero if it did not retry).
        waited: Duration,
        /// What went wrong on the last attempt.
        source: Arc<dyn Error + Send + Sync>,
    },
}

impl TaskError {
    /// Returns the signal that killed the worker, if that is what happened.
    pub fn signal(&self) -> Option<i32> {
        match self {
            TaskError::Crashed(Exit::Signal(s)) => Some(*s),
            _ => None,
        }
    }

    /// Builds a serialization error from any codec error.
    ///
    /// # Examples
    ///
    /// ```
    /// # use taskpool_core::{Direction, Side, TaskError};
    /// let e = TaskError::serialization(Side::Result, Direction::Decode, "invalid length 3");
    /// assert_eq!(e.to_string(), "could not decode the result in the caller: invalid length 3");
    /// ```
    pub fn serialization(side: Side, direction: Direction, error: impl fmt::Display) -> Self {
        TaskError::Serialization { side, direction, message: error.to_string() }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Panicked(report) => write!(f, "{report}"),
            TaskError::Crashed(exit) => write!(f, "worker {exit}"),
            TaskError::TimedOut { limit, still_running: true } => {
                write!(f, "timed out after {limit:?} (the task may still be running)")
            }
            TaskError::TimedOut { limit, still_running: false } => {
                write!(f, "timed out after {limit:?} (the task no longer runs)")
            }
            TaskError::Cancelled => f.write_str("task cancelled"),
            TaskError::ShutDown => f.write_str(
                "pool shut down before the task finished: it had not started, or a dropped \
                 pool's `shutdown_grace` ran out while it ran",
            ),
            TaskError::Serialization { side, direction, message } => {
                let place = direction.place(*side);
                write!(f, "could not {direction} the {side} in the {place}: {message}")
            }
            TaskError::TooLarge { side, size, limit } => {
                write!(
                    f,
                    "the {side} is {size} bytes encoded, over the {limit}-byte frame limit (a \
                     process pool's `max_frame_bytes`; on a cluster, the server's `max_payload`)"
                )
            }
            TaskError::WorkerStart { reason } => write!(f, "worker failed to start: {reason}"),
            TaskError::ResourceLimit { resource: Resource::Memory, limit } => {
                write!(
                    f,
                    "task ran out of memory under the worker's {limit}-byte limit (its \
                     `memory_limit`, or its memory cgroup's where the kernel ended it)"
                )
            }
            TaskError::ResourceLimit { resource: Resource::CpuTime, limit } => {
                write!(
                    f,
                    "task used more than its cpu time limit of {limit} s (`cpu_time_limit`, \
                     rounded up to whole seconds)"
                )
            }
            TaskError::Protocol { reason } => write!(f, "worker broke the protocol: {reason}"),
            TaskError::InvalidConfig { reason } => write!(f, "invalid configuration: {reason}"),
            TaskError::Unsupported { operation } => write!(f, "{operation} is not supported here"),
            TaskError::AlreadyJoined => f.write_str("the result was already taken"),
            TaskError::Io(e) => write!(f, "operating-system call failed: {e}"),
            TaskError::NoWorker { waited, other_agents, other_streams } => {
                write!(f, "no worker able to run the task was available for {waited:?}")?;
                match other_streams {
                    0 => {}
                    1 => f.write_str(
                        "; an agent of this executable is alive serving streams of another \
                         name, and callers and agents must use the same stream name",
                    )?,
                    n => write!(
                        f,
                        "; {n} agents of this executable are alive serving streams of another \
                         name, and callers and agents must use the same stream name"
                    )?,
                }
                match other_agents {
                    0 => Ok(()),
                    1 => f.write_str(
                        "; an agent of another executable is alive, and an agent runs only \
                         the tasks of the executable it was started from",
                    ),
                    n => write!(
                        f,
                        "; {n} agents of other executables are alive, and an agent runs only \
                         the tasks of the executable it was started from"
                    ),
                }
            }
            TaskError::DeliveryLimit { deliveries } => {
                write!(f, "the task was delivered {deliveries} times without an outcome")
            }
            TaskError::Unreachable { waited, source } if waited.is_zero() => {
                write!(f, "the pool's service could not be reached: {source}")
            }
            TaskError::Unreachable { waited, source } => {
                write!(f, "the pool's service could not be reached within {waited:?}: {source}")
            }
        }
    }
}

impl Error for TaskError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            // Their text is in `Display`: what is below it, as `io::Error` itself does.
            TaskError::Io(e) => e.source(),
            TaskError::Unreachable { source, .. } => source.source(),
            _ => None,
        }
    }
}

impl From<PanicReport> for TaskError {
    fn from(report: PanicReport) -> Self {
        TaskError::Panicked(Box::new(report))
    }
}

impl From<io::Error> for TaskError {
    fn from(e: io::Error) -> Self {
        TaskError::Io(Arc::new(e))
    }
}

/// Which value of a task failed to travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The task's argument.
    Argument,
    /// The task's result.
    Result,
    /// The task's own state (a struct task's fields).
    Task,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Argument => "argument",
            Side::Result => "result",
            Side::Task => "task state",
        })
    }
}

/// Whether a value failed on its way out (encoding) or in (decoding): see
/// [`TaskError::Serialization`].
///
/// # Examples
///
/// ```
/// use taskpool_core::{Direction, Side, TaskError};
///
/// fn blame(e: &TaskError) -> &'static str {
///     match e {
///         TaskError::Serialization { direction: Direction::Encode, .. } => "its Serialize",
///         TaskError::Serialization { direction: Direction::Decode, .. } => "its Deserialize",
///         _ => "something else",
///     }
/// }
///
/// let e = TaskError::serialization(Side::Argument, Direction::Decode, "missing field `id`");
/// assert_eq!(blame(&e), "its Deserialize");
/// assert_eq!(e.to_string(), "could not decode the argument in the worker: missing field `id`");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Turning the value into bytes: an argument or a task's state in the caller, a result in
    /// the worker.
    Encode,
    /// Rebuilding the value from bytes: an argument or a task's state in the worker, a result
    /// in the caller.
    Decode,
}

impl Direction {
    /// Where a value of `side` goes this way: `"caller"` or `"worker"`.
    fn place(self, side: Side) -> &'static str {
        match (side, self) {
            (Side::Argument | Side::Task, Direction::Encode)
            | (Side::Result, Direction::Decode) => "caller",
            _ => "worker",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Encode => "encode",
            Direction::Decode => "decode",
        })
    }
}

/// A resource a worker's limits cap: see [`TaskError::ResourceLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Resource {
    /// Address space (`RLIMIT_AS`).
    Memory,
    /// CPU time, user plus system (`RLIMIT_CPU`).
    CpuTime,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Memory => "memory",
            Resource::CpuTime => "cpu time",
        })
    }
}

/// How a worker process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exit {
    /// Killed by this signal number.
    Signal(i32),
    /// Exited on its own with this code.
    Code(i32),
}

impl Exit {
    /// The conventional name of the signal, such as `"SIGSEGV"`, or `None` for an exit code or
    /// an unusual signal.
    pub fn signal_name(&self) -> Option<&'static str> {
        let Exit::Signal(s) = *self else { return None };
        signal_name(s)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Signal(s) => match signal_name(s) {
                Some(name) => write!(f, "killed by signal {name} ({s})"),
                None => write!(f, "killed by signal {s}"),
            },
            Exit::Code(c) => write!(f, "exited with code {c}"),
        }
    }
}

/// Names of the Linux signals, by number (x86-64 and aarch64 share these).
fn signal_name(signal: i32) -> Option<&'static str> {
    const NAMES: [&str; 32] = [
        "",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(signal).ok().and_then(|i| NAMES.get(i)).copied().filter(|n| !n.is_empty())
}

/// What a panicking task left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanicReport {
    /// The panic message (the payload, when it is a string).
    pub message: String,
    /// Where the panic happened, as `file:line:column`, when it was captured. `None` for an
    /// unwind resumed with `std::panic::resume_unwind`, which skips the panic hook, and for
    /// the first panic after a task or the program replaced the hook with
    /// `std::panic::set_hook` (the pool then puts its hook back in front, so later panics
    /// have their location and other panics still reach the hook that was set). A hook a
    /// pool's initializer sets is put behind the pool's before the worker's first task.
    pub location: Option<String>,
    /// A rendered backtrace, when backtraces were requested in the pool's configuration.
    pub backtrace: Option<String>,
}

impl fmt::Display for PanicReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(at) => write!(f, "task panicked at {at}: {}", self.message),
            None => write!(f, "task panicked: {}", self.message),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn display_is_lowercase_without_period() {
        let all = [
            TaskError::Panicked(Box::new(PanicReport {
                message: "boom".into(),
                location: Some("src/x.rs:1:2".into()),
                backtrace: None,
            })),
            TaskError::Crashed(Exit::Signal(6)),
            TaskError::Crashed(Exit::Code(3)),
            TaskError::TimedOut { limit: Duration::from_millis(5), still_running: false },
            TaskError::Cancelled,
            TaskError::ShutDown,
            TaskError::serialization(Side::Result, Direction::Decode, "bad"),
            TaskError::TooLarge { side: Side::Argument, size: 10, limit: 5 },
            TaskError::WorkerStart { reason: "no".into() },
            TaskError::ResourceLimit { resource: Resource::Memory, limit: 1 << 28 },
            TaskError::ResourceLimit { resource: Resource::CpuTime, limit: 1 },
            TaskError::Unsupported { operation: "killing a thread" },
            TaskError::AlreadyJoined,
            TaskError::from(io::Error::other("x")),
            TaskError::NoWorker {
                waited: Duration::from_secs(30),
                other_agents: 0,
                other_streams: 0,
            },
            TaskError::NoWorker {
                waited: Duration::from_secs(30),
                other_agents: 2,
                other_streams: 1,
            },
            TaskError::DeliveryLimit { deliveries: 5 },
            TaskError::Unreachable {
                waited: Duration::from_secs(2),
                source: Arc::new(io::Error::other("connection refused")),
            },
            TaskError::Unreachable {
                waited: Duration::ZERO,
                source: Arc::new(io::Error::other("connection refused")),
            },
        ];
        for e in all {
            let text = e.to_string();
            assert!(text.starts_with(|c: char| c.is_lowercase()), "{text}");
            assert!(!text.ends_with('.'), "{text}");
        }
    }

    #[test]
    fn serialization_errors_say_what_failed_where() {
        let cases = [
            (Side::Argument, Direction::Encode, "could not encode the argument in the caller: m"),
            (Side::Argument, Direction::Decode, "could not decode the argument in the worker: m"),
            (Side::Result, Direction::Encode, "could not encode the result in the worker: m"),
            (Side::Result, Direction::Decode, "could not decode the result in the caller: m"),
            (Side::Task, Direction::Encode, "could not encode the task state in the caller: m"),
            (Side::Task, Direction::Decode, "could not decode the task state in the worker: m"),
        ];
        for (side, direction, text) in cases {
            assert_eq!(TaskError::serialization(side, direction, "m").to_string(), text);
        }
    }

    #[test]
    fn the_causes_a_cluster_meets_say_what_they_are() {
        let none = TaskError::NoWorker {
            waited: Duration::from_secs(30),
            other_agents: 0,
            other_streams: 0,
        };
        assert_eq!(none.to_string(), "no worker able to run the task was available for 30s");
        assert!(none.source().is_none());
        let stranger = TaskError::NoWorker {
            waited: Duration::from_secs(30),
            other_agents: 1,
            other_streams: 0,
        };
        assert_eq!(
            stranger.to_string(),
            "no worker able to run the task was available for 30s; an agent of another \
             executable is alive, and an agent runs only the tasks of the executable it was \
             started from"
        );
        let strangers = TaskError::NoWorker {
            waited: Duration::from_secs(30),
            other_agents: 3,
            other_streams: 0,
        };
        assert!(strangers.to_string().contains("; 3 agents of other executables are alive"));
        let elsewhere = TaskError::NoWorker {
            waited: Duration::from_secs(30),
            other_agents: 0,
            other_streams: 1,
        };
        assert_eq!(
            elsewhere.to_string(),
            "no worker able to run the task was available for 30s; an agent of this executable \
             is alive serving streams of another name, and callers and agents must use the same \
             stream name"
        );
        let poison = TaskError::DeliveryLimit { deliveries: 5 };
        assert_eq!(poison.to_string(), "the task was delivered 5 times without an outcome");
        assert!(poison.source().is_none());
        let refused = Arc::new(io::Error::from(io::ErrorKind::ConnectionRefused));
        let gone = TaskError::Unreachable { waited: Duration::from_secs(2), source: refused };
        assert_eq!(
            gone.to_string(),
            "the pool's service could not be reached within 2s: connection refused"
        );
        assert_eq!(chain(&gone), [gone.to_string()], "a chain repeats the reason");
        let TaskError::Unreachable { source, .. } = &gone else { unreachable!() };
        let io = source.downcast_ref::<io::Error>().expect("the error it was given");
        assert_eq!(io.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn a_timeout_says_whether_the_task_may_still_run_and_no_more() {
        let limit = Duration::from_millis(5);
        let running = TaskError::TimedOut { limit, still_running: true };
        assert_eq!(running.to_string(), "timed out after 5ms (the task may still be running)");
        // A process task that returned past its limit times out with its worker alive: the
        // text must not say the worker was killed.
        let ended = TaskError::TimedOut { limit, still_running: false };
        assert_eq!(ended.to_string(), "timed out after 5ms (the task no longer runs)");
    }

    /// Every text of `e`'s chain, as a reader that walks `source()` prints them.
    fn chain(e: &(dyn Error + 'static)) -> Vec<String> {
        std::iter::successors(Some(e), |&e| e.source()).map(ToString::to_string).collect()
    }

    #[test]
    fn an_io_error_says_what_the_system_said_once() {
        let e = TaskError::from(io::Error::from_raw_os_error(24));
        let text = e.to_string();
        assert!(text.starts_with("operating-system call failed: "), "{text}");
        assert!(text.contains("(os error 24)"), "display loses the system's words: {text}");
        assert_eq!(chain(&e), [text], "a chain repeats it");
        // What is behind the system's words still comes through `source()`.
        let e = TaskError::from(io::Error::other(layered("outer words", "inner words")));
        assert_eq!(chain(&e), ["operating-system call failed: outer words", "inner words"]);
        // So for an unreachable service: its reason's text ends the display, what is behind
        // that reason follows.
        let e = TaskError::Unreachable {
            waited: Duration::ZERO,
            source: Arc::new(layered("outer words", "inner words")),
        };
        assert_eq!(
            chain(&e),
            ["the pool's service could not be reached: outer words", "inner words"]
        );
    }

    /// An error that says `outer` and has a source of its own, which says `inner`.
    #[derive(Debug)]
    pub(crate) struct Layered {
        outer: &'static str,
        inner: io::Error,
    }

    pub(crate) fn layered(outer: &'static str, inner: &'static str) -> Layered {
        Layered { outer, inner: io::Error::other(inner) }
    }

    impl fmt::Display for Layered {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.outer)
        }
    }

    impl Error for Layered {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.inner)
        }
    }

    #[test]
    fn a_value_too_large_names_the_sizes_and_the_setting_to_raise() {
        let e = TaskError::TooLarge { side: Side::Result, size: 5003, limit: 1000 };
        assert_eq!(
            e.to_string(),
            "the result is 5003 bytes encoded, over the 1000-byte frame limit (a process \
             pool's `max_frame_bytes`; on a cluster, the server's `max_payload`)"
        );
    }

    #[test]
    fn a_resource_limit_names_its_setting() {
        let memory = TaskError::ResourceLimit { resource: Resource::Memory, limit: 1 << 26 };
        assert_eq!(
            memory.to_string(),
            "task ran out of memory under the worker's 67108864-byte limit (its `memory_limit`, \
             or its memory cgroup's where the kernel ended it)"
        );
        let cpu = TaskError::ResourceLimit { resource: Resource::CpuTime, limit: 1 };
        assert_eq!(
            cpu.to_string(),
            "task used more than its cpu time limit of 1 s (`cpu_time_limit`, rounded up to \
             whole seconds)"
        );
    }

    #[test]
    fn a_shut_down_pool_does_not_say_a_task_it_killed_never_ran() {
        assert_eq!(
            TaskError::ShutDown.to_string(),
            "pool shut down before the task finished: it had not started, or a dropped pool's \
             `shutdown_grace` ran out while it ran"
        );
    }

    #[test]
    fn results_stay_small() {
        // Batch results are vectors of `Result<T, TaskError>`: their size is memory traffic.
        assert!(std::mem::size_of::<Result<u64, TaskError>>() <= 40);
    }

    #[test]
    fn signals_have_names() {
        assert_eq!(Exit::Signal(11).signal_name(), Some("SIGSEGV"));
        assert_eq!(Exit::Signal(6).to_string(), "killed by signal SIGABRT (6)");
        assert_eq!(Exit::Signal(64).signal_name(), None);
        assert_eq!(Exit::Code(3).to_string(), "exited with code 3");
        assert_eq!(TaskError::Crashed(Exit::Signal(9)).signal(), Some(9));
    }
}
