//! CPU-bound throughput: two kernels at calibrated task sizes, run sequentially and on every
//! column at each of the plan's worker counts (1 to N, then 2× oversubscribed); speed-up
//! and parallel efficiency.
//!
//! The kernels are defined exactly like the Python peers' (`python/peers.py`), so the same
//! arguments mean the same work everywhere:
//!
//! - `primes`: task `i` counts the primes in `start + i × len .. start + (i + 1) × len`;
//! - `mandel`: task `i` sums the escape counts of `rows` rows of a `width × 64` Mandelbrot
//!   image, starting at row `(first + i × rows) mod 64` (128 iterations at most).
//!
//! Calibration grows `len` (or `width`) until a task takes the size's target (10 µs, 1 ms,
//! 100 ms); a batch holds as many tasks as fill the plan's batch time sequentially, between
//! 4 per worker and 20,000. Every batch's sum is checked against the sequential one.
//!
//! Report: a sample is one batch, `min(repeats, 5)` samples per variant, interleaved; rows
//! at N workers, on the pools of N the overhead rows used before (a program keeps its pool:
//! what earlier work leaves in a pool shows here). One more row times the 1 ms primes batch
//! right after a burst of no-ops on the same pool (a `map` of [`Plan::burst_items`] items,
//! or tasks in flight on a backend without `map`), the burst untimed. Criterion: one group
//! per kernel and size (`primes-1ms`), 20 samples (10 at 100 ms), flat sampling.

use std::cell::{OnceCell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::cells::{Target, choose, references};
use super::scenario::sampled;
use super::suite::{Case, Group, Iteration, Settings};
use super::{Plan, Progress, RowId};
use crate::backends::{PoolSpec, Pools, Runs};
use crate::columns::{BACKENDS, Backend, DISABLED, Op};
use crate::report::{Better, Cell, Curve, Row, Unit, workers};
use crate::stats::{Summary, Variant, interleave};
use crate::tasks;

/// Which kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum KernelKind {
    /// Counting primes by trial division.
    Primes,
    /// Rows of a Mandelbrot image.
    Mandel,
}

impl KernelKind {
    /// Both kernels.
    pub(crate) const ALL: [KernelKind; 2] = [KernelKind::Primes, KernelKind::Mandel];

    /// `primes` or `mandel`, as the Python script names them.
    pub(crate) fn name(self) -> &'static str {
        match self {
            KernelKind::Primes => "primes",
            KernelKind::Mandel => "mandel",
        }
    }
}

/// The size of one kernel task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TaskSize {
    /// 10 µs: overhead dominates.
    Micros10,
    /// 1 ms: the common case.
    Millis1,
    /// 100 ms: overhead vanishes.
    Millis100,
}

impl TaskSize {
    /// The time one task takes.
    pub fn target(self) -> Duration {
        match self {
            TaskSize::Micros10 => Duration::from_micros(10),
            TaskSize::Millis1 => Duration::from_millis(1),
            TaskSize::Millis100 => Duration::from_millis(100),
        }
    }

    /// That time in microseconds, as capabilities count task sizes.
    pub fn micros(self) -> u64 {
        self.target().as_micros() as u64
    }

    /// "10 µs", "1 ms" or "100 ms".
    pub fn label(self) -> &'static str {
        match self {
            TaskSize::Micros10 => "10 µs",
            TaskSize::Millis1 => "1 ms",
            TaskSize::Millis100 => "100 ms",
        }
    }

    /// The label without spaces, for row keys: "10µs".
    pub(crate) fn key(self) -> String {
        self.label().replace(' ', "")
    }

    /// The label as criterion's group names have it: "10us".
    fn ascii(self) -> String {
        self.key().replace('µ', "u")
    }
}

/// One kernel at one task size, calibrated: what each task of a batch computes.
#[derive(Debug, Clone)]
pub(crate) struct Kernel {
    /// Which kernel.
    pub(crate) kind: KernelKind,
    /// The task size it was calibrated to.
    pub(crate) size: TaskSize,
    /// The arguments of task 0 (task `i` shifts the first by `i` times the second).
    pub(crate) args: Vec<u64>,
    /// Tasks per batch.
    pub(crate) tasks: usize,
    /// The measured time of one task, in microseconds.
    pub(crate) task_us: f64,
}

