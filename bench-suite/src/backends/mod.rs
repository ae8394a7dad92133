//! How each backend runs what a scenario asks of it: one adapter per backend behind the
//! [`Running`] trait, so that a scenario is written once for all of them.
//!
//! Which backends exist, which feature enables each and what each can run is listed in
//! `columns.rs`; this module holds the adapters it points to.

#[cfg(feature = "cluster")]
pub(crate) mod cluster;
pub(crate) mod copy_floor;
#[cfg(feature = "process-pool")]
pub(crate) mod messages;
pub(crate) mod pipe_floor;
pub(crate) mod procspawn;
pub(crate) mod python;
pub(crate) mod python_serve;
pub(crate) mod rayon;
pub(crate) mod sequential;
pub(crate) mod spin_floor;
pub(crate) mod std_thread;
#[allow(dead_code, reason = "used by the taskpool backends whose features are on")]
pub(crate) mod taskpool;

use std::fmt::Display;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_bytes::ByteBuf;

use crate::columns::{Backend, Kind};
use crate::scenarios::{Channel, Fault, Kernel, Wait};

/// The pool a scenario asks for: its size and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PoolSpec {
    /// Workers.
    pub(crate) workers: usize,
    /// A per-task time limit, for backends that have one.
    pub(crate) timeout: Option<Duration>,
    /// A memory limit per worker in bytes, for backends that have one.
    pub(crate) memory_limit: Option<u64>,
    /// Tasks a worker runs before it is replaced, for backends that recycle workers.
    pub(crate) max_tasks_per_worker: Option<u64>,
}

impl PoolSpec {
    /// A pool of `workers` with no limits.
    pub(crate) fn workers(workers: usize) -> PoolSpec {
        PoolSpec { workers, timeout: None, memory_limit: None, max_tasks_per_worker: None }
    }

    /// The settings every taskpool backend shares.
    #[allow(dead_code, reason = "used by the taskpool backends whose features are on")]
    pub(crate) fn config(&self) -> taskpool_core::Config {
        let config = taskpool_core::Config::new().workers(self.workers);
        let config = match self.timeout {
            Some(limit) => config.timeout(limit),
            None => config,
        };
        match self.max_tasks_per_worker {
            Some(n) => config.max_tasks_per_worker(n),
            None => config,
        }
    }
}

/// How a backend runs.
pub(crate) enum Runs {
    /// In this program: `start` builds a pool (`None` if it has none), `spawn` runs a one-off
    /// no-op worker and joins it (`None` if it cannot), `messages` times small messages from
    /// a child process (`None` if it has no channel between processes).
    Here { start: Option<StartFn>, spawn: Option<SpawnFn>, messages: Option<MessagesFn> },
    /// In the Python script, as this pool of the script.
    Script(ScriptPool),
    /// Not at all: its Cargo feature is off.
    #[allow(dead_code, reason = "built only when a backend's feature is off")]
    Disabled,
}

/// Builds a backend's pool.
pub(crate) type StartFn = fn(&PoolSpec) -> Result<Box<dyn Running>, String>;

/// Starts a one-off worker that runs a no-op, and joins it.
pub(crate) type SpawnFn = fn() -> Result<(), String>;

/// Times `n` small messages through a channel from a fresh child process to this one.
pub(crate) type MessagesFn = fn(Channel, u64) -> Result<Duration, String>;

/// A pool of the Python script, as the script names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ScriptPool {
    /// `concurrent.futures.ThreadPoolExecutor`.
    ThreadExecutor,
    /// `multiprocessing.Pool`.
    MpPool,
    /// `concurrent.futures.ProcessPoolExecutor`.
    ProcessExecutor,
    /// `multiprocessing.pool.ThreadPool`: `Pool`'s API, and its chunked `map`, on threads.
    MpThreadPool,
}

impl ScriptPool {
    /// Every pool of the script.
    pub(crate) const ALL: [ScriptPool; 4] = [
        ScriptPool::ThreadExecutor,
        ScriptPool::MpPool,
        ScriptPool::ProcessExecutor,
        ScriptPool::MpThreadPool,
    ];

    /// Where its tasks run: the Python column of that kind shows it where it is the best.
    pub(crate) fn kind(self) -> Kind {
        match self {
            ScriptPool::ThreadExecutor | ScriptPool::MpThreadPool => Kind::Threads,
            ScriptPool::MpPool | ScriptPool::ProcessExecutor => Kind::Processes,
        }
    }
}

/// A started pool of one backend: what scenarios run on it. An operation the backend does
/// not have fails; `columns.rs` says which ones each backend has, so scenarios ask there
/// first.
pub(crate) trait Running {
    /// Submits one no-op task and waits for it.
    fn noop(&self) -> Result<(), String>;

    /// One round trip of a no-op, timed: what the round-trip rows measure. A backend that
    /// must prepare first (wake a peer that went to sleep) does so outside the time.
    fn round_trip(&self) -> Result<Duration, String> {
        let start = Instant::now();
        self.noop()?;
        Ok(start.elapsed())
    }

    /// Submits `n` no-op tasks, then waits for all of them.
    fn in_flight(&self, n: usize) -> Result<(), String> {
        let _ = n;
        Err(unsupported("many tasks in flight"))
    }

    /// Maps a no-op over `items` in one call.
    fn map_noop(&self, items: Vec<u64>) -> Result<(), String> {
        let _ = items;
        Err(unsupported("map"))
    }

