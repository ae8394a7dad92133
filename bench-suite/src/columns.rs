//! The report's columns and the backends that fill them: the one place that says what is
//! compared, how each backend starts a pool of N workers, which Cargo feature enables it and
//! what it can run.
//!
//! Every scenario, in the report and in the criterion benches alike, iterates over
//! [`BACKENDS`] and asks each entry whether it can run the scenario's [`Op`]. Adding a
//! column means adding its [`Column`] constant (and listing it in [`Column::ALL`]) and its
//! [`Backend`] entry here, plus the backend's crate in `Cargo.toml` as an optional dependency
//! behind the feature its entry names (CI checks each such feature on its own). A taskpool
//! backend needs nothing else: its pool implements `taskpool_core::Pool`, and one adapter
//! runs every scenario on any such pool. A backend whose feature is off keeps its column,
//! which then says so.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::backends::{
    Runs, ScriptPool, copy_floor, pipe_floor, procspawn, rayon, sequential, spin_floor, std_thread,
};

/// A column of the report: one pool implementation as the reader sees it.
///
/// # Examples
///
/// ```
/// use taskpool_bench::Column;
///
/// assert_eq!(Column::TASKPOOL_PROCESSES.label(), "taskpool processes");
/// assert!(Column::TASKPOOL_PROCESSES.is_ours() && Column::TASKPOOL_PROCESSES.is_processes());
/// assert!(!Column::RAYON.is_ours() && !Column::RAYON.is_processes());
/// ```
#[derive(Clone, Copy)]
pub struct Column(&'static ColumnInfo);

/// What a column is.
struct ColumnInfo {
    /// A stable identifier, for JSON readers.
    key: &'static str,
    /// The heading.
    label: &'static str,
    /// The short name in the comparison column ("threads 2× better than rayon").
    short: &'static str,
    /// Its colour in the charts (Okabe–Ito).
    colour: &'static str,
    /// Where its tasks run.
    kind: Kind,
    /// Whether it is one of taskpool's backends (the others are peers).
    ours: bool,
}

/// Where a column's tasks run: what the comparison holds it against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// In threads of the calling program: a crash takes the program down.
    Threads,
    /// In worker processes: a crash takes only the worker.
    Processes,
}

impl Column {
    /// `taskpool-thread`.
    pub const TASKPOOL_THREADS: Column = Column(&ColumnInfo {
        key: "TaskpoolThreads",
        label: "taskpool threads",
        short: "threads",
        colour: "#0072B2",
        kind: Kind::Threads,
        ours: true,
    });
    /// `taskpool-process`.
    pub const TASKPOOL_PROCESSES: Column = Column(&ColumnInfo {
        key: "TaskpoolProcesses",
        label: "taskpool processes",
        short: "processes",
        colour: "#D55E00",
        kind: Kind::Processes,
        ours: true,
    });
    /// `taskpool-cluster`: a `nats-server` and agents on this machine.
    pub const TASKPOOL_CLUSTER: Column = Column(&ColumnInfo {
        key: "TaskpoolCluster",
        label: "taskpool cluster",
        short: "cluster",
        colour: "#000000",
        kind: Kind::Processes,
        ours: true,
    });
    /// rayon (`par_iter`, `spawn`) and, for one-off spawns, `std::thread`.
    pub const RAYON: Column = Column(&ColumnInfo {
        key: "Rayon",
        label: "rayon",
        short: "rayon",
        colour: "#56B4E9",
        kind: Kind::Threads,
        ours: false,
    });
    /// procspawn's `Pool` and `spawn`.
    pub const PROCSPAWN: Column = Column(&ColumnInfo {
        key: "Procspawn",
        label: "procspawn",
        short: "procspawn",
        colour: "#E69F00",
        kind: Kind::Processes,
        ours: false,
    });
    /// Python's `ThreadPoolExecutor`.
    pub const PYTHON_THREADS: Column = Column(&ColumnInfo {
        key: "PythonThreads",
        label: "Python threads",
        short: "Python threads",
        colour: "#009E73",
        kind: Kind::Threads,
        ours: false,
    });
    /// Python's `multiprocessing.Pool`.
    pub const PYTHON_PROCESSES: Column = Column(&ColumnInfo {
        key: "PythonProcesses",
        label: "Python processes",
        short: "Python processes",
        colour: "#CC79A7",
        kind: Kind::Processes,
        ours: false,
    });

