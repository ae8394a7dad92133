//! I/O-bound work: many tasks that mostly wait, at 2, 16 and 64 workers, on every column that
//! can run them, and what the pool those waits need (64 workers) costs in memory and start-up.
//!
//! | scenario | one iteration | report | criterion |
//! |---|---|---|---|
//! | `io_sleep` | submit 4 × W tasks that each sleep 10 ms, then join them all | tasks/s at W = 2, 16, 64 | W = 2, 16, 64; 10 samples |
//! | `io_socket` | the same with tasks that each block reading the answer the bench's slow service (`slow_service.rs`, a server thread in this program) sends over a local socket after 10 ms | as `io_sleep` | as `io_sleep` |
//! | `io_startup` | `new` a pool of 64 up to the result of its first no-op (its drop is not timed) | one per sample | 10 samples |
//! | memory | in a fresh probe process: a pool of 64 runs 256 sleeping tasks, then 64 writes to a global; the growth of the proportional set size of the probe and of every process it started, per worker | one probe per column | — |
//!
//! A waiting task costs no CPU, so W workers serve at most W / 10 ms tasks per second: every
//! throughput row shows that ideal, and what a column loses against it is its own overhead.
//! Each pool serves one untimed batch first, so that every worker is up; the pools of one
//! worker count run their rows interleaved, then stop before the next count starts.
//!
//! The proportional set size (PSS, from `/proc/PID/smaps_rollup`) counts a page that k
//! processes share as 1/k in each, so its sum over the probe and its workers is what the pool
//! adds to the machine, measured the same way whether the workers are threads or processes.
//! The same probe records what a task shares with its caller ([`Shares`]): the threads and
//! child processes the pool added, the processes its tasks ran in, and whether their writes
//! to a global reached the caller.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::cells::choose;
use super::memory::{descendants, proc_field, tree_pss_kib};
use super::overhead::startup;
use super::scenario::{Scenario, Setup, timed};
use super::suite::{Count, Group, Iteration};
use super::{Plan, Progress, RowId};
use crate::backends::{PoolSpec, Pools, Runs};
use crate::columns::{Column, DISABLED, Op, backend};
use crate::probe::{self, ProbeEnd, ProbeResult};
use crate::report::{Better, Cell, Reference, Row, Unit};
use crate::slow_service;
use crate::stats::Summary;
use crate::tasks;

/// How long every waiting task waits: a slow service's answer, in microseconds.
pub(crate) const DELAY_US: u64 = 10_000;

/// The worker counts of the throughput rows.
pub(crate) const WORKER_COUNTS: [u64; 3] = [2, 16, 64];

/// Tasks submitted per worker in one iteration: four waves of waits.
pub(crate) const TASKS_PER_WORKER: u64 = 4;

/// The pool the waits need: the largest worker count, whose memory and start-up are rows.
pub(crate) const POOL_NEEDED: u64 = 64;

/// How long the memory probe of one column may take.
const PROBE_LIMIT: Duration = Duration::from_secs(60);

/// How a task of the I/O-bound rows waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WaitKind {
    /// It sleeps.
    Sleep,
    /// It blocks reading the slow service's answer from a local socket.
    Socket,
}

impl WaitKind {
    /// Both kinds, in the report's order.
    pub(crate) const ALL: [WaitKind; 2] = [WaitKind::Sleep, WaitKind::Socket];

    /// `sleep` or `socket`, as row keys and the Python script name them.
    pub(crate) fn name(self) -> &'static str {
        match self {
            WaitKind::Sleep => "sleep",
            WaitKind::Socket => "socket",
        }
    }
}

/// What one waiting task does, as the backends run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Sleeps this many microseconds ([`tasks::nap`]).
    Sleep {
        /// How long.
        micros: u64,
    },
    /// Reads the answer the slow service called `service` sends after `delay_us`
    /// ([`tasks::ask`]).
    Ask {
        /// The service's socket name.
        service: String,
        /// The delay it is asked for, in microseconds.
        delay_us: u64,
    },
}