/// The kernel of the "after a burst" row (at 1 ms tasks).
pub(crate) const BURST_KERNEL: KernelKind = KernelKind::Primes;

/// Rows of the Mandelbrot image: a batch of tasks cycles through them.
const MANDEL_HEIGHT: u64 = 64;

impl Kernel {
    /// A label such as "primes, 1 ms tasks".
    pub(crate) fn label(&self) -> String {
        format!("{}, {} tasks", self.kind.name(), self.size.label())
    }

    /// The primes arguments of task `i`.
    pub(crate) fn primes_input(&self, i: usize) -> (u64, u64) {
        let (start, len) = (self.args[0], self.args[1]);
        (start + i as u64 * len, len)
    }

    /// The Mandelbrot arguments of task `i`.
    pub(crate) fn mandel_input(&self, i: usize) -> (u32, u32, u32, u32, u32) {
        let a: Vec<u32> = self.args.iter().map(|&v| u32::try_from(v).unwrap_or(u32::MAX)).collect();
        let (first, rows, width, height, iters) = (a[0], a[1], a[2], a[3], a[4]);
        let row = (u64::from(first) + i as u64 * u64::from(rows)) % u64::from(height);
        (u32::try_from(row).unwrap_or(0), rows, width, height, iters)
    }

    /// The primes arguments of every task of the batch.
    pub(crate) fn primes_inputs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        (0..self.tasks).map(|i| self.primes_input(i))
    }

    /// The Mandelbrot arguments of every task of the batch.
    pub(crate) fn mandel_inputs(&self) -> impl Iterator<Item = (u32, u32, u32, u32, u32)> + '_ {
        (0..self.tasks).map(|i| self.mandel_input(i))
    }

    /// Runs the whole batch on the calling thread; returns the sum of the results.
    pub(crate) fn sequential(&self) -> u64 {
        match self.kind {
            KernelKind::Primes => self.primes_inputs().map(|(s, l)| tasks::primes(s, l)).sum(),
            KernelKind::Mandel => {
                self.mandel_inputs().map(|(a, b, c, d, e)| tasks::mandel(a, b, c, d, e)).sum()
            }
        }
    }

    /// "primes, 1 ms tasks: arguments [..], N tasks per batch, T µs per task sequentially".
    pub(crate) fn describe(&self) -> String {
        format!(
            "{}: arguments {:?}, {} tasks per batch, {:.1} µs per task sequentially",
            self.label(),
            self.args,
            self.tasks,
            self.task_us
        )
    }
}

/// Times one call of `f` in microseconds.
fn time_us(f: impl FnOnce() -> u64) -> f64 {
    let start = Instant::now();
    std::hint::black_box(f());
    start.elapsed().as_secs_f64() * 1e6
}

/// Calibrates `kind` at `size` for `plan`: the smallest parameter whose task takes the
/// size's target (a hundredth of it, at least 10 µs, with `plan.tiny_tasks`), and the tasks
/// of a batch that fill `plan.batch`.
pub(crate) fn calibrate(kind: KernelKind, size: TaskSize, plan: &Plan) -> Kernel {
    let target = if plan.tiny_tasks {
        (size.target() / 100).max(Duration::from_micros(10))
    } else {
        size.target()
    };
    let target_us = target.as_secs_f64() * 1e6;
    let knob_at = if kind == KernelKind::Primes { 1 } else { 2 };
    let mut k = Kernel { kind, size, args: Vec::new(), tasks: 1, task_us: 0.0 };
    let mut knob = 8u64;
    loop {
        k.args = match kind {
            KernelKind::Primes => vec![1_000_000, knob],
            KernelKind::Mandel => vec![0, 1, knob, MANDEL_HEIGHT, 128],
        };
        // Average over every row: Mandelbrot rows differ in cost, and a batch cycles through
        // them (a batch holds at least a full sweep of rows for small tasks).
        let probe = Kernel { tasks: MANDEL_HEIGHT as usize, ..k.clone() };
        let us = time_us(|| probe.sequential()) / MANDEL_HEIGHT as f64;
        if us >= target_us || knob >= 1 << 40 {
            // Cost grows about linearly with the knob: step back to the target, then measure.
            knob = ((knob as f64 * target_us / us) as u64).max(1);
            k.args[knob_at] = knob;
            let probe = Kernel { tasks: MANDEL_HEIGHT as usize, ..k.clone() };
            k.task_us = time_us(|| probe.sequential()) / MANDEL_HEIGHT as f64;
            break;
        }
        knob = (knob as f64 * (target_us / us.max(0.01)).clamp(1.2, 4.0)) as u64;
    }
    let tasks = (plan.batch.as_secs_f64() * 1e6 / k.task_us) as usize;
    k.tasks = tasks.clamp(4 * plan.workers, 20_000);
    k
}