    /// Every column, in table order.
    pub const ALL: &'static [Column] = &[
        Column::TASKPOOL_THREADS,
        Column::TASKPOOL_PROCESSES,
        Column::TASKPOOL_CLUSTER,
        Column::RAYON,
        Column::PROCSPAWN,
        Column::PYTHON_THREADS,
        Column::PYTHON_PROCESSES,
    ];

    /// The column's heading.
    pub fn label(self) -> &'static str {
        self.0.label
    }

    /// Its stable identifier in the JSON report, such as `TaskpoolThreads`.
    pub fn key(self) -> &'static str {
        self.0.key
    }

    /// Its short name in the comparison column, such as `threads`.
    pub fn short(self) -> &'static str {
        self.0.short
    }

    /// Its colour in the charts, as `#RRGGBB`.
    pub fn colour(self) -> &'static str {
        self.0.colour
    }

    /// Where its tasks run.
    pub fn kind(self) -> Kind {
        self.0.kind
    }

    /// Whether this column is one of taskpool's backends (the others are peers).
    pub fn is_ours(self) -> bool {
        self.0.ours
    }

    /// Whether this column runs tasks in processes (the others use threads).
    pub fn is_processes(self) -> bool {
        self.0.kind == Kind::Processes
    }

    /// Its place in [`Column::ALL`] (columns not listed there sort last).
    fn position(self) -> usize {
        Column::ALL.iter().position(|c| c.0.key == self.0.key).unwrap_or(usize::MAX)
    }
}

impl PartialEq for Column {
    fn eq(&self, other: &Column) -> bool {
        self.0.key == other.0.key
    }
}

impl Eq for Column {}

impl Hash for Column {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.key.hash(state);
    }
}

impl PartialOrd for Column {
    fn partial_cmp(&self, other: &Column) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Column {
    fn cmp(&self, other: &Column) -> Ordering {
        (self.position(), self.0.key).cmp(&(other.position(), other.0.key))
    }
}

impl fmt::Debug for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.key)
    }
}

impl Serialize for Column {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.key)
    }
}

impl<'de> Deserialize<'de> for Column {
    /// A column from its key, as a report's JSON names it; a key that no column of
    /// [`Column::ALL`] has is an error.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Column, D::Error> {
        let key = String::deserialize(deserializer)?;
        Column::ALL
            .iter()
            .copied()
            .find(|c| c.key() == key)
            .ok_or_else(|| serde::de::Error::custom(format!("no column is called {key:?}")))
    }
}

/// What a scenario asks a backend to run: its capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// A one-off worker that runs one task and is joined (`multiprocessing.Process`).
    Spawn,
    /// Start a pool and serve its first task.
    Startup,
    /// One task submitted and waited for.
    RoundTrip,
    /// Many tasks submitted at once, then all joined.
    InFlight,
    /// A batch of items through one call (`Pool.map`).
    Map,
    /// Items pulled from an iterator by one lazy call whose results are consumed as they
    /// come, in order (`Pool.imap`).
    Imap,
    /// A byte buffer there and back (as `serde_bytes::ByteBuf`).
    Payload,
    /// A byte buffer there and back as a plain `Vec<u8>`.
    PayloadVec,
    /// A byte buffer there and back as `taskpool_process::SharedBytes`: written once into
    /// shared memory, read in place by the task.
    PayloadShared,
    /// A batch of CPU-bound tasks.
    Kernels,
    /// A task that panics, crashes, hangs or allocates without bound, then a healthy one.
    Faults,
    /// A per-task time limit.
    Timeout,
    /// A memory limit per worker, so that a memory bomb fails only its task.
    MemoryLimit,
    /// A fresh worker after every task (`max_tasks_per_worker(1)`).
    Recycle,
    /// The memory a worker costs.
    Memory,
    /// The CPU time an idle pool costs.
    Idle,
    /// Many tasks that mostly wait (sleeps, blocking reads from a slow local service), and
    /// tasks that write to a global of the process they run in.
    Waits,
    /// An agent (a machine's worker host) killed while it runs a task, which must then be
    /// done elsewhere.
    AgentLoss,
    /// Small messages from a child process to its parent through a queue or a pipe
    /// (`multiprocessing.Queue`, `multiprocessing.Pipe()`).
    Messages,
}

impl Op {
    /// What the operation is, in a few words: "round trip", "tasks in flight".
    pub fn label(self) -> &'static str {
        match self {
            Op::Spawn => "one-off spawn",
            Op::Startup => "start-up",
            Op::RoundTrip => "round trip",
            Op::InFlight => "tasks in flight",
            Op::Map => "map",
            Op::Imap => "imap",
            Op::Payload => "payload",
            Op::PayloadVec => "Vec<u8> payload",
            Op::PayloadShared => "SharedBytes payload",
            Op::Kernels => "CPU-bound batches",
            Op::Faults => "faults",
            Op::Timeout => "time limit",
            Op::MemoryLimit => "memory limit",
            Op::Recycle => "recycling",
            Op::Memory => "memory",
            Op::Idle => "idle CPU",
            Op::Waits => "waiting tasks",
            Op::AgentLoss => "agent loss",
            Op::Messages => "messages between processes",
        }
    }
}

