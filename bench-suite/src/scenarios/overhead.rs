//! Overheads: start-up, one-off spawn, per-task round trip, throughput unchunked and chunked,
//! and a 1 MiB round trip, for every column, with the raw pipe ping-pong as the floor.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;

use rayon::prelude::*;
#[cfg(feature = "process-pool")]
use serde_bytes::ByteBuf;

use super::{DISABLED, Plan, Progress, median_call, row, skip, text, timed, variant};
use crate::peers::pipe_floor::PipeFloor;
use crate::peers::procspawn::{self as ps, ProcspawnPeer};
use crate::report::{Better, Column, Row, Unit};
use crate::stats::{Variant, interleave};
use crate::tasks::{self, noop};
#[cfg(any(feature = "thread-pool", feature = "process-pool"))]
use taskpool_core::Pool;

/// The pools the overhead rows share, built once.
pub struct Overhead {
    #[cfg(feature = "thread-pool")]
    threads: taskpool_thread::ThreadPool,
    #[cfg(feature = "process-pool")]
    processes: taskpool_process::ProcessPool,
    rayon: rayon::ThreadPool,
    procspawn: Option<ProcspawnPeer>,
    floor: Option<PipeFloor>,
}

impl std::fmt::Debug for Overhead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overhead").finish_non_exhaustive()
    }
}

const ONE_MIB: usize = 1 << 20;

impl Overhead {
    /// Builds the pools, `plan.workers` workers each.
    ///
    /// # Errors
    ///
    /// A pool that cannot start.
    pub fn new(plan: &Plan) -> Result<Overhead, String> {
        let n = plan.workers;
        Ok(Overhead {
            #[cfg(feature = "thread-pool")]
            threads: taskpool_thread::ThreadPool::new(n).map_err(text)?,
            #[cfg(feature = "process-pool")]
            processes: taskpool_process::ProcessPool::new(n).map_err(text)?,
            rayon: rayon::ThreadPoolBuilder::new().num_threads(n).build().map_err(text)?,
            procspawn: catch_unwind(|| ProcspawnPeer::new(n)).ok(),
            floor: PipeFloor::start().ok(),
        })
    }

    /// Measures every overhead row.
    pub fn rows(&mut self, plan: &Plan, progress: &Progress) -> Vec<Row> {
        let mut rows = Vec::new();
        progress.say("overhead: pool start-up");
        rows.push(self.startup(plan));
        progress.say("overhead: one-off spawn and join");
        rows.push(self.spawn(plan));
        progress.say("overhead: per-task round trip");
        rows.push(self.round_trip(plan));
        progress.say("overhead: 1,000 tasks in flight");
        rows.push(self.in_flight(plan));
        progress.say("overhead: map of no-ops");
        rows.push(self.map(plan));
        progress.say("overhead: 1 MiB round trip");
        rows.push(self.payload(plan, ONE_MIB));
        for row in &mut rows {
            finish(row);
        }
        rows
    }

    fn startup(&self, plan: &Plan) -> Row {
        let n = plan.workers;
        let mut variants: Vec<Variant<'_>> = Vec::new();
        #[cfg(feature = "thread-pool")]
        variants.push(variant(Column::TaskpoolThreads, || {
            timed(|| {
                let pool = taskpool_thread::ThreadPool::new(n).map_err(text)?;
                pool.apply(noop, 1).map(drop).map_err(text)
            })
        }));
        #[cfg(feature = "process-pool")]
        variants.push(variant(Column::TaskpoolProcesses, || {
            timed(|| {
                let pool = taskpool_process::ProcessPool::new(n).map_err(text)?;
                pool.apply(noop, 1).map(drop).map_err(text)
            })
        }));
        variants.push(variant(Column::Rayon, || {
            timed(|| {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build().map_err(text)?;
                pool.install(|| std::hint::black_box(noop(1)));
                Ok(())
            })
        }));
        variants.push(variant(Column::Procspawn, || {
            catch_unwind(|| ps::pool_startup(n))
                .map(|d| d.as_secs_f64() * 1e6)
                .map_err(|_| "procspawn failed".into())
        }));
        let label = format!("pool of {n}: from new to first result");
        row("startup", &label, Unit::Micros, Better::Lower, interleave(plan.repeats, variants))
    }

