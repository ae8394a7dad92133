//! Python's pools as peers: runs `python/peers.py` with the system `python3` on the same
//! kernels and task sizes, and reads its JSON into report cells.
//!
//! Columns: "Python threads" is `ThreadPoolExecutor`, "Python processes" is
//! `multiprocessing.Pool`; the script also measures `ProcessPoolExecutor`, which appears in
//! the notes where it differs.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use super::{Kernel, Plan};
use crate::report::{Cell, Column, Row};
use crate::stats::Summary;

/// The script, built into the binary so the report runs from anywhere.
const SCRIPT: &str = include_str!("../../python/peers.py");

/// The Python peers: whether an interpreter is there, and its results once run.
#[derive(Debug, Clone)]
pub struct Python {
    /// The interpreter's version line, or why there is none.
    pub interpreter: Result<String, String>,
}

/// The results of one run of the script.
#[derive(Debug, Clone)]
pub struct PythonRun {
    json: Value,
}

impl Python {
    /// Looks for `python3` on the `PATH`.
    pub fn detect() -> Python {
        let found = Command::new("python3").arg("--version").output();
        let interpreter = match found {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                Ok(if text.is_empty() {
                    String::from_utf8_lossy(&out.stderr).trim().to_owned()
                } else {
                    text
                })
            }
            _ => Err("python3 not found".to_owned()),
        };
        Python { interpreter }
    }

    /// Runs the script on the plan's sizes and `kernels` (the 1 ms ones: Python runs the same
    /// work about 50 times slower). Progress lines go to stderr as they come.
    ///
    /// # Errors
    ///
    /// No interpreter, or the script failed or printed no JSON.
    pub fn run(&self, plan: &Plan, kernels: &[Kernel]) -> Result<PythonRun, String> {
        self.interpreter.as_ref().map_err(Clone::clone)?;
        let quick = plan.mode == "quick";
        let cpu: Vec<Value> = kernels
            .iter()
            .filter(|k| k.size == "1 ms" && (!quick || k.kernel == "primes"))
            .map(|k| {
                let tasks = (4 * plan.workers).max(if quick { 8 } else { 16 });
                json!({"kernel": k.kernel, "args": k.args, "tasks": tasks, "label": k.label()})
            })
            .collect();
        let spec = json!({
            "workers": plan.workers,
            "repeats": plan.repeats.min(if quick { 2 } else { 3 }),
            "quick": quick,
            "scenarios": ["startup", "round_trip", "in_flight", "map_noop", "payload", "cpu", "memory", "faults"],
            "in_flight_tasks": plan.in_flight,
            "map_items": if quick { 20_000 } else { 100_000 },
            "payload_bytes": [1 << 20],
            "round_trips": if quick { 100 } else { 300 },
            "payload_round_trips": if quick { 10 } else { 30 },
            "cpu": cpu,
            "fault_timeout_s": 1.0,
            "fault_alloc_mib": 512,
        });
        let path = script_path()?;
        let mut child = Command::new("python3")
            .arg(&path)
            .args(["--spec", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run python3: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(spec.to_string().as_bytes()).map_err(|e| e.to_string())?;
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let json: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            format!("the Python script printed no JSON ({e}); exit status {}", out.status)
        })?;
        Ok(PythonRun { json })
    }
}

/// Where the script is: the source tree's copy when it exists, otherwise the built-in copy
/// written to a temporary file.
fn script_path() -> Result<PathBuf, String> {
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python").join("peers.py");
    if source.exists() {
        return Ok(source);
    }
    let copy = std::env::temp_dir().join(format!("taskpool-peers-{}.py", std::process::id()));
    std::fs::write(&copy, SCRIPT).map_err(|e| format!("cannot write the Python script: {e}"))?;
    Ok(copy)
}

/// The script's name for a column's pool.
fn variant(column: Column) -> &'static str {
    match column {
        Column::PythonThreads => "thread_executor",
        _ => "mp_pool",
    }
}

/// A summary from the script's `{median_<u>, min_<u>, max_<u>, samples_<u>}` object.
fn summary(v: &Value, unit: &str, scale: f64) -> Option<Summary> {
    let samples = v.get(format!("samples_{unit}"))?.as_array()?;
    let samples: Vec<f64> = samples.iter().filter_map(Value::as_f64).map(|x| x * scale).collect();
    Summary::of(samples)
}

impl PythonRun {
    /// The interpreter's version.
    pub fn version(&self) -> Option<String> {
        let v = self.json.get("python")?.as_str()?;
        Some(v.split_whitespace().next().unwrap_or(v).to_owned())
    }

    /// Errors the script reported, as text.
    pub fn errors(&self) -> Vec<String> {
        let Some(list) = self.json.get("errors").and_then(Value::as_array) else {
            return Vec::new();
        };
        list.iter()
            .map(|e| {
                let scenario = e.get("scenario").and_then(Value::as_str).unwrap_or("?");
                let error = e.get("error").and_then(Value::as_str).unwrap_or("?");
                format!("Python {scenario}: {error}")
            })
            .collect()
    }

