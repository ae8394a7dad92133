//! [`Relief`]: a thread that takes the place of one stuck on a timed-out task.
//!
//! A thread cannot be stopped, so a task past its time limit keeps its thread until it
//! returns, and a task that never returns keeps it for ever. So that the pool's other tasks
//! still run meanwhile, the watchdog that times a task out starts a relief thread, which runs
//! queued tasks as the pool's threads do, sleeps while there are none (a push wakes it), and
//! leaves once the timed-out task returns or the pool is dropped. A pool whose tasks never
//! overrun its limit never starts one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::Thread;

/// What links a timed task to the relief thread started should it overrun: held in the
/// task's record, so that a task with a time limit allocates nothing for it.
#[derive(Default)]
pub(crate) struct Relief {
    /// The task returned: the relief thread leaves.
    over: AtomicBool,
}

impl Relief {
    /// The timed-out task returned: its relief thread, if one started, leaves once it looks
    /// (the caller wakes the registered relief threads, so that it looks).
    pub(crate) fn end(&self) {
        // Sequentially consistent, as the load in `is_over` and the queue's count of relief
        // threads: the task's thread stores this and then loads the count, while a relief
        // thread is counted, then woken, and then loads this. So either the task's thread sees
        // the relief thread counted and wakes it, or the relief thread, woken once counted,
        // sees the task over.
        self.over.store(true, Ordering::SeqCst);
    }

    /// Whether the task returned (see [`Relief::end`]).
    pub(crate) fn is_over(&self) -> bool {
        self.over.load(Ordering::SeqCst)
    }
}

/// Starts a relief thread named `name` that runs `body` with `over`, the check of whether to
/// leave (its task's [`Relief::is_over`], reached through what holds it), and calls `started`
/// with it before returning (the queue registers it there, to be woken by pushes and by
/// [`Relief::end`]'s caller). Does nothing if the task returned already. A thread that cannot
/// be started leaves the pool as it was without relief (the task still timed out).
pub(crate) fn start(
    name: String,
    over: impl Fn() -> bool + Send + 'static,
    body: impl FnOnce(&dyn Fn() -> bool) + Send + 'static,
    started: impl FnOnce(&Thread),
) {
    if over() {
        return;
    }
    let spawned = std::thread::Builder::new().name(name).spawn(move || body(&over));
    if let Ok(handle) = spawned {
        started(handle.thread());
    }
}