    fn spawn(&self, plan: &Plan) -> Row {
        let mut variants: Vec<Variant<'_>> = Vec::new();
        let k = (plan.round_trips / 20).max(10);
        #[cfg(feature = "thread-pool")]
        variants.push(variant(Column::TaskpoolThreads, || {
            median_call(k, || {
                taskpool_thread::spawn(noop, 1).and_then(|c| c.join()).map(drop).map_err(text)
            })
        }));
        #[cfg(feature = "process-pool")]
        variants.push(variant(Column::TaskpoolProcesses, || {
            median_call(k, || {
                taskpool_process::spawn(noop, 1).and_then(|c| c.join()).map(drop).map_err(text)
            })
        }));
        variants.push(variant(Column::Rayon, || {
            median_call(k, || {
                std::thread::spawn(|| noop(1)).join().map(drop).map_err(|_| "panicked".into())
            })
        }));
        variants.push(variant(Column::Procspawn, || {
            median_call(k, || procspawn::spawn(1u64, noop).join().map(drop).map_err(text))
        }));
        let mut row = row(
            "spawn",
            "one-off spawn + join of a no-op (rayon column: std::thread)",
            Unit::Micros,
            Better::Lower,
            interleave(plan.repeats, variants),
        );
        skip(
            &mut row,
            &[Column::PythonThreads, Column::PythonProcesses],
            "not in the Python script",
        );
        row
    }

    fn round_trip(&mut self, plan: &Plan) -> Row {
        let k = plan.round_trips;
        let (tx, rx) = mpsc::channel();
        let Overhead { rayon, procspawn, floor, .. } = self;
        let mut variants: Vec<Variant<'_>> = Vec::new();
        #[cfg(feature = "thread-pool")]
        {
            let pool = &self.threads;
            variants.push(variant(Column::TaskpoolThreads, move || {
                median_call(k, || pool.apply(noop, 1).map(drop).map_err(text))
            }));
        }
        #[cfg(feature = "process-pool")]
        {
            let pool = &self.processes;
            variants.push(variant(Column::TaskpoolProcesses, move || {
                median_call(k, || pool.apply(noop, 1).map(drop).map_err(text))
            }));
        }
        let rayon = &*rayon;
        variants.push(variant(Column::Rayon, move || {
            median_call(k, || {
                let tx = tx.clone();
                rayon.spawn(move || {
                    let _ = tx.send(noop(1));
                });
                rx.recv().map(drop).map_err(text)
            })
        }));
        if let Some(peer) = procspawn.as_ref() {
            variants.push(variant(Column::Procspawn, move || {
                median_call(k, || {
                    catch_unwind(AssertUnwindSafe(|| peer.round_trip()))
                        .map(drop)
                        .map_err(|_| "procspawn failed".into())
                })
            }));
        }
        if let Some(floor) = floor.as_mut() {
            variants.push(Variant::new("raw pipe ping-pong", move || {
                median_call(k, || floor.round_trip(&[0; 8]).map_err(text))
            }));
        }
        row(
            "round_trip",
            "per-task round trip (submit + join a no-op)",
            Unit::Micros,
            Better::Lower,
            interleave(plan.repeats, variants),
        )
    }

    fn in_flight(&self, plan: &Plan) -> Row {
        let n = plan.in_flight;
        let per_second = |micros: f64| n as f64 / (micros / 1e6);
        let mut variants: Vec<Variant<'_>> = Vec::new();
        #[cfg(feature = "thread-pool")]
        variants.push(variant(Column::TaskpoolThreads, || {
            timed(|| {
                let handles: Vec<_> = (0..n as u64).map(|i| self.threads.submit(noop, i)).collect();
                handles.into_iter().try_for_each(|h| h.join().map(drop)).map_err(text)
            })
            .map(per_second)
        }));
        #[cfg(feature = "process-pool")]
        variants.push(variant(Column::TaskpoolProcesses, || {
            timed(|| {
                let handles: Vec<_> =
                    (0..n as u64).map(|i| self.processes.submit(noop, i)).collect();
                handles.into_iter().try_for_each(|h| h.join().map(drop)).map_err(text)
            })
            .map(per_second)
        }));
        variants.push(variant(Column::Rayon, || {
            timed(|| {
                let (tx, rx) = mpsc::channel();
                for i in 0..n as u64 {
                    let tx = tx.clone();
                    self.rayon.spawn(move || {
                        let _ = tx.send(noop(i));
                    });
                }
                drop(tx);
                (rx.iter().count() == n).then_some(()).ok_or_else(|| "lost tasks".to_owned())
            })
            .map(per_second)
        }));
        if let Some(peer) = &self.procspawn {
            variants.push(variant(Column::Procspawn, move || {
                catch_unwind(AssertUnwindSafe(|| peer.in_flight(n)))
                    .map(|d| n as f64 / d.as_secs_f64())
                    .map_err(|_| "procspawn failed".into())
            }));
        }
        let label = format!("{n} tasks in flight, one message each (tasks/s)");
        row(
            "in_flight",
            &label,
            Unit::PerSecond,
            Better::Higher,
            interleave(plan.repeats, variants),
        )
    }

