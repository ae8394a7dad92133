//! The homework's table, measured: the six claims of the answer this project grew from
//! ("multiprocessing vs multithreading": mechanism, memory, the GIL, best for, overhead,
//! failure impact), each cell holding the claim and what this run measured of it, with its
//! number.
//!
//! The threads column is taskpool's thread backend, the processes column its process backend
//! (the first backend of each kind in `Column::ALL`); the GIL row, a Python matter, holds
//! Python's pools against them. Every figure comes from a row of the run (found by its key)
//! or from what the I/O-bound memory probes found a task shares with its caller; a figure the
//! run could not measure says why.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::format::{quantity, to_micros};
use super::{Cell, Column, Row, Section, Unit};
use crate::columns::Kind;
use crate::scenarios::{Fault, KernelKind, POOL_NEEDED, RowId, Shares, TaskSize, WaitKind, ideal};

/// The homework's table with this run's facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Homework {
    /// The column whose figures fill the threads column, if the build has one.
    pub threads: Option<Column>,
    /// The column whose figures fill the processes column, if the build has one.
    pub processes: Option<Column>,
    /// The six rows, in the homework's order.
    pub rows: Vec<Claim>,
}

/// One row of the homework's table: a feature, and what each side claims and measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// A stable identifier, for JSON readers: `mechanism`, `memory`, `gil`, `best_for`,
    /// `overhead` or `failure_impact`.
    pub key: String,
    /// The feature, as the homework names it.
    pub feature: String,
    /// Threads: the claim and the measured fact.
    pub threads: Fact,
    /// Processes: the claim and the measured fact.
    pub processes: Fact,
}

/// One cell: the homework's claim and what this run measured of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    /// What the homework says.
    pub claim: String,
    /// What the run measured, with its numbers, or which figure it could not measure and why.
    pub measured: String,
    /// Whether every figure of the cell was measured.
    pub complete: bool,
    /// The figures, by name (times in microseconds, memory in KiB, rates per second).
    pub values: BTreeMap<String, f64>,
}

/// A fact being put together: its sentences and figures, and whether any figure is missing.
#[derive(Default)]
struct Finding {
    parts: Vec<String>,
    values: BTreeMap<String, f64>,
    complete: bool,
}

impl Finding {
    fn new() -> Finding {
        Finding { complete: true, ..Finding::default() }
    }

    /// Adds the sentence `text` makes of the figure `name`, or says that `what` was not
    /// measured and why.
    fn figure(
        &mut self,
        (name, what): (&str, &str),
        got: Result<f64, String>,
        text: impl FnOnce(f64) -> String,
    ) {
        match got {
            Ok(value) => {
                self.values.insert(name.to_owned(), value);
                self.parts.push(text(value));
            }
            Err(why) => self.missing(what, &why),
        }
    }

    /// Says that `what` was not measured, and why.
    fn missing(&mut self, what: &str, why: &str) {
        self.complete = false;
        self.parts.push(format!("{what} not measured ({why})"));
    }

    /// Adds figures by name.
    fn values(&mut self, values: &[(&str, f64)]) {
        self.values.extend(values.iter().map(|(k, v)| ((*k).to_owned(), *v)));
    }

    fn fact(self, claim: &str) -> Fact {
        Fact {
            claim: claim.to_owned(),
            measured: self.parts.join("; "),
            complete: self.complete,
            values: self.values,
        }
    }
}

/// The first taskpool column of `kind`.
fn ours(kind: Kind) -> Option<Column> {
    Column::ALL.iter().copied().find(|c| c.is_ours() && c.kind() == kind)
}

/// The row with `key` in any of `sections`.
fn row<'a>(sections: &'a [Section], key: &str) -> Option<&'a Row> {
    sections.iter().flat_map(|s| &s.rows).find(|r| r.key == key)
}

