//! procspawn's process [`procspawn::Pool`] as a peer to compare against.
//!
//! Every function here prints nothing and returns an error, never a panic,
//! when procspawn fails (it panics itself when it cannot start a worker or
//! runs out of file descriptors: those panics are caught here).
//!
//! # Setup
//!
//! Call `init` (instead of `procspawn::init()`) first thing in `main`.
//! procspawn re-executes the binary for every worker and the worker takes
//! over inside that call, so anything before it runs again in every worker.
//!
//! # Known procspawn 1.0.2 problems and how this module avoids them
//!
//! These were checked against the procspawn 1.0.2 / ipc-channel 0.22 source
//! and reproduced on Linux:
//!
//! 1. **Out-of-order joins can deadlock.**  Each pooled `JoinHandle` is fed
//!    by a rendezvous channel (`mpsc::sync_channel(0)`): the pool's monitor
//!    thread for a worker blocks in `send` until that exact handle is joined
//!    and only then takes the next task.  Joining a later handle while every
//!    worker holds an unjoined earlier result therefore waits forever (pool of
//!    2, three tasks, join the third first: hangs).  `in_flight`
//!    joins strictly in submission order.
//! 2. **Large payloads in flight can deadlock.**  `Pool::spawn` sends the
//!    argument on the caller's thread before the task is assigned to a
//!    worker.  ipc-channel sends a message bigger than one socket send
//!    buffer (`SO_SNDBUF` of a fresh socket, i.e. `net.core.wmem_default`,
//!    208 KiB on a stock Linux) as blocking fragments
//!    that need a concurrent reader, and the reader is the worker, which only
//!    reads after its monitor dispatches the task.  If every worker's monitor
//!    is parked on an unjoined result (problem 1), that `spawn` never returns
//!    and the caller can never reach `join`.  So with large arguments at most
//!    one task per worker may be outstanding; `echo`
//!    keeps exactly one in flight.
//! 3. **Backtrace capture makes panics expensive.**  A panicking task pays
//!    for backtraces twice: procspawn's own panic hook captures and resolves
//!    one when `ProcConfig` has backtraces on (the default), and it then
//!    chains to std's default hook, which resolves another when the worker
//!    inherited `RUST_BACKTRACE=1`.  Each costs about 55 ms here (about
//!    110 ms with both; 0.1 to 0.3 ms with neither).  `init` turns the first
//!    off with `ProcConfig::capture_backtraces(false)` (needs procspawn's
//!    default `backtrace` feature), and every pool built here starts its
//!    workers with `RUST_BACKTRACE=0` through `PoolBuilder::env`.  Pooled
//!    workers run tasks without their own `catch_unwind`, so a panicking
//!    task also kills its worker, which the pool respawns; and because the
//!    monitor SIGKILLs the worker before reading the panic report, the error
//!    is sometimes "panic: &lt;message&gt;" and sometimes a bare "remote side
//!    closed".
//! 4. **Exit statuses are discarded.**  procspawn reaps dead workers with
//!    `Child::wait().ok()` and reports only an IPC disconnect, so a
//!    segfault, an abort and `exit(3)` all surface as the same
//!    "remote side closed" error; the reported error cannot say
//!    which signal killed the worker.
//!
//! A further cost to keep in mind: every queued task holds three file
//! descriptors in the parent (the task's argument receiver and result
//! sender/receiver, each one end of a socketpair) until a worker picks it up,
//! so `in_flight(n)` needs roughly `3 * n` free descriptors and panics inside
//! `Pool::spawn` when `RLIMIT_NOFILE` is too low.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use procspawn::{Pool, ProcConfig};
use serde_bytes::ByteBuf;

use super::{PoolSpec, Running, text};
use crate::columns::Op;
use crate::scenarios::{Fault, Kernel, KernelKind, Wait};
use crate::tasks;

/// Upper bound on waiting for a single task after a fault, so a wedged pool shows up as a
/// failed outcome instead of a hang.
const CRASH_JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a pool that saw a crash waits before it is dropped: procspawn respawns a crashed
/// worker in the background, and a worker still connecting when its pool is dropped panics
/// ("could not bootstrap ipc connection").
const RESPAWN_SETTLE: Duration = Duration::from_millis(300);