    /// Runs a no-op over `items` with one lazy call (`imap`) and takes each result as it
    /// comes, in order; fails if a result is missing.
    fn imap_noop(&self, items: Vec<u64>) -> Result<(), String> {
        let _ = items;
        Err(unsupported("imap"))
    }

    /// Sends `payload` to a task that returns it, and returns what came back.
    fn echo(&self, payload: ByteBuf) -> Result<ByteBuf, String> {
        let _ = payload;
        Err(unsupported("payloads"))
    }

    /// Like [`Running::echo`], with a plain `Vec<u8>`.
    fn echo_vec(&self, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        self.echo(ByteBuf::from(payload)).map(ByteBuf::into_vec)
    }

    /// Like [`Running::echo`], with bytes in shared memory that a task reads in place.
    #[cfg(feature = "process-pool")]
    fn echo_shared(
        &self,
        payload: taskpool_process::SharedBytes,
    ) -> Result<taskpool_process::SharedBytes, String> {
        let _ = payload;
        Err(unsupported("SharedBytes"))
    }

    /// Runs a batch of `kernel` tasks and returns the sum of their results.
    fn kernel(&self, kernel: &Kernel) -> Result<u64, String> {
        let _ = kernel;
        Err(unsupported("kernels"))
    }

    /// Runs the task that injects `fault`: its value if it returned, else what the pool
    /// reported, in a few words.
    fn fault(&self, fault: Fault) -> Result<u64, String> {
        let _ = fault;
        Err(unsupported("faults"))
    }

    /// Whether a task that hangs keeps its worker for good, with none started in its place:
    /// a pool of W then survives W − 1 hangs, not more.
    fn hang_keeps_its_worker(&self) -> bool {
        false
    }

    /// Submits a no-op after a fault and waits for it, within a bound where the backend has
    /// one, so that a pool the fault wedged fails instead of hanging.
    fn recovered(&self) -> Result<(), String> {
        self.noop()
    }

    /// Submits `n` tasks that wait as `wait` says, then joins them all; returns the ids of the
    /// processes they ran in.
    fn waits(&self, wait: &Wait, n: usize) -> Result<Vec<u32>, String> {
        let _ = (wait, n);
        Err(unsupported("waiting tasks"))
    }

    /// Runs `n` tasks that each add one to a global counter of the process they run in
    /// ([`crate::tasks::write_global`]); returns the counts they saw there.
    fn writes(&self, n: usize) -> Result<Vec<u64>, String> {
        let _ = n;
        Err(unsupported("writes to a global"))
    }

    /// Submits a task, kills the agent (a machine's host of workers) that runs it, and waits
    /// for the task's result from another agent, then for a no-op: what happened, in a few
    /// words, and the time from submitting the task to the no-op's result. The agent is
    /// replaced afterwards, off the clock.
    fn agent_loss(&self) -> Result<(String, Duration), String> {
        Err(unsupported("losing an agent"))
    }
}

fn unsupported(what: &str) -> String {
    format!("{what}: not supported by this backend")
}

/// Turns any displayable error into the `String` the adapters return.
pub(crate) fn text(e: impl Display) -> String {
    e.to_string()
}

impl Backend {
    /// Starts a pool of this backend.
    ///
    /// # Errors
    ///
    /// The backend has no pool, runs elsewhere, or its pool did not start.
    pub(crate) fn start(&self, spec: &PoolSpec) -> Result<Box<dyn Running>, String> {
        match self.runs() {
            Runs::Here { start: Some(start), .. } => start(spec),
            Runs::Here { start: None, .. } => Err(format!("{} has no pool", self.id())),
            Runs::Script(_) => Err(format!("{} runs in the Python script", self.id())),
            Runs::Disabled => Err(crate::columns::DISABLED.to_owned()),
        }
    }

    /// Starts a one-off worker that runs a no-op, and joins it.
    ///
    /// # Errors
    ///
    /// The backend cannot spawn, or the spawn failed.
    pub(crate) fn spawn_noop(&self) -> Result<(), String> {
        match self.runs() {
            Runs::Here { spawn: Some(spawn), .. } => spawn(),
            _ => Err(format!("{} has no one-off spawn", self.id())),
        }
    }

    /// Times `n` small messages through `channel` from a fresh child process to this one.
    ///
    /// # Errors
    ///
    /// The backend has no channel between processes, or the messages failed.
    pub(crate) fn messages(&self, channel: Channel, n: u64) -> Result<Duration, String> {
        match self.runs() {
            Runs::Here { messages: Some(messages), .. } => messages(channel, n),
            _ => Err(format!("{} has no channel between processes", self.id())),
        }
    }
}

/// Pools started on first use and kept for the scenarios that share them.
#[derive(Default)]
pub(crate) struct Pools {
    started: Vec<(&'static str, PoolSpec, Rc<dyn Running>)>,
}

impl Pools {
    /// The pool of `backend` built to `spec`, started now if it is not running yet.
    pub(crate) fn get(
        &mut self,
        backend: &'static Backend,
        spec: PoolSpec,
    ) -> Result<Rc<dyn Running>, String> {
        let found = self.started.iter().find(|(id, s, _)| *id == backend.id() && *s == spec);
        if let Some((_, _, pool)) = found {
            return Ok(Rc::clone(pool));
        }
        let pool: Rc<dyn Running> = Rc::from(backend.start(&spec)?);
        self.started.push((backend.id(), spec, Rc::clone(&pool)));
        Ok(pool)
    }
}

impl std::fmt::Debug for Pools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let started: Vec<_> = self.started.iter().map(|(id, spec, _)| (id, spec)).collect();
        f.debug_struct("Pools").field("started", &started).finish()
    }
}
