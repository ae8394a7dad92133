//! Failure impact: what a panic, a segfault, an abort, a hang and a memory bomb in one task do
//! to each pool, and how soon the next task is served.
//!
//! A backend whose workers are processes survives these, so it is measured in this program:
//! a pool of one worker (the worst case: the only worker is hit) with a 100 ms time limit,
//! or a 512 MiB memory limit for the bomb; the time runs from submitting the faulty task to
//! the next task's result, `min(repeats, 5)` times in the report. A backend that runs tasks
//! in threads cannot survive some of them, so it runs in a child copy of this binary (a
//! probe), a pool of two, and the report shows how that child ended.
//!
//! A backend whose workers live on agents (other machines' worker hosts) is measured in this
//! program too, on a pool that plans for one worker; but the agents' workers serve every
//! pool (two agents here), so a worker that crashes or hangs is not the only one: the next
//! task need not wait for its replacement, and the cells say so. It has one more row: an
//! agent killed while it runs a task, `min(repeats, 3)` times, timed from submitting the task
//! to the next task's result, sent once the lost task's result came (it runs again on another
//! agent after the ack wait). That time is the lost task's delay, nearly all of it the ack
//! wait the agents are given (1 s, where they default to 30 s), not a pause of the pool: the
//! other agent serves meanwhile.
//!
//! Criterion's isolation groups (`fault-segfault`, ...) time the same sequence on the
//! process backends, on pools of one and two workers, plus `recycle`: a no-op on a pool
//! whose workers each serve one task.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::cells::choose;
use super::scenario::timed;
use super::suite::{Case, Group, Iteration, Settings};
use super::{Plan, Progress, RowId};
use crate::backends::{PoolSpec, Pools, Running, Runs};
use crate::columns::{BACKENDS, Backend, DISABLED, Kind, Op, backend};
use crate::probe::{self, ProbeEnd, ProbeResult};
use crate::report::{Better, Cell, Row, Unit};
use crate::stats::Summary;
use crate::tasks;

/// The per-task time limit used for the hang (for a backend without one, how long the caller
/// waits for the hung task's answer).
pub(crate) const HANG_LIMIT: Duration = Duration::from_millis(100);
/// How much a memory bomb allocates before its safety cap stops it.
pub(crate) const BOMB_CAP_MIB: u64 = 2048;
/// The memory limit put on the processes (or the whole probe) that run a memory bomb.
pub(crate) const MEMORY_LIMIT: u64 = 512 << 20;
/// The workers of a pool that runs a fault in a probe: one can hang while the other serves.
const PROBE_WORKERS: usize = 2;
/// The most times a fault and the task after it run for one cell.
const FAULT_REPEATS: usize = 5;
/// The most times the agent-loss row kills an agent: each costs an ack wait and a new agent.
const AGENT_LOSS_REPEATS: usize = 3;

/// A fault injected into one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Fault {
    /// The task panics.
    Panic,
    /// The task writes through a null pointer.
    Segfault,
    /// The task calls `abort()`.
    Abort,
    /// The task sleeps for an hour.
    Hang,
    /// The task allocates without bound.
    Bomb,
}

impl Fault {
    /// Every fault, in the report's order.
    pub(crate) const ALL: [Fault; 5] =
        [Fault::Panic, Fault::Segfault, Fault::Abort, Fault::Hang, Fault::Bomb];

