//! Jobs that arrive already encoded, for a backend that carries them from another process.
//!
//! `taskpool-cluster` names a job the way this crate names it for its workers (the offset of
//! its entry point, its state encoded) and sends it to an agent on another machine, which runs
//! it in a local [`ProcessPool`]. This module is that backend's door into the pool: it ships a
//! job to its [`EncodedJob`] form, encodes values with the pool's codec, and runs encoded
//! inputs of an encoded job ([`run_encoded`]), handing back encoded results or typed errors.
//! A user never needs it.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use taskpool_core::backend::Job;
use taskpool_core::{Direction, Pool, Side, TaskError};

use crate::batching::{MAX_BATCH, Paced};
use crate::codec;
use crate::pool::{self, ProcessPool};
use crate::run::{Batching, Run, RunBuilder};
use crate::scheduler::Shared;
use crate::ship::{self, Ship, Shipped};
use crate::sink::{Received, Sink, Tally};
use crate::sys;

/// The ELF notes of the running program as it is loaded in memory, the bytes of each
/// `PT_NOTE` segment (a sequence of notes): where the linker's build id is, read without
/// opening the executable's file, which its user may be unable to read.
pub fn program_notes() -> Vec<Vec<u8>> {
    sys::program_notes()
}

/// A job in the form it travels in: the offset of its entry point in the executable image
/// and its encoded state. Valid only in a process running the same image. The runs of one
/// job ([`run_encoded`]) share what its items were measured to cost, as the runs of one
/// `map` do, and wait for the pool's workers in one line, in the order they were started:
/// the lines of different jobs take turns, a batch at a time (see
/// [`EncodedJob::in_line_of`] for jobs that share a line).
#[derive(Debug, Clone)]
pub struct EncodedJob(Arc<Paced>);

impl EncodedJob {
    /// Ships `job`.
    ///
    /// # Errors
    ///
    /// [`TaskError::Serialization`] if a struct task's state cannot be encoded.
    pub fn of<J: Job>(job: &J) -> Result<Self, TaskError> {
        job.ship(Ship).map(|shipped| EncodedJob(Paced::new(shipped)))
    }

    /// Rebuilds a job from [`EncodedJob::entry`] and [`EncodedJob::state`].
    ///
    /// # Safety
    ///
    /// `entry` must be the [`EncodedJob::entry`] of a job shipped by a process running the
    /// same executable image as this one (the same file content, not merely the same path):
    /// a worker jumps to that offset.
    pub unsafe fn from_parts(entry: i64, state: Vec<u8>) -> Self {
        EncodedJob(Paced::new(Shipped { entry, state, kept: Default::default() }))
    }

    /// A job rebuilt from `entry` and `state`, as [`EncodedJob::from_parts`] does, whose runs
    /// wait in the same line as this job's: in the order they were started, among them,
    /// and as one job when lines take turns. It shares what this job's items were measured
    /// to cost if it is the same function (the same `entry`), else learns its own.
    ///
    /// For the single tasks of one caller, whatever their function, which keep their order
    /// as a pool's single tasks do.
    ///
    /// # Safety
    ///
    /// As for [`EncodedJob::from_parts`].
    pub unsafe fn in_line_of(&self, entry: i64, state: Vec<u8>) -> Self {
        EncodedJob(Paced::in_line_of(&self.0, Shipped { entry, state, kept: Default::default() }))
    }

    /// The offset of the job's entry point.
    pub fn entry(&self) -> i64 {
        self.0.shipped.entry
    }

    /// The job's encoded state (empty for a plain function).
    pub fn state(&self) -> &[u8] {
        &self.0.shipped.state
    }
}

/// Arranges for [`fork_generation`] to change in each copy of this process made by `fork()`
/// from now on (once per process; later calls do nothing).
pub fn watch_forks() {
    crate::sys::watch_forks();
}

