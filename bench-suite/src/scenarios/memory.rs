//! Memory per worker: the resident set of each worker process, or for threads the growth of
//! the program per thread. Every backend is measured in a fresh child process (a probe) that
//! starts a pool of N and runs tasks on it, so that nothing else this program did counts.

use std::fs;
use std::time::Duration;

use super::cells::choose;
use super::{Plan, Progress, RowId};
use crate::backends::PoolSpec;
use crate::backends::Runs;
use crate::columns::{DISABLED, Kind, Op, backend};
use crate::probe::{self, ProbeEnd, ProbeResult};
use crate::report::{Better, Cell, Row, Unit};
use crate::stats::Summary;

/// How long a memory probe may take.
const PROBE_LIMIT: Duration = Duration::from_secs(30);

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
/// The Python script's columns are left for it.
pub(crate) fn rows(plan: &Plan, progress: &Progress) -> Vec<(RowId, Row)> {
    progress.say("memory per worker");
    let n = plan.workers;
    let label = format!("memory per worker (resident set; threads: program growth / {n})");
    let mut row = Row::new(&RowId::Memory.key(), &label, Unit::KiB, Better::Lower);
    for (column, chosen) in choose(Op::Memory, n as u64) {
        let cell = match chosen {
            Err(why) => Cell::Skipped(why),
            Ok(backend) => match backend.runs() {
                Runs::Script(_) => continue,
                Runs::Disabled => Cell::Skipped(DISABLED.to_owned()),
                Runs::Here { .. } => {
                    match probe::run("memory", &format!("{} {n}", backend.id()), PROBE_LIMIT, &[]) {
                        ProbeEnd::Survived(r) => {
                            let values: Vec<f64> = r.values.iter().map(|(_, v)| *v).collect();
                            Summary::of(values)
                                .map_or_else(|| Cell::Skipped(r.outcome), Cell::Value)
                        }
                        other => Cell::Skipped(format!("probe ended: {other:?}")),
                    }
                }
            },
        };
        row.cells.insert(column, cell);
    }
    vec![(RowId::Memory, row)]
}

/// In a probe child: `args` is `<backend id> <workers>`; starts that pool, runs tasks on it
/// and reports each worker process's resident set, or for threads the program's growth per
/// worker, in KiB.
pub(crate) fn probe(args: &str) -> ProbeResult {
    let mut words = args.split_whitespace();
    let backend = words.next().and_then(backend);
    let workers = words.next().and_then(|w| w.parse::<usize>().ok());
    let (Some(backend), Some(workers)) = (backend, workers) else {
        return ProbeResult {
            outcome: format!("bad probe arguments {args:?}"),
            ..Default::default()
        };
    };
    let me = std::process::id();
    let before = rss_kib(me).unwrap_or(0.0);
    let pool = match backend.start(&PoolSpec::workers(workers)) {
        Ok(pool) => pool,
        Err(e) => {
            return ProbeResult {
                outcome: format!("the pool did not start: {e}"),
                ..Default::default()
            };
        }
    };
    let served = if backend.can(Op::Map, 1000).is_ok() {
        pool.map_noop((0..1000).collect())
    } else {
        pool.noop()
    };
    if let Err(e) = served {
        return ProbeResult {
            outcome: format!("the pool did not serve: {e}"),
            ..Default::default()
        };
    }
    let values: Vec<(String, f64)> = match backend.column().map(|c| c.kind()) {
        Some(Kind::Processes) => children()
            .into_iter()
            .filter_map(|pid| Some((format!("pid {pid}"), rss_kib(pid)?)))
            .collect(),
        _ => {
            let after = rss_kib(me).unwrap_or(0.0);
            vec![("kib_per_worker".into(), (after - before).max(0.0) / workers as f64)]
        }
    };
    drop(pool);
    ProbeResult { outcome: format!("{} values", values.len()), next_after_ms: None, values }
}
