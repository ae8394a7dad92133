//! Throughput: CPU-bound work spread over workers, against the same work done sequentially.
//!
//! Two kernels from `taskpool_bench::tasks`, each at three task sizes, make six groups named
//! `<kernel>-<size>` (`primes-10us`, `primes-1ms`, `primes-100ms`, `mandel-10us`, ...):
//!
//! - `primes`: `primes(1_000_000, len)` counts primes by trial division;
//! - `mandel`: `mandel(0, side, side, side, 256)` renders a `side × side` Mandelbrot image.
//!
//! The parameter (`len`, `side`) is chosen at start-up by timing the kernel on this machine:
//! it grows until one call takes about 10 µs, 1 ms or 100 ms, and the choice is printed. Every
//! task of a batch gets the same arguments, so all tasks are the same size.
//!
//! One iteration runs a batch of tasks and collects the results in order: 100 tasks per
//! worker of the largest pool for 10 µs tasks, 16 for 1 ms, 1 for 100 ms (with 2 CPUs the
//! largest pool has 4 workers: 400, 64 and 4 tasks). Variants (`BenchmarkId::new(variant,
//! workers)`): `sequential` (a plain loop, workers = 1), `threads` (`ThreadPool::map`),
//! `processes` (`ProcessPool::map`) and `rayon` (`par_iter().map().collect()` in a rayon pool
//! of that size), each at 1..=available_parallelism workers and at twice that
//! (oversubscribed). A pool starts when its benchmark first runs (criterion's warm-up) and
//! serves every sample after it.
//!
//! After each group the bench prints, for every variant, the median time per batch (over the
//! very samples criterion analysed), the speedup over `sequential` and the parallel
//! efficiency: speedup / min(workers, CPUs), since oversubscribed workers share the CPUs.
//!
//! Run with `cargo bench -p taskpool-bench --bench throughput` (add `-- primes-1ms` to run one
//! group). `--no-default-features --features thread-pool` (or `process-pool`) measures one
//! backend against `sequential` and `rayon`. Under `cargo test --benches` every task size is
//! cut by 100× (floor 10 µs) and each variant runs once.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode};
use rayon::prelude::*;
use taskpool_bench::fixtures::{self, RunMode, Samples};
use taskpool_bench::tasks;
#[cfg(any(feature = "thread-pool", feature = "process-pool"))]
use taskpool_core::Pool;

/// The first number `primes` tests.
const PRIMES_START: u64 = 1_000_000;
/// The iteration limit of `mandel`.
const MANDEL_ITER: u32 = 256;

fn main() {
    taskpool_bench::init();
    let mut c = Criterion::default().configure_from_args();
    let mode = RunMode::current();
    let samples = Samples::default();
    for kernel in [Kernel::Primes, Kernel::Mandel] {
        for size in SIZES {
            let load = match mode {
                RunMode::List => Load::placeholder(kernel, size),
                RunMode::Bench => Load::calibrate(kernel, size, size.target),
                RunMode::Test => Load::calibrate(
                    kernel,
                    size,
                    (size.target / 100).max(Duration::from_micros(10)),
                ),
            };
            if mode == RunMode::Bench {
                println!("{}", load.describe());
            }
            bench_load(&mut c, &load, &samples);
            if mode == RunMode::Bench {
                print_speedups(&load, &samples);
            }
        }
    }
    c.final_summary();
}

/// A task size: its name, its target duration and how the group is sampled.
#[derive(Debug, Clone, Copy)]
struct Size {
    label: &'static str,
    target: Duration,
    /// Tasks per batch, per worker of the largest pool.
    tasks_per_worker: usize,
    sample_size: usize,
    warm_up: Duration,
    measurement: Duration,
}

