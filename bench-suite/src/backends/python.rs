//! Python's pools as peers: runs `python/peers.py` with the system `python3` on the same
//! kernels and task sizes, and parses its JSON into typed results, then into report cells
//! named by row and column.
//!
//! Columns: "Python threads" is `ThreadPoolExecutor`, "Python processes" is
//! `multiprocessing.Pool`; the script also measures `ProcessPoolExecutor` and
//! `multiprocessing.pool.ThreadPool`, which fill a column's `map` cell when they map faster
//! (every idiom measured is kept in the row) and appear in the notes where they differ. A
//! cell the row already holds is kept, and the script's idioms of that column are then not
//! the one shown: the `map` and `imap` rows' Python processes cells are `Pool.map` and
//! `Pool.imap` sampled in the rows' own rounds by the script's serving mode
//! (`python_serve.rs`), and the script's run then leaves those calls out.
//!
//! The script reports its progress on stderr (`peers: progress FRACTION TEXT`): it is handed
//! to the caller's progress bar, and any other line the script prints goes to this
//! program's stderr.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use super::{Runs, ScriptPool};
use crate::columns::{BACKENDS, Column, Op};
use crate::report::{Cell, Curve, Idiom, Row};
use crate::scenarios::{
    BOMB_CAP_MIB, BURST_KERNEL, Channel, Fault, Kernel, KernelKind, LARGE_PAYLOAD_BYTES,
    MEMORY_LIMIT, Mode, PAYLOAD_BYTES, POOL_NEEDED, Plan, RowId, ScriptIo, TaskSize, WORKER_COUNTS,
    WaitKind, script_io, script_messages,
};
use crate::stats::Summary;

/// The script, built into the binary so the report runs from anywhere.
const SCRIPT: &str = include_str!("../../python/peers.py");

/// The Python peers of a run: their results, or why there are none.
#[derive(Debug)]
pub(crate) enum Script {
    /// The script ran.
    Ran(Box<PythonRun>),
    /// It did not: `python3` is missing or the script failed.
    Absent(String),
}

impl Script {
    /// Looks for `python3` and runs the script for `plan` on the 1 ms `kernels` (Python runs
    /// the same work about 50 times slower), leaving out `Pool.map` of no-ops if `served`
    /// holds [`Op::Map`] (the `map` row sampled it already), and `Pool.imap` if it holds
    /// [`Op::Imap`]. `progress` hears how far the script got (a fraction of its run, and what
    /// it does), as it goes.
    pub(crate) fn run(
        plan: &Plan,
        kernels: &[Kernel],
        served: &[Op],
        progress: impl Fn(f64, &str),
    ) -> Script {
        let version = match interpreter() {
            Ok(version) => version,
            Err(reason) => {
                progress(1.0, &format!("skipped: {reason}"));
                return Script::Absent(reason);
            }
        };
        progress(0.0, &version);
        match run_script(plan, kernels, served, &progress) {
            Ok(run) => Script::Ran(Box::new(run)),
            Err(e) => Script::Absent(format!("the Python script failed: {e}")),
        }
    }

    /// The cell of `pool` in `row`.
    pub(crate) fn cell(&self, row: RowId, pool: ScriptPool) -> Cell {
        match self {
            Script::Absent(reason) => Cell::Skipped(reason.clone()),
            Script::Ran(run) => run.cells.get(&(row, pool)).cloned().unwrap_or_else(|| {
                let why = match row {
                    RowId::Speedup(_, size) | RowId::Efficiency(_, size)
                        if size != TaskSize::Millis1 =>
                    {
                        "not measured by the Python script"
                    }
                    RowId::Speedup(kind, size) | RowId::Efficiency(kind, size)
                        if !run.kernels.values().any(|k| *k == (kind, size)) =>
                    {
                        "not run by the script"
                    }
                    RowId::InFlightKept => "not measured by the Python script",
                    _ => "not reported by the script",
                };
                Cell::Skipped(why.to_owned())
            }),
        }
    }

    /// `row` with the script's cells: those of the columns the script measures that the row
    /// left for it, and the idioms behind them where a column measured several. A column
    /// whose cell the row holds already keeps it, and none of the script's idioms of that
    /// column is the one shown.
    pub(crate) fn fill(&self, id: RowId, mut row: Row) -> Row {
        let mut kept = Vec::new();
        for (column, pool) in shown() {
            match row.cells.entry(column) {
                Entry::Occupied(_) => kept.push(column),
                Entry::Vacant(cell) => {
                    cell.insert(self.cell(id, pool));
                }
            }
        }
        if let Script::Ran(run) = self {
            let idioms = run.idioms.get(&id).into_iter().flatten().cloned();
            row.idioms.extend(idioms.map(|idiom| Idiom {
                shown: idiom.shown && !kept.contains(&idiom.column),
                ..idiom
            }));
        }
        row
    }

    /// The scaling curves the script measured on `kernels`, one per kernel and column.
    pub(crate) fn curves(&self, kernels: &[Kernel]) -> Vec<Curve> {
        let Script::Ran(run) = self else { return Vec::new() };
        let mut curves = Vec::new();
        for kernel in kernels {
            for (column, pool) in shown() {
                let Some(points) = run.curves.get(&(kernel.kind, kernel.size, pool)) else {
                    continue;
                };
                let points = points.clone();
                curves.push(Curve { kernel: kernel.label(), column, points });
            }
        }
        curves
    }

    /// The interpreter's version, if the script ran.
    pub(crate) fn version(&self) -> Option<String> {
        match self {
            Script::Ran(run) => run.version.clone(),
            Script::Absent(_) => None,
        }
    }

    /// What the report prints as the Python columns' versions: the interpreter and the start
    /// method of its process pools.
    pub(crate) fn versions(&self) -> Vec<String> {
        let Script::Ran(run) = self else { return Vec::new() };
        let mut versions: Vec<String> = run.version.iter().map(|v| format!("Python {v}")).collect();
        if let Some(method) = &run.start_method {
            versions.push(format!("multiprocessing start method {method}"));
        }
        versions
    }

    /// Remarks for the report's notes on how the script measured what it did: the start
    /// method of its process pools, and its CPU-bound batches (of `kernels`, for `plan`).
    pub(crate) fn method_notes(&self, plan: &Plan, kernels: &[Kernel]) -> Vec<String> {
        let Script::Ran(run) = self else { return Vec::new() };
        let mut notes = Vec::new();
        if let Some(method) = &run.start_method {
            notes.push(format!(
                "The Python processes column runs multiprocessing with this Python's default \
                 start method, {method}. Python 3.14 changed the default on Linux from fork to \
                 forkserver, whose workers are forked from a server process started apart \
                 rather than from the program, and share none of its memory: under 3.14 the \
                 same script measures forkserver, and its start-up and memory rows differ."
            ));
        }
        let spec = spec(plan, kernels, &[]);
        if let Some(first) = spec.cpu.first() {
            let mandel = spec.cpu.iter().find_map(|c| c.step.map(|step| (step, &c.args)));
            let spread = match mandel {
                Some((step, args)) => format!(
                    "; the mandel tasks start every {step} rows of the image's {}, so that the \
                     batch covers the whole image, as the Rust columns' batch does",
                    args.get(3).copied().unwrap_or(0)
                ),
                None => String::new(),
            };
            notes.push(format!(
                "The Python CPU-bound cells run batches of {} tasks with the Rust tasks' \
                 arguments (the interpreter takes far longer over each), and their speed-up is \
                 over Python's own sequential run of that batch{spread}.",
                first.tasks
            ));
        }
        notes
    }

    /// Remarks for the report's notes: `ProcessPoolExecutor` on crashes, and the script's
    /// errors.
    pub(crate) fn notes(&self) -> Vec<String> {
        match self {
            Script::Ran(run) => run.notes.clone(),
            Script::Absent(_) => Vec::new(),
        }
    }
}

