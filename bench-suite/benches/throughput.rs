//! Throughput: CPU-bound work spread over workers, against the same work done sequentially.
//!
//! The kernels are the report's (`taskpool_bench::calibrate`, defined like the Python
//! peers'): `primes` (task `i` counts the primes in the `i`-th slice of `len` numbers from
//! 1,000,000) and `mandel` (task `i` sums the escape counts of rows of a Mandelbrot image of
//! height 64). Each is calibrated on this machine so that one task takes 10 µs, 1 ms or
//! 100 ms, and a batch holds as many tasks as take 150 ms sequentially (at least 4 per
//! worker, at most 20,000); the calibration is printed when a group first runs. That makes
//! six groups named `<kernel>-<size>` (`primes-10us`, `primes-1ms`, `primes-100ms`,
//! `mandel-10us`, ...).
//!
//! One iteration runs a batch and checks the sum of its results. Variants
//! (`BenchmarkId::new(variant, workers)`): `sequential` (a plain loop, workers = 1), then
//! every backend of the report that can run the size (`threads`, `processes`, `rayon`
//! (`par_iter`), `procspawn` from 1 ms tasks), each at 1..=available_parallelism workers and
//! at twice that (oversubscribed; above 8 CPUs the powers of two and the CPU count). A pool
//! starts when its first benchmark runs and serves every group after it.
//!
//! After each group the bench prints, for every variant, the median time per batch (over the
//! very samples criterion analysed), the speedup over `sequential` and the parallel
//! efficiency: speedup / min(workers, CPUs), since oversubscribed workers share the CPUs.
//!
//! Run with `cargo bench -p taskpool-bench --bench throughput` (add `-- primes-1ms` to run one
//! group). `--no-default-features --features thread-pool` (or `process-pool`) measures one
//! backend against `sequential` and the peers. Under `cargo test --benches` every task size
//! is cut by 100× (floor 10 µs), batches are the report's quick ones and each variant runs
//! once.

mod common;

use std::time::Duration;

use criterion::Criterion;
use taskpool_bench::{Group, Plan, RunMode, Samples, Suite, cores};

fn main() {
    taskpool_bench::init();
    let run = RunMode::current();
    let suite = Suite::new(Plan::for_criterion(run));
    let mut c = Criterion::default().configure_from_args();
    let samples = Samples::default();
    for group in suite.throughput() {
        let name = group.name.clone();
        let variants = variants(&group);
        let last = group.settings.sample_size.unwrap_or(100);
        common::run(&mut c, vec![group], &samples, run);
        if run == RunMode::Bench {
            print_speedups(&name, &variants, last, &samples);
        }
    }
    c.final_summary();
}

/// The `(variant, workers)` of a group's cases that run, in order.
fn variants(group: &Group<'_>) -> Vec<(String, usize)> {
    group
        .cases
        .iter()
        .filter(|c| c.skipped.is_none())
        .filter_map(|c| Some((c.variant.clone(), c.parameter.parse().ok()?)))
        .collect()
}

/// Prints the median batch time, the speedup over `sequential` and the efficiency of every
/// variant that ran.
fn print_speedups(group: &str, variants: &[(String, usize)], last: usize, samples: &Samples) {
    let median = |variant: &str, workers: usize| {
        samples.median(&format!("{group}/{variant}/{workers}"), last)
    };
    let Some(sequential) = median("sequential", 1) else { return };
    println!("{group}: median per batch, speedup over sequential");
    println!(
        "  {:<11} {:>7} {:>12} {:>8} {:>11}",
        "variant", "workers", "median", "speedup", "efficiency"
    );
    for (variant, workers) in variants {
        let Some(time) = median(variant, *workers) else { continue };
        let speedup = sequential.as_secs_f64() / time.as_secs_f64();
        let efficiency = speedup / (*workers).min(cores()).max(1) as f64;
        println!(
            "  {variant:<11} {workers:>7} {:>12} {speedup:>7.2}x {:>10.0}%",
            fmt(time),
            efficiency * 100.0
        );
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
