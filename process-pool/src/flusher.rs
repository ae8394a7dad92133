//! The worker's flusher: a thread that writes the results a long task would hold back.
//!
//! Single tasks of one function that waited in the pool travel to a worker in one frame, and
//! each has its own caller: a quick task's result must not wait for a slow task after it in the
//! frame (the slow one may even wait for it). Writing each result to the result ring as it
//! exists does that, but costs: every result then moves the ring's positions and data between
//! CPUs (about 90 ns of the workers' CPU and 65 ns of the joining caller's per no-op task,
//! measured: see `README.md`). So on the ring the worker writes such a frame's results in
//! bursts, as any other (every few kilobytes, every few microseconds of results, and at the
//! frame's end), and this thread covers the rest: while such a frame runs, it looks every
//! [`LOOK_EVERY`], and if the worker wrote nothing since it last looked and a task runs, it
//! writes the results published for that task's crash-time flush (see `sys::flush_early`) to
//! the result ring. A result then waits at most about two [`LOOK_EVERY`]s behind a long task,
//! or behind a run of tasks that each take less than the worker's own flushes wait for but all
//! together longer.
//!
//! The thread sleeps, costing nothing, while no such frame runs: the worker wakes it (one
//! system call) when one begins and it sleeps. Once it wrote what a task held back, the task
//! can hold back nothing more until it ends (the worker's thread runs it): the thread sleeps
//! until then, so that a task blocked for a long time costs no wake-up a millisecond. It starts
//! with the first such frame, with every signal blocked, so signals meant for the process reach
//! the task's thread as before; a copy of the worker made by a task's `fork()` has no flusher
//! (only the forking thread is copied), and writes nothing (see `Outputs::task_returned`).

use std::io;
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use crate::sys::{self, RESULT_FD};
use crate::worker::RingOut;

/// How often the flusher looks, while a frame it covers runs.
const LOOK_EVERY: Duration = Duration::from_millis(1);

/// Bit of the flusher's word: a frame it covers runs.
const COVERING: u32 = 1;
/// Bit of the flusher's word: the flusher sleeps until a frame it covers begins.
const ASLEEP: u32 = 2;
/// Bit of the flusher's word: the flusher wrote what the running task held back, and sleeps
/// until that task ends.
const PARKED: u32 = 4;

/// The worker's side of the flusher: started with the first frame that needs it.
#[derive(Debug)]
pub(crate) enum Flusher {
    /// Not started yet.
    Idle,
    /// Started.
    Started(Arc<State>),
    /// It could not be started (the worker writes each result itself), or there is no
    /// result ring.
    None,
}

/// What the worker's thread and the flusher share.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// [`COVERING`], [`ASLEEP`] and [`PARKED`].
    word: AtomicU32,
    /// How many times the worker's thread wrote results.
    flushes: AtomicU64,
}

impl Flusher {
    /// A flusher for a worker with a result ring (`rings`), started when first needed.
    pub(crate) fn new(rings: bool) -> Self {
        if rings { Flusher::Idle } else { Flusher::None }
    }

    /// A frame whose results must not be held back begins; its results go to `ring`.
    /// Returns whether the flusher covers it: if not, the worker writes each result as soon
    /// as it exists.
    pub(crate) fn frame_begins(&mut self, ring: &Arc<Mutex<RingOut>>) -> bool {
        if let Flusher::Idle = self {
            *self = start(ring.clone()).map_or(Flusher::None, Flusher::Started);
        }
        let Flusher::Started(shared) = self else { return false };
        if shared.word.fetch_or(COVERING, SeqCst) & ASLEEP != 0 {
            sys::futex_wake(&shared.word, 1);
        }
        true
    }

    /// The frame [`Flusher::frame_begins`] covered ended, with its results written.
    pub(crate) fn frame_ends(&self) {
        if let Flusher::Started(shared) = self {
            shared.word.fetch_and(!COVERING, SeqCst);
        }
    }

    /// The task whose held-back results the flusher wrote ended: the flusher looks again.
    pub(crate) fn task_ended(&self) {
        if let Flusher::Started(shared) = self {
            shared.word.fetch_and(!PARKED, SeqCst);
            sys::futex_wake(&shared.word, 1);
        }
    }

    /// The worker's thread wrote its pending results.
    #[inline]
    pub(crate) fn flushed(&self) {
        if let Flusher::Started(shared) = self {
            // Only this thread writes it.
            shared.flushes.store(shared.flushes.load(Relaxed).wrapping_add(1), Relaxed);
        }
    }
}

/// Starts the flusher's thread, with every signal blocked.
fn start(ring: Arc<Mutex<RingOut>>) -> io::Result<Arc<State>> {
    let shared = Arc::new(State::default());
    let theirs = shared.clone();
    sys::with_signals_blocked(|| {
        thread::Builder::new()
            .name("taskpool-flush".into())
            .stack_size(64 << 10)
            .spawn(move || watch(&theirs, &ring))
    })?;
    Ok(shared)
}

/// The flusher's life: asleep until a frame it covers begins, then a look every
/// [`LOOK_EVERY`] while one runs.
fn watch(shared: &State, ring: &Mutex<RingOut>) -> ! {
    loop {
        sleep_until_covering(&shared.word);
        loop {
            let before = shared.flushes.load(Relaxed);
            thread::sleep(LOOK_EVERY);
            // The worker wrote nothing meanwhile: what a task holds back, if one runs (and
            // was armed to let it go early), goes now.
            if shared.flushes.load(Relaxed) == before {
                flush_then_park(&shared.word, ring);
            }
            if shared.word.load(SeqCst) & COVERING == 0 {
                break;
            }
        }
    }
}

/// Writes what the running task holds back, if it may, then sleeps until that task ends
/// ([`Flusher::task_ended`]). [`PARKED`] is set before the write, so the worker's thread,
/// which clears it only once it saw the write, always finds it set.
fn flush_then_park(word: &AtomicU32, ring: &Mutex<RingOut>) {
    word.fetch_or(PARKED, SeqCst);
    let wrote = sys::flush_early(|bytes| {
        let mut ring = ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.write(bytes, sys::fixed_fd(RESULT_FD))
    });
    if !wrote {
        word.fetch_and(!PARKED, SeqCst);
        return;
    }
    loop {
        let now = word.load(SeqCst);
        if now & PARKED == 0 {
            return;
        }
        sys::futex_wait(word, now, None);
    }
}

/// Sleeps until [`Flusher::frame_begins`] says a frame begins, unless one runs already.
/// Both sides change the word with one atomic operation each, so that either the worker sees
/// [`ASLEEP`] and wakes the flusher, or the flusher sees [`COVERING`] and stays awake.
fn sleep_until_covering(word: &AtomicU32) {
    loop {
        let now = word.load(SeqCst);
        if now & COVERING != 0 {
            word.fetch_and(!ASLEEP, Relaxed);
            return;
        }
        if now & ASLEEP == 0 && word.compare_exchange(now, ASLEEP, SeqCst, Acquire).is_err() {
            continue;
        }
        sys::futex_wait(word, ASLEEP, None);
    }
}