/// The results of one run of the script, as report cells.
#[derive(Debug, Default)]
pub(crate) struct PythonRun {
    /// The interpreter's version, such as `3.11.7`.
    version: Option<String>,
    /// `multiprocessing`'s start method (`fork`, `forkserver`, `spawn`).
    start_method: Option<String>,
    /// The cells, by row and pool.
    cells: BTreeMap<(RowId, ScriptPool), Cell>,
    /// Every idiom measured, by row, where a column measured several.
    idioms: BTreeMap<RowId, Vec<Idiom>>,
    /// The scaling curves, by kernel and pool.
    curves: BTreeMap<(KernelKind, TaskSize, ScriptPool), Vec<(usize, f64)>>,
    /// The kernels the script was given, by the label it reports them under.
    kernels: BTreeMap<String, (KernelKind, TaskSize)>,
    /// Remarks for the notes.
    notes: Vec<String>,
}

/// The interpreter's version line, or why there is none.
pub(crate) fn interpreter() -> Result<String, String> {
    version_of(std::ffi::OsStr::new("python3"))
}

/// What `program --version` prints, or why it printed nothing usable, naming the program as
/// `python3`: not found, or found but failing, with what it said.
fn version_of(program: &std::ffi::OsStr) -> Result<String, String> {
    match Command::new(program).arg("--version").output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            Ok(if text.is_empty() {
                String::from_utf8_lossy(&out.stderr).trim().to_owned()
            } else {
                text
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("python3 not found".to_owned()),
        Err(e) => Err(format!("python3 cannot start: {e}")),
        Ok(out) => {
            let said = String::from_utf8_lossy(&out.stderr);
            let said = said.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            let said = if said.is_empty() { String::new() } else { format!(": {said}") };
            Err(format!("python3 --version failed ({}){said}", out.status))
        }
    }
}

/// What the script is asked to measure (see the script's docstring).
#[derive(Debug, Serialize)]
struct Spec {
    workers: usize,
    repeats: usize,
    quick: bool,
    scenarios: [&'static str; 13],
    in_flight_tasks: usize,
    /// As many as the report's `map` row, so that the two columns map alike.
    map_items: usize,
    /// As many as the report's `map` row takes (`Plan::map_repeats`).
    map_repeats: usize,
    /// The `map_noop` runs the script leaves out: `pool_map` when the `map` row sampled it.
    map_skip: Vec<&'static str>,
    /// As many as the report's `imap` row.
    imap_items: usize,
    /// The `imap_noop` runs the script leaves out: `pool_imap` when the `imap` row sampled it.
    imap_skip: Vec<&'static str>,
    burst_items: usize,
    cpu_variants: [&'static str; 2],
    payload_bytes: [u64; 2],
    round_trips: usize,
    payload_round_trips: usize,
    cpu: Vec<CpuSpec>,
    fault_timeout_s: f64,
    /// The memory bomb's safety cap: the Rust bomb's.
    fault_alloc_mib: u64,
    /// The address-space limit the bomb meets: the Rust columns' (the thread variant's
    /// interpreter, or each worker of a process pool, through its `initializer`).
    fault_memory_limit_mib: u64,
    io: ScriptIo,
    messages: u64,
}

/// One kernel for the script.
#[derive(Debug, Serialize)]
struct CpuSpec {
    kernel: &'static str,
    args: Vec<u64>,
    tasks: usize,
    label: String,
    /// Whether to time it also right after a burst of no-ops on the kept pool of N.
    after_burst: bool,
    /// Mandelbrot only: the rows from one task's first row to the next one's (see
    /// [`mandel_step`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<u64>,
}

/// The rows between the first rows of successive Mandelbrot tasks of a batch of `tasks`:
/// enough that the batch covers the whole image, as the Rust columns' batch (which cycles
/// through every row) does. A row near the middle of the image costs tens of times one at an
/// edge, so a batch of the first rows alone would be a different workload, and one whose last
/// task costs several times the others.
fn mandel_step(args: &[u64], tasks: usize) -> u64 {
    let (rows, height) = (args.get(1).copied().unwrap_or(1), args.get(3).copied().unwrap_or(1));
    (height / tasks.max(1) as u64).max(rows)
}

/// The script's key of its `map_noop` run of `Pool.map` with default chunks.
const POOL_MAP_RUN: &str = "pool_map";

/// The script's key of its `imap_noop` run of `Pool.imap` with its default chunk size.
const POOL_IMAP_RUN: &str = "pool_imap";

/// The samples the script takes of each of its rows but `map`: fewer than the Rust columns take,
/// since each of its runs lasts longer.
pub(crate) fn script_repeats(plan: &Plan) -> usize {
    plan.repeats.min(if plan.mode == Mode::Quick { 2 } else { 3 })
}

/// The tasks of each of the script's CPU-bound batches: fewer than the Rust columns', since
/// the interpreter takes far longer over each.
fn script_tasks(plan: &Plan) -> usize {
    (4 * plan.workers).max(if plan.mode == Mode::Quick { 8 } else { 16 })
}

/// The spec for `plan` and `kernels`: the 1 ms kernels (only primes when quick), and
/// `Pool.map` and `Pool.imap` of no-ops unless `served` holds their operation.
fn spec(plan: &Plan, kernels: &[Kernel], served: &[Op]) -> Spec {
    let quick = plan.mode == Mode::Quick;
    let tasks = script_tasks(plan);
    let cpu = kernels
        .iter()
        .filter(|k| k.size == TaskSize::Millis1 && (!quick || k.kind == KernelKind::Primes))
        .map(|k| CpuSpec {
            kernel: k.kind.name(),
            args: k.args.clone(),
            tasks,
            label: k.label(),
            after_burst: k.kind == BURST_KERNEL,
            step: (k.kind == KernelKind::Mandel).then(|| mandel_step(&k.args, tasks)),
        })
        .collect();
    Spec {
        workers: plan.workers,
        repeats: script_repeats(plan),
        quick,
        scenarios: [
            "startup",
            "spawn",
            "round_trip",
            "in_flight",
            "map_noop",
            "imap_noop",
            "payload",
            "shared_memory",
            "cpu",
            "io",
            "memory",
            "faults",
            "messages",
        ],
        in_flight_tasks: plan.in_flight,
        map_items: plan.map_items,
        map_repeats: plan.map_repeats,
        map_skip: if served.contains(&Op::Map) { vec![POOL_MAP_RUN] } else { Vec::new() },
        imap_items: plan.imap_items,
        imap_skip: if served.contains(&Op::Imap) { vec![POOL_IMAP_RUN] } else { Vec::new() },
        burst_items: plan.burst_items(),
        cpu_variants: ["mp_pool", "thread_executor"],
        payload_bytes: [PAYLOAD_BYTES, LARGE_PAYLOAD_BYTES],
        round_trips: if quick { 100 } else { 300 },
        payload_round_trips: if quick { 10 } else { 30 },
        cpu,
        fault_timeout_s: 1.0,
        fault_alloc_mib: BOMB_CAP_MIB,
        fault_memory_limit_mib: MEMORY_LIMIT >> 20,
        io: script_io(),
        messages: script_messages(plan),
    }
}

/// Runs the script and reads its results.
fn run_script(
    plan: &Plan,
    kernels: &[Kernel],
    served: &[Op],
    progress: &dyn Fn(f64, &str),
) -> Result<PythonRun, String> {
    let spec = spec(plan, kernels, served);
    let path = script_path()?;
    let mut child = Command::new("python3")
        .arg(&path)
        .args(["--spec", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let json = serde_json::to_vec(&spec).map_err(|e| e.to_string())?;
        stdin.write_all(&json).map_err(|e| e.to_string())?;
    }
    // Progress lines go to the callback, every other line to this program's stderr; stdout
    // is read on a thread meanwhile, so that neither pipe fills up.
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(mut stdout) = stdout {
            let _ = std::io::Read::read_to_end(&mut stdout, &mut out);
        }
        out
    });
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            match parse_progress(&line) {
                Some((fraction, what)) => progress(fraction, what),
                None => eprintln!("{line}"),
            }
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let stdout = reader.join().map_err(|_| "reading the script's output failed".to_owned())?;
    let out = std::process::Output { status, stdout, stderr: Vec::new() };
    let output: Output = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!("the Python script printed no JSON ({e}); exit status {}", out.status)
    })?;
    let kernels = spec.cpu.iter().filter_map(|c| {
        let k = kernels.iter().find(|k| k.label() == c.label)?;
        Some((c.label.clone(), (k.kind, k.size)))
    });
    Ok(PythonRun::new(output, plan.workers, kernels.collect()))
}