/// How a backend runs some operations, as the report's notes say it: the operations, and
/// the calls, as its expert users write them.
pub type How = (&'static [Op], &'static str);

/// Where a backend's figures appear in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shows {
    /// As the cells of a column.
    Column(Column),
    /// As a row's reference: a floor or a baseline that is not a pool, named so.
    Reference(&'static str),
}

/// One backend: a pool implementation (or a floor) that scenarios run on.
pub struct Backend {
    /// Its name in criterion's benchmark ids and in the examples' output (`threads`).
    id: &'static str,
    /// Where its figures appear.
    shows: Shows,
    /// The Cargo feature that enables it; `None` if it is always built.
    feature: Option<&'static str>,
    /// How it runs (or that its feature is off).
    runs: Runs,
    /// What it can run.
    can: &'static [Op],
    /// Why it cannot run some of the others, as its cell says.
    cannot: &'static [(Op, &'static str)],
    /// Limits that depend on a scenario's size (items, bytes, microseconds per task).
    limits: Option<Limits>,
    /// How it runs each operation it can run.
    how: &'static [How],
    /// The crates whose versions the report prints for it.
    crates: &'static [&'static str],
}

/// What a backend can run at a scenario's size: `Ok`, or why not.
type Limits = fn(Op, u64) -> Result<(), String>;

/// Why a backend's column is empty when its feature is off.
pub(crate) const DISABLED: &str = "backend disabled by cargo features";

/// A taskpool backend: built when `feature` is on, else a column that says it is disabled.
/// `start` builds its pool from a [`PoolSpec`], `spawn` (if it has one) runs a one-off
/// no-op, `messages` (if it has a channel between processes) times small messages, `limits` (if any) says what it cannot run at a size or on this machine.
macro_rules! taskpool_backend {
    (@spawn) => { None };
    (@spawn $spawn:expr) => { Some($spawn as crate::backends::SpawnFn) };
    (@messages) => { None };
    (@messages $messages:expr) => { Some($messages as crate::backends::MessagesFn) };
    (@limits) => { None };
    (@limits $limits:expr) => { Some($limits as Limits) };
    (@crates) => { &[] };
    (@crates $crates:expr) => { $crates };
    (
        id: $id:literal,
        column: $column:expr,
        feature: $feature:literal,
        start: $start:expr,
        $(spawn: $spawn:expr,)?
        $(messages: $messages:expr,)?
        $(limits: $limits:expr,)?
        can: $can:expr,
        cannot: $cannot:expr,
        how: $how:expr
        $(, crates: $crates:expr)? $(,)?
    ) => {{
        #[cfg(feature = $feature)]
        let (runs, limits) = (
            Runs::Here {
                start: Some($start),
                spawn: taskpool_backend!(@spawn $($spawn)?),
                messages: taskpool_backend!(@messages $($messages)?),
            },
            taskpool_backend!(@limits $($limits)?),
        );
        #[cfg(not(feature = $feature))]
        let (runs, limits) = (Runs::Disabled, None);
        Backend {
            id: $id,
            shows: Shows::Column($column),
            feature: Some($feature),
            runs,
            can: $can,
            cannot: $cannot,
            limits,
            how: $how,
            crates: taskpool_backend!(@crates $($crates)?),
        }
    }};
}

/// How both taskpool backends run each operation.
const TASKPOOL_HOW: &[How] = &[
    (&[Op::Startup], "`with_config(Config::new().workers(n))` up to the first result"),
    (&[Op::RoundTrip, Op::Payload], "`Pool::apply(f, x)`"),
    (&[Op::InFlight, Op::Waits], "`Pool::submit` per task, then `TaskHandle::join` of each"),
    (&[Op::Map, Op::Kernels], "`Pool::map(f, items)`, automatic chunks"),
    (
        &[Op::Imap],
        "`Pool::imap(f, items)` over the items' iterator (the list made before the clock), \
         each result taken as it comes, in order",
    ),
    (&[Op::Spawn], "the crate's `spawn(f, x)` + `join`"),
    (
        &[Op::PayloadShared],
        "`Pool::apply(f, data)` with `data` a new `taskpool_process::SharedBytes` each time, \
         made before the clock; the task reads its last byte in place and returns it (threads \
         pass it as is, a worker process maps the sender's pages)",
    ),
    (&[Op::Idle], "a pool of 2 runs one no-op (`Pool::apply`), then is left alone"),
    (
        &[Op::Messages],
        "`Queue::new()` (a `Producer` from `queue.producer()`) or `Pipe::new()` (one `End`) handed \
         to a one-off `spawn`; the child `put`s or `send`s a marker, N `Some(i)` and `None`, the \
         parent `get`s or `recv`s them; timed from the marker's arrival to the `None`'s",
    ),
    (
        &[Op::Faults, Op::Timeout, Op::MemoryLimit],
        "`Pool::apply` on a pool configured with the limit",
    ),
];

