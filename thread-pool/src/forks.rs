//! Telling a copy of the process made by `fork()` from the process that started a pool.
//!
//! A copy inherits a pool's memory but not its threads: a pool records
//! [`fork_generation`] when it starts, and a pool whose record differs from the current one
//! was inherited, so it takes no work and waits for nothing there.

use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many `fork()`s (through the C library) this process is from the one that first
/// watched for them: 0 there, 1 in a copy of it, 2 in a copy of that copy.
static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_fork_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// Arranges for [`fork_generation`] to change in each copy this process makes with `fork()`
/// from now on. Once per process; later calls do nothing. (A copy made by a raw `fork` system
/// call runs no `pthread_atfork` handler and is not seen.)
pub(crate) fn watch_forks() {
    static WATCH: Once = Once::new();
    WATCH.call_once(|| {
        // SAFETY: registers a handler that only adds to an atomic, and lives as long as the
        // process.
        unsafe { libc::pthread_atfork(None, None, Some(on_fork_child)) };
    });
}

/// Which copy this process is (see [`watch_forks`]). One atomic load.
#[inline]
pub(crate) fn fork_generation() -> u64 {
    FORKS.load(Ordering::Relaxed)
}
