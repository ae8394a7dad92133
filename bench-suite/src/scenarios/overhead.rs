//! Overheads: one-off spawn, pool start-up, per-task round trip, tasks in flight, `map` and
//! `imap` of no-ops and a payload round trip, with no work in the task.
//!
//! | scenario | one iteration | report | criterion |
//! |---|---|---|---|
//! | `spawn` | start a one-off worker that runs a no-op, join it | median of `round_trips / 20` (≥ 10) per sample | 30 samples |
//! | `startup` | `new` a pool of N up to the result of its first no-op (its drop is not timed) | one per sample | 20 samples |
//! | `round_trip` | submit one no-op to a warm pool and wait for it | median of `round_trips` per sample | default |
//! | `in_flight` | submit `in_flight` no-ops, then join them all | one per sample, tasks/s | default |
//! | `in_flight_kept` | the same on a pool kept busy: bursts back to back | median of 5 per sample (the first follows the other columns' samples; the others follow a burst), tasks/s | default |
//! | `map` | `map` a no-op over `map_items` items, automatic chunks (the items are copied before the clock starts) | one per sample, items/s, `map_repeats` samples | 20 samples |
//! | `imap` | `imap` a no-op over `imap_items` items, each result taken as it comes, in order (the items are copied before the clock starts) | one per sample, items/s, `map_repeats` samples | 20 samples |
//! | `payload` | a byte buffer (`serde_bytes::ByteBuf`) to a task that returns it, one in flight | 1 MiB, median of `round_trips / 50` (≥ 5) per sample | 0 B to 16 MiB, 10 samples from 1 MiB |
//! | `payload_64mib` | the same with 64 MiB | median of [`LARGE_ROUND_TRIPS`] per sample (the first follows the other columns' samples; the others follow a round trip) | 10 samples |
//! | `shared_bytes` | the same as `taskpool_process::SharedBytes`, a new one (made before the clock) each time, so the worker has not mapped it yet: the task reads its last byte in place and returns it (the raw pipe floor echoes a buffer, as in `payload`) | 1 MiB, as `payload` | as `payload` |
//! | `shared_bytes_64mib` | the same with 64 MiB | as `payload_64mib` | 10 samples |
//! | `payload_vec` | the same with a plain `Vec<u8>` (which serde moves byte by byte) | — | taskpool's backends |
//!
//! N is the plan's worker count (the CPUs); pools are shared by the scenarios of a run
//! (start-up builds its own). Every backend of `columns.rs` that can run a scenario runs it;
//! two raw ping-pongs between two processes are the floors of the round trips: a blocking
//! one over pipes (both sides sleep in `read`, two wake-ups per round trip) and a spinning
//! one through a shared page (no system call, no wake-up). The payload rows' floor is the
//! blocking one carrying the payload's bytes: what a copy through pipes costs (the
//! `SharedBytes` rows measure it again, the same way, in their own run of variants). The
//! payload rows have a second floor, the copy floor (`copy_floor.rs`): the four copies a round
//! trip of an owned buffer cannot avoid (two into warm memory, two into new vectors), made in
//! this process.

use std::hint::black_box;

use serde_bytes::ByteBuf;

use super::RowId;
use super::scenario::{Scenario, Setup, timed};
use super::suite::{Count, Iteration};
use crate::backends::{PoolSpec, Running};
use crate::columns::Op;
use crate::report::{Better, Unit};

/// The payload size of the report's row (the Python peers are asked for it too).
pub(crate) const PAYLOAD_BYTES: u64 = 1 << 20;

/// The size of the large payload's row (the Python peers are asked for it too).
pub(crate) const LARGE_PAYLOAD_BYTES: u64 = 64 << 20;

/// Bursts per sample of `in_flight_kept`, back to back: their median is a burst that followed
/// another on the same pool.
const KEPT_BURSTS: usize = 5;

/// Round trips per sample of a 64 MiB row, whose median is the sample. The first after the
/// other columns' samples finds memory that was freed seconds before; on a virtual machine
/// that hands free memory back to its host (free page reporting, in blocks of 2 MiB), faulting
/// it in again costs several times a copy (the process backend's 64 MiB round trip on a
/// 2-core VM: 160–390 ms after 1.5 s of rest, 40–55 ms right after another), and which
/// column meets it first depends on the order of a round, not on the column. The median is
/// the round trip of a program that moves large values one after another.
pub(crate) const LARGE_ROUND_TRIPS: usize = 3;

