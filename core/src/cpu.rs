//! Moving the calling thread off its CPU, and how busy the machine is: what a backend's
//! [`Crowding`](crate::backend::Crowding) rule calls when a worker keeps sharing its CPU with
//! whoever feeds it.

use rustix::thread::{CpuSet, sched_getaffinity, sched_getcpu, sched_setaffinity};

/// Moves the calling thread to another of the CPUs it may run on, and leaves its allowed CPUs
/// as they were: allows every CPU but the current one for a moment (the kernel migrates the
/// thread at once), then allows them all again. `room(cpus)` says whether to move, with
/// `cpus` the number of CPUs the thread may use; it is not asked when the thread may use one
/// CPU only.
///
/// Returns the CPU the thread left and the one it ran on while that one was barred; `None`
/// when it did not move (one CPU allowed, no room, or the kernel refused).
///
/// # Examples
///
/// ```
/// use taskpool_core::backend::{leave_cpu, runnable_threads};
///
/// // Move only when the machine has a CPU to spare, as the backends do.
/// let moved = leave_cpu(|cpus| runnable_threads().is_some_and(|n| n <= cpus));
/// if let Some((left, now_on)) = moved {
///     assert_ne!(left, now_on);
/// }
/// ```
pub fn leave_cpu(room: impl FnOnce(usize) -> bool) -> Option<(usize, usize)> {
    let allowed = sched_getaffinity(None).ok()?;
    let here = sched_getcpu();
    if here >= CpuSet::MAX_CPU || !allowed.is_set(here) {
        return None;
    }
    let count = allowed.count() as usize;
    if count < 2 || !room(count) {
        return None;
    }
    let mut elsewhere = allowed;
    elsewhere.unset(here);
    let moved = sched_setaffinity(None, &elsewhere).is_ok();
    let there = sched_getcpu();
    // Back to what it was, whatever happened: the thread keeps every CPU it had.
    let _ = sched_setaffinity(None, &allowed);
    moved.then_some((here, there))
}

/// How many threads of the machine are runnable now (the fourth field of `/proc/loadavg`),
/// if that can be read: more than the CPUs means another CPU is as busy as this one.
pub fn runnable_threads() -> Option<usize> {
    let loadavg = std::fs::read_to_string("/proc/loadavg").ok()?;
    let field = loadavg.split_whitespace().nth(3)?;
    field.split('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> CpuSet {
        sched_getaffinity(None).expect("the thread's CPUs")
    }

    #[test]
    fn a_thread_moved_off_its_cpu_ran_elsewhere_and_may_still_run_where_it_could() {
        // A thread of its own: the test's thread keeps its CPUs whatever happens here.
        std::thread::spawn(|| {
            let before = allowed();
            assert_eq!(leave_cpu(|_| false), None, "no room: it stays");
            assert!(allowed() == before, "its CPUs are as they were");
            let count = before.count() as usize;
            match leave_cpu(|cpus| cpus == count) {
                Some((from, to)) => {
                    assert!(count >= 2);
                    assert_ne!(from, to, "it ran elsewhere while its CPU was barred");
                    assert!(before.is_set(to), "on a CPU it may use: {to}");
                }
                None => assert_eq!(count, 1, "it moves wherever it can"),
            }
            assert!(allowed() == before, "its CPUs are as they were after a move");
            assert!(runnable_threads().is_some_and(|n| n >= 1), "this thread runs");

            let here = sched_getcpu();
            let mut one = CpuSet::new();
            one.set(here);
            sched_setaffinity(None, &one).expect("one CPU");
            assert_eq!(leave_cpu(|_| true), None, "one CPU allowed: nowhere to go");
            assert!(allowed() == one, "still that one CPU");
        })
        .join()
        .unwrap();
    }
}