/// Which copy of the process this is: a pool that recorded another one was inherited
/// through `fork()` (after [`watch_forks`]), and its threads are not in this copy.
#[inline]
pub fn fork_generation() -> u64 {
    crate::sys::fork_generation()
}

/// Runs `f`, which encodes or decodes values that travel to or from another machine (with
/// [`encode_into`], [`decode`] or [`EncodedJob::of`]), so that what lives in this machine's
/// memory refuses to cross: a [`Queue`](crate::Queue), its [`Producer`](crate::Producer) or
/// [`Consumer`](crate::Consumer), a [`Pipe`](crate::Pipe)'s [`End`](crate::End) or
/// [`SharedBytes`](crate::SharedBytes) anywhere in such a value fails its encoding (or
/// decoding) with an error that says so, instead of crossing as a name that only this
/// machine can open.
pub fn off_machine<R>(f: impl FnOnce() -> R) -> R {
    crate::handoff::off_machine(f)
}

/// `config` for a pool whose results go on to another machine: in its workers, a result that
/// holds what lives in this machine's memory (as [`off_machine`] lists) fails with
/// [`TaskError::Serialization`] (`Result`, `Encode`) saying so, rather than cross as a name
/// that only this machine can open while its worker keeps the memory for a receiver that
/// never comes.
pub fn for_other_machines(config: impl Into<crate::ProcessConfig>) -> crate::ProcessConfig {
    config.into().off_machine()
}

/// Appends the encoding of `value` to `out`, with the pool's codec.
///
/// # Errors
///
/// [`TaskError::Serialization`] naming `side`, also when the value's `Serialize` panics (the
/// panic is printed, as any panic is); `out` is then left as it was.
pub fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    side: Side,
) -> Result<(), TaskError> {
    codec::encode_caught(value, out)
        .map_err(|e| TaskError::serialization(side, Direction::Encode, e))
}

/// Decodes a value that must span all of `bytes`, with the pool's codec.
///
/// # Errors
///
/// [`TaskError::Serialization`] naming `side`.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], side: Side) -> Result<T, TaskError> {
    codec::decode(bytes).map_err(|e| TaskError::serialization(side, Direction::Decode, e))
}

/// The outcomes of the items of one [`run_encoded`] call: each an encoded result or the
/// item's error.
#[derive(Debug, Default)]
pub struct Outcomes {
    bytes: Vec<u8>,
    items: Vec<Option<Result<Range<usize>, TaskError>>>,
    /// The time the items with a value took in their workers, summed, in nanoseconds.
    worker_ns: u64,
}

impl Outcomes {
    /// The number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The time the items that ended with a value took in their workers, as the workers
    /// measured them, summed, in nanoseconds: what the run cost the workers, without the
    /// time its items waited for one (behind other work of the pool). Items that failed
    /// count nothing.
    pub fn worker_ns(&self) -> u64 {
        self.worker_ns
    }

    /// Item `i`'s outcome: its encoded result, or its error.
    ///
    /// # Panics
    ///
    /// If `i` is out of range.
    pub fn get(&self, i: usize) -> Result<&[u8], &TaskError> {
        match &self.items[i] {
            Some(Ok(range)) => Ok(&self.bytes[range.clone()]),
            Some(Err(e)) => Err(e),
            None => unreachable!("every item has an outcome once the run is done"),
        }
    }
}

/// A run started by [`run_encoded`]; dropping it does not stop it.
#[derive(Debug)]
pub struct RemoteRun {
    shared: Weak<Shared>,
    run: Weak<Run>,
    cancelled: Arc<AtomicBool>,
    single: bool,
}

impl RemoteRun {
    /// Cancels the run; every item without an outcome yet gets [`TaskError::Cancelled`].
    ///
    /// A run of one item never starts if it is still queued, and its worker is killed if it
    /// is running. Of a run of several items, those not yet sent to a worker never start;
    /// those sent finish (a worker holds a few at a time).
    pub fn cancel(&self) {
        if self.cancelled.swap(true, Ordering::SeqCst) {
            return;
        }
        if self.single {
            pool::cancel(&self.shared, &self.run);
        } else if let Some(shared) = self.shared.upgrade() {
            shared.discard_unwanted();
        }
    }