/// What the Python script measures for its process column: its pools' operations, then
/// what only processes need (last): bytes in a shared-memory block, queues and pipes.
const PYTHON_PROCESSES_CAN: &[Op] = &[
    Op::Startup,
    Op::Spawn,
    Op::RoundTrip,
    Op::InFlight,
    Op::Map,
    Op::Imap,
    Op::Payload,
    Op::Kernels,
    Op::Faults,
    Op::Memory,
    Op::Waits,
    Op::PayloadShared,
    Op::Messages,
];

/// What it measures for its thread column: the same but what only processes need.
const PYTHON_THREADS_CAN: &[Op] = match PYTHON_PROCESSES_CAN.split_last() {
    Some((Op::Messages, rest)) => match rest.split_last() {
        Some((Op::PayloadShared, pools)) => pools,
        _ => panic!("the Python process column's operations end with its shared memory"),
    },
    _ => panic!("the Python process column's operations end with its messages"),
};

/// What the Python script does not measure.
const PYTHON_CANNOT: &[(Op, &str)] = &[(Op::Idle, "not in the Python script")];

/// What the Python script measures on processes only: the threads' column says why not.
const PYTHON_THREADS_CANNOT: &[(Op, &str)] = &[
    (Op::Idle, "not in the Python script"),
    (Op::Messages, "threads of one process: no second process to send to"),
    (
        Op::PayloadShared,
        "threads of one process share its memory: the payload rows already pass the bytes as is",
    ),
];

/// Why nothing runs the `SharedBytes` rows in a build without the process backend.
pub(crate) const NO_SHARED_BYTES: &str =
    "SharedBytes is taskpool-process's type: this build has no process-pool feature";

/// What a backend that runs the `SharedBytes` rows needs: the process backend's crate,
/// whose type they send.
fn shared_bytes_built(op: Op, _: u64) -> Result<(), String> {
    if op == Op::PayloadShared && !cfg!(feature = "process-pool") {
        return Err(NO_SHARED_BYTES.to_owned());
    }
    Ok(())
}

