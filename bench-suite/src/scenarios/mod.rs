//! What is measured, scenario by scenario, each defined once: its task, its sizes and how
//! often it is repeated. The report binary and the criterion benches both run these
//! definitions on the backends of `columns.rs`, so the two cannot disagree.
//!
//! In the report, every quantity is measured for every column side by side in one run: the
//! variants of a row are interleaved, each round starting one further along (A B C, B C A,
//! C A B, ...), and each is repeated, and a cell shows the median over the repeats. The
//! overhead rows take a first round that is not kept: a warm-up, as a kept pool has had.

mod cells;
mod faults;
mod idle;
mod io;
mod memory;
mod messages;
mod overhead;
mod plan;
mod progress;
mod run;
mod scenario;
mod served;
mod suite;
mod throughput;

use std::time::Duration;

pub use memory::tree_pss_kib;
pub use messages::Channel;
pub use plan::{Mode, Plan, RunMode, cores};
pub use progress::{Bar, Event, Progress};
pub use run::{Measured, run};
pub use suite::{Case, Count, Group, Iteration, Settings, Suite};
pub use throughput::TaskSize;

pub(crate) use faults::{BOMB_CAP_MIB, Fault, HANG_LIMIT, MEMORY_LIMIT};
pub(crate) use io::{Shares, Wait, WaitKind};
pub(crate) use throughput::{BURST_KERNEL, Kernel, KernelKind};

pub(crate) use io::{POOL_NEEDED, ScriptIo, WORKER_COUNTS, ideal, script_io};
pub(crate) use messages::{MESSAGES, script_messages};
pub(crate) use overhead::{LARGE_PAYLOAD_BYTES, OVERHEAD, PAYLOAD_BYTES};

use crate::probe::Probe;

/// A row of the report, by what it measures: how a peer's results (the Python script's) are
/// joined to the rows measured here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum RowId {
    /// Pool start-up to the first result.
    Startup,
    /// One-off spawn and join.
    Spawn,
    /// Per-task round trip.
    RoundTrip,
    /// Many tasks in flight.
    InFlight,
    /// Many tasks in flight, in bursts back to back on a pool kept busy.
    InFlightKept,
    /// `map` of no-ops.
    Map,
    /// `imap` of no-ops, consumed as they come.
    Imap,
    /// A payload of this many bytes there and back.
    Payload(u64),
    /// A payload of this many bytes there and back as `SharedBytes` (in shared memory).
    SharedBytes(u64),
    /// Memory per worker.
    Memory,
    /// CPU time of an idle pool.
    Idle,
    /// Speed-up at N workers on a kernel.
    Speedup(KernelKind, TaskSize),
    /// Parallel efficiency at N workers on a kernel.
    Efficiency(KernelKind, TaskSize),
    /// Speed-up at N workers on a kernel, on the kept pool right after a burst of no-ops.
    AfterBurst(KernelKind, TaskSize),
    /// A fault in one task.
    Fault(Fault),
    /// Tasks that wait this way, on a pool of this many workers.
    Wait(WaitKind, u64),
    /// Memory per worker of a pool of this many workers, after waiting tasks.
    WaitMemory(u64),
    /// Start-up of a pool of this many workers: what the waiting tasks need.
    WaitStartup(u64),
    /// An agent killed while it runs a task.
    AgentLoss,
    /// Small messages from a child process to its parent through this kind of channel.
    Messages(Channel),
}

impl RowId {
    /// The row's stable key in the JSON report, such as `round_trip` or `speedup_primes_1ms`.
    pub(crate) fn key(self) -> String {
        match self {
            RowId::Startup => "startup".into(),
            RowId::Spawn => "spawn".into(),
            RowId::RoundTrip => "round_trip".into(),
            RowId::InFlight => "in_flight".into(),
            RowId::InFlightKept => "in_flight_kept".into(),
            RowId::Map => "map".into(),
            RowId::Imap => "imap".into(),
            RowId::Payload(bytes) => format!("payload_{}", bytes_key(bytes)),
            RowId::SharedBytes(bytes) => format!("shared_bytes_{}", bytes_key(bytes)),
            RowId::Memory => "memory".into(),
            RowId::Idle => "idle_cpu".into(),
            RowId::Speedup(kind, size) => format!("speedup_{}_{}", kind.name(), size.key()),
            RowId::Efficiency(kind, size) => format!("efficiency_{}_{}", kind.name(), size.key()),
            RowId::AfterBurst(kind, size) => {
                format!("speedup_after_burst_{}_{}", kind.name(), size.key())
            }
            RowId::Fault(fault) => format!("fault_{}", fault.name()),
            RowId::Wait(kind, workers) => format!("io_{}_{workers}", kind.name()),
            RowId::WaitMemory(workers) => format!("io_memory_{workers}"),
            RowId::WaitStartup(workers) => format!("io_startup_{workers}"),
            RowId::AgentLoss => "agent_loss".into(),
            RowId::Messages(channel) => format!("messages_{}", channel.name()),
        }
    }
}

/// A size in a row's key: `1mib` for whole mebibytes, else `1024b`.
fn bytes_key(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{}mib", bytes >> 20)
    } else {
        format!("{bytes}b")
    }
}

/// The probes the report runs in child processes, by kind.
pub(crate) fn probes() -> Vec<Probe> {
    vec![
        ("fault", faults::probe),
        ("memory", memory::probe),
        ("io", io::probe),
        ("idle", idle::probe),
    ]
}

/// Microseconds in `d`.
pub(crate) fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_keys_are_the_reports() {
        assert_eq!(RowId::Payload(1 << 20).key(), "payload_1mib");
        assert_eq!(RowId::Payload(1024).key(), "payload_1024b");
        assert_eq!(RowId::SharedBytes(64 << 20).key(), "shared_bytes_64mib");
        assert_eq!(
            RowId::Speedup(KernelKind::Primes, TaskSize::Micros10).key(),
            "speedup_primes_10µs"
        );
        assert_eq!(
            RowId::Efficiency(KernelKind::Mandel, TaskSize::Millis1).key(),
            "efficiency_mandel_1ms"
        );
        assert_eq!(RowId::Fault(Fault::Bomb).key(), "fault_bomb");
        assert_eq!(RowId::Wait(WaitKind::Socket, 16).key(), "io_socket_16");
        assert_eq!(RowId::WaitMemory(64).key(), "io_memory_64");
        assert_eq!(
            RowId::AfterBurst(KernelKind::Primes, TaskSize::Millis1).key(),
            "speedup_after_burst_primes_1ms"
        );
    }
}
