//! The cluster backend (`taskpool-cluster`) on this machine: a `nats-server` with JetStream
//! on loopback and two agents of this very program, started once, on first use, for every
//! row of the column (`taskpool_cluster::local`). Each pool a scenario asks for is a
//! `ClusterPool` connected to them, planning for the scenario's workers; the agents have
//! half the CPUs each.
//!
//! The agents' ack wait is 1 s (30 s by default), so that a task whose agent is killed runs
//! again elsewhere after about a second. Without a `nats-server` binary, or if the server or
//! an agent does not start, every cell of the column says why.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;
use taskpool_cluster::local::Cluster;
use taskpool_cluster::{ClusterConfig, ClusterPool, Pool};

use super::taskpool::Taskpool;
use super::{PoolSpec, Running, text};
use crate::columns::Op;
use crate::scenarios::Fault;

/// Agents on this machine.
const AGENTS: usize = 2;
/// The agents' ack wait, in milliseconds: how long a task waits after its agent died.
const ACK_WAIT_MS: u64 = 1000;
/// How long a task waits for an agent before it fails (`NoWorker`).
const AGENT_WAIT: Duration = Duration::from_secs(30);
/// How long the agent-loss row waits for its task to start.
const START_WITHIN: Duration = Duration::from_secs(60);

/// The workers of each agent: half the CPUs, at least one.
fn agent_workers() -> usize {
    (crate::scenarios::cores() / AGENTS).max(1)
}

/// The local cluster (none once stopped), or why there is none.
static CLUSTER: OnceLock<Result<Mutex<Option<Cluster>>, String>> = OnceLock::new();

/// The local cluster, started on first use.
fn cluster() -> Result<MutexGuard<'static, Option<Cluster>>, String> {
    let started = CLUSTER.get_or_init(|| {
        let workers = agent_workers();
        let vars = [("TASKPOOL_AGENT_ACK_WAIT_MS", ACK_WAIT_MS.to_string())];
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Cluster::start(AGENTS, workers, &vars)
            .map(|cluster| Mutex::new(Some(cluster)))
            .map_err(|e| format!("no local cluster: {e}"))
    });
    match started {
        // A poisoned lock still holds the cluster's processes as they were.
        Ok(cluster) => Ok(cluster.lock().unwrap_or_else(PoisonError::into_inner)),
        Err(why) => Err(why.clone()),
    }
}

/// Runs `f` on the local cluster, started on first use.
fn with_cluster<R>(f: impl FnOnce(&mut Cluster) -> R) -> Result<R, String> {
    let mut cluster = cluster()?;
    let cluster = cluster.as_mut().ok_or("the local cluster was stopped")?;
    Ok(f(cluster))
}

/// Stops the local cluster, if it started: its server and agents end and the server's store
/// is removed, rather than left in the temporary directory (the cluster lives in a static,
/// which is never dropped). The column's rows are all measured by then.
pub(crate) fn stop() {
    if let Some(Ok(cluster)) = CLUSTER.get() {
        drop(cluster.lock().unwrap_or_else(PoisonError::into_inner).take());
    }
}

/// Whether the column can run `op` at `size` here: the local cluster started (it starts on
/// the first call), and it has the workers a pool's start-up asks for (its workers are the
/// agents', started once).
/// The largest payload run on the cluster: its messages are bounded by the local server.
const MAX_PAYLOAD: u64 = 16 << 20;

pub(crate) fn limits(op: Op, size: u64) -> Result<(), String> {
    with_cluster(|_| ())?;
    let workers = (AGENTS * agent_workers()) as u64;
    if op == Op::Startup && size > workers {
        return Err(format!("the local agents have {workers} workers, not {size}"));
    }
    if op == Op::Payload && size > MAX_PAYLOAD {
        return Err(
            "not run above 16 MiB: a payload travels in one message of the local server".to_owned()
        );
    }
    Ok(())
}

