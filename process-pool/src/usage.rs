//! [`Usage`]: what tasks cost in their worker processes, as the workers measured it.

use std::time::Duration;

/// What a task (or, in [`crate::PoolStats`], every task so far) cost in its worker process,
/// as the worker measured it.
///
/// The worker times each task, and reads its own CPU time (`getrusage`) after a task when
/// 100 µs have passed since it last did, and, when no more tasks wait, after each task sent
/// with [`crate::ProcessPool::submit_with_usage`] (a reading is a system call: about 1 µs on a
/// virtual machine, a quarter of a no-op round trip, so tasks whose callers do not ask for
/// their cost skip it). So a task sent with `submit_with_usage` gets its own CPU figures,
/// while among short tasks one task carries the CPU time of those before it since the last
/// reading; sums over many tasks are right either way, but for the last 100 µs at most of
/// each worker's time, which its next reading counts. CPU time includes the worker's own small
/// share (decoding the argument, encoding the result, waiting for the next one briefly).
///
/// # Examples
///
/// ```
/// use taskpool_process::{ProcessPool, TaskError};
///
/// fn fill(mib: usize) -> usize {
///     let block = vec![1u8; mib << 20];
///     std::hint::black_box(&block).len()
/// }
///
/// # fn main() -> Result<(), TaskError> {
/// let pool = ProcessPool::new(1)?;
/// let (len, usage) = pool.submit_with_usage(fill, 32).join()?;
/// assert_eq!(len, 32 << 20);
/// assert!(usage.peak_rss >= 32 << 20);
/// println!("{:?} of CPU in {:?}", usage.user_cpu + usage.system_cpu, usage.elapsed);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Wall-clock time the task ran: from the decoding of its argument to the encoding of
    /// its result. A struct task's state, which a worker decodes once for each batch of the
    /// task's items, is the batch's cost and counts in none of them (its CPU time counts in
    /// the first item's CPU figures).
    pub elapsed: Duration,
    /// CPU time in user mode.
    pub user_cpu: Duration,
    /// CPU time the kernel spent on the task's behalf.
    pub system_cpu: Duration,
    /// The peak resident memory of the worker that ran the task, in bytes, up to the end of
    /// the task: the high-water mark of the whole worker process, not of the task alone
    /// (`ru_maxrss` where it is the worker's own, else `VmHWM` from `/proc`: `ru_maxrss`
    /// also counts what the program that started the worker held then).
    pub peak_rss: u64,
}

/// [`Usage`] as a worker reports it, in nanoseconds and bytes: cheap to carry and to sum on
/// the path of every result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Cost {
    pub(crate) elapsed_ns: u64,
    pub(crate) user_ns: u64,
    pub(crate) system_ns: u64,
    pub(crate) peak_rss: u64,
}

impl Cost {
    /// What each of `count` items that together cost this cost, on average.
    pub(crate) fn per_item(self, count: u32) -> Cost {
        let count = u64::from(count.max(1));
        Cost {
            elapsed_ns: self.elapsed_ns / count,
            user_ns: self.user_ns / count,
            system_ns: self.system_ns / count,
            peak_rss: self.peak_rss,
        }
    }

    /// Adds `other` in: times are summed, the peak is the larger.
    #[inline]
    pub(crate) fn add(&mut self, other: Cost) {
        self.elapsed_ns = self.elapsed_ns.saturating_add(other.elapsed_ns);
        self.user_ns = self.user_ns.saturating_add(other.user_ns);
        self.system_ns = self.system_ns.saturating_add(other.system_ns);
        self.peak_rss = self.peak_rss.max(other.peak_rss);
    }
}

impl From<Cost> for Usage {
    fn from(cost: Cost) -> Usage {
        Usage {
            elapsed: Duration::from_nanos(cost.elapsed_ns),
            user_cpu: Duration::from_nanos(cost.user_ns),
            system_cpu: Duration::from_nanos(cost.system_ns),
            peak_rss: cost.peak_rss,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_sums_times_and_keeps_the_highest_peak() {
        let mut total = Cost { elapsed_ns: 3, user_ns: 2, system_ns: 1, peak_rss: 10 };
        total.add(Cost { elapsed_ns: 1, user_ns: 1, system_ns: 1, peak_rss: 5 });
        let usage = Usage::from(total);
        assert_eq!(usage.elapsed, Duration::from_nanos(4));
        assert_eq!(
            (usage.user_cpu, usage.system_cpu),
            (Duration::from_nanos(3), Duration::from_nanos(2))
        );
        assert_eq!(usage.peak_rss, 10);
    }
}
