//! Idle cost: the CPU time a pool burns while it has nothing to do. A fresh child process (a
//! probe) starts a pool of 2, runs one no-op on it (and, for worker processes, short sleeps
//! until every worker has served one, so that no worker is still starting), then sleeps one
//! second; the cell is the
//! CPU time that the probe's other threads (the pool's) and every process descended from it
//! (the workers) used over that second. A pool whose threads and workers all sleep costs
//! ~0; one that spins or polls on a timer shows it here.
//!
//! CPU time is read per thread from `/proc/PID/task/TID/sched` (`se.sum_exec_runtime`,
//! nanoseconds); where the kernel does not publish it, from `schedstat`, and failing that
//! from `stat` (clock ticks, 10 ms: too coarse to tell ~0 from 1 ms, which the cell's note
//! then says).

use std::fs;
use std::time::Duration;

use super::Wait;
use super::cells::choose;
use super::memory::{descendants, probed};
use super::{Plan, Progress, RowId};
use crate::backends::{PoolSpec, Running, Runs};
use crate::columns::{Backend, Column, DISABLED, Op, backend};
use crate::probe::ProbeResult;
use crate::report::{Better, Cell, Row, Unit};

/// The workers of the idle pool.
pub(crate) const IDLE_WORKERS: usize = 2;

/// How long the pool idles while its CPU time is measured.
const IDLE: Duration = Duration::from_secs(1);

/// Fresh probes per column: the cell is their median.
pub(crate) const PROBES: usize = 3;

/// Rounds of short sleeps that may pass before every worker served one.
const WARM_UP_TRIES: usize = 500;

/// How long an idle probe may take.
const PROBE_LIMIT: Duration = Duration::from_secs(30);

/// Measures the idle cost of a pool of [`IDLE_WORKERS`], for every column this program runs.
/// The columns' probes run side by side (each measures only its own processes, and an idle
/// pool leaves the CPUs to the others), so the row costs about [`PROBES`] seconds.
pub(crate) fn rows(_plan: &Plan, progress: &Progress) -> Vec<(RowId, Row)> {
    progress.step("idle pools");
    let label = format!(
        "idle pool of {IDLE_WORKERS}: CPU time of its threads and workers over one idle second \
         after a task"
    );
    let mut row = Row::new(&RowId::Idle.key(), &label, Unit::Micros, Better::Lower);
    let mut probed_here = Vec::new();
    for (column, chosen) in choose(Op::Idle, IDLE_WORKERS as u64) {
        match chosen {
            Err(why) => {
                row.cells.insert(column, Cell::Skipped(why));
            }
            Ok(backend) => match backend.runs() {
                Runs::Script(_) => {}
                Runs::Disabled => {
                    row.cells.insert(column, Cell::Skipped(DISABLED.to_owned()));
                }
                Runs::Here { .. } => probed_here.push((column, backend.id())),
            },
        }
    }
    let cells: Vec<_> = std::thread::scope(|s| {
        let running: Vec<_> = probed_here
            .into_iter()
            .map(|(column, id)| (column, s.spawn(move || probed("idle", id, PROBE_LIMIT, PROBES))))
            .collect();
        running
            .into_iter()
            .map(|(column, probe)| {
                let cell = probe
                    .join()
                    .unwrap_or_else(|_| Cell::Skipped("the probe's thread panicked".into()));
                (column, cell)
            })
            .collect()
    });
    row.cells.extend(cells);
    vec![(RowId::Idle, row)]
}

/// In a probe child: `args` is a backend id; starts a pool of [`IDLE_WORKERS`] of it, runs a
/// no-op, then measures the CPU time of this process's other threads and of its descendants
/// over [`IDLE`], in µs.
pub(crate) fn probe(args: &str) -> ProbeResult {
    let failed = |outcome: String| ProbeResult { outcome, ..Default::default() };
    let Some(backend) = backend(args.trim()) else {
        return failed(format!("bad probe arguments {args:?}"));
    };
    let pool = match backend.start(&PoolSpec::workers(IDLE_WORKERS)) {
        Ok(pool) => pool,
        Err(e) => return failed(format!("the pool did not start: {e}")),
    };
    if let Err(e) = pool.noop().and_then(|()| every_worker_up(pool.as_ref(), backend)) {
        return failed(format!("the pool did not serve: {e}"));
    }
    let Some(before) = pool_cpu() else {
        return failed("the threads' CPU time is not readable from /proc".into());
    };
    std::thread::sleep(IDLE);
    let Some(after) = pool_cpu() else {
        return failed("the threads' CPU time is not readable from /proc".into());
    };
    drop(pool);
    let micros = after.nanos.saturating_sub(before.nanos) as f64 / 1e3;
    let outcome = if after.coarse { "measured in clock ticks (10 ms)" } else { "measured" };
    ProbeResult {
        outcome: outcome.into(),
        next_after_ms: Vec::new(),
        values: vec![("idle_cpu_us".to_owned(), micros)],
    }
}

