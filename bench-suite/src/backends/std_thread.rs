//! `std::thread` as a peer for one-off spawns: a thread that runs one task and is joined, as
//! a user without a pool writes it.

use crate::tasks;

/// Spawns a thread that runs a no-op, and joins it.
pub(crate) fn spawn() -> Result<(), String> {
    std::thread::spawn(|| tasks::noop(1))
        .join()
        .map(drop)
        .map_err(|_| "the thread panicked".to_owned())
}