/// The largest payload measured: larger ones take ipc-channel long enough to stretch a run.
const MAX_PAYLOAD: u64 = 1 << 20;

/// Tasks shorter than this many microseconds are not run: at about 70 µs per task, a batch
/// of 10 µs tasks would measure procspawn's overhead for many seconds.
const MIN_TASK_MICROS: u64 = 1000;

/// The most kernel tasks queued at once: each holds three descriptors until a worker takes
/// it (module docs), and a batch of small tasks can be many thousands.
const KERNEL_WINDOW: usize = 1000;

/// Initializes procspawn; call instead of `procspawn::init()`, first thing in
/// `main` (together with `pipe_floor::run_child_if_requested()`, in either
/// order).  In a worker process this call runs the worker and never returns.
///
/// Panic handling stays on (panics cross the process boundary as errors)
/// but procspawn's backtrace capture is disabled, because resolving a
/// backtrace makes every panic cost about 55 ms (module docs, problem 3).
pub(crate) fn init() {
    ProcConfig::new().capture_backtraces(false).init();
}

/// Runs `f`, turning a panic inside procspawn into an error (the pool is not used for
/// measurements after one).
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Err(format!("procspawn panicked: {what}")))
}

/// Task body for the no-op round trips.
fn noop(_: ()) {}

/// Builds a pool of `workers` processes whose workers run with `RUST_BACKTRACE=0` (module
/// docs, problem 3). `build` starts the workers one after another and waits for each to
/// connect back over IPC, so start-up grows about linearly with `workers`.
fn build_pool(workers: usize) -> Result<Pool, String> {
    guarded("building the pool", || {
        Pool::builder(workers).env("RUST_BACKTRACE", "0").build().map_err(text)
    })
}

/// A procspawn pool, with the time limit its tasks are joined with.
struct Procspawn {
    pool: Pool,
    limit: Option<Duration>,
    workers: usize,
    /// Whether a task crashed its worker (see [`RESPAWN_SETTLE`]).
    crashed: Cell<bool>,
}

/// Builds a pool of `spec.workers` processes; `spec.timeout` bounds the join of each task
/// (procspawn has no memory limit and does not recycle workers).
pub(crate) fn start(spec: &PoolSpec) -> Result<Box<dyn Running>, String> {
    let pool = build_pool(spec.workers)?;
    let crashed = Cell::new(false);
    Ok(Box::new(Procspawn { pool, limit: spec.timeout, workers: spec.workers, crashed }))
}

/// `procspawn::spawn` of a no-op, joined.
pub(crate) fn spawn() -> Result<(), String> {
    guarded("spawn", || procspawn::spawn(1u64, tasks::noop).join().map(drop).map_err(text))
}

/// What procspawn can run at a scenario's size: every queued task holds three file
/// descriptors in the parent until a worker takes it, large payloads are left out, and so
/// are tiny tasks.
pub(crate) fn limits(op: Op, size: u64) -> Result<(), String> {
    match op {
        Op::InFlight | Op::Waits => {
            let needed = 3 * size + 100;
            match open_files_limit() {
                Some(limit) if limit < needed => Err(format!(
                    "needs about {needed} open files, the limit is {limit} (raise it with \
                     `ulimit -n {needed}`)"
                )),
                _ => Ok(()),
            }
        }
        Op::Payload if size > MAX_PAYLOAD => Err("not run above 1 MiB".to_owned()),
        Op::Kernels if size < MIN_TASK_MICROS => Err(format!("not run at {size} µs tasks")),
        _ => Ok(()),
    }
}

/// The soft limit on open file descriptors of this process (`RLIMIT_NOFILE`), if it can be
/// read from `/proc/self/limits`; `None` also when it is unlimited.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

impl Running for Procspawn {
    fn noop(&self) -> Result<(), String> {
        guarded("no-op", || self.pool.spawn((), noop).join().map_err(text))
    }

