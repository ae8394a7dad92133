//! What the criterion benches and the examples share: worker counts, how a bench binary was
//! asked to run, and a recorder for the samples criterion takes.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The number of CPUs this process may run on (at least 1).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// The worker count of the overhead and isolation benches: two, capped at [`cores`].
pub fn small_pool() -> usize {
    2.min(cores())
}

/// The worker counts a scaling bench tries: `1..=cores`, then `2 × cores` (oversubscribed).
///
/// Above 8 CPUs the range is thinned to the powers of two and `cores` itself, so that a big
/// machine does not run dozens of variants.
///
/// # Examples
///
/// ```
/// let counts = taskpool_bench::fixtures::scaling_workers();
/// let cores = taskpool_bench::fixtures::cores();
/// assert_eq!(counts.first(), Some(&1));
/// assert_eq!(counts.last(), Some(&(2 * cores)));
/// ```
pub fn scaling_workers() -> Vec<usize> {
    scaling_workers_for(cores())
}

fn scaling_workers_for(cores: usize) -> Vec<usize> {
    let mut counts: Vec<usize> = if cores <= 8 {
        (1..=cores).collect()
    } else {
        let mut v: Vec<usize> =
            std::iter::successors(Some(1), |&n| Some(n * 2)).take_while(|&n| n < cores).collect();
        v.push(cores);
        v
    };
    counts.push(2 * cores);
    counts
}

/// How a criterion bench binary was asked to run, read from its arguments the way criterion
/// reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// `cargo bench`: measure and report.
    Bench,
    /// `cargo test --benches` (or `cargo bench -- --test`): run every benchmark once.
    Test,
    /// `--list`: only name the benchmarks.
    List,
}

impl RunMode {
    /// The mode of this process, from its command line.
    pub fn current() -> RunMode {
        RunMode::from_args(std::env::args().skip(1))
    }

    /// The mode criterion picks for `args` (the arguments after the program name).
    ///
    /// # Examples
    ///
    /// ```
    /// use taskpool_bench::fixtures::RunMode;
    ///
    /// assert_eq!(RunMode::from_args(["--bench"]), RunMode::Bench);
    /// assert_eq!(RunMode::from_args(["--bench", "--test"]), RunMode::Test);
    /// assert_eq!(RunMode::from_args(Vec::<String>::new()), RunMode::Test);
    /// assert_eq!(RunMode::from_args(["--bench", "--list"]), RunMode::List);
    /// ```
    pub fn from_args<I: IntoIterator<Item = S>, S: AsRef<str>>(args: I) -> RunMode {
        let (mut bench, mut test, mut list) = (false, false, false);
        for arg in args {
            match arg.as_ref() {
                "--bench" => bench = true,
                "--test" => test = true,
                "--list" => list = true,
                _ => {}
            }
        }
        if list {
            RunMode::List
        } else if bench && !test {
            RunMode::Bench
        } else {
            RunMode::Test
        }
    }
}

/// The soft limit on open file descriptors of this process (`RLIMIT_NOFILE`), if it can be
/// read from `/proc/self/limits`; `None` also when it is unlimited.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// Records the samples of benchmarks timed with criterion's `iter_custom`, so that a bench
/// can compute figures criterion does not print (a speedup, say) from the very same
/// measurements.
///
/// Criterion calls an `iter_custom` routine during warm-up first and then once per sample;
/// [`Samples::median`] therefore looks only at the last `sample_size` calls.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use taskpool_bench::fixtures::Samples;
///
/// let samples = Samples::default();
/// samples.record("a", 1, Duration::from_millis(50)); // warm-up
/// samples.record("a", 2, Duration::from_millis(4));
/// samples.record("a", 2, Duration::from_millis(6));
/// samples.record("a", 2, Duration::from_millis(2));
/// assert_eq!(samples.median("a", 3), Some(Duration::from_millis(2)));
/// assert_eq!(samples.median("b", 3), None);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Samples {
    by_id: Arc<Mutex<BTreeMap<String, Vec<Call>>>>,
}

/// One recorded call of an `iter_custom` routine: its iteration count and total time.
type Call = (u64, Duration);

impl Samples {
    /// Records that `iters` iterations of benchmark `id` took `elapsed` in all, and returns
    /// `elapsed` (what an `iter_custom` routine returns to criterion).
    pub fn record(&self, id: &str, iters: u64, elapsed: Duration) -> Duration {
        let mut by_id = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        by_id.entry(id.to_owned()).or_default().push((iters, elapsed));
        elapsed
    }

    /// The median time per iteration over the last `last` calls recorded for `id` (the
    /// samples criterion analysed, when `last` is the group's sample size), or `None` if
    /// nothing was recorded.
    pub fn median(&self, id: &str, last: usize) -> Option<Duration> {
        let by_id = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        let calls = by_id.get(id)?;
        let mut per_iter: Vec<f64> = calls[calls.len().saturating_sub(last)..]
            .iter()
            .filter(|(iters, _)| *iters > 0)
            .map(|&(iters, elapsed)| elapsed.as_secs_f64() / iters as f64)
            .collect();
        if per_iter.is_empty() {
            return None;
        }
        per_iter.sort_by(f64::total_cmp);
        let mid = per_iter.len() / 2;
        let median = if per_iter.len() % 2 == 1 {
            per_iter[mid]
        } else {
            (per_iter[mid - 1] + per_iter[mid]) / 2.0
        };
        Some(Duration::from_secs_f64(median))
    }

    /// How many calls were recorded for `id`.
    pub fn calls(&self, id: &str) -> usize {
        let by_id = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        by_id.get(id).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_counts_end_oversubscribed() {
        assert_eq!(scaling_workers_for(1), [1, 2]);
        assert_eq!(scaling_workers_for(2), [1, 2, 4]);
        assert_eq!(scaling_workers_for(4), [1, 2, 3, 4, 8]);
        assert_eq!(scaling_workers_for(12), [1, 2, 4, 8, 12, 24]);
        assert_eq!(scaling_workers_for(16), [1, 2, 4, 8, 16, 32]);
    }

    #[test]
    fn the_open_files_limit_is_read() {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
        let soft = line.split_whitespace().nth(3).unwrap();
        assert_eq!(open_files_limit(), soft.parse().ok(), "{line}");
    }

    #[test]
    fn medians_of_even_counts_average_the_middle() {
        let s = Samples::default();
        for ms in [1, 2, 3, 10] {
            s.record("x", 1, Duration::from_millis(ms));
        }
        assert_eq!(s.median("x", 4), Some(Duration::from_micros(2500)));
        assert_eq!(s.calls("x"), 4);
    }
}
