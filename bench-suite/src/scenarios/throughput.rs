//! CPU-bound throughput: two kernels at calibrated task sizes, run sequentially and on every
//! column at 1 to N workers and 2× oversubscribed; speed-up and parallel efficiency.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::Serialize;

use super::{Plan, Progress, skip, text, timed};
use crate::report::{Better, Cell, Column, Curve, Row, Unit};
use crate::stats::{Summary, Variant, interleave};
use crate::tasks;
#[cfg(any(feature = "thread-pool", feature = "process-pool"))]
use taskpool_core::Pool;

/// One kernel at one task size: what each task computes.
#[derive(Debug, Clone, Serialize)]
pub struct Kernel {
    /// `primes` or `mandel`, as the Python script names them.
    pub kernel: &'static str,
    /// The task size it was calibrated to, such as "1 ms".
    pub size: &'static str,
    /// The arguments of task 0 (task `i` shifts the first by `i` times the second).
    pub args: Vec<u64>,
    /// Tasks per batch.
    pub tasks: usize,
    /// The measured time of one task, in microseconds.
    pub task_us: f64,
}

impl Kernel {
    /// A label such as "primes, 1 ms tasks".
    pub fn label(&self) -> String {
        format!("{}, {} tasks", self.kernel, self.size)
    }

    /// The primes arguments of task `i`.
    fn primes_input(&self, i: usize) -> (u64, u64) {
        let (start, len) = (self.args[0], self.args[1]);
        (start + i as u64 * len, len)
    }

    /// The Mandelbrot arguments of task `i`.
    fn mandel_input(&self, i: usize) -> (u32, u32, u32, u32, u32) {
        let a: Vec<u32> = self.args.iter().map(|&v| u32::try_from(v).unwrap_or(u32::MAX)).collect();
        let (first, rows, width, height, iters) = (a[0], a[1], a[2], a[3], a[4]);
        let row = (u64::from(first) + i as u64 * u64::from(rows)) % u64::from(height);
        (u32::try_from(row).unwrap_or(0), rows, width, height, iters)
    }

    /// Runs the whole batch on the calling thread; returns the sum of the results.
    fn sequential(&self) -> u64 {
        match self.kernel {
            "primes" => (0..self.tasks)
                .map(|i| self.primes_input(i))
                .map(|(s, l)| tasks::primes(s, l))
                .sum(),
            _ => (0..self.tasks)
                .map(|i| self.mandel_input(i))
                .map(|(a, b, c, d, e)| tasks::mandel(a, b, c, d, e))
                .sum(),
        }
    }

    /// Runs the batch on a pool; returns the sum of the results.
    #[cfg(any(feature = "thread-pool", feature = "process-pool"))]
    fn on_pool(&self, pool: &impl Pool) -> Result<u64, String> {
        let sum = match self.kernel {
            "primes" => pool.map(tasks::primes, (0..self.tasks).map(|i| self.primes_input(i))),
            _ => pool.map(tasks::mandel, (0..self.tasks).map(|i| self.mandel_input(i))),
        };
        sum.map(|v| v.into_iter().sum()).map_err(text)
    }

    fn on_rayon(&self, pool: &rayon::ThreadPool) -> u64 {
        pool.install(|| match self.kernel {
            "primes" => (0..self.tasks)
                .into_par_iter()
                .map(|i| self.primes_input(i))
                .map(|(s, l)| tasks::primes(s, l))
                .sum(),
            _ => (0..self.tasks)
                .into_par_iter()
                .map(|i| self.mandel_input(i))
                .map(|(a, b, c, d, e)| tasks::mandel(a, b, c, d, e))
                .sum(),
        })
    }

    fn on_procspawn(&self, pool: &procspawn::Pool) -> Result<u64, String> {
        let handles: Vec<procspawn::JoinHandle<u64>> = match self.kernel {
            "primes" => (0..self.tasks)
                .map(|i| pool.spawn(self.primes_input(i), |(s, l)| tasks::primes(s, l)))
                .collect(),
            _ => (0..self.tasks)
                .map(|i| {
                    pool.spawn(self.mandel_input(i), |(a, b, c, d, e)| tasks::mandel(a, b, c, d, e))
                })
                .collect(),
        };
        // procspawn deadlocks unless handles are joined in submission order.
        handles.into_iter().map(|h| h.join().map_err(text)).sum()
    }
}

/// Times one call of `f` in microseconds.
fn time_us(f: impl FnOnce() -> u64) -> f64 {
    let start = Instant::now();
    std::hint::black_box(f());
    start.elapsed().as_secs_f64() * 1e6
}