    fn map(&self, plan: &Plan) -> Row {
        let n = plan.map_items;
        // Every variant starts from the same owned vector, copied outside the timing.
        let items: Vec<u64> = (0..n as u64).collect();
        let items = &items;
        let per_second = |micros: f64| n as f64 / (micros / 1e6);
        let mut variants: Vec<Variant<'_>> = Vec::new();
        #[cfg(feature = "thread-pool")]
        variants.push(variant(Column::TaskpoolThreads, || {
            let input = items.clone();
            timed(|| {
                self.threads.map(noop, input).map(|v| drop(std::hint::black_box(v))).map_err(text)
            })
            .map(per_second)
        }));
        #[cfg(feature = "process-pool")]
        variants.push(variant(Column::TaskpoolProcesses, || {
            let input = items.clone();
            timed(|| {
                self.processes.map(noop, input).map(|v| drop(std::hint::black_box(v))).map_err(text)
            })
            .map(per_second)
        }));
        variants.push(variant(Column::Rayon, || {
            let input = items.clone();
            timed(|| {
                let v: Vec<u64> = self.rayon.install(|| input.into_par_iter().map(noop).collect());
                std::hint::black_box(v);
                Ok(())
            })
            .map(per_second)
        }));
        let mut row = row(
            "map",
            &format!("map of {n} no-ops, automatic chunks (items/s)"),
            Unit::PerSecond,
            Better::Higher,
            interleave(plan.repeats, variants),
        );
        skip(&mut row, &[Column::Procspawn], "procspawn has no batch API");
        row
    }

    fn payload(&mut self, plan: &Plan, bytes: usize) -> Row {
        let k = (plan.round_trips / 50).max(5);
        let Overhead { rayon, procspawn, floor, .. } = self;
        let mut variants: Vec<Variant<'_>> = Vec::new();
        // Each variant sends the buffer it got back, so building it is not timed.
        #[cfg(feature = "thread-pool")]
        {
            let pool = &self.threads;
            let mut buffer = Some(vec![7u8; bytes]);
            variants.push(variant(Column::TaskpoolThreads, move || {
                median_call(k, || {
                    let sent = buffer.take().unwrap_or_default();
                    buffer = Some(pool.apply(tasks::echo_vec, sent).map_err(text)?);
                    Ok(())
                })
            }));
        }
        #[cfg(feature = "process-pool")]
        {
            let pool = &self.processes;
            let mut buffer = Some(ByteBuf::from(vec![7u8; bytes]));
            variants.push(variant(Column::TaskpoolProcesses, move || {
                median_call(k, || {
                    let sent = buffer.take().unwrap_or_default();
                    buffer = Some(pool.apply(tasks::echo, sent).map_err(text)?);
                    Ok(())
                })
            }));
        }
        let rayon = &*rayon;
        let mut buffer = Some(vec![7u8; bytes]);
        variants.push(variant(Column::Rayon, move || {
            median_call(k, || {
                let (tx, rx) = mpsc::channel();
                let sent = buffer.take().unwrap_or_default();
                rayon.spawn(move || {
                    let _ = tx.send(tasks::echo_vec(sent));
                });
                buffer = Some(rx.recv().map_err(text)?);
                Ok(())
            })
        }));
        if let Some(peer) = procspawn.as_ref() {
            // The peer builds its payload before it starts its clock and returns the time.
            variants.push(variant(Column::Procspawn, move || {
                let times: Result<Vec<f64>, String> = (0..k)
                    .map(|_| {
                        catch_unwind(AssertUnwindSafe(|| peer.payload_round_trip(bytes)))
                            .map(super::micros)
                            .map_err(|_| "procspawn failed".to_owned())
                    })
                    .collect();
                crate::stats::Summary::of(times?)
                    .map(|s| s.median)
                    .ok_or_else(|| "no samples".into())
            }));
        }
        if let Some(floor) = floor.as_mut() {
            let payload = vec![7u8; bytes];
            variants.push(Variant::new("raw pipe ping-pong", move || {
                median_call(k, || floor.round_trip(&payload).map_err(text))
            }));
        }
        row(
            "payload_1mib",
            "1 MiB round trip (argument there, result back)",
            Unit::Micros,
            Better::Lower,
            interleave(plan.repeats, variants),
        )
    }
}

/// Marks the columns a build without a backend leaves empty.
fn finish(row: &mut Row) {
    #[cfg(not(feature = "thread-pool"))]
    skip(row, &[Column::TaskpoolThreads], DISABLED);
    #[cfg(not(feature = "process-pool"))]
    skip(row, &[Column::TaskpoolProcesses], DISABLED);
    let _ = (DISABLED, &row);
}
