//! [`Crowding`]: when a worker that keeps sharing its CPU with whoever feeds it should move.

use std::time::{Duration, Instant};

/// Waits in a row that must have shared the CPU before a move.
const STREAK: u32 = 8;
/// The least time between two moves of one worker.
const MOVE_EVERY: Duration = Duration::from_millis(10);

/// What a worker (a thread or a process) learned of its waits for work: whether each ended
/// with work from a thread on its own CPU. After eight such waits in a row it moves to another
/// CPU, at most once every 10 ms; a wait that did not share the CPU starts the count again.
///
/// On a machine with idle CPUs, Linux often wakes a worker on the CPU of the thread that woke
/// it, a caller that then spins for the result; the two take turns on one CPU while another
/// stays idle, and the kernel's balancing can leave them so for a long run of round trips.
/// How a backend tells that a wait shared the CPU, and how it moves, are its own.
///
/// # Examples
///
/// ```
/// use taskpool_core::backend::Crowding;
///
/// let mut crowding = Crowding::default();
/// let mut moves = 0;
/// for _ in 0..8 {
///     crowding.note(true, || {
///         moves += 1;
///         true
///     });
/// }
/// assert_eq!(moves, 1);
/// ```
#[derive(Debug, Default)]
pub struct Crowding {
    streak: u32,
    moved: Option<Instant>,
}

impl Crowding {
    /// Records one wait: `shared` says whether it ended with work from a thread on this
    /// worker's CPU. Calls `move_off` when they keep doing so (it returns whether the worker
    /// moved); returns whether it moved.
    pub fn note(&mut self, shared: bool, move_off: impl FnOnce() -> bool) -> bool {
        if !shared {
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
        let mut note = |shared| {
            crowding.note(shared, || {
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
