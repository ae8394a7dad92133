//! Memory per worker: the resident set of each worker process, or for threads the growth of
//! the program per thread. Thread pools and procspawn are measured in a fresh child process
//! (a probe), so that nothing else this program did counts.

use std::fs;

use super::{Plan, Progress, PythonRun};
use crate::probe::{self, Probe, ProbeEnd, ProbeResult};
use crate::report::{Better, Cell, Column, Row, Unit};
use crate::stats::Summary;
#[cfg(any(feature = "thread-pool", feature = "process-pool"))]
use taskpool_core::Pool;

/// A process's resident set size in KiB, from /proc.
fn rss_kib(pid: u32) -> Option<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The ids of this process's children.
fn children() -> Vec<u32> {
    let me = std::process::id().to_string();
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(e.path().join("stat")).ok()?;
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            (fields.get(1) == Some(&me.as_str())).then_some(pid)
        })
        .collect()
}

/// Measures memory per worker for every column.
pub fn rows(plan: &Plan, progress: &Progress, python: Option<&PythonRun>) -> Vec<Row> {
    progress.say("memory per worker");
    let n = plan.workers;
    let label = format!("memory per worker (resident set; threads: program growth / {n})");
    let mut row = Row::new("memory", &label, Unit::KiB, Better::Lower);
    #[cfg(feature = "process-pool")]
    row.cells.insert(Column::TaskpoolProcesses, processes(n));
    for (column, name) in [
        (Column::TaskpoolThreads, "memory-threads"),
        (Column::Rayon, "memory-rayon"),
        (Column::Procspawn, "memory-procspawn"),
    ] {
        let cell = match probe::run(name, std::time::Duration::from_secs(30), &[]) {
            ProbeEnd::Survived(r) => {
                let values: Vec<f64> = r.values.iter().map(|(_, v)| *v).collect();
                Summary::of(values).map_or_else(|| Cell::Skipped(r.outcome), Cell::Value)
            }
            other => Cell::Skipped(format!("probe ended: {other:?}")),
        };
        row.cells.insert(column, cell);
    }
    for column in [Column::PythonThreads, Column::PythonProcesses] {
        let cell = python
            .and_then(|p| p.memory(column, n))
            .map_or_else(|| Cell::Skipped("not measured".into()), Cell::Value);
        row.cells.insert(column, cell);
    }
    super::skip(&mut row, &[Column::TaskpoolThreads, Column::TaskpoolProcesses], super::DISABLED);
    vec![row]
}

/// RSS of each worker of a fresh process pool of `n`.
#[cfg(feature = "process-pool")]
fn processes(n: usize) -> Cell {
    let Ok(pool) = taskpool_process::ProcessPool::new(n) else {
        return Cell::Skipped("did not start".into());
    };
    if pool.map(crate::tasks::noop, 0..(100 * n as u64)).is_err() {
        return Cell::Skipped("did not serve".into());
    }
    let values: Vec<f64> = pool.pids().into_iter().filter_map(rss_kib).collect();
    Summary::of(values).map_or_else(|| Cell::Skipped("no readable workers".into()), Cell::Value)
}

/// The memory probes, run in fresh child processes.
pub(crate) fn probes() -> Vec<Probe> {
    vec![("memory-threads", threads), ("memory-rayon", rayon), ("memory-procspawn", procspawn)]
}

const PROBE_WORKERS: usize = 2;

/// The program's growth per worker while `start` builds a pool and runs tasks on it.
fn growth_per_worker(start: impl FnOnce() -> Box<dyn std::any::Any>) -> ProbeResult {
    let me = std::process::id();
    let before = rss_kib(me).unwrap_or(0.0);
    let pool = start();
    let after = rss_kib(me).unwrap_or(0.0);
    drop(pool);
    let per = (after - before).max(0.0) / PROBE_WORKERS as f64;
    ProbeResult {
        outcome: "measured".into(),
        next_after_ms: None,
        values: vec![("kib_per_worker".into(), per)],
    }
}

fn threads() -> ProbeResult {
    #[cfg(feature = "thread-pool")]
    {
        growth_per_worker(|| {
            let pool = taskpool_thread::ThreadPool::new(PROBE_WORKERS).ok();
            if let Some(p) = &pool {
                let _ = p.map(crate::tasks::noop, 0..1000);
            }
            Box::new(pool)
        })
    }
    #[cfg(not(feature = "thread-pool"))]
    ProbeResult { outcome: super::DISABLED.into(), ..ProbeResult::default() }
}

fn rayon() -> ProbeResult {
    growth_per_worker(|| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(PROBE_WORKERS).build().ok();
        if let Some(p) = &pool {
            p.install(|| {
                use rayon::prelude::*;
                let v: Vec<u64> = (0..1000u64).into_par_iter().map(crate::tasks::noop).collect();
                std::hint::black_box(v);
            });
        }
        Box::new(pool)
    })
}

fn procspawn() -> ProbeResult {
    let peer = crate::peers::procspawn::ProcspawnPeer::new(PROBE_WORKERS);
    let _ = peer.round_trip();
    let values: Vec<(String, f64)> = children()
        .into_iter()
        .filter_map(|pid| Some((format!("pid {pid}"), rss_kib(pid)?)))
        .collect();
    ProbeResult { outcome: format!("{} workers", values.len()), next_after_ms: None, values }
}