/// The median of `column` in the row with `key` (times in microseconds), or why there is
/// none.
fn value(sections: &[Section], key: &str, column: Option<Column>) -> Result<f64, String> {
    let Some(column) = column else { return Err("no such backend in this build".into()) };
    let Some(row) = row(sections, key) else { return Err(format!("no {key} row in this run")) };
    match row.cells.get(&column) {
        Some(Cell::Value(summary)) => Ok(to_micros(summary.median, row.unit)),
        Some(Cell::Skipped(why)) => Err(why.clone()),
        Some(Cell::Outcome { .. }) => Err("an outcome, not a number".into()),
        None => Err("not measured".into()),
    }
}

/// How one row measures a side.
type Measure = for<'a> fn(Side<'a>) -> Finding;

/// The homework's rows: key, feature, the claims for threads and for processes, and how
/// each side is measured.
const ROWS: [(&str, &str, [&str; 2], Measure); 6] = [
    ("mechanism", "Mechanism", ["Uses multiple threads", "Uses multiple processes"], |s| {
        s.mechanism()
    }),
    ("memory", "Memory", ["Shared memory", "Separate memory for each process"], |s| s.memory()),
    (
        "gil",
        "GIL (Python)",
        ["Affected (can block threads)", "Not affected (runs in true parallel)"],
        |s| s.gil(),
    ),
    ("best_for", "Best for", ["I/O-bound tasks", "CPU-bound tasks"], |s| s.best_for()),
    ("overhead", "Overhead", ["Lower", "Higher"], |s| s.overhead()),
    (
        "failure_impact",
        "Failure impact",
        ["One thread can crash the whole process", "Isolated; other processes run fine"],
        |s| s.failure(),
    ),
];

/// Builds the table from a run's `sections` and the `shares` its memory probes found, for
/// pools of `workers` (the CPUs).
pub(crate) fn homework(
    sections: &[Section],
    shares: &BTreeMap<Column, Shares>,
    workers: usize,
) -> Homework {
    let (threads, processes) = (ours(Kind::Threads), ours(Kind::Processes));
    let side = |column: Option<Column>, python| Side {
        sections,
        column,
        python,
        shares: column.and_then(|c| shares.get(&c)),
        workers,
    };
    let sides = [side(threads, Column::PYTHON_THREADS), side(processes, Column::PYTHON_PROCESSES)];
    let rows = ROWS
        .iter()
        .map(|(key, feature, claims, measure)| {
            let [threads, processes] = [0, 1].map(|i| measure(sides[i]).fact(claims[i]));
            Claim { key: (*key).to_owned(), feature: (*feature).to_owned(), threads, processes }
        })
        .collect();
    Homework { threads, processes, rows }
}

/// One side of the table (threads or processes) and what the run measured.
#[derive(Clone, Copy)]
struct Side<'a> {
    sections: &'a [Section],
    /// The taskpool column of this side.
    column: Option<Column>,
    /// Python's pool of the same kind.
    python: Column,
    shares: Option<&'a Shares>,
    workers: usize,
}

/// The CPU-bound row the table quotes: primes at 1 ms tasks, which every mode and the
/// Python peers run.
fn speedup_key() -> String {
    RowId::Speedup(KernelKind::Primes, TaskSize::Millis1).key()
}

/// "es" unless there is exactly one ("process", "processes").
fn es(n: u64) -> &'static str {
    if n == 1 { "" } else { "es" }
}

/// A rate of tasks: "6.20 k tasks/s".
fn tasks_per_s(rate: f64) -> String {
    quantity(rate, Unit::PerSecond).replace("/s", " tasks/s")
}