impl Wait {
    /// A task of `kind` that waits [`DELAY_US`]; the socket kind asks the shared service.
    ///
    /// # Errors
    ///
    /// The shared service did not start.
    pub(crate) fn of(kind: WaitKind) -> Result<Wait, String> {
        Ok(match kind {
            WaitKind::Sleep => Wait::Sleep { micros: DELAY_US },
            WaitKind::Socket => {
                let service = slow_service::shared()?.name().to_owned();
                Wait::Ask { service, delay_us: DELAY_US }
            }
        })
    }

    /// Runs one such task on the calling thread; the id of this process.
    ///
    /// # Errors
    ///
    /// The service could not be asked.
    pub(crate) fn run(&self) -> Result<u32, String> {
        match self {
            Wait::Sleep { micros } => Ok(tasks::nap(*micros)),
            Wait::Ask { service, delay_us } => tasks::ask(service.clone(), *delay_us),
        }
    }
}

/// The most tasks per second `workers` waiting workers can serve.
pub(crate) fn ideal(workers: u64) -> f64 {
    workers as f64 * 1e6 / DELAY_US as f64
}

/// Tasks that sleep: the first I/O-bound scenario, whose sizes and sampling the socket's
/// shares.
const SLEEP: Scenario = Scenario {
    name: "io_sleep",
    op: Op::Waits,
    row: |n| RowId::Wait(WaitKind::Sleep, n / TASKS_PER_WORKER),
    label: |_, n| {
        let workers = n / TASKS_PER_WORKER;
        format!("{n} tasks that each sleep 10 ms, pool of {workers} (tasks/s)")
    },
    unit: Unit::PerSecond,
    better: Better::Higher,
    sizes: |_| WORKER_COUNTS.iter().map(|w| w * TASKS_PER_WORKER).collect(),
    report_size: |_| POOL_NEEDED * TASKS_PER_WORKER,
    parameter: |n| (n / TASKS_PER_WORKER).to_string(),
    per_sample: |_| 1,
    repeats: |plan| plan.repeats,
    count: Count::Elements,
    sample_size: |_| Some(10),
    prepare: |setup| waits(setup, WaitKind::Sleep),
};

/// The I/O-bound scenarios: throughput of each wait (the size is the tasks of an
/// iteration, [`TASKS_PER_WORKER`] per worker), and the start-up of the pool needed.
pub(crate) static IO: [Scenario; 3] = [
    SLEEP,
    Scenario {
        name: "io_socket",
        row: |n| RowId::Wait(WaitKind::Socket, n / TASKS_PER_WORKER),
        label: |_, n| {
            let workers = n / TASKS_PER_WORKER;
            format!(
                "{n} tasks that each read a local server's answer, sent after 10 ms, pool of \
                 {workers} (tasks/s)"
            )
        },
        prepare: |setup| waits(setup, WaitKind::Socket),
        ..SLEEP
    },
    Scenario {
        name: "io_startup",
        op: Op::Startup,
        row: RowId::WaitStartup,
        label: |_, n| format!("pool of {n} (what 64 waits at once need): from new to first result"),
        unit: Unit::Micros,
        better: Better::Lower,
        sizes: |_| vec![POOL_NEEDED],
        report_size: |_| POOL_NEEDED,
        parameter: |n| n.to_string(),
        per_sample: |_| 1,
        repeats: |plan| plan.repeats,
        count: Count::None,
        sample_size: |_| Some(10),
        prepare: startup,
    },
];

/// An iteration of `kind`: the setup's size in tasks, on a pool of a quarter as many
/// workers, which serves one untimed batch first.
fn waits(setup: &Setup<'_>, kind: WaitKind) -> Result<Iteration, String> {
    let tasks = setup.size as usize;
    let workers = (setup.size / TASKS_PER_WORKER) as usize;
    let pool = setup.pools.borrow_mut().get(setup.backend, PoolSpec::workers(workers))?;
    let wait = Wait::of(kind)?;
    pool.waits(&wait, tasks)?;
    Ok(Box::new(move || timed(|| pool.waits(&wait, tasks).map(drop))))
}