    /// A short name: `panic`, `segfault`, `abort`, `hang`, `bomb`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Fault::Panic => "panic",
            Fault::Segfault => "segfault",
            Fault::Abort => "abort",
            Fault::Hang => "hang",
            Fault::Bomb => "bomb",
        }
    }

    fn from_name(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == name)
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

    /// The argument of the fault's task.
    pub(crate) fn argument(self) -> u64 {
        if self == Fault::Bomb { BOMB_CAP_MIB } else { 0 }
    }

    /// The task that injects it, as a function pointer (for peers that take one), and its
    /// argument.
    pub(crate) fn task(self) -> (fn(u64) -> u64, u64) {
        let task: fn(u64) -> u64 = match self {
            Fault::Panic => tasks::panic,
            Fault::Segfault => tasks::segfault,
            Fault::Abort => tasks::abort,
            Fault::Hang => tasks::hang,
            Fault::Bomb => tasks::memory_bomb,
        };
        (task, self.argument())
    }

    /// The pool that meets the fault: a memory limit for the bomb (its fate must be the
    /// memory's, not the clock's), else the time limit where the backend has one.
    fn spec(self, backend: &Backend, workers: usize) -> PoolSpec {
        let mut spec = PoolSpec::workers(workers);
        if self == Fault::Bomb {
            spec.memory_limit = backend.can(Op::MemoryLimit, 0).is_ok().then_some(MEMORY_LIMIT);
        } else if backend.can(Op::Timeout, 0).is_ok() {
            spec.timeout = Some(HANG_LIMIT);
        }
        spec
    }
}

/// Whether `backend`, whose workers are processes, can meet `fault` in this program, or why
/// not: a memory bomb needs a memory limit per worker, or it would take the machine.
fn runs_in_program(backend: &Backend, fault: Fault) -> Result<(), String> {
    if fault == Fault::Bomb {
        backend.can(Op::MemoryLimit, MEMORY_LIMIT)?;
    }
    Ok(())
}

/// Runs `fault`, then a healthy task, on `pool`: what the pool said about the fault, and the
/// time from submitting it to the healthy task's result (`None` if that task failed).
fn fault_then_next(pool: &dyn Running, fault: Fault, in_probe: bool) -> (String, Option<Duration>) {
    let start = Instant::now();
    let said = match pool.fault(fault) {
        Ok(v) if in_probe => format!("no isolation: the task returned {v} inside the program"),
        Ok(v) => format!("no isolation: the task returned {v}"),
        Err(text) => text,
    };
    let next = pool.recovered();
    (said, next.ok().map(|()| start.elapsed()))
}

/// The progress steps [`rows`] takes: one per fault, then the agent loss.
pub(crate) fn steps() -> usize {
    Fault::ALL.len() + 1
}

/// Measures every fault on every column (the Python script's columns are left for it).
pub(crate) fn rows(plan: &Plan, progress: &Progress) -> Vec<(RowId, Row)> {
    let prlimit = find_prlimit();
    let mut rows: Vec<(RowId, Row)> = Fault::ALL
        .iter()
        .map(|&fault| {
            progress.say(format!("failure impact: {}", fault.label()));
            let id = RowId::Fault(fault);
            let mut row = Row::new(&id.key(), &fault.label(), Unit::Millis, Better::Lower);
            for (column, chosen) in choose(Op::Faults, 0) {
                let cell = match chosen {
                    Err(why) => Cell::Skipped(why),
                    Ok(backend) => match backend.runs() {
                        Runs::Script(_) => continue,
                        Runs::Disabled => Cell::Skipped(DISABLED.to_owned()),
                        Runs::Here { .. } if column.kind() == Kind::Processes => {
                            in_program(backend, fault, plan.repeats.min(FAULT_REPEATS))
                        }
                        Runs::Here { .. } => in_probe(backend, fault, prlimit.as_deref()),
                    },
                };
                row.cells.insert(column, cell);
            }
            (id, row)
        })
        .collect();
    rows.push(agent_loss_row(plan, progress));
    rows
}

/// The agent-loss row, on the backends that have agents.
fn agent_loss_row(plan: &Plan, progress: &Progress) -> (RowId, Row) {
    progress.say("failure impact: an agent is killed while it runs a task".to_owned());
    let id = RowId::AgentLoss;
    let label = "an agent is killed while it runs a task";
    let mut row = Row::new(&id.key(), label, Unit::Millis, Better::Lower);
    for (column, chosen) in choose(Op::AgentLoss, 0) {
        let cell = match chosen {
            Err(why) => Cell::Skipped(why),
            Ok(backend) => match backend.runs() {
                Runs::Script(_) => continue,
                Runs::Disabled => Cell::Skipped(DISABLED.to_owned()),
                Runs::Here { .. } => agent_loss(backend, plan.repeats.min(AGENT_LOSS_REPEATS)),
            },
        };
        row.cells.insert(column, cell);
    }
    (id, row)
}