impl Side<'_> {
    fn value(&self, key: &str, column: Column) -> Result<f64, String> {
        value(self.sections, key, Some(column))
    }

    fn ours(&self, key: &str) -> Result<f64, String> {
        value(self.sections, key, self.column)
    }

    fn shares(&self) -> Result<&Shares, String> {
        self.shares.ok_or_else(|| match self.column {
            None => "no such backend in this build".to_owned(),
            Some(column) => {
                match value(self.sections, &RowId::WaitMemory(POOL_NEEDED).key(), Some(column)) {
                    Err(why) => why,
                    Ok(_) => "the probe reported nothing".to_owned(),
                }
            }
        })
    }

    /// Where the tasks ran: the caller's process or others, and what the pool added.
    fn mechanism(self) -> Finding {
        let mut f = Finding::new();
        let s = match self.shares() {
            Ok(s) => s,
            Err(why) => {
                f.missing("where tasks ran", &why);
                return f;
            }
        };
        let place = if s.tasks_in_caller == s.tasks {
            "all in the caller's process".to_owned()
        } else if s.tasks_in_caller == 0 {
            format!("in {} other process{}, none in the caller's", s.task_pids, es(s.task_pids))
        } else {
            format!("in {} processes, {} of them in the caller's", s.task_pids, s.tasks_in_caller)
        };
        f.parts.push(format!(
            "{} tasks on a pool of {} ran {place}; the pool added {} thread{} and {} process{} \
             to the program",
            s.tasks,
            s.workers,
            s.threads_added,
            if s.threads_added == 1 { "" } else { "s" },
            s.processes_added,
            es(s.processes_added),
        ));
        f.values(&[
            ("task_pids", s.task_pids as f64),
            ("tasks_in_caller", s.tasks_in_caller as f64),
            ("threads_added", s.threads_added as f64),
            ("processes_added", s.processes_added as f64),
        ]);
        f
    }

    /// Whether a task's write reached the caller, and memory per worker.
    fn memory(self) -> Finding {
        let mut f = Finding::new();
        let s = match self.shares() {
            Ok(s) => s,
            Err(why) => {
                f.missing("what tasks share", &why);
                return f;
            }
        };
        let (seen, writes) = (s.writes_seen, s.writes);
        f.parts.push(if seen == writes {
            format!("the caller saw all {writes} writes its tasks made to a global")
        } else if seen == 0 {
            format!(
                "the caller saw none of the {writes} writes its tasks made to a global (each \
                 worker process changed its own copy)"
            )
        } else {
            format!("the caller saw {seen} of the {writes} writes its tasks made to a global")
        });
        f.parts.push(format!(
            "{} resident per worker in a pool of {POOL_NEEDED} (proportional set size: a page \
             shared by k processes counts 1/k)",
            quantity(s.kib_per_worker, Unit::KiB)
        ));
        f.values(&[
            ("writes", writes as f64),
            ("writes_seen", seen as f64),
            ("kib_per_worker", s.kib_per_worker),
        ]);
        f
    }

    /// Python's pool of this kind against ours on CPU-bound work.
    fn gil(self) -> Finding {
        let mut f = Finding::new();
        let (key, n) = (speedup_key(), self.workers);
        let python = format!("{}' speed-up", self.python.label());
        f.figure(("python_speedup", &python), self.value(&key, self.python), |x| {
            format!(
                "{}: {} on {} (CPU-bound: primes, 1 ms tasks)",
                self.python.label(),
                quantity(x, Unit::Factor),
                super::workers(n)
            )
        });
        f.figure(("speedup", "the speed-up in Rust"), self.ours(&key), |x| {
            let who = self.column.map_or("taskpool", Column::label);
            format!("{who} in Rust, no GIL: {}", quantity(x, Unit::Factor))
        });
        f
    }

    /// CPU-bound speed-up at N workers and I/O-bound throughput at 64, ours, and Python's
    /// throughput.
    fn best_for(self) -> Finding {
        let mut f = Finding::new();
        let (cpu, io) = (speedup_key(), RowId::Wait(WaitKind::Socket, POOL_NEEDED).key());
        let n = self.workers;
        f.figure(("speedup", "CPU-bound speed-up"), self.ours(&cpu), |x| {
            let (x, on) = (quantity(x, Unit::Factor), super::workers(n));
            format!("CPU-bound: {x} on {on} (primes, 1 ms tasks)")
        });
        let ideal = ideal(POOL_NEEDED);
        f.figure(("io_tasks_per_s", "I/O-bound throughput"), self.ours(&io), |x| {
            format!(
                "I/O-bound: {} on {POOL_NEEDED} workers ({:.0}% of the {} that 10 ms waits allow)",
                tasks_per_s(x),
                x / ideal * 100.0,
                tasks_per_s(ideal)
            )
        });
        let python = format!("{}' I/O-bound throughput", self.python.label());
        f.figure(("python_io_tasks_per_s", &python), self.value(&io, self.python), |x| {
            format!("{}: {}", self.python.label(), tasks_per_s(x))
        });
        f
    }

    /// Start-up of a pool of N and of 64, and the round trip of one task.
    fn overhead(self) -> Finding {
        let mut f = Finding::new();
        let n = self.workers;
        f.figure(("startup_us", "start-up"), self.ours(&RowId::Startup.key()), |us| {
            format!("start-up of a pool of {n}: {}", quantity(us, Unit::Micros))
        });
        let key = RowId::WaitStartup(POOL_NEEDED).key();
        f.figure(("startup_64_us", "start-up of 64"), self.ours(&key), |us| {
            format!("of {POOL_NEEDED}: {}", quantity(us, Unit::Micros))
        });
        f.figure(("round_trip_us", "round trip"), self.ours(&RowId::RoundTrip.key()), |us| {
            format!("one task's round trip: {}", quantity(us, Unit::Micros))
        });
        f
    }

    /// What a segfault in one task did.
    fn failure(self) -> Finding {
        let mut f = Finding::new();
        let key = RowId::Fault(Fault::Segfault).key();
        let cell = self.column.and_then(|c| row(self.sections, &key)?.cells.get(&c));
        match cell {
            Some(Cell::Outcome { text, next_after_ms, survived }) => {
                f.values(&[("survived", f64::from(u8::from(*survived)))]);
                let mut said = if *survived {
                    format!("a segfault in one task failed only that task: {text}")
                } else {
                    format!("a segfault in one task ended the program: {text}")
                };
                if let Some(next) = next_after_ms {
                    f.values(&[("next_task_after_ms", next.median)]);
                    said.push_str(&format!(
                        "; the next task was served {} later",
                        quantity(next.median, Unit::Millis)
                    ));
                }
                f.parts.push(said);
            }
            other => {
                let why = match other {
                    Some(Cell::Skipped(why)) => why.clone(),
                    _ => self.ours(&key).err().unwrap_or_else(|| "not measured".into()),
                };
                f.missing("the segfault", &why);
            }
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;

    fn fact<'a>(homework: &'a Homework, key: &str, processes: bool) -> &'a Fact {
        let claim = homework.rows.iter().find(|c| c.key == key).unwrap();
        if processes { &claim.processes } else { &claim.threads }
    }

    #[test]
    fn six_rows_in_the_homeworks_order_with_its_claims() {
        let homework = fixture::report().homework;
        let keys: Vec<_> = homework.rows.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["mechanism", "memory", "gil", "best_for", "overhead", "failure_impact"]);
        assert_eq!(homework.threads, Some(Column::TASKPOOL_THREADS));
        assert_eq!(homework.processes, Some(Column::TASKPOOL_PROCESSES));
        assert_eq!(fact(&homework, "memory", true).claim, "Separate memory for each process");
        assert!(homework.rows.iter().all(|c| c.threads.complete && c.processes.complete));
    }

    #[test]
    fn mechanism_and_memory_come_from_what_tasks_share() {
        let homework = fixture::report().homework;
        assert_eq!(
            fact(&homework, "mechanism", false).measured,
            "256 tasks on a pool of 64 ran all in the caller's process; the pool added 64 \
             threads and 0 processes to the program"
        );
        let processes = fact(&homework, "mechanism", true);
        assert_eq!(
            processes.measured,
            "256 tasks on a pool of 64 ran in 64 other processes, none in the caller's; the \
             pool added 2 threads and 64 processes to the program"
        );
        assert_eq!(processes.values["task_pids"], 64.0);
        assert_eq!(
            fact(&homework, "memory", false).measured,
            "the caller saw all 64 writes its tasks made to a global; 40.0 KiB resident per \
             worker in a pool of 64 (proportional set size: a page shared by k processes counts \
             1/k)"
        );
        let memory = fact(&homework, "memory", true);
        assert_eq!(
            memory.measured,
            "the caller saw none of the 64 writes its tasks made to a global (each worker \
             process changed its own copy); 2.83 MiB resident per worker in a pool of 64 \
             (proportional set size: a page shared by k processes counts 1/k)"
        );
        assert_eq!((memory.values["writes_seen"], memory.values["kib_per_worker"]), (0.0, 2900.0));
    }

    #[test]
    fn figures_come_from_the_rows_in_their_units() {
        let homework = fixture::report().homework;
        assert_eq!(
            fact(&homework, "gil", false).measured,
            "Python threads: 0.98× on 2 workers (CPU-bound: primes, 1 ms tasks); taskpool \
             threads in Rust, no GIL: 1.87×"
        );
        assert_eq!(
            fact(&homework, "best_for", true).measured,
            "CPU-bound: 1.79× on 2 workers (primes, 1 ms tasks); I/O-bound: 5.90 k tasks/s on \
             64 workers (92% of the 6.40 k tasks/s that 10 ms waits allow); Python processes: \
             4.50 k tasks/s"
        );
        // The fixture's start-up row is in milliseconds, the figures in microseconds.
        let overhead = fact(&homework, "overhead", false);
        assert_eq!(
            overhead.measured,
            "start-up of a pool of 2: 210 µs; of 64: 1.90 ms; one task's round trip: 3.10 µs"
        );
        assert_eq!(overhead.values["startup_us"], 210.0);
        assert_eq!(
            fact(&homework, "failure_impact", false).measured,
            "a segfault in one task ended the program: the whole program died (SIGSEGV)"
        );
        let failure = fact(&homework, "failure_impact", true);
        assert_eq!(
            failure.measured,
            "a segfault in one task failed only that task: task failed: Crashed(SIGSEGV); the \
             next task was served 38.0 ms later"
        );
        assert_eq!(failure.values["survived"], 1.0);
    }

    #[test]
    fn a_run_on_one_cpu_says_that_its_speed_up_cannot_show_parallelism() {
        let report = fixture::report();
        let homework = homework(&report.sections, &fixture::shares(), 1);
        for processes in [false, true] {
            let best_for = &fact(&homework, "best_for", processes).measured;
            let one = "on 1 worker and one CPU, where nothing runs in parallel (primes";
            assert!(best_for.starts_with("CPU-bound: ") && best_for.contains(one), "{best_for}");
            let gil = &fact(&homework, "gil", processes).measured;
            assert!(
                gil.contains("on 1 worker and one CPU, where nothing runs in parallel (CPU"),
                "{gil}"
            );
            assert!(!gil.contains("1 workers"), "{gil}");
        }
    }

    #[test]
    fn what_the_run_could_not_measure_says_why() {
        let mut report = fixture::report();
        let io = report.sections.iter_mut().find(|s| s.title == "I/O-bound work").unwrap();
        io.rows.retain(|r| r.key != "io_startup_64");
        let mut rows = report.sections.iter_mut().flat_map(|s| &mut s.rows);
        let speedup = rows.find(|r| r.key == "speedup_primes_1ms").unwrap();
        speedup.cells.insert(Column::PYTHON_THREADS, Cell::Skipped("python3 not found".into()));
        let mut shares = fixture::shares();
        shares.remove(&Column::TASKPOOL_PROCESSES);
        let homework = homework(&report.sections, &shares, 2);
        let gil = fact(&homework, "gil", false);
        assert!(!gil.complete);
        assert!(
            gil.measured.starts_with("Python threads' speed-up not measured (python3 not found); "),
            "{}",
            gil.measured
        );
        assert!(
            fact(&homework, "overhead", true)
                .measured
                .contains("; start-up of 64 not measured (no io_startup_64 row in this run); ")
        );
        let mechanism = fact(&homework, "mechanism", true);
        assert_eq!(
            mechanism.measured,
            "where tasks ran not measured (no io_memory_64 row in this run)"
        );
        assert!(mechanism.values.is_empty() && !mechanism.complete);
        assert!(fact(&homework, "mechanism", false).complete);
    }
}