/// Every backend, in the order their variants run. The first backend of a column that can
/// run a scenario fills that column's cell.
pub static BACKENDS: &[Backend] = &[
    taskpool_backend! {
        id: "threads",
        column: Column::TASKPOOL_THREADS,
        feature: "thread-pool",
        start: |spec: &crate::backends::PoolSpec| {
            let config = spec.config();
            crate::backends::taskpool::boxed(taskpool_thread::ThreadPool::with_config(config))
        },
        spawn: || {
            let spawned = taskpool_thread::spawn(crate::tasks::noop, 1);
            crate::backends::taskpool::joined(spawned)
        },
        limits: shared_bytes_built,
        can: &[
            Op::Spawn,
            Op::Startup,
            Op::RoundTrip,
            Op::InFlight,
            Op::Map,
            Op::Imap,
            Op::Payload,
            Op::PayloadVec,
            Op::PayloadShared,
            Op::Kernels,
            Op::Faults,
            Op::Timeout,
            Op::Memory,
            Op::Idle,
            Op::Waits,
        ],
        cannot: &[
            (Op::Recycle, "a thread has no fresh address space to recycle into"),
            (Op::AgentLoss, "one machine: no agent to lose"),
            (Op::Messages, "threads of one process: no second process to send to"),
        ],
        how: TASKPOOL_HOW,
    },
    taskpool_backend! {
        id: "processes",
        column: Column::TASKPOOL_PROCESSES,
        feature: "process-pool",
        start: |spec: &crate::backends::PoolSpec| {
            let config = taskpool_process::ProcessConfig::new(spec.config());
            let config = match spec.memory_limit {
                Some(bytes) => config.memory_limit(bytes),
                None => config,
            };
            crate::backends::taskpool::boxed(taskpool_process::ProcessPool::with_config(config))
        },
        spawn: || {
            let spawned = taskpool_process::spawn(crate::tasks::noop, 1);
            crate::backends::taskpool::joined(spawned)
        },
        messages: crate::backends::messages::messages,
        can: &[
            Op::Spawn,
            Op::Startup,
            Op::RoundTrip,
            Op::InFlight,
            Op::Map,
            Op::Imap,
            Op::Payload,
            Op::PayloadVec,
            Op::PayloadShared,
            Op::Kernels,
            Op::Faults,
            Op::Timeout,
            Op::MemoryLimit,
            Op::Recycle,
            Op::Memory,
            Op::Idle,
            Op::Waits,
            Op::Messages,
        ],
        cannot: &[(Op::AgentLoss, "one machine: no agent to lose")],
        how: TASKPOOL_HOW,
    },
    taskpool_backend! {
        id: "cluster",
        column: Column::TASKPOOL_CLUSTER,
        feature: "cluster",
        start: crate::backends::cluster::start,
        limits: crate::backends::cluster::limits,
        can: &[
            Op::Startup,
            Op::RoundTrip,
            Op::InFlight,
            Op::Map,
            Op::Imap,
            Op::Payload,
            Op::PayloadVec,
            Op::Faults,
            Op::Timeout,
            Op::AgentLoss,
        ],
        cannot: &[
            (Op::Spawn, "a cluster pool has no one-off spawn"),
            (Op::Kernels, "the agents' workers are fixed when they start: no scaling curve"),
            (Op::MemoryLimit, "a memory limit is set on the agents, not on the pool"),
            (Op::Recycle, "recycling workers is set on the agents, not on the pool"),
            (Op::Memory, "its workers are the agents' processes"),
            (Op::Idle, "its workers are the agents' processes"),
            (Op::Waits, "the agents' workers are fixed when they start, not sized for each row"),
            (Op::Messages, "no queue or pipe between a task and its caller"),
            (
                Op::PayloadShared,
                "SharedBytes live in one machine's memory; a cluster task's argument crosses the \
                 network",
            ),
        ],
        how: TASKPOOL_HOW,
        crates: &["async-nats"],
    },
    Backend {
        id: "rayon",
        shows: Shows::Column(Column::RAYON),
        feature: None,
        runs: Runs::Here { start: Some(rayon::start), spawn: None, messages: None },
        can: &[
            Op::Startup,
            Op::RoundTrip,
            Op::InFlight,
            Op::Map,
            Op::Payload,
            Op::Kernels,
            Op::Faults,
            Op::Memory,
            Op::Idle,
            Op::Waits,
        ],
        cannot: &[
            (Op::Spawn, "rayon has no one-off spawn with a handle"),
            (
                Op::Imap,
                "rayon has no lazy ordered map on a kept pool: `par_bridge()` keeps no order, \
                 and a parallel iterator returns only once the whole batch is done",
            ),
            (Op::Messages, "threads of one process: no second process to send to"),
            (
                Op::PayloadShared,
                "threads of one process share its memory: the payload rows already pass the \
                 buffer as is",
            ),
        ],
        limits: None,
        how: &[
            (
                &[Op::Startup],
                "`ThreadPoolBuilder::new().num_threads(n).build()` up to the first answer",
            ),
            (
                &[Op::RoundTrip, Op::Payload],
                "`ThreadPool::spawn`, the result sent back on a `crossbeam-channel` channel (rayon \
                 has no join handle; crossbeam's receiver spins briefly before it sleeps)",
            ),
            (
                &[Op::InFlight],
                "`ThreadPool::scope` with one `spawn` per task, each writing its own result slot",
            ),
            (&[Op::Map], "`items.into_par_iter().map(f).collect()` inside `install`"),
            (&[Op::Kernels], "`install` + `into_par_iter().map(f).sum()`"),
            (&[Op::Waits], "`install` + `into_par_iter().map(f).collect()` on a pool of N threads"),
            (
                &[Op::Faults],
                "`install(f)`, its panic caught with `catch_unwind`; the hang: `spawn`, its \
                 answer awaited on a `crossbeam-channel` channel with `recv_timeout` (rayon has \
                 no time limit), then no more hangs on that pool of 2",
            ),
            (&[Op::Idle], "a `ThreadPool` of 2 threads runs one no-op, then is left alone"),
        ],
        crates: &["rayon", "rayon-core", "crossbeam-channel"],
    },
    Backend {
        id: "std-thread",
        shows: Shows::Column(Column::RAYON),
        feature: None,
        runs: Runs::Here { start: None, spawn: Some(std_thread::spawn), messages: None },
        can: &[Op::Spawn],
        cannot: &[],
        limits: None,
        how: &[(
            &[Op::Spawn],
            "`std::thread::scope` with one `spawn`, joined (rayon has no one-off spawn with a \
             handle)",
        )],
        crates: &[],
    },
    Backend {
        id: "procspawn",
        shows: Shows::Column(Column::PROCSPAWN),
        feature: None,
        runs: Runs::Here {
            start: Some(procspawn::start),
            spawn: Some(procspawn::spawn),
            messages: None,
        },
        can: &[
            Op::Spawn,
            Op::Startup,
            Op::RoundTrip,
            Op::InFlight,
            Op::Payload,
            Op::Kernels,
            Op::Faults,
            Op::Timeout,
            Op::Memory,
            Op::Idle,
            Op::Waits,
        ],
        cannot: &[
            (Op::Map, "procspawn has no batch API"),
            (Op::Imap, "procspawn has no batch API"),
            (Op::MemoryLimit, "no memory limit to keep a bomb from the machine"),
            (Op::Messages, "procspawn has no queue or pipe of its own"),
            (
                Op::PayloadShared,
                "not measured: procspawn's own shared-memory bytes (`serde::Shmem`, on \
                 ipc-channel) are not in the report",
            ),
        ],
        limits: Some(procspawn::limits),
        how: &[
            (
                &[Op::Startup],
                "`Pool::builder(n).build()` (it waits for every worker) up to the first result",
            ),
            (&[Op::RoundTrip, Op::Payload], "`Pool::spawn(arg, f)` + `JoinHandle::join`"),
            (
                &[Op::InFlight, Op::Kernels],
                "`Pool::spawn` per task, joined in submission order (joining out of order can \
                 deadlock); batches in windows of 1000 tasks (each queued task holds three \
                 descriptors)",
            ),
            (&[Op::Waits], "`Pool::spawn` per waiting task, joined in submission order"),
            (&[Op::Spawn], "`procspawn::spawn(arg, f)` + `join`"),
            (&[Op::Faults, Op::Timeout], "`Pool::spawn` + `join_timeout`"),
            (&[Op::Idle], "a `Pool` of 2 runs one no-op, then is left alone"),
        ],
        crates: &["procspawn"],
    },
    Backend {
        id: "python-threads",
        shows: Shows::Column(Column::PYTHON_THREADS),
        feature: None,
        runs: Runs::Script(ScriptPool::ThreadExecutor),
        can: PYTHON_THREADS_CAN,
        cannot: PYTHON_THREADS_CANNOT,
        limits: None,
        how: &[
            (&[Op::Startup], "`ThreadPoolExecutor(max_workers=n)` up to the first result"),
            (&[Op::Spawn], "`threading.Thread(target=f)`, `start()` + `join()`"),
            (&[Op::RoundTrip, Op::Payload], "`executor.submit(f, x).result()`"),
            (&[Op::InFlight, Op::Waits], "`submit` per task, then `result()` of each"),
            (
                &[Op::Map],
                "the better of `ThreadPoolExecutor.map(f, items)` (one future per item: its \
                 `chunksize` does nothing on threads) and `multiprocessing.pool.ThreadPool.map` \
                 (its default chunks)",
            ),
            (
                &[Op::Imap],
                "`multiprocessing.pool.ThreadPool.imap(f, items)` with its default `chunksize=1`, \
                 each result taken as it comes",
            ),
            (&[Op::Kernels], "`ThreadPoolExecutor.map` over the batch"),
            (&[Op::Faults], "`submit` + `result(timeout)`"),
        ],
        crates: &[],
    },
    Backend {
        id: "python-processes",
        shows: Shows::Column(Column::PYTHON_PROCESSES),
        feature: None,
        runs: Runs::Script(ScriptPool::MpPool),
        can: PYTHON_PROCESSES_CAN,
        cannot: PYTHON_CANNOT,
        limits: None,
        how: &[
            (&[Op::Startup], "`multiprocessing.Pool(n)` up to the first result"),
            (
                &[Op::Spawn],
                "`multiprocessing.Process(target=f)`, `start()` + `join()` (the pools' start \
                 method)",
            ),
            (&[Op::RoundTrip, Op::Payload], "`pool.apply_async(f, (x,)).get()`"),
            (&[Op::InFlight, Op::Waits], "`apply_async` per task, then `get()` of each"),
            (
                &[Op::Map],
                "`Pool.map(f, items)` (its default chunks, ⌈items / 4·workers⌉) on a kept \
                 `multiprocessing.Pool(n)` that a Python server (`peers.py --serve`) maps on \
                 request, one sample in each round of the Rust columns (the input list made \
                 before the clock), shown even where another idiom maps faster; \
                 `ProcessPoolExecutor.map(f, items)` with its default `chunksize=1` and with \
                 `chunksize=⌈items / 4·workers⌉` (its docs recommend a large chunk size for \
                 long inputs) run in the Python peers' own run, after the Rust rows, and are \
                 listed with the idioms compared",
            ),
            (
                &[Op::Imap],
                "`Pool.imap(f, items)` with its default `chunksize=1`, each result taken as it \
                 comes, on the kept pool that the Python server maps on, one sample in each \
                 round of the Rust columns (the input list made before the clock)",
            ),
            (&[Op::Kernels], "`Pool.map` over the batch, its default chunks"),
            (
                &[Op::PayloadShared],
                "a new `multiprocessing.shared_memory.SharedMemory` block each time, made and \
                 filled before the clock (closed and unlinked after it), its name passed to \
                 `pool.apply_async(f, (name,)).get()`; the task attaches the block by name, reads \
                 its last byte in place, closes it and returns the name",
            ),
            (
                &[Op::Messages],
                "`multiprocessing.Queue()` (`put` / `get`) or `multiprocessing.Pipe()` (`send` / \
                 `recv`) handed to a `multiprocessing.Process`, timed the same way as taskpool's",
            ),
            (
                &[Op::Faults],
                "`apply_async` + `get(timeout)` next to healthy tasks (ProcessPoolExecutor in \
                 the notes where it differs)",
            ),
        ],
        crates: &[],
    },
    Backend {
        id: "pipe-floor",
        shows: Shows::Reference("blocking pipe floor"),
        feature: None,
        runs: Runs::Here { start: Some(pipe_floor::start), spawn: None, messages: None },
        can: &[Op::RoundTrip, Op::Payload, Op::PayloadShared],
        cannot: &[],
        limits: Some(shared_bytes_built),
        how: &[(
            &[Op::RoundTrip, Op::Payload, Op::PayloadShared],
            "a raw length-prefixed ping-pong (8 bytes, or a buffer of the payload's size) over \
             two pipes grown to 1 MiB (as the process backend grows its own) between this \
             program and a copy of it, each side asleep in `read(2)` until the other writes, \
             the bytes copied only into and out of the pipes: two wake-ups per round trip, so \
             it moves with the machine's wake-up latency",
        )],
        crates: &[],
    },
    Backend {
        id: "spin-floor",
        shows: Shows::Reference("spinning shared-memory floor"),
        feature: None,
        runs: Runs::Here { start: Some(spin_floor::start), spawn: None, messages: None },
        can: &[Op::RoundTrip],
        cannot: &[],
        limits: None,
        how: &[(
            &[Op::RoundTrip],
            "a counter written to a shared page and copied back by a copy of this program, \
             both sides spinning on it: no system call and no wake-up, only cache lines moving \
             between CPUs (a round trip between processes costs at least this)",
        )],
        crates: &[],
    },
    Backend {
        id: "copy-floor",
        shows: Shows::Reference("copy floor"),
        feature: None,
        runs: Runs::Here { start: Some(copy_floor::start), spawn: None, messages: None },
        can: &[Op::Payload],
        cannot: &[],
        limits: None,
        how: &[(
            &[Op::Payload],
            "the copies a round trip of an owned buffer cannot avoid, made one after another \
             in this program: into warm memory (the request side's), from there into a new \
             vector (the worker's argument), into warm memory again (the result side's), and \
             into a new vector (the result); a new vector of 32 MiB or more asks for huge \
             pages first, as the process backend's do",
        )],
        crates: &[],
    },
    Backend {
        id: "sequential",
        shows: Shows::Reference("sequential"),
        feature: None,
        runs: Runs::Here { start: Some(sequential::start), spawn: None, messages: None },
        can: &[Op::Kernels],
        cannot: &[],
        limits: None,
        how: &[(&[Op::Kernels], "the batch's tasks one after another on the calling thread")],
        crates: &[],
    },
];

