//! What the report measures, area by area. Each area returns finished report rows.
//!
//! Every quantity is measured for every column side by side in one run: the variants of a row
//! are interleaved (A, B, C, A, B, C, ...) and each is repeated, and a cell shows the median
//! over the repeats.

mod faults;
mod memory;
mod overhead;
mod python;
mod throughput;

use std::fmt::Display;
use std::time::{Duration, Instant};

use crate::probe::Probe;
use crate::report::{Better, Cell, Column, Row, Unit};
use crate::stats::{Summary, Variant};

pub use faults::rows as fault_rows;
pub use memory::rows as memory_rows;
pub use overhead::Overhead;
pub use python::{Python, PythonRun};
pub use throughput::{Kernel, Throughput};

/// How much to measure.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `quick`, `default` or `full`.
    pub mode: &'static str,
    /// Workers per pool: the CPUs available.
    pub workers: usize,
    /// Samples per variant.
    pub repeats: usize,
    /// Round trips per sample of a per-task latency.
    pub round_trips: usize,
    /// Items per `map` sample.
    pub map_items: usize,
    /// Tasks per sample of the in-flight throughput.
    pub in_flight: usize,
    /// Whether to measure 100 ms tasks too.
    pub long_tasks: bool,
}

impl Plan {
    /// The plan for a mode: `quick`, `default` or `full`.
    pub fn new(mode: &'static str) -> Plan {
        let workers = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let (repeats, round_trips, map_items) = match mode {
            "quick" => (3, 200, 200_000),
            "full" => (9, 3000, 2_000_000),
            _ => (5, 1000, 1_000_000),
        };
        Plan {
            mode,
            workers,
            repeats,
            round_trips,
            map_items,
            in_flight: 1000,
            long_tasks: mode == "full",
        }
    }

    /// The worker counts of the scaling curves: 1 to the CPU count, then 2× oversubscribed.
    pub fn worker_counts(&self) -> Vec<usize> {
        let mut counts: Vec<usize> = (1..=self.workers).collect();
        counts.push(2 * self.workers);
        counts
    }
}

/// Prints progress lines on stderr with the time since the run started.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
}

impl Progress {
    /// Starts the clock.
    pub fn new() -> Progress {
        Progress { started: Instant::now() }
    }

    /// Prints one progress line.
    pub fn say(&self, what: impl Display) {
        eprintln!("[{:>5.1}s] {what}", self.started.elapsed().as_secs_f64());
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

/// The probes the report runs in child processes, by name.
pub(crate) fn probes() -> Vec<Probe> {
    let mut all = faults::probes();
    all.extend(memory::probes());
    all
}

/// Microseconds in `d`.
pub(crate) fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Calls `f` `n` times and returns the median call time in microseconds.
pub(crate) fn median_call(
    n: usize,
    mut f: impl FnMut() -> Result<(), String>,
) -> Result<f64, String> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        f()?;
        times.push(micros(start.elapsed()));
    }
    Summary::of(times).map(|s| s.median).ok_or_else(|| "no samples".to_owned())
}

/// Calls `f` once and returns its time in microseconds.
pub(crate) fn timed(f: impl FnOnce() -> Result<(), String>) -> Result<f64, String> {
    let start = Instant::now();
    f()?;
    Ok(micros(start.elapsed()))
}

/// A variant of a row, named by its column.
pub(crate) fn variant<'a>(
    column: Column,
    measure: impl FnMut() -> Result<f64, String> + 'a,
) -> Variant<'a> {
    Variant::new(column.label(), measure)
}

/// Builds a row from interleaved results named by column labels; a result named otherwise
/// (the floor) becomes the row's reference.
pub(crate) fn row(
    key: &str,
    label: &str,
    unit: Unit,
    better: Better,
    results: Vec<(String, Result<Summary, String>)>,
) -> Row {
    let mut row = Row::new(key, label, unit, better);
    for (name, result) in results {
        match Column::ALL.into_iter().find(|c| c.label() == name) {
            Some(column) => {
                let cell = match result {
                    Ok(summary) => Cell::Value(summary),
                    Err(e) => Cell::Skipped(format!("failed: {e}")),
                };
                row.cells.insert(column, cell);
            }
            None => {
                if let Ok(summary) = result {
                    row.reference = Some((name, summary));
                }
            }
        }
    }
    row
}

/// Turns any displayable error into the `String` the variants return.
pub(crate) fn text(e: impl Display) -> String {
    e.to_string()
}

/// Marks `columns` of `row` as skipped for `reason`, where they have no cell yet.
pub(crate) fn skip(row: &mut Row, columns: &[Column], reason: &str) {
    for &c in columns {
        row.cells.entry(c).or_insert_with(|| Cell::Skipped(reason.to_owned()));
    }
}

/// Why a backend's column is empty when its feature is off.
pub(crate) const DISABLED: &str = "backend disabled by cargo features";

/// Marks the Python columns of `row` as skipped for `reason`, where they have no cell yet.
pub fn skip_python(row: &mut Row, reason: &str) {
    skip(row, &[Column::PythonThreads, Column::PythonProcesses], reason);
}