/// Every kernel at every task size of `plan`, calibrated.
pub(crate) fn kernels(plan: &Plan) -> Vec<Kernel> {
    KernelKind::ALL
        .into_iter()
        .flat_map(|kind| plan.task_sizes.iter().map(move |&size| calibrate(kind, size, plan)))
        .collect()
}

/// Parallel efficiency: the speed-up per CPU the workers could use (oversubscribed workers
/// share the CPUs).
pub(crate) fn efficiency(speedup: f64, workers: usize, cores: usize) -> f64 {
    speedup / workers.min(cores).max(1) as f64
}

/// The iteration of `backend` on `kernel` at `workers`: one batch, its sum checked; with
/// `burst`, right after a burst of no-ops on the same pool (untimed): a `map` of `burst.0`
/// items, or `burst.1` tasks in flight on a backend without `map`.
fn iteration(
    backend: &'static Backend,
    pools: &RefCell<Pools>,
    kernel: Rc<Kernel>,
    expected: Rc<OnceCell<u64>>,
    workers: usize,
    burst: Option<(usize, usize)>,
) -> Result<Iteration, String> {
    let pool = pools.borrow_mut().get(backend, PoolSpec::workers(workers))?;
    let maps = burst.is_some_and(|(items, _)| backend.can(Op::Map, items as u64).is_ok());
    if let Some((_, tasks)) = burst.filter(|_| !maps) {
        backend.can(Op::InFlight, tasks as u64)?;
    }
    Ok(Box::new(move || {
        let expected = *expected.get_or_init(|| kernel.sequential());
        match burst {
            Some((items, _)) if maps => pool.map_noop((0..items as u64).collect())?,
            Some((_, tasks)) => pool.in_flight(tasks)?,
            None => {}
        }
        let start = Instant::now();
        let sum = pool.kernel(&kernel)?;
        let elapsed = start.elapsed();
        if sum == expected { Ok(elapsed) } else { Err(format!("wrong sum {sum}, not {expected}")) }
    }))
}

/// The throughput rows and curves of the report.
#[derive(Debug, Default)]
pub(crate) struct Throughput {
    /// Speed-up rows (at N workers) and efficiency rows.
    pub(crate) rows: Vec<(RowId, Row)>,
    /// The scaling curves.
    pub(crate) curves: Vec<Curve>,
}

/// What a sample of the throughput rows is: a column's batch at a worker count, right after
/// a burst or not, or a reference's.
type Key = (Target, usize, bool);

/// Measures every kernel on every column at every worker count, on `pools` (kept from the
/// rows before, as a program keeps its pool).
/// The cells and curves of the columns the Python script measures are left for it.
pub(crate) fn run(
    plan: &Plan,
    progress: &Progress,
    kernels: &[Kernel],
    pools: &RefCell<Pools>,
) -> Throughput {
    let counts = plan.worker_counts();
    let mut out = Throughput::default();
    let repeats = plan.repeats.min(5);
    for kernel in kernels {
        progress.step(format!(
            "throughput: {} ({} tasks of {:.0} µs)",
            kernel.label(),
            kernel.tasks,
            kernel.task_us
        ));
        let size = kernel.size.micros();
        let shared = Rc::new(kernel.clone());
        let expected = Rc::new(OnceCell::new());
        let burst = (kernel.kind == BURST_KERNEL && kernel.size == TaskSize::Millis1)
            .then(|| (plan.burst_items(), plan.in_flight));
        let variant = |target, backend, workers, burst: Option<(usize, usize)>| {
            let (kernel, expected) = (Rc::clone(&shared), Rc::clone(&expected));
            let it = iteration(backend, pools, kernel, expected, workers, burst);
            it.map(|it| {
                sampled(target, it, 1, None).map_key(|target| (target, workers, burst.is_some()))
            })
        };
        let mut variants: Vec<Variant<'_, Key>> = Vec::new();
        let mut skipped = Vec::new();
        for (name, backend) in references(Op::Kernels, size) {
            variants.extend(variant(Target::Reference(name), backend, 1, None));
        }
        let chosen = choose(Op::Kernels, size);
        let runs = counts.iter().map(|&w| (w, None)).chain(burst.map(|n| (plan.workers, Some(n))));
        for (w, burst) in runs {
            for (column, chosen) in &chosen {
                let Ok(backend) = chosen else { continue };
                if backend.runs_here() {
                    match variant(Target::Column(*column), backend, w, burst) {
                        Ok(v) => variants.push(v),
                        Err(e) => skipped.push(((Target::Column(*column), w, burst.is_some()), e)),
                    }
                }
            }
        }
        let mut results = interleave(repeats, false, variants);
        results.extend(skipped.into_iter().map(|(key, e)| (key, Err(e))));
        out.add(plan, kernel, &chosen, results);
    }
    out
}