/// What the I/O-bound rows measured.
#[derive(Debug, Default)]
pub(crate) struct Io {
    /// Throughput at every worker count, then memory and start-up of the pool needed.
    pub(crate) rows: Vec<(RowId, Row)>,
    /// What a task shares with its caller, by column, from the memory probes.
    pub(crate) shares: BTreeMap<Column, Shares>,
}

/// The progress steps [`rows`] takes: one per kind of wait and worker count, then memory and
/// start-up.
pub(crate) fn steps() -> usize {
    WORKER_COUNTS.len() * IO[..2].len() + 2
}

/// Measures the I/O-bound rows on every column that runs here (the Python script's columns
/// are left for it): the throughput rows worker count by worker count, then the memory and
/// start-up of the pool needed.
pub(crate) fn rows(plan: &Plan, progress: &Progress) -> Io {
    let mut io = Io::default();
    let mut throughput = Vec::new();
    for workers in WORKER_COUNTS {
        let pools = RefCell::new(Pools::default());
        for scenario in &IO[..2] {
            progress.say(format!("I/O-bound: {} on pools of {workers}", scenario.name));
            let (id, mut row) = scenario.row_at(plan, &pools, workers * TASKS_PER_WORKER);
            let name = format!("ideal, {workers} workers ÷ 10 ms");
            row.references.push(Reference::new(&name, Summary::single(ideal(workers))));
            throughput.push((id, row));
        }
    }
    throughput.sort_by_key(|(id, _)| *id);
    io.rows = throughput;
    progress.say(format!("I/O-bound: memory of pools of {POOL_NEEDED}, each in a fresh process"));
    let (memory, shares) = memory_row();
    io.rows.push(memory);
    io.shares = shares;
    progress.say(format!("I/O-bound: start-up of pools of {POOL_NEEDED}"));
    io.rows.push(IO[2].row(plan, &RefCell::new(Pools::default())));
    io
}

/// The memory row of the pool needed, one probe per column, and what the probes found a
/// task shares with its caller.
fn memory_row() -> ((RowId, Row), BTreeMap<Column, Shares>) {
    let id = RowId::WaitMemory(POOL_NEEDED);
    let label = format!(
        "memory per worker, pool of {POOL_NEEDED} after {} waits (growth of the proportional \
         set size of the program and its worker processes ÷ {POOL_NEEDED})",
        POOL_NEEDED * TASKS_PER_WORKER
    );
    let mut row = Row::new(&id.key(), &label, Unit::KiB, Better::Lower);
    let mut shares = BTreeMap::new();
    for (column, chosen) in choose(Op::Waits, POOL_NEEDED * TASKS_PER_WORKER) {
        let cell = match chosen {
            Err(why) => Cell::Skipped(why),
            Ok(backend) => match backend.runs() {
                Runs::Script(_) => continue,
                Runs::Disabled => Cell::Skipped(DISABLED.to_owned()),
                Runs::Here { .. } => {
                    let args = format!("{} {POOL_NEEDED}", backend.id());
                    match probe::run("io", &args, PROBE_LIMIT, &[]) {
                        ProbeEnd::Survived(result) => match Shares::from_values(&result.values) {
                            Some(found) => {
                                let kib = Summary::single(found.kib_per_worker);
                                shares.insert(column, found);
                                Cell::Value(kib)
                            }
                            None => Cell::Skipped(format!("failed: {}", result.outcome)),
                        },
                        other => Cell::Skipped(format!("probe ended: {other:?}")),
                    }
                }
            },
        };
        row.cells.insert(column, cell);
    }
    ((id, row), shares)
}

/// What a pool's tasks share with the caller, as one probe found it: the homework's
/// "mechanism" and "memory".
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Shares {
    /// Workers of the pool.
    pub(crate) workers: u64,
    /// Threads the pool added to the caller's process.
    pub(crate) threads_added: i64,
    /// Processes the pool started (descendants of the caller).
    pub(crate) processes_added: u64,
    /// Tasks run.
    pub(crate) tasks: u64,
    /// Distinct processes those tasks ran in.
    pub(crate) task_pids: u64,
    /// How many of them ran in the caller's own process.
    pub(crate) tasks_in_caller: u64,
    /// Tasks that each added one to a global of the process they ran in.
    pub(crate) writes: u64,
    /// How many of those writes the caller's global shows.
    pub(crate) writes_seen: u64,
    /// Memory per worker: growth of the summed proportional set size, in KiB.
    pub(crate) kib_per_worker: f64,
}

