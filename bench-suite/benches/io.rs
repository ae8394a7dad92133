//! I/O-bound work: many tasks that mostly wait, on every backend of the report that can run
//! them, at the worker counts the waits need.
//!
//! | group | what one iteration does | parameter |
//! |---|---|---|
//! | `io_sleep` | submit 4 × W tasks that each sleep 10 ms, then join them all | workers W: 2, 16, 64 |
//! | `io_socket` | the same with tasks that each block reading the answer a server thread of this bench (`SlowService`) sends over a local Unix socket after 10 ms | workers W: 2, 16, 64 |
//! | `io_startup` | `new` a pool of 64 up to the result of its first no-op (its drop is not timed) | workers: 64 |
//!
//! The groups, their sizes and the backends are the report's I/O-bound rows
//! (`taskpool_bench::Suite::io`): `threads`, `processes`, `rayon` (a `par_iter` on a pool of
//! W threads) and `procspawn`. A waiting task costs no CPU, so W workers serve at most
//! W / 10 ms tasks per second (200, 1,600 and 6,400/s): criterion counts tasks, and what a
//! backend falls short of that is its overhead. Each pool serves one untimed batch before it
//! is measured, and pools are shared by the groups.
//!
//! Run with `cargo bench -p taskpool-bench --bench io` (add `-- io_socket` to run one group).
//! `--no-default-features --features thread-pool` (or `process-pool`) measures one taskpool
//! backend next to the peers.

mod common;

use taskpool_bench::Suite;

fn main() {
    common::run_section(Suite::io, None);
}