/// A cluster pool on the local cluster.
pub(crate) fn start(spec: &PoolSpec) -> Result<Box<dyn Running>, String> {
    let url = with_cluster(|cluster| cluster.url())?;
    let config = ClusterConfig::new(url).config(spec.config()).agent_wait(AGENT_WAIT);
    let pool = ClusterPool::with_config(config).map_err(text)?;
    Ok(Box::new(OnCluster(Taskpool(pool))))
}

/// A cluster pool: a taskpool pool, and agents that can be lost.
struct OnCluster(Taskpool<ClusterPool>);

impl Running for OnCluster {
    fn noop(&self) -> Result<(), String> {
        self.0.noop()
    }

    fn in_flight(&self, n: usize) -> Result<(), String> {
        self.0.in_flight(n)
    }

    fn map_noop(&self, items: Vec<u64>) -> Result<(), String> {
        self.0.map_noop(items)
    }

    fn imap_noop(&self, items: Vec<u64>) -> Result<(), String> {
        self.0.imap_noop(items)
    }

    fn echo(&self, payload: ByteBuf) -> Result<ByteBuf, String> {
        self.0.echo(payload)
    }

    fn echo_vec(&self, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        self.0.echo_vec(payload)
    }

    /// As on the process backend, but the pool of one worker it runs on is not the worst
    /// case it is there: the agents' workers serve every pool, so the next task need not wait
    /// for the crashed worker's replacement; the outcome says so.
    fn fault(&self, fault: Fault) -> Result<u64, String> {
        self.0.fault(fault).map_err(|said| match fault {
            Fault::Segfault | Fault::Abort | Fault::Hang => format!(
                "{said} (the local agents have {} workers in all: the next task may run on \
                 another)",
                AGENTS * agent_workers()
            ),
            Fault::Panic | Fault::Bomb => said,
        })
    }

    fn agent_loss(&self) -> Result<(String, Duration), String> {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let pool = &self.0.0;
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let marker = std::env::temp_dir()
            .join(format!("taskpool-bench-agent-loss-{}-{run}", std::process::id()));
        let path = marker.to_string_lossy().into_owned();
        let started = Instant::now();
        let handle = pool.submit(first_run_waits_to_be_killed, path);
        let victim = wait_for_agent(&marker)?;
        if !with_cluster(|cluster| cluster.kill_agent(victim))? {
            return Err(format!("the task ran on {victim}, not on an agent of this run"));
        }
        let survivor = handle.join().map_err(text)?;
        self.0.noop()?;
        let elapsed = started.elapsed();
        let _ = std::fs::remove_file(&marker);
        if survivor == victim {
            return Err("the task's result came from the agent that was killed".into());
        }
        // Back to two agents, off the clock.
        with_cluster(Cluster::add_agent)?.map_err(|e| format!("no new agent: {e}"))?;
        // The time is the lost task's: the ack wait this run sets, 30 times shorter than
        // the agents' default. The pool itself never paused: the other agent was there.
        let text = format!(
            "the task ran again on another agent after the ack wait ({ACK_WAIT_MS} ms in this \
             run; 30 s by default), the next task sent once its result came; 0 lost"
        );
        Ok((text, elapsed))
    }
}

/// The pid of the agent that runs this task (its worker's parent). The first run writes it
/// to `path` and waits to be killed with its agent; a later run, elsewhere, returns at once.
fn first_run_waits_to_be_killed(path: String) -> u32 {
    let agent = std::os::unix::process::parent_id();
    if Path::new(&path).exists() {
        return agent;
    }
    // Written whole, then renamed: the reader never sees half a pid.
    let partial = format!("{path}.partial");
    if std::fs::write(&partial, agent.to_string()).is_ok() {
        let _ = std::fs::rename(&partial, &path);
    }
    std::thread::sleep(START_WITHIN);
    agent
}

/// Waits for the pid that [`first_run_waits_to_be_killed`] writes to `marker`.
fn wait_for_agent(marker: &Path) -> Result<u32, String> {
    let deadline = Instant::now() + START_WITHIN;
    loop {
        if let Ok(pid) = std::fs::read_to_string(marker).map(|t| t.trim().parse::<u32>()) {
            return pid.map_err(text);
        }
        if Instant::now() > deadline {
            return Err(format!("the task did not start within {START_WITHIN:?}"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
