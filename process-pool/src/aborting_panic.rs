//! A task's panic that ends the worker, where nothing can catch it: any panic in a program
//! built with `panic = "abort"`, and in any build a panic that reaches an `extern "C"`
//! function (a callback a C library calls) or one a `Drop` raises while the task unwinds
//! (see core's `panic.rs`). The worker frames it as the running item's `Panicked` outcome
//! before the process aborts, so the caller gets the message and location rather than only
//! `Crashed(Signal(6))`.
//!
//! core's panic hook hands the report to [`report`] (registered by [`register`]) and returns;
//! the panic runtime then calls `abort()`, and the worker's SIGABRT handler writes the
//! results the item's batch had ready, then this frame (`sys::publish_on_panic`). The parent
//! takes it as any failure frame followed by the worker's death, as it does for a task that
//! ran out of memory: the item fails with its panic, the worker is replaced, and the items
//! after it run on another. A panic that unwinds never comes here: the hook records it and
//! `catch_unwind` returns it as usual. A panic of the pool's initializer that ends the worker
//! is its start's failure instead: the hook sends `InitFailed` with the panic and exits, as
//! the worker does when the initializer's panic unwinds.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use taskpool_core::PanicReport;
use taskpool_core::backend::initializer_panicked;

use crate::protocol::{self, Meta};
use crate::sys;
use crate::worker::{fit_report, refuse};

/// The sequence number of the item that runs.
static RUNNING: AtomicU64 = AtomicU64::new(0);
/// The frame limit the report must fit.
static LIMIT: AtomicUsize = AtomicUsize::new(0);
/// Whether the pool's initializer runs (before the worker's hello).
static INITIALIZING: AtomicBool = AtomicBool::new(false);

/// In a worker: sends task panics that end it to the caller (see the module docs).
pub(crate) fn register(frame_limit: usize) {
    LIMIT.store(frame_limit, Ordering::Relaxed);
    taskpool_core::backend::report_aborting_panics_with(report);
}

/// Notes whether the pool's initializer runs: a panic that ends the worker meanwhile refuses
/// its start with the panic as the reason, as one that unwinds does, instead of leaving the
/// parent only the worker's SIGABRT.
pub(crate) fn initializer_runs(runs: bool) {
    INITIALIZING.store(runs, Ordering::Relaxed);
}

/// Notes that item `seq` starts, for a panic to name it.
#[inline(always)]
pub(crate) fn item_starts(seq: u64) {
    RUNNING.store(seq, Ordering::Relaxed);
}

/// Frames `panic` as the running item's outcome for the SIGABRT handler to write; returns
/// whether it did: not between tasks (a panic of the worker's own, which the standard hook
/// prints), nor in a copy of the worker that a task forked (which sends nothing).
fn report(panic: &PanicReport) -> bool {
    if INITIALIZING.load(Ordering::Relaxed) && !sys::forked() {
        // The hook runs on the panicking thread before the abort: say why and exit as a
        // worker whose initializer failed (the frame goes before any hello).
        let limit = u64::try_from(LIMIT.load(Ordering::Relaxed)).unwrap_or(u64::MAX);
        refuse(sys::fixed_fd(sys::RESULT_FD), &initializer_panicked(panic), limit);
    }
    if !sys::task_running() || sys::forked() {
        return false;
    }
    let meta = Meta { seq: RUNNING.load(Ordering::Relaxed), ..Meta::default() };
    let [message, location, backtrace] = fit_report(panic, LIMIT.load(Ordering::Relaxed));
    let mut frame = Vec::new();
    protocol::encode_panicked(&mut frame, meta, &message, &location, &backtrace);
    // The process aborts as soon as the hook returns: the frame need not be freed.
    sys::publish_on_panic(Vec::leak(frame));
    true
}