impl Shares {
    /// The fields as a probe reports them.
    const FIELDS: [&'static str; 9] = [
        "workers",
        "threads_added",
        "processes_added",
        "tasks",
        "task_pids",
        "tasks_in_caller",
        "writes",
        "writes_seen",
        "kib_per_worker",
    ];

    fn values(&self) -> Vec<(String, f64)> {
        let numbers = [
            self.workers as f64,
            self.threads_added as f64,
            self.processes_added as f64,
            self.tasks as f64,
            self.task_pids as f64,
            self.tasks_in_caller as f64,
            self.writes as f64,
            self.writes_seen as f64,
            self.kib_per_worker,
        ];
        Shares::FIELDS.iter().map(|f| (*f).to_owned()).zip(numbers).collect()
    }

    /// The shares a probe reported; `None` if a field is missing.
    fn from_values(values: &[(String, f64)]) -> Option<Shares> {
        let found: HashMap<&str, f64> = values.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let get = |field: &str| found.get(field).copied();
        let count = |field: &str| get(field).map(|v| v as u64);
        Some(Shares {
            workers: count("workers")?,
            threads_added: get("threads_added")? as i64,
            processes_added: count("processes_added")?,
            tasks: count("tasks")?,
            task_pids: count("task_pids")?,
            tasks_in_caller: count("tasks_in_caller")?,
            writes: count("writes")?,
            writes_seen: count("writes_seen")?,
            kib_per_worker: get("kib_per_worker")?,
        })
    }
}

/// In a probe child: `args` is `<backend id> <workers>`; starts that pool, runs
/// [`TASKS_PER_WORKER`] sleeping tasks per worker, then one write to a global per worker, and
/// reports [`Shares`].
pub(crate) fn probe(args: &str) -> ProbeResult {
    let failed = |outcome: String| ProbeResult { outcome, ..ProbeResult::default() };
    let mut words = args.split_whitespace();
    let backend = words.next().and_then(backend);
    let workers = words.next().and_then(|w| w.parse::<u64>().ok());
    let (Some(backend), Some(workers)) = (backend, workers) else {
        return failed(format!("bad probe arguments {args:?}"));
    };
    let me = std::process::id();
    let (threads_before, pss_before) = (threads(me), tree_pss_kib(me));
    let pool = match backend.start(&PoolSpec::workers(workers as usize)) {
        Ok(pool) => pool,
        Err(e) => return failed(format!("the pool did not start: {e}")),
    };
    let tasks = (workers * TASKS_PER_WORKER) as usize;
    let pids = match pool.waits(&Wait::Sleep { micros: DELAY_US }, tasks) {
        Ok(pids) => pids,
        Err(e) => return failed(format!("the waits failed: {e}")),
    };
    let writes = match pool.writes(workers as usize) {
        Ok(seen) => seen.len() as u64,
        Err(e) => return failed(format!("the writes failed: {e}")),
    };
    let (threads_after, pss_after) = (threads(me), tree_pss_kib(me));
    let distinct: HashSet<u32> = pids.iter().copied().collect();
    let shares = Shares {
        workers,
        threads_added: threads_after - threads_before,
        processes_added: descendants(me).len() as u64,
        tasks: pids.len() as u64,
        task_pids: distinct.len() as u64,
        tasks_in_caller: pids.iter().filter(|&&p| p == me).count() as u64,
        writes,
        writes_seen: tasks::global_writes(),
        kib_per_worker: (pss_after - pss_before).max(0.0) / workers as f64,
    };
    drop(pool);
    ProbeResult { outcome: "measured".into(), next_after_ms: Vec::new(), values: shares.values() }
}

/// The number of threads of process `pid`, from /proc (0 if unreadable).
fn threads(pid: u32) -> i64 {
    proc_field(pid, "status", "Threads:").map_or(0, |v| v as i64)
}

