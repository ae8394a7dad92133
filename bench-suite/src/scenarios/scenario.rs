//! A scenario that every backend runs the same way: one operation, timed per iteration,
//! at sizes chosen by the plan. The report turns it into a row (one size, interleaved
//! repeats), the criterion benches into a group (every size, one benchmark per backend).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use super::cells::{Target, choose, references};
use super::suite::{Case, Count, Group, Iteration, Settings};
use super::{Plan, RowId, micros};
use crate::backends::{PoolSpec, Pools, Running, Runs};
use crate::columns::{Backend, DISABLED, Op};
use crate::report::{Better, Cell, Reference, Row, Unit};
use crate::stats::{Summary, Variant, interleave};

/// One scenario: what one iteration does on a backend, its sizes and how it is repeated.
pub(crate) struct Scenario {
    /// The criterion group's name.
    pub(crate) name: &'static str,
    /// What a backend must be able to run.
    pub(crate) op: Op,
    /// The report's row at a size.
    pub(crate) row: fn(u64) -> RowId,
    /// The row's label at a size.
    pub(crate) label: fn(&Plan, u64) -> String,
    /// The unit of the report's values: per second (the size per second), or a time (of
    /// an iteration).
    pub(crate) unit: Unit,
    /// Which direction of them is better.
    pub(crate) better: Better,
    /// The sizes criterion measures (items, bytes, tasks, workers: as the scenario counts).
    pub(crate) sizes: fn(&Plan) -> Vec<u64>,
    /// The size the report's row shows.
    pub(crate) report_size: fn(&Plan) -> u64,
    /// A size as criterion's parameter.
    pub(crate) parameter: fn(u64) -> String,
    /// How many iterations make one report sample (their median); 1 for a single one.
    pub(crate) per_sample: fn(&Plan) -> usize,
    /// The report's samples per variant.
    pub(crate) repeats: fn(&Plan) -> usize,
    /// What criterion counts per iteration (the size, in items or bytes, or nothing).
    pub(crate) count: Count,
    /// criterion's samples at a size (`None`: its default).
    pub(crate) sample_size: fn(u64) -> Option<usize>,
    /// Prepares the iteration of one backend at one size.
    pub(crate) prepare: fn(&Setup<'_>) -> Result<Iteration, String>,
}

impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scenario").field("name", &self.name).field("op", &self.op).finish()
    }
}

/// What an iteration is prepared with.
pub(crate) struct Setup<'a> {
    /// The backend it runs on.
    pub(crate) backend: &'static Backend,
    /// The pools this group of scenarios shares.
    pub(crate) pools: &'a RefCell<Pools>,
    /// The plan.
    pub(crate) plan: &'a Plan,
    /// The size it runs at.
    pub(crate) size: u64,
}

impl Setup<'_> {
    /// The shared pool of the plan's worker count, started on first use.
    pub(crate) fn pool(&self) -> Result<Rc<dyn Running>, String> {
        self.pools.borrow_mut().get(self.backend, PoolSpec::workers(self.plan.workers))
    }
}

