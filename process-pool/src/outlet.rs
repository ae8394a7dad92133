//! The writes to workers: each worker's outbox and the non-blocking writes that empty it.
//!
//! This is one side of the transport seam (the other is the supervisor's reading of result
//! frames): the scheduler appends batch frames to a worker's [`Outlet`] under the pool's lock
//! and the writes happen after the lock is released ([`Flush`]), so a write, and the wake-up
//! of the worker inside it, never holds up the rest of the pool. What a full pipe does not
//! take stays in the outbox until the worker's supervisor sees room.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::sys;

/// Where a worker's requests go: the write end of its request pipe, non-blocking.
pub(crate) trait RequestPipe: Send + Sync {
    /// Writes some of `bytes` without blocking; `Ok(0)` when the pipe is full.
    fn write(&self, bytes: &[u8]) -> io::Result<usize>;
}

impl RequestPipe for OwnedFd {
    fn write(&self, bytes: &[u8]) -> io::Result<usize> {
        sys::write(self.as_fd(), bytes)
    }
}

/// The write side of a worker's request pipe, behind the [`Outlet`]'s lock.
pub(crate) struct Writer {
    /// `None` once closed (the worker then exits when done). The supervisor holds another
    /// reference, for polling; the descriptor closes when both are gone.
    request: Option<Arc<dyn RequestPipe>>,
    /// Frames not written yet.
    pub(crate) outbox: Vec<u8>,
    written: usize,
}

impl Writer {
    /// Writes what the pipe takes without blocking; returns whether bytes are left. A broken
    /// pipe is left for the supervisor to notice as the worker's end.
    fn flush(&mut self) -> bool {
        let Some(request) = &self.request else {
            self.outbox.clear();
            self.written = 0;
            return false;
        };
        while self.written < self.outbox.len() {
            match request.write(&self.outbox[self.written..]) {
                Ok(0) => return true,
                Ok(n) => self.written += n,
                Err(_) => self.written = self.outbox.len(),
            }
        }
        self.outbox.clear();
        self.written = 0;
        false
    }

    /// Closes the pipe: the worker finishes what it holds and exits.
    fn close(&mut self) {
        self.request = None;
        self.outbox.clear();
        self.written = 0;
    }
}

/// A worker's [`Writer`] behind its lock, with a flag that says, without taking the lock,
/// whether bytes were left in the outbox (so the supervisor must watch the pipe for room).
///
/// Lock order: the pool's lock, then this one; never the other way.
pub(crate) struct Outlet {
    writer: Mutex<Writer>,
    backlog: AtomicBool,
}

impl Outlet {
    pub(crate) fn new(request: Arc<dyn RequestPipe>) -> Self {
        let writer = Writer { request: Some(request), outbox: Vec::new(), written: 0 };
        Outlet { writer: Mutex::new(writer), backlog: AtomicBool::new(false) }
    }

    /// Locks the writer. Writes leave it consistent at every step, so a poisoned lock is
    /// usable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes what the pipe takes; returns whether bytes are left (and records it).
    pub(crate) fn flush(&self) -> bool {
        let mut writer = self.lock();
        let left = writer.flush();
        self.backlog.store(left, Ordering::Release);
        left
    }

    /// Whether the last flush left bytes behind.
    pub(crate) fn has_backlog(&self) -> bool {
        self.backlog.load(Ordering::Acquire)
    }

    /// Closes the request pipe: the worker finishes what it holds and exits.
    pub(crate) fn close(&self) {
        self.lock().close();
        self.backlog.store(false, Ordering::Release);
    }
}

impl fmt::Debug for Outlet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outlet").field("backlog", &self.has_backlog()).finish()
    }
}

/// A worker with frames to write once the pool's lock is released; see
/// [`crate::scheduler::Shared::flush`].
#[derive(Debug)]
pub(crate) struct Flush {
    pub(crate) w: usize,
    pub(crate) outlet: Arc<Outlet>,
    /// Its supervisor must be woken: its head item has a new deadline.
    pub(crate) wake: bool,
}