/// The payload sizes criterion measures.
const PAYLOADS: [u64; 5] = [0, 1 << 10, 64 << 10, 1 << 20, 16 << 20];

/// The overhead scenarios, in the report's order.
pub(crate) static OVERHEAD: [Scenario; 12] = [
    Scenario {
        name: "startup",
        op: Op::Startup,
        row: |_| RowId::Startup,
        label: |_, n| format!("pool of {n}: from new to first result"),
        unit: Unit::Micros,
        better: Better::Lower,
        sizes: |plan| vec![plan.workers as u64],
        report_size: |plan| plan.workers as u64,
        parameter: |n| n.to_string(),
        per_sample: |_| 1,
        repeats: |plan| plan.repeats,
        count: Count::None,
        sample_size: |_| Some(20),
        prepare: startup,
    },
    Scenario {
        name: "spawn",
        op: Op::Spawn,
        row: |_| RowId::Spawn,
        label: |_, _| "one-off spawn + join of a no-op (rayon column: std::thread::scope)".into(),
        unit: Unit::Micros,
        better: Better::Lower,
        sizes: |_| vec![1],
        report_size: |_| 1,
        parameter: |_| "noop".into(),
        per_sample: |plan| (plan.round_trips / 20).max(10),
        repeats: |plan| plan.repeats,
        count: Count::None,
        sample_size: |_| Some(30),
        prepare: spawn,
    },
    Scenario {
        name: "round_trip",
        op: Op::RoundTrip,
        row: |_| RowId::RoundTrip,
        label: |_, _| "per-task round trip (submit + join a no-op)".into(),
        unit: Unit::Micros,
        better: Better::Lower,
        sizes: |_| vec![1],
        report_size: |_| 1,
        parameter: |_| "noop".into(),
        per_sample: |plan| plan.round_trips,
        repeats: |plan| plan.repeats,
        count: Count::None,
        sample_size: |_| None,
        prepare: round_trip,
    },
    Scenario {
        name: "in_flight",
        op: Op::InFlight,
        row: |_| RowId::InFlight,
        label: |_, n| format!("{n} tasks in flight, one message each (tasks/s)"),
        unit: Unit::PerSecond,
        better: Better::Higher,
        sizes: |plan| vec![plan.in_flight as u64],
        report_size: |plan| plan.in_flight as u64,
        parameter: |n| n.to_string(),
        per_sample: |_| 1,
        repeats: |plan| plan.repeats,
        count: Count::Elements,
        sample_size: |_| None,
        prepare: in_flight,
    },
    Scenario {
        name: "in_flight_kept",
        op: Op::InFlight,
        row: |_| RowId::InFlightKept,
        label: |_, n| {
            format!("{n} tasks in flight on a pool kept busy: bursts back to back (tasks/s)")
        },
        unit: Unit::PerSecond,
        better: Better::Higher,
        sizes: |plan| vec![plan.in_flight as u64],
        report_size: |plan| plan.in_flight as u64,
        parameter: |n| n.to_string(),
        per_sample: |_| KEPT_BURSTS,
        repeats: |plan| plan.repeats,
        count: Count::Elements,
        sample_size: |_| None,
        prepare: in_flight,
    },
    Scenario {
        name: "map",
        op: Op::Map,
        row: |_| RowId::Map,
        label: |_, n| format!("map of {n} no-ops, automatic chunks (items/s)"),
        unit: Unit::PerSecond,
        better: Better::Higher,
        sizes: |plan| vec![plan.map_items as u64],
        report_size: |plan| plan.map_items as u64,
        parameter: |n| n.to_string(),
        per_sample: |_| 1,
        repeats: |plan| plan.map_repeats,
        count: Count::Elements,
        sample_size: |_| Some(20),
        prepare: map,
    },
    Scenario {
        name: "imap",
        op: Op::Imap,
        row: |_| RowId::Imap,
        label: |_, n| format!("imap of {n} no-ops, consumed as they come (items/s)"),
        unit: Unit::PerSecond,
        better: Better::Higher,
        sizes: |plan| vec![plan.imap_items as u64],
        report_size: |plan| plan.imap_items as u64,
        parameter: |n| n.to_string(),
        per_sample: |_| 1,
        repeats: |plan| plan.map_repeats,
        count: Count::Elements,
        sample_size: |_| Some(20),
        prepare: imap,
    },
    Scenario {
        name: "payload",
        op: Op::Payload,
        row: RowId::Payload,
        label: |_, _| "1 MiB round trip (argument there, result back)".into(),
        unit: Unit::Micros,
        better: Better::Lower,
        sizes: |_| PAYLOADS.to_vec(),
        report_size: |_| PAYLOAD_BYTES,
        parameter: |n| n.to_string(),
        per_sample: |plan| (plan.round_trips / 50).max(5),
        repeats: |plan| plan.repeats,
        count: Count::Bytes,
        sample_size: |bytes| (bytes >= PAYLOAD_BYTES).then_some(10),
        prepare: payload,
    },
    Scenario {
        name: "payload_64mib",
        op: Op::Payload,
        row: RowId::Payload,
        label: |_, _| "64 MiB round trip (argument there, result back)".into(),
        unit: Unit::Micros,
        better: Better::Lower,
        sizes: |_| vec![LARGE_PAYLOAD_BYTES],
        report_size: |_| LARGE_PAYLOAD_BYTES,
        parameter: |n| n.to_string(),
        per_sample: |_| LARGE_ROUND_TRIPS,
        repeats: |plan| plan.repeats,
        count: Count::Bytes,
        sample_size: |_| Some(10),
        prepare: payload,
    },
    Scenario {
        name: "shared_bytes",
        op: Op::PayloadShared,
        row: RowId::SharedBytes,
        label: |_, _| {
            "1 MiB as SharedBytes, a new one each time (argument there, result back)".into()
        },
        unit: Unit::Micros,
        better: Better::Lower,
        sizes: |_| PAYLOADS.to_vec(),
        report_size: |_| PAYLOAD_BYTES,
        parameter: |n| n.to_string(),
        per_sample: |plan| (plan.round_trips / 50).max(5),
        repeats: |plan| plan.repeats,
        count: Count::Bytes,
        sample_size: |bytes| (bytes >= PAYLOAD_BYTES).then_some(10),
        prepare: shared_bytes,
    },
    Scenario {
        name: "shared_bytes_64mib",
        op: Op::PayloadShared,
        row: RowId::SharedBytes,
        label: |_, _| {
            "64 MiB as SharedBytes, a new one each time (argument there, result back)".into()
        },
        unit: Unit::Micros,
        better: Better::Lower,
        sizes: |_| vec![LARGE_PAYLOAD_BYTES],
        report_size: |_| LARGE_PAYLOAD_BYTES,
        parameter: |n| n.to_string(),
        per_sample: |_| LARGE_ROUND_TRIPS,
        repeats: |plan| plan.repeats,
        count: Count::Bytes,
        sample_size: |_| Some(10),
        prepare: shared_bytes,
    },
    Scenario {
        name: "payload_vec",
        op: Op::PayloadVec,
        row: RowId::Payload,
        label: |_, _| "1 MiB round trip as a plain Vec<u8>".into(),
        unit: Unit::Micros,
        better: Better::Lower,
        sizes: |_| PAYLOADS.to_vec(),
        report_size: |_| PAYLOAD_BYTES,
        parameter: |n| n.to_string(),
        per_sample: |plan| (plan.round_trips / 50).max(5),
        repeats: |plan| plan.repeats,
        count: Count::Bytes,
        sample_size: |bytes| (bytes >= PAYLOAD_BYTES).then_some(10),
        prepare: payload_vec,
    },
];

