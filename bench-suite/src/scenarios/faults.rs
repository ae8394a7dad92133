//! Failure impact: what a panic, a segfault, an abort, a hang and a memory bomb in one task do
//! to each pool, and how soon the next task is served.
//!
//! Process pools are measured in this process. Thread pools cannot survive some of these, so
//! they run in a child copy of this binary (a probe) and the report shows how it ended.

use std::time::{Duration, Instant};

use super::{Plan, Progress, PythonRun};
use crate::probe::{self, Probe, ProbeEnd, ProbeResult};
use crate::report::{Better, Cell, Column, Row, Unit};
use crate::stats::Summary;
use crate::tasks;
#[cfg(any(feature = "thread-pool", feature = "process-pool"))]
use taskpool_core::{Pool, TaskError};

/// The per-task time limit used for the hang.
const HANG_LIMIT: Duration = Duration::from_millis(100);
/// How much a memory bomb allocates before its safety cap stops it.
const BOMB_CAP_MIB: u64 = 2048;
/// The memory limit put on the processes (or the whole probe) that run a memory bomb.
const MEMORY_LIMIT: u64 = 512 << 20;

/// A fault injected into one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Panic,
    Segfault,
    Abort,
    Hang,
    Bomb,
}

impl Fault {
    const ALL: [Fault; 5] = [Fault::Panic, Fault::Segfault, Fault::Abort, Fault::Hang, Fault::Bomb];

    fn name(self) -> &'static str {
        match self {
            Fault::Panic => "panic",
            Fault::Segfault => "segfault",
            Fault::Abort => "abort",
            Fault::Hang => "hang",
            Fault::Bomb => "bomb",
        }
    }

    fn label(self) -> String {
        match self {
            Fault::Panic => "a task panics".into(),
            Fault::Segfault => "a task segfaults (write through null)".into(),
            Fault::Abort => "a task calls abort()".into(),
            Fault::Hang => format!("a task hangs ({} ms time limit)", HANG_LIMIT.as_millis()),
            Fault::Bomb => {
                format!("a task allocates without bound ({} MiB limit)", MEMORY_LIMIT >> 20)
            }
        }
    }

    /// The Python script's name for the fault.
    fn python(self) -> &'static str {
        match self {
            Fault::Panic => "exception",
            Fault::Bomb => "memory",
            other => other.name(),
        }
    }

    /// The task that injects it, as a function pointer (for procspawn and rayon), and its
    /// argument.
    fn task(self) -> (fn(u64) -> u64, u64) {
        match self {
            Fault::Panic => (tasks::panic, 0),
            Fault::Segfault => (tasks::segfault, 0),
            Fault::Abort => (tasks::abort, 0),
            Fault::Hang => (tasks::hang, 0),
            Fault::Bomb => (tasks::memory_bomb, BOMB_CAP_MIB),
        }
    }

    /// Runs the fault's task on a taskpool pool. Pools take functions by item, not by pointer
    /// (a process pool names them by their type), hence the match.
    #[cfg(any(feature = "thread-pool", feature = "process-pool"))]
    fn apply(self, pool: &impl Pool) -> Result<u64, TaskError> {
        match self {
            Fault::Panic => pool.apply(tasks::panic, 0),
            Fault::Segfault => pool.apply(tasks::segfault, 0),
            Fault::Abort => pool.apply(tasks::abort, 0),
            Fault::Hang => pool.apply(tasks::hang, 0),
            Fault::Bomb => pool.apply(tasks::memory_bomb, BOMB_CAP_MIB),
        }
    }
}