/// Kills the agent of a running task, `repeats` times, on a fresh pool of one worker.
fn agent_loss(backend: &Backend, repeats: usize) -> Cell {
    let pool = match backend.start(&PoolSpec::workers(1)) {
        Ok(pool) => pool,
        Err(e) => return Cell::Skipped(format!("the pool did not start: {e}")),
    };
    let mut times = Vec::new();
    let mut text = String::new();
    for _ in 0..repeats {
        match pool.agent_loss() {
            Ok((said, elapsed)) => {
                times.push(elapsed.as_secs_f64() * 1e3);
                text = said;
            }
            Err(e) => {
                return Cell::Outcome { text: e, next_after_ms: None, survived: false };
            }
        }
    }
    Cell::Outcome { text, next_after_ms: Summary::of(times), survived: true }
}

/// Runs `fault` then a healthy task, `repeats` times, on a fresh pool of one worker.
fn in_program(backend: &Backend, fault: Fault, repeats: usize) -> Cell {
    if let Err(why) = runs_in_program(backend, fault) {
        return Cell::Skipped(why);
    }
    let pool = match backend.start(&fault.spec(backend, 1)) {
        Ok(pool) => pool,
        Err(e) => return Cell::Skipped(format!("the pool did not start: {e}")),
    };
    if let Err(e) = pool.noop() {
        return Cell::Skipped(format!("the pool did not serve a no-op before the fault: {e}"));
    }
    let mut times = Vec::new();
    let mut text = String::new();
    for _ in 0..repeats {
        let (said, next) = fault_then_next(pool.as_ref(), fault, false);
        let Some(next) = next else {
            return Cell::Outcome {
                text: format!("{said}; the next task failed"),
                next_after_ms: None,
                survived: false,
            };
        };
        times.push(next.as_secs_f64() * 1e3);
        text = said;
    }
    Cell::Outcome { text, next_after_ms: Summary::of(times), survived: true }
}

/// `prlimit`, from util-linux, if installed: it runs a probe under a memory limit.
fn find_prlimit() -> Option<String> {
    let ok = std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then(|| "prlimit".to_owned())
}

/// Runs `fault` on `backend` in a probe child and describes how the child ended.
fn in_probe(backend: &Backend, fault: Fault, prlimit: Option<&str>) -> Cell {
    let wrapper = match (fault, prlimit) {
        (Fault::Bomb, Some(p)) => vec![p.to_owned(), format!("--as={MEMORY_LIMIT}"), "--".into()],
        _ => Vec::new(),
    };
    // A hang without a time limit never ends: two seconds show it.
    let limit = Duration::from_secs(if fault == Fault::Hang { 2 } else { 10 });
    let args = format!("{} {}", backend.id(), fault.name());
    let end = probe::run("fault", &args, limit, &wrapper);
    probe_cell(end, fault, !wrapper.is_empty())
}