impl Backend {
    /// Its name in criterion's benchmark ids and the examples' output, such as `threads`.
    pub fn id(&self) -> &'static str {
        self.id
    }

    /// Where its figures appear.
    pub fn shows(&self) -> Shows {
        self.shows
    }

    /// Its column, unless it is a reference.
    pub fn column(&self) -> Option<Column> {
        match self.shows {
            Shows::Column(column) => Some(column),
            Shows::Reference(_) => None,
        }
    }

    /// The Cargo feature that enables it, if it has one.
    pub fn feature(&self) -> Option<&'static str> {
        self.feature
    }

    /// Whether this build includes it (its feature, if any, is on).
    pub fn enabled(&self) -> bool {
        !matches!(self.runs, Runs::Disabled)
    }

    /// Whether this program runs it (rather than a script, or nothing when disabled).
    pub fn runs_here(&self) -> bool {
        matches!(self.runs, Runs::Here { .. })
    }

    /// Whether `op` is among what it can run at all (at some size, when enabled).
    pub fn has(&self, op: Op) -> bool {
        self.can.contains(&op)
    }

    /// Whether it can run `op` at `size` (items, bytes, or microseconds per task, as the
    /// scenario counts), or why not.
    ///
    /// # Errors
    ///
    /// Why not, as the report's cell says it.
    pub fn can(&self, op: Op, size: u64) -> Result<(), String> {
        if !self.enabled() {
            return Err(DISABLED.to_owned());
        }
        if !self.can.contains(&op) {
            let why = self.cannot.iter().find(|(o, _)| *o == op).map(|(_, why)| *why);
            return Err(why.unwrap_or("not supported").to_owned());
        }
        self.limits.map_or(Ok(()), |limits| limits(op, size))
    }

    /// How it runs each operation it can run: the operations, and the calls as its users
    /// write them.
    pub fn how(&self) -> &'static [How] {
        self.how
    }

    /// The crates whose versions the report prints for it, such as `rayon`.
    pub fn crates(&self) -> &'static [&'static str] {
        self.crates
    }

    /// How it runs.
    pub(crate) fn runs(&self) -> &Runs {
        &self.runs
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("id", &self.id)
            .field("shows", &self.shows)
            .field("feature", &self.feature)
            .field("enabled", &self.enabled())
            .finish_non_exhaustive()
    }
}

