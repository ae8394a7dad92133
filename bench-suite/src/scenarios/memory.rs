//! Memory: what a pool of N adds to the program, the same quantity for threads and processes
//! alike. A fresh child process (a probe) measures the program's memory, starts a pool of N,
//! runs tasks on it so that every worker is up, and measures again; the cell is the growth.
//! The program's memory is the sum of the PSS of all its processes (the probe and every
//! process descended from it): resident pages, each page that several processes share split
//! among them, so that a worker process pays for its own pages and its share of the binary
//! and libraries, and a thread for its stack and its heap. Where the kernel reports no PSS
//! (before Linux 4.14) the resident set stands in. The Python script measures the same
//! quantity in a fresh interpreter.

use std::collections::HashMap;
use std::fs;
use std::time::Duration;

use super::cells::choose;
use super::{Plan, Progress, RowId};
use crate::backends::PoolSpec;
use crate::backends::Runs;
use crate::columns::{DISABLED, Op, backend};
use crate::probe::{self, ProbeEnd, ProbeResult};
use crate::report::{Better, Cell, Row, Unit};
use crate::stats::Summary;

/// Fresh probes per column: the cell is their median.
pub(crate) const PROBES: usize = 3;

/// How long a memory probe may take.
const PROBE_LIMIT: Duration = Duration::from_secs(30);

/// A field's first number in `/proc/PID/<file>`, such as `Pss:` in `smaps_rollup`.
pub(crate) fn proc_field(pid: u32, file: &str, field: &str) -> Option<f64> {
    let text = fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// Every process descended from `pid`: its children, theirs, and so on.
pub(crate) fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else { continue };
        // The parent is the second field after the command name, which may hold spaces.
        let parent = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1));
        if let Some(parent) = parent.and_then(|p| p.parse::<u32>().ok()) {
            parents.entry(parent).or_default().push(child);
        }
    }
    let mut found = Vec::new();
    let mut next = vec![pid];
    while let Some(p) = next.pop() {
        for &child in parents.get(&p).into_iter().flatten() {
            found.push(child);
            next.push(child);
        }
    }
    found
}

/// The summed proportional set size of `pid` and its descendants, in KiB (the resident set
/// where a kernel has no `smaps_rollup`): what they take of the machine, a page shared by k
/// processes counted 1/k in each.
///
/// ```
/// let kib = taskpool_bench::tree_pss_kib(std::process::id());
/// assert!(kib > 0.0);
/// ```
pub fn tree_pss_kib(pid: u32) -> f64 {
    let one = |p: u32| {
        proc_field(p, "smaps_rollup", "Pss:").or_else(|| proc_field(p, "status", "VmRSS:"))
    };
    std::iter::once(pid).chain(descendants(pid)).filter_map(one).sum()
}

/// The memory of this program, in KiB: the PSS of this process and all its descendants.
fn program_kib() -> f64 {
    tree_pss_kib(std::process::id())
}

/// Measures what a pool of N adds to the program, for every column.
/// The Python script's columns are left for it.
pub(crate) fn rows(plan: &Plan, progress: &Progress) -> Vec<(RowId, Row)> {
    progress.step("memory");
    let n = plan.workers;
    let label = format!(
        "memory a pool of {n} adds to the program (PSS of all its processes, after − before)"
    );
    let mut row = Row::new(&RowId::Memory.key(), &label, Unit::KiB, Better::Lower);
    for (column, chosen) in choose(Op::Memory, n as u64) {
        let cell = match chosen {
            Err(why) => Cell::Skipped(why),
            Ok(backend) => match backend.runs() {
                Runs::Script(_) => continue,
                Runs::Disabled => Cell::Skipped(DISABLED.to_owned()),
                Runs::Here { .. } => {
                    probed("memory", &format!("{} {n}", backend.id()), PROBE_LIMIT, PROBES)
                }
            },
        };
        row.cells.insert(column, cell);
    }
    vec![(RowId::Memory, row)]
}

/// The median of the first value that `probes` fresh probes of `kind` with `args` report
/// (each given `limit`), or why there is none.
pub(crate) fn probed(kind: &str, args: &str, limit: Duration, probes: usize) -> Cell {
    let mut values = Vec::new();
    for _ in 0..probes {
        match probe::run(kind, args, limit, &[]) {
            ProbeEnd::Survived(r) => match r.values.first() {
                Some((_, value)) => values.push(*value),
                None => return Cell::Skipped(r.outcome),
            },
            other => return Cell::Skipped(format!("probe ended: {other:?}")),
        }
    }
    Summary::of(values).map_or_else(|| Cell::Skipped("no probe ran".into()), Cell::Value)
}

/// In a probe child: `args` is `<backend id> <workers>`; measures the program, starts that
/// pool, runs tasks on it (a `map` of 1000 no-ops where it has `map`, else a no-op) and reports
/// the program's growth in KiB.
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
    let before = program_kib();
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
    let values = vec![("program_growth_kib".to_owned(), program_kib() - before)];
    drop(pool);
    ProbeResult { outcome: format!("{} values", values.len()), next_after_ms: Vec::new(), values }
}