impl Scenario {
    /// The scenario's criterion group: every size, one benchmark per backend of this build
    /// that runs in this program and has the scenario's operation (those that cannot run a
    /// size say why).
    pub(crate) fn group<'s>(&'s self, plan: &'s Plan, pools: &'s RefCell<Pools>) -> Group<'s> {
        let mut cases = Vec::new();
        for size in (self.sizes)(plan) {
            let runnable =
                crate::columns::BACKENDS.iter().filter(|b| b.runs_here() && b.has(self.op));
            for backend in runnable {
                let setup = Setup { backend, pools, plan, size };
                let mut case =
                    Case::new(backend.id(), (self.parameter)(size), move || (self.prepare)(&setup));
                case.count = self.count.of(size);
                case.sample_size = (self.sample_size)(size);
                case.skipped = backend.can(self.op, size).err();
                cases.push(case);
            }
        }
        Group { name: self.name.to_owned(), settings: Settings::default(), cases }
    }

    /// The scenario's report row: every column at the report's size, plus the references
    /// that can run it, interleaved for `plan.repeats` samples after a warm-up round that is
    /// not kept (a kept pool's first run of a size grows its buffers to it). The cells of the columns the
    /// Python script measures are left for it.
    pub(crate) fn row(&self, plan: &Plan, pools: &RefCell<Pools>) -> (RowId, Row) {
        self.row_with(plan, pools, Vec::new())
    }

    /// The scenario's report row as [`Scenario::row`] makes it, with `extra` variants sampled
    /// in the same rounds as the columns, after them: a peer that runs elsewhere (the Python
    /// server) and fills its column's cell here, so that drift hits it as it hits the others.
    pub(crate) fn row_with<'v>(
        &self,
        plan: &Plan,
        pools: &RefCell<Pools>,
        extra: Vec<Variant<'v, Target>>,
    ) -> (RowId, Row) {
        self.row_sampled(plan, pools, (self.report_size)(plan), extra)
    }

    /// The scenario's report row at `size`, for a scenario whose report shows several sizes:
    /// as [`Scenario::row`] otherwise.
    pub(crate) fn row_at(&self, plan: &Plan, pools: &RefCell<Pools>, size: u64) -> (RowId, Row) {
        self.row_sampled(plan, pools, size, Vec::new())
    }

    /// The row at `size`, its columns and references sampled in rounds with `extra`.
    fn row_sampled<'v>(
        &self,
        plan: &Plan,
        pools: &RefCell<Pools>,
        size: u64,
        extra: Vec<Variant<'v, Target>>,
    ) -> (RowId, Row) {
        let id = (self.row)(size);
        let mut row = Row::new(&id.key(), &(self.label)(plan, size), self.unit, self.better);
        let per_sample = (self.per_sample)(plan);
        let rate = (self.unit == Unit::PerSecond).then_some(size);
        let mut variants: Vec<Variant<'v, Target>> = Vec::new();
        let mut prepare = |target: Target, backend: &'static Backend| {
            let setup = Setup { backend, pools, plan, size };
            (self.prepare)(&setup).map(|it| variants.push(sampled(target, it, per_sample, rate)))
        };
        for (column, chosen) in choose(self.op, size) {
            let cell = match chosen {
                Err(why) => Some(Cell::Skipped(why)),
                Ok(backend) => match backend.runs() {
                    Runs::Script(_) => None,
                    Runs::Disabled => Some(Cell::Skipped(DISABLED.to_owned())),
                    Runs::Here { .. } => prepare(Target::Column(column), backend)
                        .err()
                        .map(|e| Cell::Skipped(format!("failed: {e}"))),
                },
            };
            if let Some(cell) = cell {
                row.cells.insert(column, cell);
            }
        }
        for (name, backend) in references(self.op, size) {
            // A floor that cannot start leaves the row without its reference.
            let _ = prepare(Target::Reference(name), backend);
        }
        variants.extend(extra);
        fill(&mut row, interleave((self.repeats)(plan), true, variants));
        (id, row)
    }
}

/// A variant that samples `iteration`: one iteration, or the median of `per_sample`, as
/// microseconds, or as `size` per second when `rate` is given.
pub(crate) fn sampled(
    target: Target,
    mut iteration: Iteration,
    per_sample: usize,
    rate: Option<u64>,
) -> Variant<'static, Target> {
    Variant::new(target, move || {
        let times: Vec<f64> =
            (0..per_sample.max(1)).map(|_| iteration().map(micros)).collect::<Result<_, _>>()?;
        let median = Summary::of(times).ok_or("no samples")?.median;
        Ok(match rate {
            Some(size) => size as f64 / (median / 1e6),
            None => median,
        })
    })
}

/// Puts interleaved results into `row`: a column's result as its cell, a reference's among
/// the row's references (in the order of `columns.rs`).
pub(crate) fn fill(row: &mut Row, results: Vec<(Target, Result<Summary, String>)>) {
    for (target, result) in results {
        match target {
            Target::Column(column) => {
                let cell = match result {
                    Ok(summary) => Cell::Value(summary),
                    Err(e) => Cell::Skipped(format!("failed: {e}")),
                };
                row.cells.insert(column, cell);
            }
            Target::Reference(name) => {
                if let Ok(summary) = result {
                    row.references.push(Reference::new(name, summary));
                }
            }
        }
    }
}

/// Times one call of `f`.
pub(crate) fn timed(f: impl FnOnce() -> Result<(), String>) -> Result<Duration, String> {
    let start = std::time::Instant::now();
    f()?;
    Ok(start.elapsed())
}