impl Throughput {
    /// Turns one kernel's results into curves and, at N workers, speed-up and efficiency rows.
    fn add(
        &mut self,
        plan: &Plan,
        kernel: &Kernel,
        chosen: &[(crate::columns::Column, Result<&'static Backend, String>)],
        results: Vec<(Key, Result<Summary, String>)>,
    ) {
        let Some(Ok(sequential)) = results
            .iter()
            .find(|((t, _, _), _)| matches!(t, Target::Reference(_)))
            .map(|(_, r)| r.clone())
        else {
            return;
        };
        let (bursts, results): (Vec<_>, Vec<_>) =
            results.into_iter().partition(|((_, _, burst), _)| *burst);
        let results: Vec<((Target, usize), Result<Summary, String>)> =
            results.into_iter().map(|((t, w, _), r)| ((t, w), r)).collect();
        let (speedup_id, efficiency_id) =
            (RowId::Speedup(kernel.kind, kernel.size), RowId::Efficiency(kernel.kind, kernel.size));
        let mut speedup_row = Row::new(
            &speedup_id.key(),
            &format!(
                "speed-up at {} ({}; sequential batch {:.0} ms)",
                workers(plan.workers),
                kernel.label(),
                sequential.median / 1e3
            ),
            Unit::Factor,
            Better::Higher,
        );
        let mut efficiency_row = Row::new(
            &efficiency_id.key(),
            &format!("parallel efficiency at {} ({})", workers(plan.workers), kernel.label()),
            Unit::Factor,
            Better::Higher,
        );
        for (column, backend) in chosen {
            let column = *column;
            let backend = match backend {
                Err(why) => {
                    speedup_row.cells.insert(column, Cell::Skipped(why.clone()));
                    efficiency_row.cells.insert(column, Cell::Skipped(why.clone()));
                    continue;
                }
                Ok(backend) => backend,
            };
            if let Runs::Script(_) = backend.runs() {
                continue;
            }
            if !backend.enabled() {
                speedup_row.cells.insert(column, Cell::Skipped(DISABLED.to_owned()));
                efficiency_row.cells.insert(column, Cell::Skipped(DISABLED.to_owned()));
                continue;
            }
            let mut points = Vec::new();
            for ((target, w), result) in &results {
                if *target != Target::Column(column) {
                    continue;
                }
                match result {
                    Ok(time) => {
                        let samples: Vec<f64> =
                            time.samples.iter().map(|t| sequential.median / t).collect();
                        let speedup = Summary::of(samples).unwrap_or_else(|| Summary::single(0.0));
                        points.push((*w, speedup.median));
                        if *w == plan.workers {
                            let eff = speedup
                                .samples
                                .iter()
                                .map(|&s| efficiency(s, *w, plan.workers))
                                .collect();
                            let eff = Summary::of(eff).unwrap_or_else(|| Summary::single(0.0));
                            efficiency_row.cells.insert(column, Cell::Value(eff));
                            speedup_row.cells.insert(column, Cell::Value(speedup));
                        }
                    }
                    Err(e) if *w == plan.workers => {
                        speedup_row.cells.insert(column, Cell::Skipped(format!("failed: {e}")));
                        efficiency_row.cells.insert(column, Cell::Skipped(format!("failed: {e}")));
                    }
                    Err(_) => {}
                }
            }
            points.sort_by_key(|p| p.0);
            if !points.is_empty() {
                self.curves.push(Curve { kernel: kernel.label(), column, points });
            }
        }
        self.rows.push((speedup_id, speedup_row));
        self.rows.push((efficiency_id, efficiency_row));
        if kernel.kind == BURST_KERNEL && kernel.size == TaskSize::Millis1 {
            let row = after_burst_row(plan, kernel, chosen, &sequential, bursts);
            self.rows.push((RowId::AfterBurst(kernel.kind, kernel.size), row));
        }
    }
}

/// The "after a burst" row: each column's speed-up on its kept pool of N right after a burst
/// of no-ops, against the same `sequential` batch.
fn after_burst_row(
    plan: &Plan,
    kernel: &Kernel,
    chosen: &[(crate::columns::Column, Result<&'static Backend, String>)],
    sequential: &Summary,
    results: Vec<(Key, Result<Summary, String>)>,
) -> Row {
    let id = RowId::AfterBurst(kernel.kind, kernel.size);
    let label = format!(
        "speed-up at {} right after a map of {} no-ops on the same pool ({}; \
         without map: {} no-ops in flight)",
        workers(plan.workers),
        plan.burst_items(),
        kernel.label(),
        plan.in_flight
    );
    let mut row = Row::new(&id.key(), &label, Unit::Factor, Better::Higher);
    for (column, backend) in chosen {
        match backend {
            Err(why) => {
                row.cells.insert(*column, Cell::Skipped(why.clone()));
            }
            Ok(backend) if !backend.enabled() => {
                row.cells.insert(*column, Cell::Skipped(DISABLED.to_owned()));
            }
            Ok(_) => {}
        }
    }
    for ((target, _, _), result) in results {
        let Target::Column(column) = target else { continue };
        let cell = match result {
            Ok(time) => {
                let samples = time.samples.iter().map(|t| sequential.median / t).collect();
                Cell::Value(Summary::of(samples).unwrap_or_else(|| Summary::single(0.0)))
            }
            Err(e) => Cell::Skipped(format!("failed: {e}")),
        };
        row.cells.insert(column, cell);
    }
    row
}

/// The criterion groups: one per kernel and task size of `plan`, each calibrated when its
/// first case runs (so listing the benchmarks, or filtering them, calibrates nothing else).
pub(crate) fn groups<'s>(plan: &'s Plan, pools: &'s RefCell<Pools>) -> Vec<Group<'s>> {
    let mut groups = Vec::new();
    for kind in KernelKind::ALL {
        for &size in &plan.task_sizes {
            let kernel: Rc<OnceCell<Rc<Kernel>>> = Rc::new(OnceCell::new());
            let expected: Rc<OnceCell<u64>> = Rc::new(OnceCell::new());
            let calibrated = move |kernel: &OnceCell<Rc<Kernel>>| {
                Rc::clone(kernel.get_or_init(|| {
                    let k = calibrate(kind, size, plan);
                    if !plan.tiny_tasks {
                        println!("{}", k.describe());
                    }
                    Rc::new(k)
                }))
            };
            let mut cases = Vec::new();
            let runnable = BACKENDS.iter().filter(|b| b.runs_here() && b.has(Op::Kernels));
            let mut add = |backend: &'static Backend, workers: usize| {
                let (kernel, expected) = (Rc::clone(&kernel), Rc::clone(&expected));
                let mut case = Case::new(backend.id(), workers.to_string(), move || {
                    let kernel = calibrated(&kernel);
                    iteration(backend, pools, kernel, Rc::clone(&expected), workers, None)
                });
                case.skipped = backend.can(Op::Kernels, size.micros()).err();
                cases.push(case);
            };
            for backend in runnable.clone().filter(|b| b.column().is_none()) {
                add(backend, 1);
            }
            for w in plan.worker_counts() {
                for backend in runnable.clone().filter(|b| b.column().is_some()) {
                    add(backend, w);
                }
            }
            let (sample_size, warm_up, measurement) = match size {
                TaskSize::Millis100 => (10, Duration::from_millis(100), Duration::from_secs(1)),
                _ => (20, Duration::from_millis(300), Duration::from_millis(1500)),
            };
            let settings = Settings {
                sample_size: Some(sample_size),
                warm_up: Some(warm_up),
                measurement: Some(measurement),
                flat: true,
            };
            let name = format!("{}-{}", kind.name(), size.ascii());
            groups.push(Group { name, settings, cases });
        }
    }
    groups
}