/// A progress line of the script, `peers: progress FRACTION TEXT`: the fraction and the text.
fn parse_progress(line: &str) -> Option<(f64, &str)> {
    let rest = line.strip_prefix("peers: progress ")?;
    let (fraction, what) = rest.split_once(' ').unwrap_or((rest, ""));
    let fraction: f64 = fraction.parse().ok()?;
    fraction.is_finite().then_some((fraction.clamp(0.0, 1.0), what))
}

/// Where the script is: the source tree's copy when it exists, otherwise the built-in copy
/// written to a temporary file.
pub(crate) fn script_path() -> Result<PathBuf, String> {
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python").join("peers.py");
    if source.exists() {
        return Ok(source);
    }
    let copy = std::env::temp_dir().join(format!("taskpool-peers-{}.py", std::process::id()));
    std::fs::write(&copy, SCRIPT).map_err(|e| format!("cannot write the Python script: {e}"))?;
    Ok(copy)
}

// The script's output, as far as the report reads it. Every part that can fail on its own
// (a scenario, one pool's cell) is `Lenient`: a failure or an unexpected shape there costs
// that cell, not the whole run.

/// A part of the output that parsed, or why not (the script's own error, if it gave one).
#[derive(Debug)]
struct Lenient<T>(Result<T, String>);

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        if let Some(error) = value.get("error").and_then(serde_json::Value::as_str) {
            return Ok(Lenient(Err(format!("failed: {error}"))));
        }
        Ok(Lenient(T::deserialize(value).map_err(|e| format!("unreadable result: {e}"))))
    }
}

impl<T> Lenient<T> {
    fn ok(&self) -> Result<&T, String> {
        self.0.as_ref().map_err(Clone::clone)
    }
}

/// The whole output.
#[derive(Debug, Deserialize)]
struct Output {
    #[serde(default)]
    python: Option<String>,
    #[serde(default)]
    mp_start_method: Option<String>,
    #[serde(default)]
    results: Results,
    #[serde(default)]
    errors: Vec<ScriptError>,
}

/// One error the script reported.
#[derive(Debug, Deserialize)]
struct ScriptError {
    #[serde(default)]
    scenario: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// `results`: one entry per scenario.
#[derive(Debug, Default, Deserialize)]
struct Results {
    startup: Option<Lenient<ByPool<Micros>>>,
    /// A one-off `Process` (or `Thread`) started and joined.
    spawn: Option<Lenient<ByPool<Micros>>>,
    round_trip: Option<Lenient<ByPool<Micros>>>,
    in_flight: Option<Lenient<ByPool<TasksPerSecond>>>,
    map_noop: Option<Lenient<ByPool<MapNoop>>>,
    /// `imap` of no-ops, each result taken as it comes: the same shape as `map_noop`.
    imap_noop: Option<Lenient<ByPool<MapNoop>>>,
    payload: Option<Lenient<ByPool<Payload>>>,
    /// The payload's round trip with the bytes in a `SharedMemory` block, by size.
    shared_memory: Option<Lenient<ByPool<Payload>>>,
    cpu: Option<Lenient<ByPool<Kernels>>>,
    memory: Option<Lenient<ByPool<Memory>>>,
    faults: Option<Lenient<ByPool<Faults>>>,
    io: Option<Lenient<ByPool<Io>>>,
    messages: Option<Lenient<Messages>>,
}

/// `messages`: messages per second through each kind of channel, from a child process.
#[derive(Debug, Deserialize)]
struct Messages {
    mp_queue: Option<Lenient<MessagesPerSecond>>,
    mp_pipe: Option<Lenient<MessagesPerSecond>>,
}

impl Messages {
    fn get(&self, channel: Channel) -> Option<&Lenient<MessagesPerSecond>> {
        match channel {
            Channel::Queue => self.mp_queue.as_ref(),
            Channel::Pipe => self.mp_pipe.as_ref(),
        }
    }
}

/// Samples in messages per second.
#[derive(Debug, Deserialize)]
struct MessagesPerSecond {
    samples_messages_per_s: Vec<f64>,
}

/// A scenario's cells, by pool.
#[derive(Debug, Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
struct ByPool<T> {
    thread_executor: Option<Lenient<T>>,
    mp_pool: Option<Lenient<T>>,
    process_executor: Option<Lenient<T>>,
    mp_thread_pool: Option<Lenient<T>>,
}

impl<T> ByPool<T> {
    fn get(&self, pool: ScriptPool) -> Option<&Lenient<T>> {
        match pool {
            ScriptPool::ThreadExecutor => self.thread_executor.as_ref(),
            ScriptPool::MpPool => self.mp_pool.as_ref(),
            ScriptPool::ProcessExecutor => self.process_executor.as_ref(),
            ScriptPool::MpThreadPool => self.mp_thread_pool.as_ref(),
        }
    }
}

/// Samples in microseconds.
#[derive(Debug, Deserialize)]
struct Micros {
    samples_us: Vec<f64>,
}

/// Samples in tasks per second.
#[derive(Debug, Deserialize)]
struct TasksPerSecond {
    samples_tasks_per_s: Vec<f64>,
}

/// Samples in items per second.
#[derive(Debug, Deserialize)]
struct ItemsPerSecond {
    samples_items_per_s: Vec<f64>,
}

/// Samples in kB.
#[derive(Debug, Deserialize)]
struct KiloBytes {
    #[serde(rename = "samples_kB")]
    samples_kb: Vec<f64>,
}

/// Samples in kB per worker.
#[derive(Debug, Deserialize)]
struct KiloBytesPerWorker {
    #[serde(rename = "samples_kB_per_worker")]
    samples_kb: Vec<f64>,
}

/// `io`: tasks per second by kind of wait and worker count, and the start-up and memory of
/// the pool the waits need.
#[derive(Debug, Deserialize)]
struct Io {
    throughput: BTreeMap<WaitKind, Lenient<BTreeMap<u64, Lenient<TasksPerSecond>>>>,
    startup: Option<Lenient<Micros>>,
    memory: Option<Lenient<KiloBytesPerWorker>>,
}

/// `map_noop` (or `imap_noop`) of one pool: one run per way of calling it, by the script's
/// key.
#[derive(Debug, Deserialize)]
struct MapNoop {
    runs: BTreeMap<String, Lenient<MapRun>>,
}

/// One way of calling `map`.
#[derive(Debug, Deserialize)]
struct MapRun {
    /// The call, such as `Pool.map(f, items)`.
    call: String,
    /// Whether the call is the API's default way (the script says so since it measured
    /// calls other than the default of one column).
    #[serde(default)]
    is_default: Option<bool>,
    #[serde(flatten)]
    rate: ItemsPerSecond,
}

/// `payload`: one entry per size in bytes.
#[derive(Debug, Deserialize)]
struct Payload {
    sizes: BTreeMap<u64, Micros>,
}

/// `cpu` of one pool: its kernels, by the label they were given.
type Kernels = BTreeMap<String, Lenient<CpuEntry>>;

/// `cpu`: one kernel on one pool.
#[derive(Debug, Deserialize)]
struct CpuEntry {
    by_workers: BTreeMap<usize, CpuPoint>,
    /// The same batch on the kept pool of N, right after a burst of no-ops.
    after_burst: Option<Lenient<AfterBurst>>,
}

/// A kernel right after a burst.
#[derive(Debug, Deserialize)]
struct AfterBurst {
    speedup_samples: Vec<f64>,
}

/// One worker count of a kernel.
#[derive(Debug, Deserialize)]
struct CpuPoint {
    speedup_vs_sequential: f64,
    efficiency: f64,
}

/// `memory`: what a pool adds to the program.
#[derive(Debug, Deserialize)]
struct Memory {
    /// The growth of the program's PSS, all its processes.
    #[serde(rename = "program_pss_increase_kB")]
    program_increase: Option<KiloBytes>,
}

/// `faults`: one trial per fault, named as the script names them.
#[derive(Debug, Deserialize)]
struct Faults {
    exception: Option<Lenient<FaultTrial>>,
    segfault: Option<Lenient<FaultTrial>>,
    abort: Option<Lenient<FaultTrial>>,
    hang: Option<Lenient<FaultTrial>>,
    memory: Option<Lenient<FaultTrial>>,
}

impl Faults {
    fn get(&self, fault: Fault) -> Option<&Lenient<FaultTrial>> {
        match fault {
            Fault::Panic => self.exception.as_ref(),
            Fault::Segfault => self.segfault.as_ref(),
            Fault::Abort => self.abort.as_ref(),
            Fault::Hang => self.hang.as_ref(),
            Fault::Bomb => self.memory.as_ref(),
        }
    }
}

/// One fault trial.
#[derive(Debug, Deserialize)]
struct FaultTrial {
    faulty: Faulty,
    next_task: Option<NextTask>,
    recovery_s: Option<f64>,
    summary: Option<String>,
}

/// What became of the faulty task.
#[derive(Debug, Deserialize)]
struct Faulty {
    kind: FaultKind,
    #[serde(default)]
    outcome: String,
}

/// How the faulty task ended, as the script classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FaultKind {
    Returned,
    Raised,
    BrokenPool,
    Hung,
    ProgramDied,
    #[serde(other)]
    Other,
}