/// The backend called `id`, if there is one.
pub fn backend(id: &str) -> Option<&'static Backend> {
    BACKENDS.iter().find(|b| b.id == id)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn columns_are_distinct_and_ordered_as_listed() {
        let keys: HashSet<_> = Column::ALL.iter().map(|c| c.key()).collect();
        let labels: HashSet<_> = Column::ALL.iter().map(|c| c.label()).collect();
        let colours: HashSet<_> = Column::ALL.iter().map(|c| c.colour()).collect();
        let n = Column::ALL.len();
        assert_eq!((keys.len(), labels.len(), colours.len()), (n, n, n));
        let mut sorted = Column::ALL.to_vec();
        sorted.reverse();
        sorted.sort();
        assert_eq!(sorted, Column::ALL);
        assert_eq!(serde_json::to_string(&Column::RAYON).unwrap(), "\"Rayon\"");
        assert_eq!(serde_json::from_str::<Column>("\"Rayon\"").unwrap(), Column::RAYON);
        assert!(serde_json::from_str::<Column>("\"Nothing\"").is_err());
    }

    #[test]
    fn every_column_has_a_backend_and_ids_are_unique() {
        let ids: HashSet<_> = BACKENDS.iter().map(|b| b.id()).collect();
        assert_eq!(ids.len(), BACKENDS.len());
        for &column in Column::ALL {
            assert!(BACKENDS.iter().any(|b| b.column() == Some(column)), "{column:?}");
        }
    }

    #[test]
    fn features_match_the_build_and_the_manifest() {
        let manifest = include_str!("../Cargo.toml");
        for backend in BACKENDS {
            let Some(feature) = backend.feature() else { continue };
            assert!(manifest.contains(&format!("\n{feature} = [\"dep:")), "{feature}");
        }
        let threads = backend("threads").unwrap();
        assert_eq!(threads.enabled(), cfg!(feature = "thread-pool"));
        if !threads.enabled() {
            assert_eq!(threads.can(Op::RoundTrip, 1).unwrap_err(), DISABLED);
        }
    }

    #[test]
    fn capabilities_say_why_not() {
        let procspawn = backend("procspawn").unwrap();
        assert_eq!(procspawn.can(Op::Map, 1).unwrap_err(), "procspawn has no batch API");
        assert_eq!(procspawn.can(Op::Imap, 1).unwrap_err(), "procspawn has no batch API");
        let rayon = backend("rayon").unwrap().can(Op::Imap, 1).unwrap_err();
        assert!(rayon.contains("`par_bridge()` keeps no order"), "{rayon}");
        assert!(backend("python-threads").unwrap().can(Op::Imap, 1).is_ok());
        assert!(backend("python-processes").unwrap().can(Op::Imap, 1).is_ok());
        assert_eq!(procspawn.can(Op::Kernels, 10).unwrap_err(), "not run at 10 µs tasks");
        assert!(procspawn.can(Op::Kernels, 1000).is_ok());
        assert_eq!(backend("sequential").unwrap().can(Op::Map, 1).unwrap_err(), "not supported");
        assert!(backend("std-thread").unwrap().can(Op::Spawn, 1).is_ok());
        // SharedBytes is the process backend's type: threads send it only in a build with it.
        let threads = backend("threads").unwrap().can(Op::PayloadShared, 1 << 20);
        match (cfg!(feature = "thread-pool"), cfg!(feature = "process-pool")) {
            (true, true) => assert!(threads.is_ok()),
            (true, false) => assert_eq!(threads.unwrap_err(), NO_SHARED_BYTES),
            (false, _) => assert_eq!(threads.unwrap_err(), DISABLED),
        }
        let python = backend("python-threads").unwrap().can(Op::PayloadShared, 1 << 20);
        assert!(python.unwrap_err().starts_with("threads of one process share its memory"));
        assert!(backend("python-processes").unwrap().can(Op::PayloadShared, 1 << 20).is_ok());
        // Said without starting anything: the cluster starts only for what it can run.
        let cluster = backend("cluster").unwrap();
        assert_eq!(cluster.enabled(), cfg!(feature = "cluster"));
        let why = if cluster.enabled() { "a cluster pool has no one-off spawn" } else { DISABLED };
        assert_eq!(cluster.can(Op::Spawn, 1).unwrap_err(), why);
    }
}