const SIZES: [Size; 3] = [
    Size {
        label: "10us",
        target: Duration::from_micros(10),
        tasks_per_worker: 100,
        sample_size: 20,
        warm_up: Duration::from_millis(300),
        measurement: Duration::from_millis(1500),
    },
    Size {
        label: "1ms",
        target: Duration::from_millis(1),
        tasks_per_worker: 16,
        sample_size: 20,
        warm_up: Duration::from_millis(300),
        measurement: Duration::from_millis(1500),
    },
    Size {
        label: "100ms",
        target: Duration::from_millis(100),
        tasks_per_worker: 1,
        sample_size: 10,
        warm_up: Duration::from_millis(100),
        measurement: Duration::from_secs(1),
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Primes,
    Mandel,
}

impl Kernel {
    fn name(self) -> &'static str {
        match self {
            Kernel::Primes => "primes",
            Kernel::Mandel => "mandel",
        }
    }

    /// How the cost grows with the parameter: linearly in `len`, as the square of `side`.
    fn exponent(self) -> f64 {
        match self {
            Kernel::Primes => 1.0,
            Kernel::Mandel => 2.0,
        }
    }

    /// The arguments of one task at parameter `p`.
    fn args(self, p: u64) -> Args {
        match self {
            Kernel::Primes => Args::Primes(PRIMES_START, p),
            Kernel::Mandel => Args::Mandel(u32::try_from(p).expect("mandel side fits u32")),
        }
    }

    fn call(self, p: u64) -> u64 {
        match self.args(p) {
            Args::Primes(start, len) => tasks::primes(black_box(start), black_box(len)),
            Args::Mandel(side) => mandel_image(black_box(side)),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Args {
    Primes(u64, u64),
    Mandel(u32),
}

/// `tasks::mandel` over a whole `side × side` image, as a one-argument task: a pool task takes
/// at most four arguments and `tasks::mandel` has five.
fn mandel_image(side: u32) -> u64 {
    tasks::mandel(0, side, side, side, MANDEL_ITER)
}

/// One group's work: a kernel at a calibrated parameter, and the batch size.
#[derive(Debug, Clone)]
struct Load {
    kernel: Kernel,
    size: Size,
    param: u64,
    /// One call's measured time at `param`.
    one_call: Duration,
    tasks: usize,
}

impl Load {
    fn group(&self) -> String {
        format!("{}-{}", self.kernel.name(), self.size.label)
    }

    /// A load that is never run (criterion only lists the benchmarks).
    fn placeholder(kernel: Kernel, size: Size) -> Load {
        Load { kernel, size, param: 1, one_call: Duration::ZERO, tasks: 1 }
    }

    /// Grows the kernel's parameter until one call takes about `target`.
    fn calibrate(kernel: Kernel, size: Size, target: Duration) -> Load {
        let time = |p: u64| {
            (0..3)
                .map(|_| {
                    let start = Instant::now();
                    black_box(kernel.call(p));
                    start.elapsed()
                })
                .min()
                .unwrap_or_default()
        };
        let mut param = 1u64;
        let mut took = time(param);
        while took < target / 2 {
            param *= 2;
            took = time(param);
        }
        // The cost is about proportional to param^exponent: two scaling steps settle it.
        for _ in 0..2 {
            let ratio = target.as_secs_f64() / took.as_secs_f64().max(1e-9);
            param = ((param as f64) * ratio.powf(1.0 / kernel.exponent())).round().max(1.0) as u64;
            took = time(param);
        }
        let largest_pool = fixtures::scaling_workers().last().copied().unwrap_or(1);
        Load { kernel, size, param, one_call: took, tasks: size.tasks_per_worker * largest_pool }
    }

    fn describe(&self) -> String {
        let call = match self.kernel.args(self.param) {
            Args::Primes(start, len) => format!("primes({start}, {len})"),
            Args::Mandel(side) => format!("mandel(0, {side}, {side}, {side}, {MANDEL_ITER})"),
        };
        format!(
            "{}: {} tasks of {call}, one call measured at {:?} (target {}); {} CPUs",
            self.group(),
            self.tasks,
            self.one_call,
            self.size.label,
            fixtures::cores(),
        )
    }
}

fn bench_load(c: &mut Criterion, load: &Load, samples: &Samples) {
    let group_name = load.group();
    let mut group = c.benchmark_group(&group_name);
    group
        .sample_size(load.size.sample_size)
        .warm_up_time(load.size.warm_up)
        .measurement_time(load.size.measurement)
        .sampling_mode(SamplingMode::Flat);

    let (kernel, param, tasks) = (load.kernel, load.param, load.tasks);
    let expected: u64 = kernel.call(param) * tasks as u64;
    let record = |variant: &str, workers: usize, iters: u64, run: &mut dyn FnMut() -> u64| {
        let start = Instant::now();
        for _ in 0..iters {
            assert_eq!(run(), expected, "{group_name}/{variant}/{workers}: wrong total");
        }
        samples.record(&format!("{group_name}/{variant}/{workers}"), iters, start.elapsed())
    };

    group.bench_with_input(BenchmarkId::new("sequential", 1), &1, |b, &w| {
        b.iter_custom(|iters| {
            record("sequential", w, iters, &mut || {
                (0..tasks).map(|_| kernel.call(param)).collect::<Vec<_>>().iter().sum()
            })
        });
    });
    for workers in fixtures::scaling_workers() {
        // Each pool starts on its benchmark's first call and serves all of its samples.
        #[cfg(feature = "thread-pool")]
        {
            let mut pool = None;
            group.bench_with_input(BenchmarkId::new("threads", workers), &workers, |b, &w| {
                let pool = pool.get_or_insert_with(|| {
                    taskpool_thread::ThreadPool::new(w).expect("starting a thread pool")
                });
                b.iter_custom(|iters| {
                    record("threads", w, iters, &mut || pool_batch(pool, kernel, param, tasks))
                });
            });
        }
        #[cfg(feature = "process-pool")]
        {
            let mut pool = None;
            group.bench_with_input(BenchmarkId::new("processes", workers), &workers, |b, &w| {
                let pool = pool.get_or_insert_with(|| {
                    taskpool_process::ProcessPool::new(w).expect("starting a process pool")
                });
                b.iter_custom(|iters| {
                    record("processes", w, iters, &mut || pool_batch(pool, kernel, param, tasks))
                });
            });
        }
        let mut pool = None;
        let args = vec![param; tasks];
        group.bench_with_input(BenchmarkId::new("rayon", workers), &workers, |b, &w| {
            let pool = pool.get_or_insert_with(|| {
                rayon::ThreadPoolBuilder::new().num_threads(w).build().expect("rayon pool")
            });
            b.iter_custom(|iters| {
                record("rayon", w, iters, &mut || {
                    pool.install(|| {
                        args.par_iter().map(|&p| kernel.call(p)).collect::<Vec<_>>().iter().sum()
                    })
                })
            });
        });
    }
    group.finish();
}

/// Runs one batch through a pool's `map` and sums the results.
#[cfg(any(feature = "thread-pool", feature = "process-pool"))]
fn pool_batch(pool: &impl Pool, kernel: Kernel, param: u64, tasks: usize) -> u64 {
    let results = match kernel.args(param) {
        Args::Primes(start, len) => pool.map(tasks::primes, vec![(start, len); tasks]),
        Args::Mandel(side) => pool.map(mandel_image, vec![side; tasks]),
    };
    results.expect("a kernel task failed").iter().sum()
}

/// Prints the median batch time, the speedup over `sequential` and the efficiency of every
/// variant that ran.
fn print_speedups(load: &Load, samples: &Samples) {
    let group = load.group();
    let last = load.size.sample_size;
    let Some(sequential) = samples.median(&format!("{group}/sequential/1"), last) else {
        return;
    };
    let cores = fixtures::cores();
    println!("{group}: median per batch of {} tasks, speedup over sequential", load.tasks);
    println!(
        "  {:<11} {:>7} {:>12} {:>8} {:>11}",
        "variant", "workers", "median", "speedup", "efficiency"
    );
    println!("  {:<11} {:>7} {:>12} {:>7.2}x {:>11}", "sequential", 1, fmt(sequential), 1.0, "-");
    for variant in ["threads", "processes", "rayon"] {
        for workers in fixtures::scaling_workers() {
            let Some(median) = samples.median(&format!("{group}/{variant}/{workers}"), last) else {
                continue;
            };
            let speedup = sequential.as_secs_f64() / median.as_secs_f64();
            let efficiency = speedup / workers.min(cores) as f64;
            println!(
                "  {variant:<11} {workers:>7} {:>12} {speedup:>7.2}x {:>10.0}%",
                fmt(median),
                efficiency * 100.0
            );
        }
    }
}

fn fmt(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.2} µs", s * 1e6)
    }
}
