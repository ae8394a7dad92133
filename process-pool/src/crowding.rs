//! A worker that takes turns on one CPU with the thread that feeds it moves to another CPU.
//!
//! A worker waits for its next request spinning, and yields its CPU between checks
//! (`doorbell.rs`). After a pool sat idle for a few tens of milliseconds, Linux often wakes the
//! worker on the CPU of the thread that woke it, a caller that then spins for its result,
//! although another CPU is idle; the two then take turns on one CPU, each running while the
//! other yields, and the kernel's balancing can leave them so for tens of milliseconds. Seen
//! on a 2-CPU virtual machine, 2,000 no-op round trips after 30 ms idle: 6–11 µs each,
//! against 2.8 µs with the worker on a CPU of its own.
//!
//! A worker whose requests keep arriving just after a yield that ran another thread
//! ([`Spin::handed_cpu`](crate::doorbell::Spin::handed_cpu)) shares its CPU with whoever sends
//! them. After [`STREAK`] such waits in a row it moves itself to another of the CPUs it may
//! run on (`sys::move_to_other_cpu`, which leaves them as they were), at most once per
//! [`MOVE_EVERY`]. It stays while more threads of the machine are runnable than it has CPUs:
//! on a busy machine, another CPU would make it wait for the threads running there, and
//! taking turns with its caller is cheaper (measured with both CPUs loaded: moving anyway made
//! round trips 2–3× slower).

use std::time::{Duration, Instant};

use crate::sys;

/// Waits in a row whose requests came right after a yield that ran another thread.
const STREAK: u32 = 8;
/// The least time between two moves.
const MOVE_EVERY: Duration = Duration::from_millis(10);

/// What a worker learned of the waits for its requests; see the module's documentation.
#[derive(Debug, Default)]
pub(crate) struct Crowding {
    streak: u32,
    moved: Option<Instant>,
}

impl Crowding {
    /// Records one wait: `handed` says whether the request came right after a yield that ran
    /// another thread on this CPU. Moves the worker to another CPU when they keep doing so;
    /// returns whether it moved.
    pub(crate) fn note(&mut self, handed: bool) -> bool {
        self.note_with(handed, sys::move_to_other_cpu)
    }

    fn note_with(&mut self, handed: bool, move_off: impl FnOnce() -> bool) -> bool {
        if !handed {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        if self.streak < STREAK {
            return false;
        }
        self.streak = 0;
        let now = Instant::now();
        if self.moved.is_some_and(|at| now - at < MOVE_EVERY) {
            return false;
        }
        self.moved = Some(now);
        move_off()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn a_worker_moves_only_after_a_streak_of_shared_waits_and_not_again_soon() {
        let mut crowding = Crowding::default();
        let moves = Cell::new(0);
        let mut note = |handed| {
            crowding.note_with(handed, || {
                moves.set(moves.get() + 1);
                true
            })
        };
        for _ in 1..STREAK {
            assert!(!note(true), "not a streak yet");
        }
        assert!(!note(false), "a wait of its own breaks the streak");
        for _ in 1..STREAK {
            assert!(!note(true));
        }
        assert!(note(true), "a whole streak: it moves");
        for _ in 0..STREAK {
            assert!(!note(true), "another streak right after: it stays");
        }
        assert_eq!(moves.get(), 1);
    }
}