/// Whether the task after the fault was served.
#[derive(Debug, Deserialize)]
struct NextTask {
    #[serde(default)]
    ok: bool,
}

/// A cell from samples, or why there is none.
fn value(samples: &[f64], scale: f64) -> Cell {
    Summary::of(samples.iter().map(|x| x * scale).collect())
        .map_or_else(|| Cell::Skipped("no samples".into()), Cell::Value)
}

/// A cell from a lenient part: `f` of it, or the reason it failed.
fn cell<T>(part: Option<&Lenient<T>>, f: impl FnOnce(&T) -> Option<Cell>) -> Option<Cell> {
    match part?.ok() {
        Ok(t) => f(t),
        Err(why) => Some(Cell::Skipped(why)),
    }
}

/// The script's pools that columns show, and their columns, as `columns.rs` lists them.
fn shown() -> Vec<(Column, ScriptPool)> {
    let scripted = BACKENDS.iter().filter_map(|b| match b.runs() {
        Runs::Script(pool) => Some((b.column()?, *pool)),
        _ => None,
    });
    scripted.collect()
}

impl PythonRun {
    /// The cells of `output`, for pools of `workers` and the `kernels` the script was given.
    fn new(
        output: Output,
        workers: usize,
        kernels: BTreeMap<String, (KernelKind, TaskSize)>,
    ) -> PythonRun {
        let mut run = PythonRun {
            version: output
                .python
                .as_deref()
                .map(|v| v.split_whitespace().next().unwrap_or(v).to_owned()),
            start_method: output.mp_start_method.clone(),
            kernels,
            ..PythonRun::default()
        };
        let r = &output.results;
        run.add_maps(RowId::Map, &r.map_noop);
        run.add_maps(RowId::Imap, &r.imap_noop);
        for (_, pool) in shown() {
            run.add(
                RowId::Startup,
                pool,
                pooled(&r.startup, pool, |m| Some(value(&m.samples_us, 1.0))),
            );
            run.add(
                RowId::Spawn,
                pool,
                pooled(&r.spawn, pool, |m| Some(value(&m.samples_us, 1.0))),
            );
            run.add(
                RowId::RoundTrip,
                pool,
                pooled(&r.round_trip, pool, |m| Some(value(&m.samples_us, 1.0))),
            );
            run.add(
                RowId::InFlight,
                pool,
                pooled(&r.in_flight, pool, |t| Some(value(&t.samples_tasks_per_s, 1.0))),
            );
            for (scenario, row) in [
                (&r.payload, RowId::Payload as fn(u64) -> RowId),
                (&r.shared_memory, RowId::SharedBytes),
            ] {
                for bytes in payload_sizes(scenario) {
                    let sized = pooled(scenario, pool, |p| {
                        Some(value(&p.sizes.get(&bytes)?.samples_us, 1.0))
                    });
                    run.add(row(bytes), pool, sized);
                }
            }
            run.add(
                RowId::Memory,
                pool,
                pooled(&r.memory, pool, |m| {
                    Some(value(&m.program_increase.as_ref()?.samples_kb, 1.0))
                }),
            );
            for fault in Fault::ALL {
                let trial =
                    pooled(&r.faults, pool, |f| cell(f.get(fault), |t| Some(fault_cell(t))));
                run.add(RowId::Fault(fault), pool, trial);
            }
            run.add_cpu(&r.cpu, pool, workers);
            run.add_io(&r.io, pool);
        }
        run.add_messages(&r.messages);
        let executor = r
            .faults
            .as_ref()
            .and_then(|f| f.ok().ok())
            .and_then(|f| f.get(ScriptPool::ProcessExecutor));
        if let Some(Ok(faults)) = executor.map(Lenient::ok) {
            for fault in [Fault::Segfault, Fault::Abort] {
                let summary =
                    faults.get(fault).and_then(|t| t.ok().ok()).and_then(|t| t.summary.clone());
                if let Some(text) = summary {
                    run.notes.push(format!("ProcessPoolExecutor, {}: {text}", fault.name()));
                }
            }
        }
        for e in &output.errors {
            let scenario = e.scenario.as_deref().unwrap_or("?");
            run.notes.push(format!("Python {scenario}: {}", e.error.as_deref().unwrap_or("?")));
        }
        run
    }

    /// The `map` (or `imap`) cell of each column in `row`: the fastest of the ways its pools
    /// mapped (the script measures each pool's default and the chunk size its docs
    /// recommend), with every way kept as the row's idioms where there are several.
    fn add_maps(&mut self, row: RowId, maps: &Option<Lenient<ByPool<MapNoop>>>) {
        for (column, shown_pool) in shown() {
            let mut measured: Vec<(String, Summary)> = Vec::new();
            // A call other than the API's default is another idiom even when alone, next to
            // a default call the row samples itself (the served `Pool.imap`).
            let mut other_than_default = false;
            let mut failure = None;
            for pool in ScriptPool::ALL.into_iter().filter(|p| p.kind() == column.kind()) {
                let runs = match maps.as_ref().map(Lenient::ok) {
                    None => continue,
                    Some(Err(why)) => {
                        failure.get_or_insert(why);
                        continue;
                    }
                    Some(Ok(by)) => match by.get(pool).map(Lenient::ok) {
                        Some(Ok(map)) => &map.runs,
                        Some(Err(why)) => {
                            failure.get_or_insert(why);
                            continue;
                        }
                        None => continue,
                    },
                };
                for run in runs.values() {
                    match run.ok() {
                        Ok(run) => {
                            let summary = Summary::of(run.rate.samples_items_per_s.clone());
                            other_than_default |=
                                summary.is_some() && run.is_default == Some(false);
                            measured.extend(summary.map(|s| (run.call.clone(), s)));
                        }
                        Err(why) => {
                            failure.get_or_insert(why);
                        }
                    }
                }
            }
            let best = measured.iter().map(|(_, s)| s.median).fold(f64::NAN, f64::max);
            let shown = measured.iter().position(|(_, s)| s.median == best);
            let cell = match shown {
                Some(i) => Some(Cell::Value(measured[i].1.clone())),
                None => failure.map(Cell::Skipped),
            };
            self.add(row, shown_pool, cell);
            if measured.len() > 1 || other_than_default {
                let idioms = measured.into_iter().enumerate().map(|(i, (how, value))| Idiom {
                    column,
                    how,
                    value,
                    shown: Some(i) == shown,
                });
                self.idioms.entry(row).or_default().extend(idioms);
            }
        }
    }