/// Rows of the Mandelbrot image: a batch of tasks cycles through them.
const MANDEL_HEIGHT: u64 = 64;

/// Calibrates the kernels: the smallest parameter whose task takes `target`.
fn calibrate(
    kernel: &'static str,
    size: &'static str,
    target: Duration,
    batch: Duration,
    workers: usize,
) -> Kernel {
    let target_us = target.as_secs_f64() * 1e6;
    let mut k = Kernel { kernel, size, args: Vec::new(), tasks: 1, task_us: 0.0 };
    let mut knob = 8u64;
    loop {
        k.args = match kernel {
            "primes" => vec![1_000_000, knob],
            _ => vec![0, 1, knob, MANDEL_HEIGHT, 128],
        };
        // Average over every row: Mandelbrot rows differ in cost, and a batch cycles through
        // them (a batch holds at least a full sweep of rows for small tasks).
        let probe = Kernel { tasks: MANDEL_HEIGHT as usize, ..k.clone() };
        let us = time_us(|| probe.sequential()) / MANDEL_HEIGHT as f64;
        if us >= target_us || knob >= 1 << 40 {
            // Cost grows about linearly with the knob: step back to the target, then measure.
            knob = ((knob as f64 * target_us / us) as u64).max(1);
            k.args[if kernel == "primes" { 1 } else { 2 }] = knob;
            let probe = Kernel { tasks: MANDEL_HEIGHT as usize, ..k.clone() };
            k.task_us = time_us(|| probe.sequential()) / MANDEL_HEIGHT as f64;
            break;
        }
        knob = (knob as f64 * (target_us / us.max(0.01)).clamp(1.2, 4.0)) as u64;
    }
    let tasks = (batch.as_secs_f64() * 1e6 / k.task_us) as usize;
    k.tasks = tasks.clamp(4 * workers, 20_000);
    k
}

/// The throughput measurements and their results.
#[derive(Debug, Default)]
pub struct Throughput {
    /// The calibrated kernels.
    pub kernels: Vec<Kernel>,
    /// Speed-up rows (at N workers) and efficiency rows.
    pub rows: Vec<Row>,
    /// The scaling curves.
    pub curves: Vec<Curve>,
}

impl Throughput {
    /// Calibrates the kernels for `plan`.
    pub fn calibrate(plan: &Plan) -> Vec<Kernel> {
        let batch = Duration::from_millis(if plan.mode == "quick" { 80 } else { 150 });
        let mut sizes =
            vec![("10 µs", Duration::from_micros(10)), ("1 ms", Duration::from_millis(1))];
        if plan.long_tasks {
            sizes.push(("100 ms", Duration::from_millis(100)));
        }
        let mut kernels = Vec::new();
        for kernel in ["primes", "mandel"] {
            for &(size, target) in &sizes {
                kernels.push(calibrate(kernel, size, target, batch, plan.workers));
            }
        }
        kernels
    }

    /// Measures every kernel on every column at every worker count.
    pub fn run(plan: &Plan, progress: &Progress, kernels: Vec<Kernel>) -> Throughput {
        let counts = plan.worker_counts();
        let pools = Pools::new(&counts);
        let mut out = Throughput { kernels: Vec::new(), rows: Vec::new(), curves: Vec::new() };
        let repeats = plan.repeats.min(5);
        for kernel in kernels {
            progress.say(format!(
                "throughput: {} ({} tasks of {:.0} µs)",
                kernel.label(),
                kernel.tasks,
                kernel.task_us
            ));
            let expected = kernel.sequential();
            let check =
                |sum: u64| if sum == expected { Ok(()) } else { Err(format!("wrong sum {sum}")) };
            let mut variants: Vec<Variant<'_>> =
                vec![Variant::new("sequential", || Ok(time_us(|| kernel.sequential())))];
            for (&w, p) in counts.iter().zip(&pools.by_count) {
                let k = &kernel;
                #[cfg(feature = "thread-pool")]
                if let Some(pool) = &p.threads {
                    variants.push(Variant::new(key(Column::TaskpoolThreads, w), move || {
                        timed(|| k.on_pool(pool).and_then(check))
                    }));
                }
                #[cfg(feature = "process-pool")]
                if let Some(pool) = &p.processes {
                    variants.push(Variant::new(key(Column::TaskpoolProcesses, w), move || {
                        timed(|| k.on_pool(pool).and_then(check))
                    }));
                }
                if let Some(pool) = &p.rayon {
                    variants.push(Variant::new(key(Column::Rayon, w), move || {
                        timed(|| check(k.on_rayon(pool)))
                    }));
                }
                if let (Some(pool), false) = (&p.procspawn, k.size == "10 µs") {
                    variants.push(Variant::new(key(Column::Procspawn, w), move || {
                        catch_unwind(AssertUnwindSafe(|| {
                            timed(|| k.on_procspawn(pool).and_then(check))
                        }))
                        .unwrap_or_else(|_| Err("procspawn failed".into()))
                    }));
                }
            }
            let results = interleave(repeats, variants);
            out.add(plan, &kernel, &counts, results);
            out.kernels.push(kernel);
        }
        out
    }

