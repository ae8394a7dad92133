//! A pool thread that takes turns on one CPU with the thread that feeds it moves to another.
//!
//! A pool thread waits for its next task yielding its CPU between checks (`queue.rs`). Linux
//! often wakes it on the CPU of the thread that woke it, a caller that then spins for the
//! result although another CPU is idle; the two then take turns on one CPU, each running
//! while the other yields, and the kernel's balancing can leave them so for a whole run of
//! round trips. Seen on a 2-CPU virtual machine: 2,000 no-op round trips at 9.0 µs each, every
//! task on the caller's CPU, against 0.8–1.0 µs with the pool thread on a CPU of its own.
//!
//! A submit records the CPU it ran on (`sched_getcpu`, a few nanoseconds: glibc reads it from
//! memory the kernel keeps current). A pool thread that keeps waiting for tasks submitted
//! from its own CPU moves to another of the CPUs it may run on, as the backends' shared rule
//! ([`taskpool_core::backend::Crowding`]) says; not on a machine where more threads are
//! runnable than the CPUs and the pool's own threads together (there, another CPU is as busy,
//! and taking turns is cheaper).

use taskpool_core::backend::{Crowding as Streak, leave_cpu, runnable_threads};

/// What one pool thread learned of the tasks it waited for; see the module's notes.
#[derive(Debug, Default)]
pub(crate) struct Crowding(Streak);

impl Crowding {
    /// Records one wait that ended with a task submitted from CPU `from`; moves this thread
    /// to another CPU when they keep coming from its own, with `threads` pool threads that
    /// may be running. Returns whether it moved.
    pub(crate) fn note(&mut self, from: Option<usize>, threads: usize) -> bool {
        let shared = from.is_some_and(|from| current() == Some(from));
        self.0.note(shared, || move_to_other_cpu(threads))
    }
}

/// The CPU the calling thread runs on.
#[inline]
pub(crate) fn current() -> Option<usize> {
    // SAFETY: no arguments, no memory effects.
    usize::try_from(unsafe { libc::sched_getcpu() }).ok()
}

/// Moves the calling thread to another CPU it may run on, and leaves its allowed CPUs as they
/// were ([`leave_cpu`]). Returns whether it moved; not when the thread may run on one CPU
/// only, when more threads of the machine are runnable than the CPUs and the pool's `threads`
/// together, or when the kernel refused.
fn move_to_other_cpu(threads: usize) -> bool {
    leave_cpu(|cpus| runnable_threads().is_some_and(|n| n <= cpus + threads)).is_some()
}
