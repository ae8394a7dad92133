//! The comparison report: what was measured, and how it is written out (Markdown, JSON, HTML,
//! SVG).
//!
//! A [`Report`] opens with the [`Homework`] table (the six claims of the answer this project
//! grew from, each with this run's facts), then a list of [`Section`]s of [`Row`]s; each row
//! has one [`Cell`] per [`Column`] (a pool implementation). Scaling curves for the CPU-bound
//! kernels feed the scaling chart.

#[cfg(test)]
mod fixture;
mod format;
mod homework;
mod html;
mod markdown;
mod readme;
mod svg;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::columns::Column;
use crate::stats::Summary;

pub use homework::{Claim, Fact, Homework};
pub use html::html;
pub use markdown::markdown;
pub use readme::{Cited, README_BEGIN, README_END, Sentence, Source, readme_numbers, sentences};

pub(crate) use homework::homework;
pub use svg::{overhead_chart, scaling_chart};

/// "1 worker" or "N workers"; on one worker, the speed-up rows' caveat: one worker has no
/// other to run beside it, so a speed-up there measures the pool's overhead, not parallelism.
pub(crate) fn workers(n: usize) -> String {
    if n == 1 {
        "1 worker and one CPU, where nothing runs in parallel".to_owned()
    } else {
        format!("{n} workers")
    }
}

/// The unit of a measured value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unit {
    /// Microseconds.
    Micros,
    /// Milliseconds.
    Millis,
    /// Items or tasks per second.
    PerSecond,
    /// Kibibytes.
    KiB,
    /// A plain factor (a speed-up, an efficiency).
    Factor,
}

/// Which direction of a value is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Better {
    /// Smaller is better (times, memory).
    Lower,
    /// Larger is better (throughput, speed-up).
    Higher,
}

/// What one column shows in one row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Cell {
    /// A measured quantity (median and spread over repeats).
    Value(Summary),
    /// A measured outcome in words, such as "task failed with SIGSEGV", with the time until
    /// the next task was served when there is one (in milliseconds).
    Outcome {
        /// What happened.
        text: String,
        /// Milliseconds from the failure to the next task's result, if one was served.
        next_after_ms: Option<Summary>,
        /// Whether the program and the pool survived.
        survived: bool,
    },
    /// Not measured, and why (a peer not installed, a backend disabled by features).
    Skipped(String),
}

/// One row of the table: one quantity across the columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// A stable identifier, for JSON readers.
    pub key: String,
    /// What the row measures, as shown in the table.
    pub label: String,
    /// The unit of the values.
    pub unit: Unit,
    /// Which direction is better.
    pub better: Better,
    /// The cells, by column; a missing column is shown as "—".
    pub cells: BTreeMap<Column, Cell>,
    /// Reference values that are not peers, such as the blocking and the spinning raw
    /// ping-pong floors, each with its name.
    pub references: Vec<Reference>,
    /// Every way a column ran this row's operation, when it ran several (its cell shows the
    /// best): a peer's two reasonable idioms, or its default and its documented advice.
    pub idioms: Vec<Idiom>,
}

/// One way a column ran a row's operation, when it ran several.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Idiom {
    /// The column.
    pub column: Column,
    /// The call, as its users write it.
    pub how: String,
    /// What it measured.
    pub value: Summary,
    /// Whether the column's cell shows this one (the best of the column's idioms, unless the
    /// cell was measured apart from them, as the `map` row's Python processes cell is).
    pub shown: bool,
}

/// A row's reference: a measured value that is not a pool, such as a floor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// Its name, such as "blocking floor".
    pub name: String,
    /// What was measured.
    pub value: Summary,
}

impl Reference {
    /// A reference called `name` that measured `value`.
    pub fn new(name: &str, value: Summary) -> Reference {
        Reference { name: name.to_owned(), value }
    }
}

impl Row {
    /// An empty row.
    pub fn new(key: &str, label: &str, unit: Unit, better: Better) -> Row {
        Row {
            key: key.to_owned(),
            label: label.to_owned(),
            unit,
            better,
            cells: BTreeMap::new(),
            references: Vec::new(),
            idioms: Vec::new(),
        }
    }