    /// The message cells: `multiprocessing.Queue` and `Pipe()` are processes, so they fill the
    /// process column (the thread column says why not, from `columns.rs`).
    fn add_messages(&mut self, messages: &Option<Lenient<Messages>>) {
        for channel in Channel::ALL {
            let rate = match messages.as_ref().map(Lenient::ok) {
                None => None,
                Some(Err(why)) => Some(Cell::Skipped(why)),
                Some(Ok(by)) => {
                    cell(by.get(channel), |m| Some(value(&m.samples_messages_per_s, 1.0)))
                }
            };
            self.add(RowId::Messages(channel), ScriptPool::MpPool, rate);
        }
    }

    fn add(&mut self, row: RowId, pool: ScriptPool, cell: Option<Cell>) {
        if let Some(cell) = cell {
            self.cells.insert((row, pool), cell);
        }
    }

    /// The I/O-bound cells of `pool`: throughput by kind and worker count, start-up and
    /// memory of the pool needed.
    fn add_io(&mut self, io: &Option<Lenient<ByPool<Io>>>, pool: ScriptPool) {
        let startup =
            pooled(io, pool, |io| cell(io.startup.as_ref(), |m| Some(value(&m.samples_us, 1.0))));
        self.add(RowId::WaitStartup(POOL_NEEDED), pool, startup);
        let memory =
            pooled(io, pool, |io| cell(io.memory.as_ref(), |m| Some(value(&m.samples_kb, 1.0))));
        self.add(RowId::WaitMemory(POOL_NEEDED), pool, memory);
        let Some(Some(found)) = io.as_ref().map(|io| match io.ok() {
            Ok(by_pool) => by_pool.get(pool).map(Lenient::ok),
            Err(why) => Some(Err(why)),
        }) else {
            return;
        };
        let throughput = match found {
            Ok(io) => io.throughput.iter().map(|(&kind, counts)| (kind, counts.ok())).collect(),
            // The scenario or this pool's part of it failed: every throughput row says why.
            Err(why) => WaitKind::ALL.map(|kind| (kind, Err(why.clone()))).to_vec(),
        };
        for (kind, counts) in throughput {
            match counts {
                Ok(counts) => {
                    for (&workers, rate) in counts {
                        let rate = cell(Some(rate), |t| Some(value(&t.samples_tasks_per_s, 1.0)));
                        self.add(RowId::Wait(kind, workers), pool, rate);
                    }
                }
                Err(why) => {
                    for workers in WORKER_COUNTS {
                        let skipped = Some(Cell::Skipped(why.clone()));
                        self.add(RowId::Wait(kind, workers), pool, skipped);
                    }
                }
            }
        }
    }

    /// The speed-up and efficiency at `workers` and the curve of every kernel of `pool`.
    fn add_cpu(
        &mut self,
        cpu: &Option<Lenient<ByPool<Kernels>>>,
        pool: ScriptPool,
        workers: usize,
    ) {
        let Some(Ok(by_label)) = cpu.as_ref().and_then(|c| c.ok().ok()?.get(pool)).map(Lenient::ok)
        else {
            return;
        };
        for (label, entry) in by_label {
            let Some(&(kind, size)) = self.kernels.get(label) else { continue };
            let (speedup, efficiency) = (RowId::Speedup(kind, size), RowId::Efficiency(kind, size));
            let entry = match entry.ok() {
                Ok(entry) => entry,
                Err(why) => {
                    self.add(speedup, pool, Some(Cell::Skipped(why.clone())));
                    self.add(efficiency, pool, Some(Cell::Skipped(why)));
                    continue;
                }
            };
            if let Some(point) = entry.by_workers.get(&workers) {
                let single = |x| Some(Cell::Value(Summary::single(x)));
                self.add(speedup, pool, single(point.speedup_vs_sequential));
                self.add(efficiency, pool, single(point.efficiency));
            }
            let points = entry.by_workers.iter().map(|(&w, p)| (w, p.speedup_vs_sequential));
            self.curves.insert((kind, size, pool), points.collect());
            let after_burst = entry.after_burst.as_ref().map(|b| match b.ok() {
                Ok(burst) => value(&burst.speedup_samples, 1.0),
                Err(why) => Cell::Skipped(why),
            });
            self.add(RowId::AfterBurst(kind, size), pool, after_burst);
        }
    }
}