/// Measures every fault on every column.
#[cfg_attr(not(feature = "process-pool"), allow(unused_variables))]
pub fn rows(plan: &Plan, progress: &Progress, python: Option<&PythonRun>) -> Vec<Row> {
    let prlimit = find_prlimit();
    Fault::ALL
        .iter()
        .map(|&fault| {
            progress.say(format!("failure impact: {}", fault.label()));
            let mut row = Row::new(
                &format!("fault_{}", fault.name()),
                &fault.label(),
                Unit::Millis,
                Better::Lower,
            );
            #[cfg(feature = "process-pool")]
            row.cells.insert(Column::TaskpoolProcesses, on_processes(fault, plan.repeats.min(5)));
            #[cfg(not(feature = "process-pool"))]
            row.cells.insert(Column::TaskpoolProcesses, Cell::Skipped(super::DISABLED.into()));
            for (column, family) in [(Column::TaskpoolThreads, "threads"), (Column::Rayon, "rayon")]
            {
                if column == Column::TaskpoolThreads && cfg!(not(feature = "thread-pool")) {
                    row.cells.insert(column, Cell::Skipped(super::DISABLED.into()));
                    continue;
                }
                let wrapper = match (fault, &prlimit) {
                    (Fault::Bomb, Some(p)) => {
                        vec![p.clone(), format!("--as={MEMORY_LIMIT}"), "--".into()]
                    }
                    _ => Vec::new(),
                };
                // A hang on rayon never ends: two seconds show it.
                let limit = Duration::from_secs(if fault == Fault::Hang { 2 } else { 10 });
                let end = probe::run(&format!("{family}-{}", fault.name()), limit, &wrapper);
                row.cells.insert(column, probe_cell(end, fault, !wrapper.is_empty()));
            }
            row.cells.insert(Column::Procspawn, on_procspawn(fault));
            for column in [Column::PythonThreads, Column::PythonProcesses] {
                let cell = python.and_then(|p| p.fault(column, fault.python()));
                row.cells.insert(
                    column,
                    cell.unwrap_or_else(|| Cell::Skipped("python3 not found".into())),
                );
            }
            row
        })
        .collect()
}

/// `prlimit`, from util-linux, if installed: it runs a probe under a memory limit.
fn find_prlimit() -> Option<String> {
    let ok = std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then(|| "prlimit".to_owned())
}

/// What a probe's end means, as a cell.
fn probe_cell(end: ProbeEnd, fault: Fault, limited: bool) -> Cell {
    match end {
        ProbeEnd::Survived(result) => Cell::Outcome {
            text: result.outcome,
            next_after_ms: result.next_after_ms.map(Summary::single),
            survived: true,
        },
        ProbeEnd::Died { signal: Some(s), .. } => {
            let why = if fault == Fault::Bomb && limited {
                ", allocation failed under the limit"
            } else {
                ""
            };
            Cell::Outcome {
                text: format!("whole program died ({}{why})", probe::signal_name(s)),
                next_after_ms: None,
                survived: false,
            }
        }
        ProbeEnd::Died { code, .. } => Cell::Outcome {
            text: format!("whole program exited (code {})", code.unwrap_or(-1)),
            next_after_ms: None,
            survived: false,
        },
        ProbeEnd::Hung(limit) => Cell::Outcome {
            text: format!("no time limit: the caller still waited after {} s", limit.as_secs()),
            next_after_ms: None,
            survived: false,
        },
        ProbeEnd::Failed(e) => Cell::Skipped(format!("probe failed: {e}")),
    }
}

/// Runs `fault` then a healthy task, `repeats` times, each on a fresh process pool of one
/// worker (the worst case: the only worker is hit). The time is from submitting the faulty
/// task to the healthy task's result.
#[cfg(feature = "process-pool")]
fn on_processes(fault: Fault, repeats: usize) -> Cell {
    use taskpool_process::{Config, ProcessConfig};
    // The bomb meets the memory limit, not the clock.
    let config = match fault {
        Fault::Bomb => ProcessConfig::new(Config::new().workers(1)).memory_limit(MEMORY_LIMIT),
        _ => Config::new().workers(1).timeout(HANG_LIMIT).into(),
    };
    let Ok(pool) = taskpool_process::ProcessPool::with_config(config) else {
        return Cell::Skipped("the process pool did not start".into());
    };
    if pool.apply(tasks::noop, 0).is_err() {
        return Cell::Skipped("the process pool did not serve".into());
    }
    let mut times = Vec::new();
    let mut text = String::new();
    for _ in 0..repeats {
        let start = Instant::now();
        let error = match fault.apply(&pool) {
            Ok(v) => format!("no isolation: the task returned {v}"),
            Err(e) => describe(&e),
        };
        let next = pool.apply(tasks::noop, 1);
        times.push(start.elapsed().as_secs_f64() * 1e3);
        if next.is_err() {
            return Cell::Outcome {
                text: format!("{error}; the next task failed"),
                next_after_ms: None,
                survived: false,
            };
        }
        text = error;
    }
    Cell::Outcome { text, next_after_ms: Summary::of(times), survived: true }
}