/// The scenarios that are rows of the report (`payload_vec` is criterion's only).
pub(crate) fn in_report(scenario: &Scenario) -> bool {
    scenario.op != Op::PayloadVec
}

pub(crate) fn startup(setup: &Setup<'_>) -> Result<Iteration, String> {
    let (backend, spec) = (setup.backend, PoolSpec::workers(setup.size as usize));
    Ok(Box::new(move || {
        let start = std::time::Instant::now();
        let pool = backend.start(&spec)?;
        pool.noop()?;
        let elapsed = start.elapsed();
        drop(pool);
        Ok(elapsed)
    }))
}

fn spawn(setup: &Setup<'_>) -> Result<Iteration, String> {
    let backend = setup.backend;
    Ok(Box::new(move || timed(|| backend.spawn_noop())))
}

fn round_trip(setup: &Setup<'_>) -> Result<Iteration, String> {
    let pool = setup.pool()?;
    Ok(Box::new(move || pool.round_trip()))
}

fn in_flight(setup: &Setup<'_>) -> Result<Iteration, String> {
    let (pool, n) = (setup.pool()?, setup.size as usize);
    Ok(Box::new(move || timed(|| pool.in_flight(n))))
}

fn map(setup: &Setup<'_>) -> Result<Iteration, String> {
    let pool = setup.pool()?;
    let items: Vec<u64> = (0..setup.size).collect();
    Ok(Box::new(move || {
        let input = black_box(items.clone());
        timed(|| pool.map_noop(input))
    }))
}