/// What a probe's end means, as a cell.
fn probe_cell(end: ProbeEnd, fault: Fault, limited: bool) -> Cell {
    match end {
        ProbeEnd::Survived(result) => Cell::Outcome {
            text: result.outcome,
            next_after_ms: Summary::of(result.next_after_ms),
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

/// In a probe child: `args` is `<backend id> <fault>`; runs the fault on a pool of two, then
/// a healthy task.
pub(crate) fn probe(args: &str) -> ProbeResult {
    let mut words = args.split_whitespace();
    let found = words.next().and_then(backend).zip(words.next().and_then(Fault::from_name));
    let Some((backend, fault)) = found else {
        return ProbeResult {
            outcome: format!("bad probe arguments {args:?}"),
            ..Default::default()
        };
    };
    let pool = match backend.start(&fault.spec(backend, PROBE_WORKERS)) {
        Ok(pool) => pool,
        Err(e) => {
            return ProbeResult {
                outcome: format!("the pool did not start: {e}"),
                ..Default::default()
            };
        }
    };
    // Repeated as on a pool in this program, so that a fault's cell is a median there too
    // (a first panic in a new process costs more than the next); a fault the program does
    // not survive ends the probe at the first.
    let mut result = ProbeResult::default();
    // Each hang that keeps its worker leaves one fewer to serve: repeat it only while one is
    // left for the next task.
    let repeats = if fault == Fault::Hang && pool.hang_keeps_its_worker() {
        PROBE_WORKERS - 1
    } else {
        FAULT_REPEATS
    };
    for _ in 0..repeats {
        let (outcome, next) = fault_then_next(pool.as_ref(), fault, true);
        result.outcome = outcome;
        let Some(next) = next else { break };
        result.next_after_ms.push(next.as_secs_f64() * 1e3);
    }
    result
}

/// The criterion groups: every fault on each backend that survives it in this program, on
/// pools of one and two workers (capped at the CPUs), then `recycle`.
pub(crate) fn groups<'s>(plan: &'s Plan, pools: &'s RefCell<Pools>) -> Vec<Group<'s>> {
    let counts: Vec<usize> = (1..=2.min(plan.workers)).collect();
    let in_program = |b: &&Backend| {
        b.runs_here()
            && b.has(Op::Faults)
            && b.column().is_some_and(|c| c.kind() == Kind::Processes)
    };
    let mut groups = Vec::new();
    for fault in Fault::ALL {
        let mut cases = Vec::new();
        for &w in &counts {
            for backend in BACKENDS.iter().filter(in_program) {
                let mut case = Case::new(backend.id(), w.to_string(), move || {
                    let pool = pools.borrow_mut().get(backend, fault.spec(backend, w))?;
                    Ok(fault_iteration(pool, fault))
                });
                case.skipped =
                    backend.can(Op::Faults, 0).and_then(|()| runs_in_program(backend, fault)).err();
                cases.push(case);
            }
        }
        let slow = matches!(fault, Fault::Hang | Fault::Bomb);
        let settings =
            Settings { sample_size: Some(if slow { 10 } else { 20 }), ..Settings::default() };
        groups.push(Group { name: format!("fault-{}", fault.name()), settings, cases });
    }
    let mut cases = Vec::new();
    for &w in &counts {
        for backend in BACKENDS.iter().filter(|b| b.runs_here() && b.has(Op::Recycle)) {
            let spec = PoolSpec { max_tasks_per_worker: Some(1), ..PoolSpec::workers(w) };
            let mut case = Case::new(backend.id(), w.to_string(), move || {
                let pool = pools.borrow_mut().get(backend, spec)?;
                Ok(Box::new(move || timed(|| pool.noop())) as Iteration)
            });
            case.skipped = backend.can(Op::Recycle, 0).err();
            cases.push(case);
        }
    }
    let settings = Settings { sample_size: Some(20), ..Settings::default() };
    groups.push(Group { name: "recycle".into(), settings, cases });
    groups
}

/// One fault and the healthy task after it; fails if the pool did not report the fault or
/// did not serve the next task.
fn fault_iteration(pool: Rc<dyn Running>, fault: Fault) -> Iteration {
    Box::new(move || {
        let start = Instant::now();
        if let Ok(v) = pool.fault(fault) {
            return Err(format!("the {} task returned {v}", fault.name()));
        }
        pool.recovered().map_err(|e| format!("no task after the {}: {e}", fault.name()))?;
        Ok(start.elapsed())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rayon has no time limit, but its caller need not wait for a hung task: it waits for the
    /// answer as long as the row's limit, and the pool's other thread serves the next task.
    #[test]
    fn a_rayon_caller_stops_waiting_for_a_hung_task_and_the_pool_serves_on() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(probe("rayon hang"));
        });
        let result = rx.recv_timeout(Duration::from_secs(60)).expect("the hang probe returned");
        assert!(
            result.outcome.starts_with("task hung: no answer within the caller's 100 ms wait"),
            "{}",
            result.outcome
        );
        // One hang only: a second would take the last thread.
        assert_eq!(result.next_after_ms.len(), 1, "{result:?}");
    }
}