    /// Cancels the run as [`RemoteRun::cancel`] does, and also kills the workers running its
    /// items, as a time limit does (each is replaced): nothing of it runs on.
    pub fn stop(&self) {
        self.cancel();
        if self.single {
            // Cancelling killed its worker if it ran it.
            return;
        }
        if let (Some(shared), Some(run)) = (self.shared.upgrade(), self.run.upgrade()) {
            shared.stop(&*run);
        }
    }
}

/// The offset of `init` in the executable image: how a pool's initializer travels to a
/// process running the same image, as [`EncodedJob::entry`] names a job.
pub fn initializer_offset(init: fn()) -> i64 {
    ship::offset_of(init as usize)
}

/// The initializer at `offset`.
///
/// # Safety
///
/// `offset` must be an [`initializer_offset`] computed by a process running the same
/// executable image as this one (the same file content, not merely the same path): calling
/// the function returned jumps to that offset.
pub unsafe fn initializer_at(offset: i64) -> fn() {
    let address = ship::address_at(offset);
    // SAFETY: the caller guarantees that `offset` is the offset of a `fn()` of this image, so
    // `address` is the start of a function of exactly this type.
    unsafe { std::mem::transmute::<usize, fn()>(address) }
}

/// The program's constructors that come after one of them in `.init_array`, with the
/// arguments the C library called that one with: what it would run next, before `main`.
///
/// A hook that serves from a constructor and never returns to `main` (a cluster agent) runs
/// them, as this crate's workers do: a C or C++ library's static initializers, and the runtime
/// of `-C instrument-coverage`, which the linker puts last and which writes the process's
/// coverage when it exits.
#[derive(Debug)]
pub struct LaterConstructors(sys::LaterConstructors);

impl LaterConstructors {
    /// The constructors after the entry at address `slot` of the program's `.init_array`
    /// (none if no entry is at that address).
    ///
    /// # Safety
    ///
    /// The constructor stored at `slot` must be the one calling this, from the C library
    /// before `main`, passing the `argc`, `argv` and `envp` it was called with; it must have
    /// run no other constructor, and must not return once it has called
    /// [`LaterConstructors::run`] (the C library would run them a second time).
    pub unsafe fn after(
        slot: usize,
        argc: libc::c_int,
        argv: *const *const libc::c_char,
        envp: *const *const libc::c_char,
    ) -> Self {
        LaterConstructors(sys::LaterConstructors::after(slot, argc, argv, envp))
    }

    /// Runs them, in order, as the C library would have before `main`.
    pub fn run(self) {
        self.0.run();
    }
}

/// Runs the encoded `inputs` of `job` on `pool` (item `i` is `inputs[ends[i-1]..ends[i]]`),
/// with `timeout` per item; calls `done` once with every item's outcome, on a thread of the
/// pool. Items are spread over the workers in batches, as a `map` spreads them.
///
/// Each outcome is counted in [`ProcessPool::stats`].
pub fn run_encoded(
    pool: &ProcessPool,
    job: &EncodedJob,
    inputs: &[u8],
    ends: &[usize],
    timeout: Option<Duration>,
    done: impl FnOnce(Outcomes) + Send + 'static,
) -> RemoteRun {
    let mut builder = RunBuilder::new(job.0.clone());
    let mut start = 0;
    for &end in ends {
        builder.push_encoded(&inputs[start..end]);
        start = end;
    }
    let n = ends.len();
    let cancelled = Arc::new(AtomicBool::new(false));
    let collector = Collector {
        state: Mutex::new(Collecting {
            outcomes: Outcomes {
                bytes: Vec::new(),
                items: (0..n).map(|_| None).collect(),
                worker_ns: 0,
            },
            left: n,
            done: Some(Box::new(done)),
        }),
        cancelled: cancelled.clone(),
        single: n == 1,
    };
    let cap = n.div_ceil(pool.workers().max(1)).clamp(1, MAX_BATCH);
    let run: Arc<Run> = Arc::new(builder.finish(collector, timeout, Batching::Adaptive(cap)));
    let handle = RemoteRun {
        shared: Arc::downgrade(&pool.shared),
        run: Arc::downgrade(&run),
        cancelled,
        single: n == 1,
    };
    if n == 0 {
        // Nothing to run: the run is dropped here, and its collector calls `done`.
        drop(run);
    } else {
        pool.shared.submit(run);
    }
    handle
}

