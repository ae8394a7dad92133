//! procspawn's process [`Pool`] as a peer to compare against.
//!
//! Every function here returns measured samples (durations or a
//! [`CrashOutcome`]) and prints nothing.  The functions panic if procspawn
//! itself fails (cannot start workers, a healthy task errors), because a
//! benchmark sample from a broken pool would be meaningless.
//!
//! # Setup
//!
//! Call [`init`] (instead of `procspawn::init()`) first thing in `main`.
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
//!    2, three tasks, join the third first: hangs).  [`ProcspawnPeer::in_flight`]
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
//!    one task per worker may be outstanding; [`ProcspawnPeer::payload_round_trip`]
//!    keeps exactly one in flight.
//! 3. **Backtrace capture makes panics expensive.**  A panicking task pays
//!    for backtraces twice: procspawn's own panic hook captures and resolves
//!    one when `ProcConfig` has backtraces on (the default), and it then
//!    chains to std's default hook, which resolves another when the worker
//!    inherited `RUST_BACKTRACE=1`.  Each costs about 55 ms here (about
//!    110 ms with both; 0.1 to 0.3 ms with neither).  [`init`] turns the first
//!    off with `ProcConfig::capture_backtraces(false)` (needs procspawn's
//!    default `backtrace` feature), and every pool built here starts its
//!    workers with `RUST_BACKTRACE=0` through `PoolBuilder::env`.  Pooled
//!    workers run tasks without their own `catch_unwind`, so a panicking
//!    task also kills its worker, which the pool respawns; and because the
//!    monitor SIGKILLs the worker before reading the panic report, the error
//!    is sometimes "panic: \<message\>" and sometimes a bare "remote side
//!    closed".
//! 4. **Exit statuses are discarded.**  procspawn reaps dead workers with
//!    `Child::wait().ok()` and reports only an IPC disconnect, so a
//!    segfault, an abort and `exit(3)` all surface as the same
//!    "remote side closed" error; [`CrashOutcome::crash_error`] cannot say
//!    which signal killed the worker.
//!
//! A further cost to keep in mind: every queued task holds three file
//! descriptors in the parent (the task's argument receiver and result
//! sender/receiver, each one end of a socketpair) until a worker picks it up,
//! so `in_flight(n)` needs roughly `3 * n` free descriptors and panics inside
//! `Pool::spawn` when `RLIMIT_NOFILE` is too low.

use std::time::{Duration, Instant};

use procspawn::{Pool, ProcConfig};

/// Upper bound on waiting for a single task in [`ProcspawnPeer::crash_then_next`],
/// so a wedged pool shows up as a failed outcome instead of a hang.
const CRASH_JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Initializes procspawn; call instead of `procspawn::init()`, first thing in
/// `main` (together with `pipe_floor::run_child_if_requested()`, in either
/// order).  In a worker process this call runs the worker and never returns.
///
/// Panic handling stays on (panics cross the process boundary as errors)
/// but procspawn's backtrace capture is disabled, because resolving a
/// backtrace makes every panic cost about 55 ms (module docs, problem 3).
pub fn init() {
    ProcConfig::new().capture_backtraces(false).init();
}

/// Task body for the no-op round trips.
fn noop(_: ()) {}

/// Task body that returns its argument unchanged (payload round trips).
fn echo_bytes(payload: Vec<u8>) -> Vec<u8> {
    payload
}

/// Healthy task used after a crash; returns a checkable value.
fn add_one(x: u64) -> u64 {
    x + 1
}

/// Builds a pool of `workers` processes whose workers run with
/// `RUST_BACKTRACE=0` (module docs, problem 3).  `build` starts the workers
/// one after another and waits for each to connect back over IPC.
fn build_pool(workers: usize) -> Pool {
    Pool::builder(workers)
        .env("RUST_BACKTRACE", "0")
        .build()
        .expect("procspawn: building the pool failed")
}

/// Measures `Pool::new(workers)` up to the first result of a no-op task,
/// then kills the pool (not timed).
///
/// The pool is built as in [`ProcspawnPeer::new`] (`Pool::builder` with
/// `RUST_BACKTRACE=0` for the workers, which costs the same as `Pool::new`).
/// Workers are started sequentially, so this grows roughly linearly with
/// `workers`.
///
/// # Panics
///
/// Panics if the pool cannot be created or the no-op task fails.
pub fn pool_startup(workers: usize) -> Duration {
    let start = Instant::now();
    let pool = build_pool(workers);
    pool.spawn((), noop).join().expect("procspawn: first no-op failed");
    let elapsed = start.elapsed();
    // Pool's Drop kills and reaps the workers.
    drop(pool);
    elapsed
}