fn imap(setup: &Setup<'_>) -> Result<Iteration, String> {
    let pool = setup.pool()?;
    let items: Vec<u64> = (0..setup.size).collect();
    Ok(Box::new(move || {
        let input = black_box(items.clone());
        timed(|| pool.imap_noop(input))
    }))
}

fn payload(setup: &Setup<'_>) -> Result<Iteration, String> {
    let buffer = |n| Ok(ByteBuf::from(filled(n)));
    echo_iteration(setup, buffer, |pool, sent| pool.echo(sent), Next::Echoed)
}

fn payload_vec(setup: &Setup<'_>) -> Result<Iteration, String> {
    echo_iteration(setup, |n| Ok(filled(n)), |pool, sent| pool.echo_vec(sent), Next::Echoed)
}

/// A new `SharedBytes` for every round trip: a value its receiver has not mapped yet, as new
/// data is (one it already maps would cost only a lookup there). A reference (the raw pipe
/// floor) echoes a buffer of the same size as in the payload rows: what a copy through pipes
/// costs at best.
#[cfg(feature = "process-pool")]
fn shared_bytes(setup: &Setup<'_>) -> Result<Iteration, String> {
    use taskpool_process::SharedBytes;
    if setup.backend.column().is_none() {
        return payload(setup);
    }
    let made = |n| SharedBytes::new(n, |out| out.fill(FILL)).map_err(crate::backends::text);
    echo_iteration(setup, made, |pool, sent| pool.echo_shared(sent), Next::Fresh)
}

#[cfg(not(feature = "process-pool"))]
fn shared_bytes(_: &Setup<'_>) -> Result<Iteration, String> {
    Err(crate::columns::NO_SHARED_BYTES.to_owned())
}

/// The byte every payload is made of.
const FILL: u8 = 0xA5;

/// `n` payload bytes in a `Vec`.
fn filled(n: usize) -> Vec<u8> {
    vec![FILL; n]
}

/// What an echo iteration sends next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    /// The buffer that came back.
    Echoed,
    /// A new buffer, made ahead with others (up to [`AHEAD_BYTES`] at once) so that round
    /// trips follow each other closely (a pool left idle while buffers are made would go to
    /// sleep); the one that came back is dropped after the clock stops, as a program drops a
    /// result it has used.
    #[cfg_attr(
        not(feature = "process-pool"),
        allow(dead_code, reason = "sent by the SharedBytes rows, which need the process backend")
    )]
    Fresh,
}

/// How many bytes of new buffers an iteration makes at once.
const AHEAD_BYTES: u64 = 32 << 20;

/// The most new buffers an iteration makes at once.
const AHEAD_MAX: u64 = 64;

/// Round trips of a buffer of the setup's size, made by `buffer` and sent by `echo`; each
/// iteration sends what `next` says (a new buffer also after a failed round trip). No buffer
/// is made or dropped on the clock.
fn echo_iteration<B: AsRef<[u8]> + 'static>(
    setup: &Setup<'_>,
    buffer: fn(usize) -> Result<B, String>,
    echo: fn(&dyn Running, B) -> Result<B, String>,
    next: Next,
) -> Result<Iteration, String> {
    let (pool, bytes) = (setup.pool()?, setup.size);
    let ahead = match next {
        Next::Echoed => 1,
        Next::Fresh => (AHEAD_BYTES / bytes.max(1)).clamp(1, AHEAD_MAX),
    };
    let mut kept = vec![buffer(bytes as usize)?];
    Ok(Box::new(move || {
        if kept.is_empty() {
            kept = (0..ahead).map(|_| buffer(bytes as usize)).collect::<Result<_, _>>()?;
        }
        let sent = kept.pop().ok_or("no buffer to send")?;
        let start = std::time::Instant::now();
        let back = echo(pool.as_ref(), sent)?;
        let elapsed = start.elapsed();
        echoed(back.as_ref().len(), bytes)?;
        if next == Next::Echoed {
            kept.push(back);
        }
        Ok(elapsed)
    }))
}

/// Checks an echoed payload's length.
fn echoed(len: usize, bytes: u64) -> Result<(), String> {
    if len as u64 == bytes { Ok(()) } else { Err(format!("the echo has {len} bytes, not {bytes}")) }
}