/// The criterion groups: `io_sleep` and `io_socket` at every worker count, `io_startup`.
pub(crate) fn groups<'s>(plan: &'s Plan, pools: &'s RefCell<Pools>) -> Vec<Group<'s>> {
    IO.iter().map(|s| s.group(plan, pools)).collect()
}

/// What the Python script is asked to measure of the I/O-bound rows.
#[derive(Debug, Serialize)]
pub(crate) struct ScriptIo {
    /// The slow service's socket name, if it started.
    service: Option<String>,
    /// How long each task waits.
    delay_us: u64,
    /// The worker counts of the throughput rows.
    workers: [u64; 3],
    /// Tasks per worker in one sample.
    tasks_per_worker: u64,
    /// The pool whose memory and start-up are rows.
    pool_needed: u64,
}

/// The I/O-bound part of the Python script's spec.
pub(crate) fn script_io() -> ScriptIo {
    ScriptIo {
        service: slow_service::shared().ok().map(|s| s.name().to_owned()),
        delay_us: DELAY_US,
        workers: WORKER_COUNTS,
        tasks_per_worker: TASKS_PER_WORKER,
        pool_needed: POOL_NEEDED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_travel_as_probe_values() {
        let shares = Shares {
            workers: 64,
            threads_added: 65,
            processes_added: 0,
            tasks: 256,
            task_pids: 1,
            tasks_in_caller: 256,
            writes: 64,
            writes_seen: 64,
            kib_per_worker: 112.5,
        };
        assert_eq!(Shares::from_values(&shares.values()), Some(shares.clone()));
        let mut partial = shares.values();
        partial.retain(|(k, _)| k != "writes_seen");
        assert_eq!(Shares::from_values(&partial), None);
    }

    #[test]
    fn rows_and_groups_cover_every_worker_count() {
        assert_eq!(ideal(64), 6400.0);
        let row = |s: &Scenario, n| (s.row)(n).key();
        assert_eq!(row(&IO[0], 8), "io_sleep_2");
        assert_eq!(row(&IO[1], 256), "io_socket_64");
        assert_eq!(row(&IO[2], 64), "io_startup_64");
        let plan = Plan::new(super::super::Mode::Quick);
        let pools = RefCell::new(Pools::default());
        let groups = groups(&plan, &pools);
        let names: Vec<_> = groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["io_sleep", "io_socket", "io_startup"]);
        let threads = |g: &Group<'_>| {
            let cases = g.cases.iter().filter(|c| c.variant == "rayon");
            cases.map(|c| c.parameter.clone()).collect::<Vec<_>>()
        };
        assert_eq!(threads(&groups[1]), ["2", "16", "64"]);
        assert_eq!(groups[0].cases[0].count, Some((Count::Elements, 8)));
        assert_eq!(threads(&groups[2]), ["64"]);
    }

    #[test]
    fn waits_run_on_a_pool_and_on_the_caller() {
        let me = std::process::id();
        assert_eq!(Wait::Sleep { micros: 1 }.run(), Ok(me));
        let socket = Wait::of(WaitKind::Socket).unwrap();
        assert_eq!(socket.run(), Ok(me));
        let rayon = backend("rayon").unwrap().start(&PoolSpec::workers(4)).unwrap();
        assert_eq!(rayon.waits(&socket, 8).unwrap(), [me; 8]);
        let before = tasks::global_writes();
        let seen = rayon.writes(3).unwrap();
        assert_eq!(tasks::global_writes() - before, 3);
        assert!(seen.iter().all(|&v| v > before), "{seen:?}");
    }

    #[test]
    fn the_process_tree_includes_children_and_grandchildren() {
        let me = std::process::id();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        let grandchild: u32 = line.trim().parse().unwrap();
        let found = descendants(me);
        let _ = std::process::Command::new("kill").arg(grandchild.to_string()).status();
        let _ = child.wait();
        assert!(found.contains(&child.id()) && found.contains(&grandchild), "{found:?}");
        assert!(tree_pss_kib(me) > 0.0);
        assert!(threads(me) >= 1);
    }
}
