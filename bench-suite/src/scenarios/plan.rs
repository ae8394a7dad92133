//! How much to measure: the sizes and repeats of every scenario, for the report's modes and
//! for the criterion benches, and the one list of worker counts.

use std::num::NonZeroUsize;
use std::time::Duration;

use super::TaskSize;

/// How long a run of the report takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Fewer repeats and smaller batches: about a minute.
    Quick,
    /// The default run: two to three minutes on two cores.
    Default,
    /// More repeats, longer batches and 100 ms tasks.
    Full,
}

impl Mode {
    /// `quick`, `default` or `full`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Quick => "quick",
            Mode::Default => "default",
            Mode::Full => "full",
        }
    }
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
    /// use taskpool_bench::RunMode;
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

/// How much to measure.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The report's mode (criterion runs the default mode's sizes, or the quick mode's when
    /// it only smoke-tests).
    pub mode: Mode,
    /// Workers per pool: the CPUs available.
    pub workers: usize,
    /// Samples per variant.
    pub repeats: usize,
    /// Samples per variant of the `map` and `imap` rows, Python's included: more than
    /// `repeats`, since a sample lasts only tens or hundreds of milliseconds, so that one
    /// phase of a busy machine can take a whole sample (five moved by half between runs on a
    /// 2-core machine).
    pub map_repeats: usize,
    /// Round trips per sample of a per-task latency.
    pub round_trips: usize,
    /// Items per `map` sample.
    pub map_items: usize,
    /// Items per `imap` sample: fewer than a `map`'s, since Python's `Pool.imap` sends one
    /// item per message by default (tens of thousands a second), so that its sample lasts
    /// well under a second.
    pub imap_items: usize,
    /// Tasks per sample of the in-flight throughput.
    pub in_flight: usize,
    /// The task sizes of the CPU-bound kernels.
    pub task_sizes: Vec<TaskSize>,
    /// The sequential time a batch of kernel tasks aims at.
    pub batch: Duration,
    /// Whether kernel tasks are cut to a hundredth of their size (at least 10 µs), for a
    /// smoke test that only checks that everything runs.
    pub tiny_tasks: bool,
}

impl Plan {
    /// The report's plan for `mode`.
    pub fn new(mode: Mode) -> Plan {
        let (repeats, map_repeats, round_trips, map_items, imap_items) = match mode {
            Mode::Quick => (3, 5, 200, 200_000, 2_000),
            Mode::Default => (5, 11, 1000, 1_000_000, 10_000),
            Mode::Full => (9, 15, 3000, 2_000_000, 20_000),
        };
        let mut task_sizes = vec![TaskSize::Micros10, TaskSize::Millis1];
        if mode == Mode::Full {
            task_sizes.push(TaskSize::Millis100);
        }
        Plan {
            mode,
            workers: cores(),
            repeats,
            map_repeats,
            round_trips,
            map_items,
            imap_items,
            in_flight: 1000,
            task_sizes,
            batch: Duration::from_millis(if mode == Mode::Quick { 80 } else { 150 }),
            tiny_tasks: false,
        }
    }

    /// The plan of a criterion bench: the default mode's sizes with every task size when it
    /// measures, the quick mode's with tiny tasks when it only runs each benchmark once.
    pub fn for_criterion(run: RunMode) -> Plan {
        match run {
            RunMode::Bench => Plan {
                task_sizes: vec![TaskSize::Micros10, TaskSize::Millis1, TaskSize::Millis100],
                ..Plan::new(Mode::Default)
            },
            RunMode::Test | RunMode::List => Plan { tiny_tasks: true, ..Plan::new(Mode::Quick) },
        }
    }

    /// The no-ops of the burst that the kept pool runs right before the "after a burst" row's
    /// CPU-bound batch: a tenth of a `map` sample.
    pub fn burst_items(&self) -> usize {
        (self.map_items / 10).max(1)
    }

    /// The worker counts of the scaling curves: `1..=workers`, then `2 × workers`
    /// (oversubscribed). Above 8 CPUs the range is thinned to the powers of two and
    /// `workers` itself, so that a big machine does not run dozens of variants.
    pub fn worker_counts(&self) -> Vec<usize> {
        worker_counts(self.workers)
    }
}

/// The number of CPUs this process may run on (at least 1).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

fn worker_counts(cores: usize) -> Vec<usize> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaling_counts_end_oversubscribed() {
        assert_eq!(worker_counts(1), [1, 2]);
        assert_eq!(worker_counts(2), [1, 2, 4]);
        assert_eq!(worker_counts(4), [1, 2, 3, 4, 8]);
        assert_eq!(worker_counts(12), [1, 2, 4, 8, 12, 24]);
        assert_eq!(worker_counts(16), [1, 2, 4, 8, 16, 32]);
    }

    #[test]
    fn criterion_measures_the_default_sizes_and_smoke_tests_the_quick_ones() {
        let bench = Plan::for_criterion(RunMode::Bench);
        assert_eq!((bench.map_items, bench.round_trips), (1_000_000, 1000));
        assert_eq!(bench.task_sizes.len(), 3);
        let test = Plan::for_criterion(RunMode::Test);
        assert_eq!(test.map_items, Plan::new(Mode::Quick).map_items);
        assert!(test.tiny_tasks);
    }
}