/// Waits until every worker process of the pool has served a task, so that the idle second
/// holds no worker's start: sends a few short sleeps at once until they ran in
/// [`IDLE_WORKERS`] different processes. A thread pool's threads start in microseconds, not
/// worth waiting for.
fn every_worker_up(pool: &dyn Running, backend: &Backend) -> Result<(), String> {
    if !backend.column().is_some_and(Column::is_processes) {
        return Ok(());
    }
    let nap = Wait::Sleep { micros: 2_000 };
    for _ in 0..WARM_UP_TRIES {
        let mut pids = pool.waits(&nap, 2 * IDLE_WORKERS)?;
        pids.sort_unstable();
        pids.dedup();
        if pids.len() >= IDLE_WORKERS {
            return Ok(());
        }
    }
    Err(format!("the tasks never ran in {IDLE_WORKERS} different workers"))
}

/// CPU time summed over threads, and whether any was read in clock ticks.
#[derive(Debug, Clone, Copy, Default)]
struct CpuTime {
    nanos: u64,
    coarse: bool,
}

/// The CPU time of every thread of this process but the calling one, and of every thread of
/// its descendants.
fn pool_cpu() -> Option<CpuTime> {
    threads_cpu(true)
}

/// The CPU time of every thread of this process but the calling one, and with `descendants_too`
/// of every thread of its descendants.
fn threads_cpu(descendants_too: bool) -> Option<CpuTime> {
    let me = std::process::id();
    let this_thread = fs::read_link("/proc/thread-self").ok()?;
    let this_tid = this_thread.file_name()?.to_str()?.parse::<u32>().ok()?;
    let mut total = CpuTime::default();
    let others = if descendants_too { descendants(me) } else { Vec::new() };
    for pid in std::iter::once(me).chain(others) {
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me && tid == this_tid {
                continue;
            }
            if let Some((nanos, coarse)) = thread_cpu(pid, tid) {
                total.nanos += nanos;
                total.coarse |= coarse;
            }
        }
    }
    Some(total)
}

/// The CPU time of thread `tid` of `pid` in nanoseconds, and whether it was read in clock
/// ticks; `None` if the thread is gone.
fn thread_cpu(pid: u32, tid: u32) -> Option<(u64, bool)> {
    let dir = format!("/proc/{pid}/task/{tid}");
    if let Ok(sched) = fs::read_to_string(format!("{dir}/sched")) {
        let line = sched.lines().find(|l| l.starts_with("se.sum_exec_runtime"));
        let millis = line.and_then(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok());
        if let Some(millis) = millis {
            return Some(((millis * 1e6) as u64, false));
        }
    }
    if let Ok(schedstat) = fs::read_to_string(format!("{dir}/schedstat")) {
        let nanos = schedstat.split_whitespace().next().and_then(|n| n.parse::<u64>().ok());
        if let Some(nanos) = nanos.filter(|&n| n > 0) {
            return Some((nanos, false));
        }
    }
    let stat = fs::read_to_string(format!("{dir}/stat")).ok()?;
    // utime and stime are fields 14 and 15; the fields after the command name start at 3.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let ticks = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    Some((ticks * 10_000_000, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_thread_shows_in_the_pool_cpu_and_this_one_does_not() {
        let (started, ready) = std::sync::mpsc::channel();
        let (go, set) = std::sync::mpsc::channel::<()>();
        let (finish, finished) = std::sync::mpsc::channel::<()>();
        let spinner = std::thread::spawn(move || {
            let link = fs::read_link("/proc/thread-self").unwrap();
            let tid = link.file_name().unwrap().to_str().unwrap().parse::<u32>().unwrap();
            let own = || thread_cpu(std::process::id(), tid).unwrap();
            started.send(()).unwrap();
            // Burns only once the pool's CPU time before has been read.
            set.recv().unwrap();
            let (start, coarse) = own();
            // Burns 20 ms of its own CPU time (at least a tick where only ticks are read).
            let burn = if coarse { 10_000_000 } else { 20_000_000 };
            while own().0 < start + burn {
                std::hint::spin_loop();
            }
            finish.send(()).unwrap();
            // Lives on until the time after has been read: an ended thread's time leaves
            // the sum.
            set.recv().unwrap();
        });
        ready.recv().unwrap();
        // This process's threads only: other tests of this binary start and end processes
        // (the Python server's) whose time would leave the sum between the two readings.
        let before = threads_cpu(false).unwrap();
        go.send(()).unwrap();
        finished.recv().unwrap();
        let after = threads_cpu(false).unwrap();
        go.send(()).unwrap();
        spinner.join().unwrap();
        assert!(after.nanos >= before.nanos + 10_000_000, "{before:?} {after:?}");
    }
}