    /// Turns one kernel's results into curves and, at N workers, speed-up and efficiency rows.
    fn add(
        &mut self,
        plan: &Plan,
        kernel: &Kernel,
        counts: &[usize],
        results: Vec<(String, Result<Summary, String>)>,
    ) {
        let Some(Ok(sequential)) =
            results.iter().find(|(n, _)| n == "sequential").map(|(_, r)| r.clone())
        else {
            return;
        };
        let mut speedup_row = Row::new(
            &format!("speedup_{}_{}", kernel.kernel, kernel.size.replace(' ', "")),
            &format!(
                "speed-up at {} workers ({}; sequential batch {:.0} ms)",
                plan.workers,
                kernel.label(),
                sequential.median / 1e3
            ),
            Unit::Factor,
            Better::Higher,
        );
        let mut efficiency_row = Row::new(
            &format!("efficiency_{}_{}", kernel.kernel, kernel.size.replace(' ', "")),
            &format!("parallel efficiency at {} workers ({})", plan.workers, kernel.label()),
            Unit::Factor,
            Better::Higher,
        );
        for column in Column::ALL {
            let mut points = Vec::new();
            for &w in counts {
                let Some((_, result)) = results.iter().find(|(n, _)| *n == key(column, w)) else {
                    continue;
                };
                match result {
                    Ok(time) => {
                        let samples: Vec<f64> =
                            time.samples.iter().map(|t| sequential.median / t).collect();
                        let speedup = Summary::of(samples).unwrap_or_else(|| Summary::single(0.0));
                        points.push((w, speedup.median));
                        if w == plan.workers {
                            let eff = speedup.samples.iter().map(|s| s / w as f64).collect();
                            efficiency_row.cells.insert(
                                column,
                                Cell::Value(
                                    Summary::of(eff).unwrap_or_else(|| Summary::single(0.0)),
                                ),
                            );
                            speedup_row.cells.insert(column, Cell::Value(speedup));
                        }
                    }
                    Err(e) if w == plan.workers => {
                        speedup_row.cells.insert(column, Cell::Skipped(format!("failed: {e}")));
                    }
                    Err(_) => {}
                }
            }
            if !points.is_empty() {
                self.curves.push(Curve { kernel: kernel.label(), column, points });
            }
        }
        if kernel.size == "10 µs" {
            skip(&mut speedup_row, &[Column::Procspawn], "not run at 10 µs tasks");
        }
        self.rows.push(speedup_row);
        self.rows.push(efficiency_row);
    }
}

/// The variant name of `column` at `w` workers.
fn key(column: Column, w: usize) -> String {
    format!("{}@{w}", column.label())
}

/// One pool per column and worker count.
struct Pools {
    by_count: Vec<PoolSet>,
}

struct PoolSet {
    #[cfg(feature = "thread-pool")]
    threads: Option<taskpool_thread::ThreadPool>,
    #[cfg(feature = "process-pool")]
    processes: Option<taskpool_process::ProcessPool>,
    rayon: Option<rayon::ThreadPool>,
    procspawn: Option<procspawn::Pool>,
}

impl Pools {
    fn new(counts: &[usize]) -> Pools {
        let by_count = counts
            .iter()
            .map(|&w| PoolSet {
                #[cfg(feature = "thread-pool")]
                threads: taskpool_thread::ThreadPool::new(w).ok(),
                #[cfg(feature = "process-pool")]
                processes: taskpool_process::ProcessPool::new(w).ok(),
                rayon: rayon::ThreadPoolBuilder::new().num_threads(w).build().ok(),
                procspawn: catch_unwind(|| {
                    procspawn::Pool::builder(w).env("RUST_BACKTRACE", "0").build().ok()
                })
                .ok()
                .flatten(),
            })
            .collect();
        Pools { by_count }
    }
}