    /// Joins strictly in submission order: joining out of order can deadlock (module docs,
    /// problem 1).
    fn in_flight(&self, n: usize) -> Result<(), String> {
        guarded("tasks in flight", || {
            let handles: Vec<_> = (0..n).map(|_| self.pool.spawn((), noop)).collect();
            handles.into_iter().try_for_each(|h| h.join().map_err(text))
        })
    }

    /// One payload in flight at a time: large arguments block inside `Pool::spawn` until a
    /// worker reads them (module docs, problem 2).
    fn echo(&self, payload: ByteBuf) -> Result<ByteBuf, String> {
        guarded("payload", || self.pool.spawn(payload, tasks::echo).join().map_err(text))
    }

    /// Submits the batch in windows of [`KERNEL_WINDOW`] tasks, each joined in submission
    /// order (module docs, problem 1), so that queued tasks never hold more descriptors than
    /// the process may open.
    fn kernel(&self, kernel: &Kernel) -> Result<u64, String> {
        guarded("kernel", || {
            let mut sum = 0;
            for first in (0..kernel.tasks).step_by(KERNEL_WINDOW) {
                let window = first..(first + KERNEL_WINDOW).min(kernel.tasks);
                let handles: Vec<procspawn::JoinHandle<u64>> = match kernel.kind {
                    KernelKind::Primes => window
                        .map(|i| {
                            let input = kernel.primes_input(i);
                            self.pool.spawn(input, |(s, l)| tasks::primes(s, l))
                        })
                        .collect(),
                    KernelKind::Mandel => window
                        .map(|i| {
                            let input = kernel.mandel_input(i);
                            self.pool.spawn(input, |(a, b, c, d, e)| tasks::mandel(a, b, c, d, e))
                        })
                        .collect(),
                };
                for handle in handles {
                    sum += handle.join().map_err(text)?;
                }
            }
            Ok(sum)
        })
    }

    /// Joins strictly in submission order (module docs, problem 1); every queued task holds
    /// three descriptors until a worker takes it (`limits` checks there are enough).
    fn waits(&self, wait: &Wait, n: usize) -> Result<Vec<u32>, String> {
        guarded("waiting tasks", || {
            let handles: Vec<procspawn::JoinHandle<Result<u32, String>>> = match wait {
                Wait::Sleep { micros } => {
                    (0..n).map(|_| self.pool.spawn(*micros, |us| Ok(tasks::nap(us)))).collect()
                }
                Wait::Ask { service, delay_us } => (0..n)
                    .map(|_| {
                        let input = (service.clone(), *delay_us);
                        self.pool.spawn(input, |(service, us)| tasks::ask(service, us))
                    })
                    .collect(),
            };
            handles.into_iter().map(|h| h.join().map_err(text)?).collect()
        })
    }

    fn writes(&self, n: usize) -> Result<Vec<u64>, String> {
        guarded("writes", || {
            let handles: Vec<_> =
                (0..n as u64).map(|i| self.pool.spawn(i, tasks::write_global)).collect();
            handles.into_iter().map(|h| h.join().map_err(text)).collect()
        })
    }

    /// procspawn discards the worker's exit status (module docs, problem 4), so the error
    /// is a generic IPC-disconnect message, not "SIGSEGV".
    fn fault(&self, fault: Fault) -> Result<u64, String> {
        let (task, arg) = fault.task();
        let limit = self.limit.unwrap_or(CRASH_JOIN_TIMEOUT);
        let joined = guarded("fault", || Ok(self.pool.spawn(arg, task).join_timeout(limit)))?;
        joined.map_err(|err| {
            self.crashed.set(true);
            format!("task failed: \"{err}\"")
        })
    }

    /// A no-op joined within [`CRASH_JOIN_TIMEOUT`], so that a pool wedged by a fault fails
    /// instead of hanging.
    fn recovered(&self) -> Result<(), String> {
        guarded("no-op after a fault", || {
            self.pool.spawn((), noop).join_timeout(CRASH_JOIN_TIMEOUT).map_err(text)
        })
    }
}

impl Drop for Procspawn {
    fn drop(&mut self) {
        // With one worker, the task after the crash waited for the respawn already.
        if self.crashed.get() && self.workers > 1 {
            std::thread::sleep(RESPAWN_SETTLE);
        }
    }
}
