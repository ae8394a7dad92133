//! Overhead: what it costs to start workers and to move a task through them, with no work in
//! the task, on every backend of the report that can run each group. Pools have as many
//! workers as there are CPUs and, except in `startup`, are started when their first
//! benchmark runs and shared by the groups after it (as the report shares them between its
//! rows).
//!
//! | group | what one iteration does | parameter |
//! |---|---|---|
//! | `startup` | `new` a pool up to the result of its first no-op (its drop is not timed) | workers |
//! | `spawn` | start a one-off worker that runs a no-op, join it (`std-thread`: `std::thread::scope` with one `spawn`) | `noop` |
//! | `round_trip` | submit one no-op to a warm pool and wait for it (`rayon`: `spawn` + a channel; `pipe-floor`: 8 bytes over raw pipes, both sides sleeping in `read`; `spin-floor`: a shared word both sides spin on) | `noop` |
//! | `in_flight` | submit 1000 no-ops, then join them all | tasks |
//! | `in_flight_kept` | the same in bursts back to back, on a pool kept busy by the burst before | tasks |
//! | `map` | `map` a no-op over 1,000,000 items, automatic chunks (`rayon`: `par_iter`) | items |
//! | `imap` | `imap` a no-op over 10,000 items, each result taken as it comes, in order (taskpool's backends: rayon has no lazy ordered map) | items |
//! | `payload` | a `serde_bytes::ByteBuf` to a task that returns it, one in flight | bytes: 0, 1 KiB, 64 KiB, 1 MiB, 16 MiB |
//! | `payload_64mib` | the same with 64 MiB, the report's large-payload row (`pipe-floor`: the raw 64 MiB echo over two pipes; `copy-floor`: the four copies a round trip of an owned buffer cannot avoid, in this process) | bytes: 64 MiB |
//! | `shared_bytes` | the same as `taskpool_process::SharedBytes`, a new one each time (made before the clock; the task reads its last byte in place and returns it), on taskpool's threads and processes (`pipe-floor`: the raw echo of a buffer of that size over two pipes, as in `payload`) | bytes: 0, 1 KiB, 64 KiB, 1 MiB, 16 MiB |
//! | `shared_bytes_64mib` | the same with 64 MiB, the report's large `SharedBytes` row | bytes: 64 MiB |
//! | `payload_vec` | the same as a plain `Vec<u8>`, which serde moves byte by byte (taskpool's backends) | bytes |
//! | `messages_queue` | a one-off child process `put`s a marker, N `Option<i64>` and a sentinel into a `Queue`, the parent `get`s them; timed from the marker to the sentinel (taskpool's processes) | messages: 10,000 and 100,000 |
//! | `messages_pipe` | the same through a `Pipe` (`send` / `recv`) | messages |
//!
//! The groups, their sizes and the backends are the report's (`taskpool_bench::Suite`): the
//! report shows the same quantities at one size each. procspawn keeps one payload in flight
//! and joins in submission order, to stay clear of its known deadlocks; it is not run above
//! 1 MiB (the cluster not above 16 MiB), and its `in_flight` case is skipped when the
//! open-files limit is under 3,100 (it holds 3 descriptors per queued task). Criterion counts
//! tasks (`in_flight`), items (`map`, `imap`), messages (`messages_*`) or the payload once
//! (`payload`, `payload_64mib`, `shared_bytes`, `shared_bytes_64mib`). The idle pool's CPU
//! time is a report row only, measured in fresh probe processes (as memory is).
//!
//! Run with `cargo bench -p taskpool-bench --bench overhead` (add `-- round_trip` to run one
//! group, `-- --quick` for a fast pass). Under `cargo test` every case runs once, at the
//! report's quick sizes. The taskpool cases follow the crate features:
//! `--no-default-features --features thread-pool` (or `process-pool`) measures one backend.

mod common;

use taskpool_bench::Suite;

fn main() {
    common::run_section(
        Suite::overhead,
        Some(|suite| format!("overhead: pools of {} workers", suite.plan().workers)),
    );
}
