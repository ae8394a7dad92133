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

use taskpool_core::backend::Crowding as Streak;

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
/// were. Returns whether it moved; not when the thread may run on one CPU only, when more
/// threads of the machine are runnable than the CPUs and the pool's `threads` together, or
/// when the kernel refused.
fn move_to_other_cpu(threads: usize) -> bool {
    leave_cpu(|cpus| runnable_threads().is_some_and(|n| n <= cpus + threads)).is_some()
}

/// [`move_to_other_cpu`]'s work, where `room(cpus)` says whether to move with `cpus` CPUs
/// allowed: allows every CPU but the current one for a moment (the kernel migrates the thread
/// at once), then allows them all again. Returns the CPU it left and the one it ran on while
/// that one was barred.
fn leave_cpu(room: impl FnOnce(usize) -> bool) -> Option<(usize, usize)> {
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: a CPU set is plain bits; all zeros is the empty set.
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: the set is ours and `size` bytes long; the call only writes it.
    if unsafe { libc::sched_getaffinity(0, size, &mut allowed) } != 0 {
        return None;
    }
    let here = current().filter(|&here| here < 8 * size)?;
    // SAFETY: both only touch the sets, which are ours; `here` lies inside them.
    let (count, elsewhere) = unsafe {
        let mut elsewhere = allowed;
        libc::CPU_CLR(here, &mut elsewhere);
        (libc::CPU_COUNT(&allowed), elsewhere)
    };
    let count = usize::try_from(count).unwrap_or(0);
    if count < 2 || !room(count) {
        return None;
    }
    // SAFETY: the set is ours and `size` bytes long; the call only reads it.
    let moved = unsafe { libc::sched_setaffinity(0, size, &elsewhere) } == 0;
    let there = current();
    // SAFETY: as above.
    unsafe { libc::sched_setaffinity(0, size, &allowed) };
    if moved { there.map(|there| (here, there)) } else { None }
}

/// How many threads of the machine are runnable now (the fourth field of `/proc/loadavg`),
/// if that can be read.
fn runnable_threads() -> Option<usize> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").ok()?;
    let field = loadavg.split_whitespace().nth(3)?;
    field.split('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_allowed_every_cpu_moves_off_its_own_and_keeps_every_cpu() {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        let allowed = || {
            // SAFETY: as in `leave_cpu`.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            // SAFETY: as in `leave_cpu`.
            assert_eq!(unsafe { libc::sched_getaffinity(0, size, &mut set) }, 0);
            set
        };
        let before = allowed();
        // SAFETY: the set is ours.
        let cpus = unsafe { libc::CPU_COUNT(&before) };
        if cpus < 2 {
            eprintln!("skipped: this thread may run on {cpus} CPU only");
            return;
        }
        let (left, ran_on) = leave_cpu(|_| true).expect("it moved");
        assert_ne!(left, ran_on, "it ran elsewhere while its CPU was barred");
        // SAFETY: both sets are ours.
        assert!(unsafe { libc::CPU_EQUAL(&before, &allowed()) }, "its CPUs are as before");
    }
}