/// A task error in a few words.
#[cfg(any(feature = "thread-pool", feature = "process-pool"))]
fn describe(e: &TaskError) -> String {
    match e {
        TaskError::Panicked(_) => "task failed: panicked (message and location)".into(),
        TaskError::Crashed(exit) => format!("task failed: worker {exit}; replaced"),
        TaskError::TimedOut { still_running: false, .. } => {
            "task timed out: worker killed and replaced".into()
        }
        TaskError::TimedOut { still_running: true, .. } => {
            "task timed out; its thread stays busy (cannot be killed)".into()
        }
        TaskError::ResourceLimit { .. } => format!("task failed: {e}; worker replaced"),
        other => format!("task failed: {other}"),
    }
}

/// procspawn: a pool of one worker, a fault, then a healthy task.
fn on_procspawn(fault: Fault) -> Cell {
    let (task, _) = fault.task();
    if fault == Fault::Bomb {
        return Cell::Skipped("no memory limit to keep a bomb from the machine".into());
    }
    let limit = (fault == Fault::Hang).then_some(HANG_LIMIT);
    let run = std::panic::catch_unwind(|| {
        let peer = crate::peers::procspawn::ProcspawnPeer::new(1);
        let start = Instant::now();
        let outcome = peer.crash_then_next(task, limit);
        (outcome, start.elapsed())
    });
    match run {
        Ok((outcome, total)) => Cell::Outcome {
            text: format!("task failed: \"{}\"", outcome.crash_error),
            next_after_ms: outcome.next_ok.then(|| Summary::single(total.as_secs_f64() * 1e3)),
            survived: outcome.next_ok,
        },
        Err(_) => Cell::Skipped("procspawn failed".into()),
    }
}

/// The fault probes, run in child processes: `threads-<fault>` and `rayon-<fault>`.
pub(crate) fn probes() -> Vec<Probe> {
    vec![
        ("threads-panic", || threads_probe(Fault::Panic)),
        ("threads-segfault", || threads_probe(Fault::Segfault)),
        ("threads-abort", || threads_probe(Fault::Abort)),
        ("threads-hang", || threads_probe(Fault::Hang)),
        ("threads-bomb", || threads_probe(Fault::Bomb)),
        ("rayon-panic", || rayon_probe(Fault::Panic)),
        ("rayon-segfault", || rayon_probe(Fault::Segfault)),
        ("rayon-abort", || rayon_probe(Fault::Abort)),
        ("rayon-hang", || rayon_probe(Fault::Hang)),
        ("rayon-bomb", || rayon_probe(Fault::Bomb)),
    ]
}

/// In a probe child: the fault on a taskpool thread pool of two, then a healthy task.
fn threads_probe(fault: Fault) -> ProbeResult {
    #[cfg(feature = "thread-pool")]
    {
        // The bomb runs without a time limit: its fate must be the memory's, not the clock's.
        let config = taskpool_thread::Config::new().workers(2);
        let config = if fault == Fault::Bomb { config } else { config.timeout(HANG_LIMIT) };
        let Ok(pool) = taskpool_thread::ThreadPool::with_config(config) else {
            return ProbeResult {
                outcome: "the thread pool did not start".into(),
                ..ProbeResult::default()
            };
        };
        let start = Instant::now();
        let outcome = match fault.apply(&pool) {
            Ok(v) => format!("no isolation: the task returned {v} inside the program"),
            Err(e) => describe(&e),
        };
        let next_ok = pool.apply(tasks::noop, 1).is_ok();
        let after = start.elapsed().as_secs_f64() * 1e3;
        ProbeResult { outcome, next_after_ms: next_ok.then_some(after), values: Vec::new() }
    }
    #[cfg(not(feature = "thread-pool"))]
    {
        let _ = fault;
        ProbeResult { outcome: super::DISABLED.into(), ..ProbeResult::default() }
    }
}

/// In a probe child: the fault on a rayon pool of two (`install`, which returns the task's
/// result or its panic to the caller), then a healthy task.
fn rayon_probe(fault: Fault) -> ProbeResult {
    let Ok(pool) = rayon::ThreadPoolBuilder::new().num_threads(2).build() else {
        return ProbeResult { outcome: "rayon did not start".into(), ..ProbeResult::default() };
    };
    let (task, arg) = fault.task();
    let start = Instant::now();
    let caught =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pool.install(|| task(arg))));
    let outcome = match caught {
        Ok(v) => format!("no isolation: the task returned {v} inside the program"),
        Err(_) => "the panic propagated to the caller (catch_unwind needed)".into(),
    };
    let next = pool.install(|| tasks::noop(1));
    let after = start.elapsed().as_secs_f64() * 1e3;
    ProbeResult { outcome, next_after_ms: (next == 1).then_some(after), values: Vec::new() }
}
