//! The standard library as a peer for one-off spawns: a scoped thread that runs one task and
//! is joined, as a user without a pool writes it (`std::thread::scope` lets the task borrow
//! from the caller, and joins what the caller forgot).

use crate::tasks;

/// Spawns a scoped thread that runs a no-op, and joins it.
pub(crate) fn spawn() -> Result<(), String> {
    std::thread::scope(|s| s.spawn(|| tasks::noop(1)).join())
        .map(drop)
        .map_err(|_| "the thread panicked".to_owned())
}