/// A procspawn process pool kept alive across measurements.
#[derive(Debug)]
pub struct ProcspawnPeer {
    /// The pool every measurement runs on.
    pool: Pool,
}

impl ProcspawnPeer {
    /// Creates a pool of `workers` processes (workers get
    /// `RUST_BACKTRACE=0`) and waits until each has connected.
    ///
    /// # Panics
    ///
    /// Panics if the pool cannot be created.
    pub fn new(workers: usize) -> Self {
        Self { pool: build_pool(workers) }
    }

    /// Spawns one no-op task on the pool and joins it; returns the elapsed
    /// time.
    ///
    /// # Panics
    ///
    /// Panics if the task fails.
    pub fn round_trip(&self) -> Duration {
        let start = Instant::now();
        self.pool.spawn((), noop).join().expect("procspawn: no-op round trip failed");
        start.elapsed()
    }

    /// Spawns `n` no-op tasks, then joins all of them in submission order;
    /// returns the elapsed time for the whole batch.
    ///
    /// Joining in submission order is required, not a style choice: a
    /// pooled result is handed over through a rendezvous channel, so joining
    /// out of order can deadlock (see the module docs, problem 1).
    ///
    /// # Panics
    ///
    /// Panics if any task fails or the process runs out of file descriptors
    /// (about `3 * n` are needed while the tasks are queued).
    pub fn in_flight(&self, n: usize) -> Duration {
        let start = Instant::now();
        let handles: Vec<_> = (0..n).map(|_| self.pool.spawn((), noop)).collect();
        for handle in handles {
            handle.join().expect("procspawn: in-flight no-op failed");
        }
        start.elapsed()
    }

    /// Sends a `Vec<u8>` of `bytes` bytes as the task argument and gets it
    /// back as the result; returns the elapsed time (building the payload is
    /// not timed).
    ///
    /// Only this one task is in flight: large arguments block inside
    /// `Pool::spawn` until a worker reads them, so several of them in flight
    /// per worker can deadlock (see the module docs, problem 2).  The
    /// `Vec<u8>` goes through serde as a sequence of `u8`, which is what a
    /// straightforward procspawn user pays.
    ///
    /// # Panics
    ///
    /// Panics if the task fails or the echoed length is wrong.
    pub fn payload_round_trip(&self, bytes: usize) -> Duration {
        let payload = vec![0xA5_u8; bytes];
        let start = Instant::now();
        let echoed = self
            .pool
            .spawn(payload, echo_bytes)
            .join()
            .expect("procspawn: payload round trip failed");
        let elapsed = start.elapsed();
        assert_eq!(echoed.len(), bytes, "procspawn: echoed payload has wrong length");
        elapsed
    }

    /// Runs the faulty task `fault`, records the error procspawn reports, then
    /// runs one healthy task and times it (from just after the failure was
    /// reported to the healthy result).
    ///
    /// procspawn discards the worker's exit status (module docs, problem 4),
    /// so `crash_error` is a generic IPC-disconnect message, not "SIGSEGV".
    /// The pool respawns the dead worker on its monitor thread after the
    /// error is delivered; with more than one worker the healthy task
    /// normally runs on a surviving worker, with one worker it waits for the
    /// respawn.  Each join is bounded by a 30 s timeout.
    pub fn crash_then_next(&self, fault: fn(u64) -> u64, limit: Option<Duration>) -> CrashOutcome {
        let crash_error =
            match self.pool.spawn(0_u64, fault).join_timeout(limit.unwrap_or(CRASH_JOIN_TIMEOUT)) {
                Ok(_) => String::from("(no error: the faulty task returned normally)"),
                Err(err) => err.to_string(),
            };

        let start = Instant::now();
        let next = self.pool.spawn(41_u64, add_one).join_timeout(CRASH_JOIN_TIMEOUT);
        let elapsed = start.elapsed();
        let next_ok = matches!(next, Ok(42));
        CrashOutcome { crash_error, next_ok, next_after: next_ok.then_some(elapsed) }
    }
}

/// What happened when a pooled task crashed its worker process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashOutcome {
    /// The error procspawn reported for the crashing task (`Display` form).
    pub crash_error: String,
    /// Whether the next, healthy task returned the right result.
    pub next_ok: bool,
    /// Time from the crash being reported to the healthy task's result;
    /// `None` if that task failed.
    pub next_after: Option<Duration>,
}