type Done = Box<dyn FnOnce(Outcomes) + Send>;

struct Collecting {
    outcomes: Outcomes,
    left: usize,
    done: Option<Done>,
}

/// The sink of a remote run: gathers every item's outcome, then calls `done`.
struct Collector {
    state: Mutex<Collecting>,
    cancelled: Arc<AtomicBool>,
    /// A run of one item, cancelled as a task (its worker killed if it runs it); a run of
    /// several is cancelled as an abandoned batch (its items not yet sent are dropped).
    single: bool,
}

impl Collector {
    fn lock(&self) -> std::sync::MutexGuard<'_, Collecting> {
        // Each step below leaves the state consistent, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Sink for Collector {
    fn deliver(&self, first: usize, outcomes: Received<'_>, tally: &Tally, release: &dyn Fn()) {
        let cancelled = self.cancelled.load(Ordering::SeqCst);
        let mut state = self.lock();
        let (mut values, mut errors) = (0, 0);
        for (k, outcome) in outcomes.iter().enumerate() {
            let slot = match state.outcomes.items.get(first + k) {
                Some(None) => first + k,
                _ => continue,
            };
            let item = match outcome {
                _ if cancelled => Err(TaskError::Cancelled),
                Ok(value) => {
                    // Whole: a large byte string's bytes came apart (see `codec.rs`).
                    let bytes = &mut state.outcomes.bytes;
                    let at = bytes.len();
                    match codec::append_whole(value.bytes, bytes) {
                        Ok(()) => {
                            values += 1;
                            let end = bytes.len();
                            let worker_ns = &mut state.outcomes.worker_ns;
                            *worker_ns = worker_ns.saturating_add(value.cost.elapsed_ns);
                            Ok(at..end)
                        }
                        Err(e) => {
                            errors += 1;
                            Err(TaskError::serialization(Side::Result, Direction::Decode, e))
                        }
                    }
                }
                Err(e) => {
                    errors += 1;
                    Err(e)
                }
            };
            state.outcomes.items[slot] = Some(item);
            state.left -= 1;
        }
        // A cancellation counted its item already.
        tally.record(values, errors);
        release();
        if state.left == 0 {
            if let Some(done) = state.done.take() {
                let outcomes = std::mem::take(&mut state.outcomes);
                drop(state);
                done(outcomes);
            }
        }
    }

    fn is_settled(&self, _index: usize) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    fn is_abandoned(&self) -> bool {
        !self.single && self.cancelled.load(Ordering::SeqCst)
    }
}

impl Drop for Collector {
    /// A run dropped before every item was answered (a cancelled task taken off the queue, a
    /// pool dropped meanwhile): the items without an outcome get one.
    fn drop(&mut self) {
        let cancelled = self.cancelled.load(Ordering::SeqCst);
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let Some(done) = state.done.take() else { return };
        let missing = if cancelled { TaskError::Cancelled } else { TaskError::ShutDown };
        for item in &mut state.outcomes.items {
            item.get_or_insert_with(|| Err(missing.clone()));
        }
        done(std::mem::take(&mut state.outcomes));
    }
}

impl fmt::Debug for Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collector").field("left", &self.lock().left).finish()
    }
}