/// The payload size the script was asked for, and any other it reported (in a payload
/// scenario: `payload` or `shared_memory`).
fn payload_sizes(payload: &Option<Lenient<ByPool<Payload>>>) -> Vec<u64> {
    let mut sizes = vec![PAYLOAD_BYTES];
    if let Some(Ok(by)) = payload.as_ref().map(Lenient::ok) {
        let reported = shown().into_iter().filter_map(|(_, pool)| by.get(pool)?.ok().ok());
        sizes.extend(reported.flat_map(|p| p.sizes.keys().copied()));
    }
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

/// The cell of `pool` in a scenario: `f` of its part, or why there is none.
fn pooled<T>(
    scenario: &Option<Lenient<ByPool<T>>>,
    pool: ScriptPool,
    f: impl FnOnce(&T) -> Option<Cell>,
) -> Option<Cell> {
    match scenario.as_ref()?.ok() {
        Ok(by) => cell(by.get(pool), f),
        Err(why) => Some(Cell::Skipped(why)),
    }
}

/// What the cell of a fault whose task the pool never settles ends with: the pool survived,
/// but only because its caller gave up waiting.
pub(crate) const NEVER_REPORTED: &str = "(the pool never reports it)";

/// The outcome of a fault trial, as a report cell.
fn fault_cell(trial: &FaultTrial) -> Cell {
    let (kind, outcome) = (trial.faulty.kind, &trial.faulty.outcome);
    let next_ok = trial.next_task.as_ref().is_some_and(|n| n.ok);
    let mut text = match kind {
        FaultKind::ProgramDied => outcome.clone(),
        FaultKind::Hung => format!("task {outcome} {NEVER_REPORTED}"),
        FaultKind::BrokenPool => {
            "pool broken: the task and every pending one failed; later submits are refused".into()
        }
        FaultKind::Raised => format!("task failed: {outcome}"),
        FaultKind::Returned => format!("no isolation: {outcome}"),
        FaultKind::Other => outcome.clone(),
    };
    let died = kind == FaultKind::ProgramDied;
    if !died && !next_ok {
        text.push_str("; the next task was not served");
    }
    Cell::Outcome {
        text,
        next_after_ms: trial.recovery_s.filter(|_| next_ok).map(|s| Summary::single(s * 1e3)),
        survived: !died && next_ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Better, Unit};

    /// A `python3` that is there but fails is reported as failing, with what it said, not as
    /// missing: the report's cells then say why they are empty.
    #[test]
    fn a_python3_that_fails_is_not_reported_as_missing() {
        let missing = std::ffi::OsStr::new("/nonexistent/python3");
        assert_eq!(version_of(missing), Err("python3 not found".to_owned()));
        let failing = version_of(std::ffi::OsStr::new("false")).unwrap_err();
        assert_eq!(failing, "python3 --version failed (exit status: 1)");
    }

    /// A trimmed output of the script, as `--self-test` prints it, with one failed scenario
    /// and one failed cell.
    const OUTPUT: &str = r#"{
      "python": "3.11.7 (main) [GCC 12.2.0]",
      "mp_start_method": "fork",
      "results": {
        "startup": {
          "mp_pool": {"median_us": 7.0, "samples_us": [5.0, 7.0, 9.0], "workers": 2},
          "thread_executor": {"error": "RuntimeError: no threads", "completed_repeats": 0}
        },
        "round_trip": {"error": "ScenarioTimeout: over budget"},
        "map_noop": {
          "mp_pool": {"runs": {"pool_map": {"call": "Pool.map(f, items)",
                                            "samples_items_per_s": [4.0, 6.0]}}},
          "process_executor": {"runs": {
            "executor_map_chunksize_1": {"call": "ProcessPoolExecutor.map(f, items)",
                                         "samples_items_per_s": [1.0]},
            "executor_map_chunksize_large": {"error": "BrokenProcessPool"}}},
          "thread_executor": {"runs": {"thread_executor_map": {
            "call": "ThreadPoolExecutor.map(f, items)", "samples_items_per_s": [2.0]}}},
          "mp_thread_pool": {"error": "OSError: no threads"}
        },
        "imap_noop": {
          "mp_pool": {"runs": {"pool_imap": {"call": "Pool.imap(f, items)",
                                             "samples_items_per_s": [70.0, 90.0, 80.0]}}},
          "mp_thread_pool": {"runs": {"thread_pool_imap": {
            "call": "multiprocessing.pool.ThreadPool.imap(f, items)",
            "samples_items_per_s": [40.0]}}}
        },
        "payload": {"mp_pool": {"sizes": {"1048576": {"samples_us": [2000.0]}}}},
        "shared_memory": {"mp_pool": {"sizes": {"67108864": {"samples_us": [300.0, 500.0]}}}},
        "cpu": {
          "sequential": {"primes, 1 ms tasks": {"samples_s": [1.0]}},
          "mp_pool": {"primes, 1 ms tasks": {"by_workers": {
            "1": {"speedup_vs_sequential": 0.9, "efficiency": 0.9},
            "2": {"speedup_vs_sequential": 1.8, "efficiency": 0.9}},
            "after_burst": {"speedup_samples": [1.7, 1.75, 1.8]}}}
        },
        "memory": {
          "thread_executor": {"program_pss_increase_kB": {"samples_kB": [10.0]}},
          "mp_pool": {"program_pss_increase_kB": {"samples_kB": [4700.0, 4800.0]}}
        },
        "io": {
          "thread_executor": {
            "throughput": {
              "sleep": {"2": {"samples_tasks_per_s": [180.0, 190.0, 200.0], "tasks": 8},
                        "64": {"error": "Hung: no result"}},
              "socket": {"error": "the report's slow service did not start"}
            },
            "startup": {"samples_us": [200.0, 300.0, 250.0], "workers": 64},
            "memory": {"samples_kB_per_worker": [24.5], "workers": 64}
          },
          "mp_pool": {
            "throughput": {"socket": {"64": {"samples_tasks_per_s": [4500.0]}}},
            "memory": {"error": "RuntimeError: no memory"}
          }
        },
        "faults": {
          "mp_pool": {"segfault": {"faulty": {"kind": "hung", "outcome": "hung: no result after 1.0 s"},
                                   "next_task": {"ok": true}, "recovery_s": 1.01}},
          "thread_executor": {"segfault": {"faulty": {"kind": "program_died",
                                                      "outcome": "whole program died: SIGSEGV"},
                                           "next_task": {"ok": false}, "recovery_s": null}},
          "process_executor": {"abort": {"faulty": {"kind": "broken_pool", "outcome": "x"},
                                         "summary": "the pool broke"}}
        },
        "messages": {
          "mp_queue": {"median_messages_per_s": 2.0, "samples_messages_per_s": [1.0, 2.0, 3.0],
                       "messages": 1000},
          "mp_pipe": {"error": "RuntimeError: 999 messages arrived, not 1000"}
        }
      },
      "errors": [{"scenario": "round_trip", "variant": null, "error": "over budget"}]
    }"#;

    fn run() -> Script {
        let output: Output = serde_json::from_str(OUTPUT).unwrap();
        let kernels = [("primes, 1 ms tasks".to_owned(), (KernelKind::Primes, TaskSize::Millis1))];
        Script::Ran(Box::new(PythonRun::new(output, 2, kernels.into_iter().collect())))
    }

    fn median(cell: Cell) -> f64 {
        match cell {
            Cell::Value(s) => s.median,
            other => panic!("not a value: {other:?}"),
        }
    }

    #[test]
    fn values_are_found_by_row_and_pool() {
        let script = run();
        assert_eq!(script.version().as_deref(), Some("3.11.7"));
        assert_eq!(median(script.cell(RowId::Startup, ScriptPool::MpPool)), 7.0);
        assert_eq!(median(script.cell(RowId::Map, ScriptPool::MpPool)), 5.0);
        assert_eq!(median(script.cell(RowId::Map, ScriptPool::ThreadExecutor)), 2.0);
        assert_eq!(median(script.cell(RowId::Payload(1 << 20), ScriptPool::MpPool)), 2000.0);
        let shared = RowId::SharedBytes(64 << 20);
        assert_eq!(median(script.cell(shared, ScriptPool::MpPool)), 400.0);
        // What the pool adds to the program, threads and processes alike.
        assert_eq!(median(script.cell(RowId::Memory, ScriptPool::ThreadExecutor)), 10.0);
        assert_eq!(median(script.cell(RowId::Memory, ScriptPool::MpPool)), 4750.0);
        let burst = RowId::AfterBurst(KernelKind::Primes, TaskSize::Millis1);
        assert_eq!(median(script.cell(burst, ScriptPool::MpPool)), 1.75);
        assert_eq!(script.versions(), ["Python 3.11.7", "multiprocessing start method fork"]);
        let primes = (KernelKind::Primes, TaskSize::Millis1);
        assert_eq!(
            median(script.cell(RowId::Speedup(primes.0, primes.1), ScriptPool::MpPool)),
            1.8
        );
        let kernel =
            Kernel { kind: primes.0, size: primes.1, args: vec![], tasks: 8, task_us: 1e3 };
        let curves = script.curves(&[kernel]);
        assert_eq!(curves.len(), 1);
        assert_eq!(curves[0].column, Column::PYTHON_PROCESSES);
        assert_eq!(curves[0].points, [(1, 0.9), (2, 1.8)]);
    }

    #[test]
    fn maps_show_the_best_idiom_of_a_column_and_keep_every_one() {
        let script = run();
        let row = Row::new("map", "map", Unit::PerSecond, Better::Higher);
        let row = script.fill(RowId::Map, row);
        assert_eq!(median(row.cells[&Column::PYTHON_PROCESSES].clone()), 5.0);
        // One idiom measured on threads (the other failed): nothing to compare.
        assert_eq!(median(row.cells[&Column::PYTHON_THREADS].clone()), 2.0);
        let idioms: Vec<(&str, f64, bool)> =
            row.idioms.iter().map(|i| (i.how.as_str(), i.value.median, i.shown)).collect();
        assert_eq!(
            idioms,
            [("Pool.map(f, items)", 5.0, true), ("ProcessPoolExecutor.map(f, items)", 1.0, false)]
        );
        assert!(row.idioms.iter().all(|i| i.column == Column::PYTHON_PROCESSES));
    }

    /// The `imap` row takes each column's one way of calling `imap`: `Pool.imap` for
    /// processes, `ThreadPool.imap` for threads (filed under the threads column's pool), and
    /// no idioms, since no column measured two.
    #[test]
    fn imaps_fill_both_python_columns_without_idioms() {
        let script = run();
        assert_eq!(median(script.cell(RowId::Imap, ScriptPool::MpPool)), 80.0);
        assert_eq!(median(script.cell(RowId::Imap, ScriptPool::ThreadExecutor)), 40.0);
        let row = Row::new("imap", "imap", Unit::PerSecond, Better::Higher);
        let row = script.fill(RowId::Imap, row);
        assert_eq!(median(row.cells[&Column::PYTHON_PROCESSES].clone()), 80.0);
        assert_eq!(median(row.cells[&Column::PYTHON_THREADS].clone()), 40.0);
        assert!(row.idioms.is_empty(), "{:?}", row.idioms);
        // Without the scenario (an older script), the cells say so.
        let output: Output = serde_json::from_str(r#"{"results": {}}"#).unwrap();
        let old = Script::Ran(Box::new(PythonRun::new(output, 2, BTreeMap::new())));
        let why = Cell::Skipped("not reported by the script".into());
        assert_eq!(old.cell(RowId::Imap, ScriptPool::MpPool), why);
    }

    /// Python's docs advise large chunks for `Pool.imap` over long iterables: that call is
    /// listed among the row's idioms next to the default one the row samples itself, though
    /// the script measured no other call of that column.
    #[test]
    fn the_imap_with_the_chunks_the_docs_advise_is_an_idiom_next_to_the_served_one() {
        let output: Output = serde_json::from_str(
            r#"{"results": {"imap_noop": {
              "mp_pool": {"runs": {"pool_imap_chunked": {
                "call": "Pool.imap(f, items, chunksize=1250)", "is_default": false,
                "follows_docs": true, "samples_items_per_s": [3000.0]}}},
              "mp_thread_pool": {"runs": {"thread_pool_imap": {
                "call": "multiprocessing.pool.ThreadPool.imap(f, items)", "is_default": true,
                "samples_items_per_s": [40.0]}}}}}}"#,
        )
        .unwrap();
        let script = Script::Ran(Box::new(PythonRun::new(output, 2, BTreeMap::new())));
        let mut row = Row::new("imap", "imap", Unit::PerSecond, Better::Higher);
        let served = Summary::of(vec![70.0]).unwrap();
        row.cells.insert(Column::PYTHON_PROCESSES, Cell::Value(served.clone()));
        let row = script.fill(RowId::Imap, row);
        assert_eq!(row.cells[&Column::PYTHON_PROCESSES], Cell::Value(served));
        let idioms: Vec<(Column, &str, f64, bool)> = row
            .idioms
            .iter()
            .map(|i| (i.column, i.how.as_str(), i.value.median, i.shown))
            .collect();
        assert_eq!(
            idioms,
            [(Column::PYTHON_PROCESSES, "Pool.imap(f, items, chunksize=1250)", 3000.0, false)]
        );
        assert!(SCRIPT.contains(
            "(\"pool_imap_chunked\", \"mp_pool\", \"Pool.imap(f, items, chunksize=%d)\""
        ));
    }

    #[test]
    fn a_cell_measured_here_is_kept_and_no_script_idiom_of_its_column_is_shown() {
        let script = run();
        let mut row = Row::new("map", "map", Unit::PerSecond, Better::Higher);
        let served = Summary::of(vec![3.0, 4.0]).unwrap();
        row.cells.insert(Column::PYTHON_PROCESSES, Cell::Value(served.clone()));
        let row = script.fill(RowId::Map, row);
        assert_eq!(row.cells[&Column::PYTHON_PROCESSES], Cell::Value(served));
        let shown: Vec<(Column, &str, bool)> =
            row.idioms.iter().map(|i| (i.column, i.how.as_str(), i.shown)).collect();
        assert_eq!(
            shown,
            [
                (Column::PYTHON_PROCESSES, "Pool.map(f, items)", false),
                (Column::PYTHON_PROCESSES, "ProcessPoolExecutor.map(f, items)", false)
            ]
        );
        // The other column still takes the script's best.
        assert_eq!(median(row.cells[&Column::PYTHON_THREADS].clone()), 2.0);
    }

    /// The script's Mandelbrot batch has fewer tasks than the image has rows: it takes rows
    /// from the whole image, as the Rust batch does, not the top rows alone (whose last ones
    /// cost several times the first).
    #[test]
    fn the_script_s_mandel_batch_covers_the_whole_image() {
        let plan = Plan::new(Mode::Default);
        let args = vec![0, 1, 15584, 64, 128];
        let mandel = Kernel {
            kind: KernelKind::Mandel,
            size: TaskSize::Millis1,
            args: args.clone(),
            tasks: 150,
            task_us: 1e3,
        };
        let json = serde_json::to_value(spec(&plan, &[mandel], &[])).unwrap();
        let entry = &json["cpu"][0];
        let (tasks, step) = (entry["tasks"].as_u64().unwrap(), entry["step"].as_u64().unwrap());
        assert_eq!(entry["args"], serde_json::json!(args));
        // The rows the script's tasks start at, as `cpu_jobs` computes them.
        let rows: Vec<u64> = (0..tasks).map(|i| (i * step) % 64).collect();
        assert_eq!(rows, (0..16).map(|i| 4 * i).collect::<Vec<_>>());
        assert!(SCRIPT.contains("(first_row + i * step) % height"));
        // Primes cost alike everywhere: no step.
        let primes = Kernel {
            kind: KernelKind::Primes,
            size: TaskSize::Millis1,
            args: vec![1_000_000, 11045],
            tasks: 150,
            task_us: 1e3,
        };
        let json = serde_json::to_value(spec(&plan, &[primes], &[])).unwrap();
        assert!(json["cpu"][0].get("step").is_none());
    }

    /// The notes say which start method the Python processes ran with, that Python 3.14
    /// changed Linux's default, and what batch the Python CPU-bound cells ran.
    #[test]
    fn the_notes_name_the_start_method_and_the_script_s_batches() {
        let plan = Plan::new(Mode::Default);
        let mandel = Kernel {
            kind: KernelKind::Mandel,
            size: TaskSize::Millis1,
            args: vec![0, 1, 15584, 64, 128],
            tasks: 150,
            task_us: 1e3,
        };
        let notes = run().method_notes(&plan, &[mandel]);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("default start method, fork."), "{}", notes[0]);
        assert!(notes[0].contains("Python 3.14 changed the default on Linux"), "{}", notes[0]);
        assert!(notes[1].contains("batches of 16 tasks"), "{}", notes[1]);
        assert!(notes[1].contains("every 4 rows of the image's 64"), "{}", notes[1]);
        assert!(Script::Absent("python3 not found".into()).method_notes(&plan, &[]).is_empty());
    }

    /// The script's memory bomb is the Rust one: it allocates up to the same cap and meets
    /// the same limit (not a guard at the limit's size, which would stop it unharmed).
    #[test]
    fn the_script_s_memory_bomb_meets_the_rust_columns_limit() {
        let json = serde_json::to_value(spec(&Plan::new(Mode::Default), &[], &[])).unwrap();
        assert_eq!(json["fault_alloc_mib"].as_u64(), Some(BOMB_CAP_MIB));
        assert_eq!(json["fault_memory_limit_mib"].as_u64(), Some(MEMORY_LIMIT >> 20));
        assert!(
            SCRIPT.contains("resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))")
        );
        assert!(SCRIPT.contains("pool_args = (limit_address_space, (limit_mib << 20,))"));
        // In a fresh interpreter: a worker forked from the script's long run would start with
        // its address space, most of the limit.
        assert!(SCRIPT.contains("or (fault == \"memory\" and limit))"));
    }

    /// The one-off spawn row has Python's own one-offs: a `multiprocessing.Process` in the
    /// process column, a `threading.Thread` in the threads column.
    #[test]
    fn one_off_spawns_fill_both_python_columns() {
        let output: Output = serde_json::from_str(
            r#"{"results": {"spawn": {
              "mp_pool": {"median_us": 1600.0, "samples_us": [1500.0, 1600.0, 1700.0]},
              "thread_executor": {"median_us": 60.0, "samples_us": [60.0]}}}}"#,
        )
        .unwrap();
        let script = Script::Ran(Box::new(PythonRun::new(output, 2, BTreeMap::new())));
        let row = Row::new("spawn", "spawn", Unit::Micros, Better::Lower);
        let row = script.fill(RowId::Spawn, row);
        assert_eq!(median(row.cells[&Column::PYTHON_PROCESSES].clone()), 1600.0);
        assert_eq!(median(row.cells[&Column::PYTHON_THREADS].clone()), 60.0);
        let json = serde_json::to_value(spec(&Plan::new(Mode::Quick), &[], &[])).unwrap();
        assert!(json["scenarios"].as_array().unwrap().contains(&"spawn".into()));
        assert!(SCRIPT.contains("SPAWN_KINDS = {\"mp_pool\": multiprocessing.Process, \"thread_executor\": threading.Thread}"));
    }

    #[test]
    fn the_spec_leaves_pool_map_out_when_the_row_sampled_it() {
        let plan = Plan::new(Mode::Quick);
        let skipped = |served: &[Op], key: &str| {
            serde_json::to_value(spec(&plan, &[], served)).unwrap()[key].clone()
        };
        assert_eq!(skipped(&[Op::Map], "map_skip"), serde_json::json!(["pool_map"]));
        assert_eq!(skipped(&[Op::Map], "imap_skip"), serde_json::json!([]));
        assert_eq!(skipped(&[], "map_skip"), serde_json::json!([]));
        assert_eq!(skipped(&[Op::Map, Op::Imap], "imap_skip"), serde_json::json!(["pool_imap"]));
        assert!(
            SCRIPT.contains(&format!("(\"{POOL_MAP_RUN}\", \"mp_pool\", \"Pool.map(f, items)\""))
        );
        assert!(
            SCRIPT.contains(&format!("(\"{POOL_IMAP_RUN}\", \"mp_pool\", \"Pool.imap(f, items)\""))
        );
        let json = serde_json::to_value(spec(&plan, &[], &[])).unwrap();
        assert_eq!(json["imap_items"].as_u64(), Some(plan.imap_items as u64));
        assert!(json["scenarios"].as_array().unwrap().contains(&"imap_noop".into()));
    }

    #[test]
    fn messages_fill_the_process_column_only() {
        let script = run();
        let queue = RowId::Messages(Channel::Queue);
        assert_eq!(median(script.cell(queue, ScriptPool::MpPool)), 2.0);
        let pipe = script.cell(RowId::Messages(Channel::Pipe), ScriptPool::MpPool);
        assert_eq!(
            pipe,
            Cell::Skipped("failed: RuntimeError: 999 messages arrived, not 1000".into())
        );
        let threads = script.cell(queue, ScriptPool::ThreadExecutor);
        assert_eq!(threads, Cell::Skipped("not reported by the script".into()));
        let python_threads = crate::columns::backend("python-threads").unwrap();
        let why = python_threads.can(crate::columns::Op::Messages, 1000).unwrap_err();
        assert_eq!(why, "threads of one process: no second process to send to");
        assert!(
            crate::columns::backend("python-processes")
                .unwrap()
                .can(crate::columns::Op::Messages, 1000)
                .is_ok()
        );
    }

    #[test]
    fn progress_lines_are_read_and_others_are_not() {
        assert_eq!(parse_progress("peers: progress 0.25 cpu mp_pool"), Some((0.25, "cpu mp_pool")));
        assert_eq!(parse_progress("peers: progress 7 done"), Some((1.0, "done")));
        assert_eq!(parse_progress("peers: progress nan x"), None);
        assert_eq!(parse_progress("peers: cpu: done in 3.0 s"), None);
        assert_eq!(parse_progress("Traceback (most recent call last):"), None);
    }

    #[test]
    fn rows_take_the_cells_left_for_the_script() {
        let script = run();
        let mut row = Row::new("startup", "start-up", Unit::Micros, Better::Lower);
        row.cells.insert(Column::PYTHON_THREADS, Cell::Skipped("kept".into()));
        let row = script.fill(RowId::Startup, row);
        assert_eq!(row.cells[&Column::PYTHON_THREADS], Cell::Skipped("kept".into()));
        assert_eq!(median(row.cells[&Column::PYTHON_PROCESSES].clone()), 7.0);
        assert_eq!(row.cells.len(), 2);
    }

    #[test]
    fn failures_and_gaps_say_why() {
        let script = run();
        let skipped = |row, pool| match script.cell(row, pool) {
            Cell::Skipped(why) => why,
            other => panic!("not skipped: {other:?}"),
        };
        assert_eq!(
            skipped(RowId::Startup, ScriptPool::ThreadExecutor),
            "failed: RuntimeError: no threads"
        );
        assert_eq!(
            skipped(RowId::RoundTrip, ScriptPool::MpPool),
            "failed: ScenarioTimeout: over budget"
        );
        assert_eq!(skipped(RowId::InFlight, ScriptPool::MpPool), "not reported by the script");
        let mandel = RowId::Speedup(KernelKind::Mandel, TaskSize::Millis1);
        assert_eq!(skipped(mandel, ScriptPool::MpPool), "not run by the script");
        let small = RowId::Efficiency(KernelKind::Primes, TaskSize::Micros10);
        assert_eq!(skipped(small, ScriptPool::MpPool), "not measured by the Python script");
        let absent = Script::Absent("python3 not found".into());
        assert_eq!(
            absent.cell(RowId::Startup, ScriptPool::MpPool),
            Cell::Skipped("python3 not found".into())
        );
    }

    #[test]
    fn io_cells_are_found_by_kind_workers_and_pool() {
        let script = run();
        let (threads, processes) = (ScriptPool::ThreadExecutor, ScriptPool::MpPool);
        let sleep_2 = RowId::Wait(WaitKind::Sleep, 2);
        assert_eq!(median(script.cell(sleep_2, threads)), 190.0);
        assert_eq!(median(script.cell(RowId::Wait(WaitKind::Socket, 64), processes)), 4500.0);
        assert_eq!(median(script.cell(RowId::WaitStartup(64), threads)), 250.0);
        assert_eq!(median(script.cell(RowId::WaitMemory(64), threads)), 24.5);
        let skipped = |row, pool| match script.cell(row, pool) {
            Cell::Skipped(why) => why,
            other => panic!("not skipped: {other:?}"),
        };
        assert_eq!(skipped(RowId::Wait(WaitKind::Sleep, 64), threads), "failed: Hung: no result");
        for workers in [2, 16, 64] {
            assert_eq!(
                skipped(RowId::Wait(WaitKind::Socket, workers), threads),
                "failed: the report's slow service did not start"
            );
        }
        assert_eq!(skipped(RowId::WaitMemory(64), processes), "failed: RuntimeError: no memory");
        assert_eq!(skipped(RowId::WaitStartup(64), processes), "not reported by the script");
        assert_eq!(
            skipped(RowId::Wait(WaitKind::Sleep, 16), threads),
            "not reported by the script"
        );
    }

    #[test]
    fn a_failed_io_scenario_fails_every_io_cell() {
        let output = r#"{"results": {"io": {"error": "ScenarioTimeout: over budget"}}}"#;
        let output: Output = serde_json::from_str(output).unwrap();
        let script = Script::Ran(Box::new(PythonRun::new(output, 2, BTreeMap::new())));
        let failed = Cell::Skipped("failed: ScenarioTimeout: over budget".into());
        for pool in [ScriptPool::ThreadExecutor, ScriptPool::MpPool] {
            for kind in WaitKind::ALL {
                for workers in WORKER_COUNTS {
                    assert_eq!(script.cell(RowId::Wait(kind, workers), pool), failed);
                }
            }
            assert_eq!(script.cell(RowId::WaitMemory(64), pool), failed);
            assert_eq!(script.cell(RowId::WaitStartup(64), pool), failed);
        }
    }

    #[test]
    fn the_spec_asks_for_the_io_rows_with_the_service() {
        let plan = Plan::new(Mode::Quick);
        let json = serde_json::to_value(spec(&plan, &[], &[])).unwrap();
        assert!(json["scenarios"].as_array().unwrap().contains(&"io".into()));
        let io = &json["io"];
        assert_eq!(io["workers"], serde_json::json!([2, 16, 64]));
        assert_eq!((io["delay_us"].as_u64(), io["pool_needed"].as_u64()), (Some(10_000), Some(64)));
        let service = io["service"].as_str().unwrap();
        assert_eq!(crate::slow_service::ask(service, 0).unwrap(), 0);
    }

    #[test]
    fn fault_trials_become_outcomes_and_notes() {
        let script = run();
        let segfault = RowId::Fault(Fault::Segfault);
        assert_eq!(
            script.cell(segfault, ScriptPool::ThreadExecutor),
            Cell::Outcome {
                text: "whole program died: SIGSEGV".into(),
                next_after_ms: None,
                survived: false
            }
        );
        let Cell::Outcome { text, next_after_ms, survived } =
            script.cell(segfault, ScriptPool::MpPool)
        else {
            panic!("not an outcome");
        };
        assert_eq!(text, "task hung: no result after 1.0 s (the pool never reports it)");
        assert_eq!((next_after_ms.map(|s| s.median), survived), (Some(1010.0), true));
        assert_eq!(
            script.notes(),
            ["ProcessPoolExecutor, abort: the pool broke", "Python round_trip: over budget"]
        );
    }
}