    /// The best peer of `column`'s kind (a thread pool is compared with thread pools, a
    /// process pool with process pools) with a measured value, and its median.
    pub fn best_peer(&self, column: Column) -> Option<(Column, f64)> {
        let kind = column.is_processes();
        let peers = self.cells.iter().filter(|(c, _)| !c.is_ours() && c.is_processes() == kind);
        let values = peers.filter_map(|(c, cell)| match cell {
            Cell::Value(s) => Some((*c, s.median)),
            _ => None,
        });
        match self.better {
            Better::Lower => values.min_by(|a, b| a.1.total_cmp(&b.1)),
            Better::Higher => values.max_by(|a, b| a.1.total_cmp(&b.1)),
        }
    }

    /// How many times better `column` is than the best peer of its kind: above 1 means
    /// better, whatever the row's direction. `None` without two measured values.
    pub fn advantage(&self, column: Column) -> Option<f64> {
        let Some(Cell::Value(ours)) = self.cells.get(&column) else { return None };
        let (_, best) = self.best_peer(column)?;
        if ours.median <= 0.0 || best <= 0.0 {
            return None;
        }
        Some(match self.better {
            Better::Lower => best / ours.median,
            Better::Higher => ours.median / best,
        })
    }
}

/// A titled group of rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    /// The section's heading.
    pub title: String,
    /// Its rows.
    pub rows: Vec<Row>,
}

/// Speed-up against worker count for one kernel on one column: one line of the scaling chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// The kernel and task size, such as "primes, 1 ms tasks".
    pub kernel: String,
    /// The pool implementation.
    pub column: Column,
    /// `(workers, speed-up over sequential)`, in increasing worker order.
    pub points: Vec<(usize, f64)>,
}

/// How one column (or reference) was run: the versions that ran it and the calls each
/// operation made, as its expert users write them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Method {
    /// The column's label, or the reference's name.
    pub name: String,
    /// The column, unless this is a reference.
    pub column: Option<Column>,
    /// What ran it, with versions, such as `rayon 1.12.0` or `Python 3.11.7`.
    pub versions: Vec<String>,
    /// One line per group of operations: `round trip, payload: ...`.
    pub how: Vec<String>,
}

/// Where and how the report was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPUs available to this process.
    pub cpus: usize,
    /// The machine's online CPUs, when more than [`Machine::cpus`] (a run pinned to some of
    /// them, with `taskset` or a container's CPU set): what [`Machine::busy_before`] counts
    /// over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_cpus: Option<usize>,
    /// The CPU model, from /proc/cpuinfo.
    pub cpu_model: String,
    /// The kernel release.
    pub kernel: String,
    /// The 1-minute load average before the run: the machine's other load (the report warns
    /// when it is above half a CPU per CPU).
    pub load_before: f64,
    /// The 1-minute load average after the run, which counts the run's own work.
    pub load_after: f64,
    /// How many CPUs' worth of work the machine did in the second before the run (every
    /// process on every CPU, from `/proc/stat`): the other work the benchmarks compete with, measured now
    /// rather than averaged over the last minute (which, right after `cargo` built the
    /// suite, counts the build). The report warns when it is above half a CPU per CPU of
    /// the machine;
    /// `None` where it could not be read (the warning then goes by `load_before`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy_before: Option<f64>,
    /// When the run started (UTC, RFC 3339).
    pub date: String,
    /// The Python peers' interpreter, if one ran.
    pub python: Option<String>,
}

/// A whole comparison run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The machine and its load.
    pub machine: Machine,
    /// `quick`, `default` or `full`.
    pub mode: String,
    /// How long the run took, in seconds.
    pub elapsed_s: f64,
    /// The homework's six claims, threads against processes, with this run's facts: the
    /// report's first table.
    pub homework: Homework,
    /// The table, section by section.
    pub sections: Vec<Section>,
    /// The scaling curves of the CPU-bound kernels.
    pub scaling: Vec<Curve>,
    /// How each column and reference was run.
    pub methods: Vec<Method>,
    /// Remarks printed under the table (what a cell means, what was skipped).
    pub notes: Vec<String>,
}
