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
//! them. After a streak of such waits it moves itself to another of the CPUs it may run on
//! (`sys::move_to_other_cpu`, which leaves them as they were), as the backends' shared rule
//! ([`taskpool_core::backend::Crowding`]) says. It stays while more threads of the machine
//! are runnable than it has CPUs: on a busy machine, another CPU would make it wait for the
//! threads running there, and taking turns with its caller is cheaper (measured with both
//! CPUs loaded: moving anyway made round trips 2–3× slower).

use taskpool_core::backend::Crowding as Streak;

use crate::sys;

/// What a worker learned of the waits for its requests; see the module's documentation.
#[derive(Debug, Default)]
pub(crate) struct Crowding(Streak);

impl Crowding {
    /// Records one wait: `handed` says whether the request came right after a yield that ran
    /// another thread on this CPU. Moves the worker to another CPU when they keep doing so;
    /// returns whether it moved.
    pub(crate) fn note(&mut self, handed: bool) -> bool {
        self.0.note(handed, sys::move_to_other_cpu)
    }
}