    fn result(&self, scenario: &str, column: Column) -> Option<&Value> {
        self.json.get("results")?.get(scenario)?.get(variant(column))
    }

    /// Fills both Python columns of the overhead rows, by row key.
    pub fn fill_overhead(&self, row: &mut Row) {
        for column in [Column::PythonThreads, Column::PythonProcesses] {
            let cell = match row.key.as_str() {
                "startup" => self.result("startup", column).and_then(|v| summary(v, "us", 1.0)),
                "round_trip" => {
                    self.result("round_trip", column).and_then(|v| summary(v, "us", 1.0))
                }
                "in_flight" => {
                    self.result("in_flight", column).and_then(|v| summary(v, "tasks_per_s", 1.0))
                }
                "map" => self.result("map_noop", column).and_then(|v| {
                    let runs = v.get("runs")?;
                    let run =
                        runs.get("chunksize_mp_default").or_else(|| runs.get("chunksize_1"))?;
                    summary(run, "items_per_s", 1.0)
                }),
                "payload_1mib" => self
                    .result("payload", column)
                    .and_then(|v| summary(v.get("sizes")?.get((1 << 20).to_string())?, "us", 1.0)),
                _ => continue,
            };
            row.cells.insert(
                column,
                cell.map_or_else(
                    || Cell::Skipped("not reported by the script".into()),
                    Cell::Value,
                ),
            );
        }
    }

    /// Fills both Python columns of a speed-up or efficiency row for `kernel`.
    pub fn fill_scaling(&self, row: &mut Row, kernel: &Kernel, workers: usize, efficiency: bool) {
        for column in [Column::PythonThreads, Column::PythonProcesses] {
            let found = self.result("cpu", column).and_then(|v| {
                let point = v.get(kernel.label())?.get("by_workers")?.get(workers.to_string())?;
                let key = if efficiency { "efficiency" } else { "speedup_vs_sequential" };
                point.get(key)?.as_f64()
            });
            let cell = match found {
                Some(x) => Cell::Value(Summary::single(x)),
                None => Cell::Skipped("not run by the script".into()),
            };
            row.cells.insert(column, cell);
        }
    }

    /// The scaling curve of `kernel` for a Python column, as `(workers, speed-up)` points.
    pub fn curve(&self, column: Column, kernel: &Kernel) -> Vec<(usize, f64)> {
        let Some(by) = self
            .result("cpu", column)
            .and_then(|v| v.get(kernel.label())?.get("by_workers")?.as_object().cloned())
        else {
            return Vec::new();
        };
        let mut points: Vec<(usize, f64)> = by
            .iter()
            .filter_map(|(w, p)| Some((w.parse().ok()?, p.get("speedup_vs_sequential")?.as_f64()?)))
            .collect();
        points.sort_by_key(|p| p.0);
        points
    }

    /// The memory per worker of a Python column, in KiB: a process's RSS, or for threads the
    /// parent's growth divided by the workers.
    pub fn memory(&self, column: Column, workers: usize) -> Option<Summary> {
        let v = self.result("memory", column)?;
        match column {
            Column::PythonThreads => {
                let total = summary(v.get("parent_rss_increase_kB")?, "kB", 1.0)?;
                Summary::of(total.samples.iter().map(|x| x / workers as f64).collect())
            }
            _ => summary(v.get("per_worker_rss_kB")?, "kB", 1.0),
        }
    }

    /// The outcome of a fault in a Python column, as a report cell. `fault` is one of
    /// `exception`, `segfault`, `abort`, `hang`, `memory`.
    pub fn fault(&self, column: Column, fault: &str) -> Option<Cell> {
        let v = self.result("faults", column)?.get(fault)?;
        let faulty = v.get("faulty")?;
        let kind = faulty.get("kind").and_then(Value::as_str).unwrap_or("");
        let outcome = faulty.get("outcome").and_then(Value::as_str).unwrap_or("").to_owned();
        let next_ok =
            v.get("next_task").and_then(|n| n.get("ok")).and_then(Value::as_bool).unwrap_or(false);
        let recovery = v.get("recovery_s").and_then(Value::as_f64);
        let mut text = match kind {
            "program_died" => outcome.clone(),
            "hung" => format!("task {outcome} (the pool never reports it)"),
            "broken_pool" => {
                "pool broken: the task and every pending one failed; later submits are refused"
                    .to_owned()
            }
            "raised" => format!("task failed: {outcome}"),
            "returned" => format!("no isolation: {outcome}"),
            _ => outcome.clone(),
        };
        if kind != "program_died" && !next_ok {
            text.push_str("; the next task was not served");
        }
        Some(Cell::Outcome {
            text,
            next_after_ms: recovery.filter(|_| next_ok).map(|s| Summary::single(s * 1e3)),
            survived: kind != "program_died" && next_ok,
        })
    }

    /// What `ProcessPoolExecutor` did on a fault, for the notes.
    pub fn executor_fault(&self, fault: &str) -> Option<String> {
        let v = self.json.get("results")?.get("faults")?.get("process_executor")?.get(fault)?;
        v.get("summary").and_then(Value::as_str).map(str::to_owned)
    }
}
