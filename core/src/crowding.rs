//! [`Crowding`]: when a worker that keeps sharing its CPU with whoever feeds it should move.

use std::time::{Duration, Instant};

/// Waits in a row that must have shared the CPU before a move.
const STREAK: u32 = 8;
/// The least time between two moves of one worker.
const MOVE_EVERY: Duration = Duration::from_millis(10);
/// The least time before a move the backend declined (the machine was busy) is tried again.
const RETRY_EVERY: Duration = Duration::from_millis(1);

/// What a worker (a thread or a process) learned of its waits for work: whether each ended
/// with work from a thread on its own CPU. After eight such waits in a row it moves to another
/// CPU, at most once every 10 ms; a wait that did not share the CPU starts the count again. A
/// move the backend declines (more threads were runnable than it has CPUs) is tried again after
/// 1 ms, at the next streak: a machine busy for a moment must not keep the worker sharing its
/// CPU with its caller for the next 10 ms.
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
    /// The earliest time of the next move.
    next: Option<Instant>,
}

impl Crowding {
    /// Records one wait: `shared` says whether it ended with work from a thread on this
    /// worker's CPU. Calls `move_off` when they keep doing so (it returns whether the worker
    /// moved); returns whether it moved.
    pub fn note(&mut self, shared: bool, move_off: impl FnOnce() -> bool) -> bool {
        self.note_at(shared, Instant::now, move_off)
    }

    /// [`Crowding::note`], with `now` the clock (read only when a streak is complete).
    fn note_at(
        &mut self,
        shared: bool,
        now: impl FnOnce() -> Instant,
        move_off: impl FnOnce() -> bool,
    ) -> bool {
        if !shared {
            self.streak = 0;
            return false;
        }
        self.streak += 1;
        if self.streak < STREAK {
            return false;
        }
        self.streak = 0;
        let now = now();
        if self.next.is_some_and(|at| now < at) {
            return false;
        }
        let moved = move_off();
        self.next = Some(now + if moved { MOVE_EVERY } else { RETRY_EVERY });
        moved
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

    #[test]
    fn a_declined_move_is_tried_again_after_a_millisecond_and_a_made_one_after_ten() {
        let start = Instant::now();
        let mut crowding = Crowding::default();
        let attempts = Cell::new(0);
        // A whole streak at `at`, the backend answering `agrees`; returns whether it moved.
        let mut streak = |at: Duration, agrees: bool| {
            let mut moved = false;
            for _ in 0..STREAK {
                moved = crowding.note_at(
                    true,
                    || start + at,
                    || {
                        attempts.set(attempts.get() + 1);
                        agrees
                    },
                );
            }
            moved
        };
        assert!(!streak(Duration::ZERO, false), "declined");
        assert_eq!(attempts.get(), 1);
        assert!(!streak(Duration::from_micros(500), true), "too soon after a declined move");
        assert_eq!(attempts.get(), 1, "not even asked");
        assert!(streak(Duration::from_millis(1), true), "a millisecond later: moves");
        assert_eq!(attempts.get(), 2);
        assert!(!streak(Duration::from_millis(9), true), "too soon after a move");
        assert_eq!(attempts.get(), 2);
        assert!(streak(Duration::from_millis(11), true), "ten milliseconds after the move");
        assert_eq!(attempts.get(), 3);
    }
}
