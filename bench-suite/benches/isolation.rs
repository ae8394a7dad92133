//! Isolation: what a failure costs on the backends that survive it, in time until work is
//! served again.
//!
//! | group | what one iteration does | parameter |
//! |---|---|---|
//! | `fault-panic`, `fault-segfault`, `fault-abort` | a task panics, writes through null or calls `abort()`, then a no-op runs; timed from submitting the fault to the no-op's result | workers: 1, 2 |
//! | `fault-hang` | a task hangs in a pool with a 100 ms time limit and is killed, then a no-op runs (the time includes the limit) | workers: 1, 2 |
//! | `fault-bomb` | a task allocates without bound under a 512 MiB memory limit per worker, then a no-op runs | workers: 1, 2 |
//! | `recycle` | a no-op in a pool with `max_tasks_per_worker(1)`, so every task needs a fresh worker | workers: 1, 2 |
//!
//! The faults, their limits and the backends are the report's failure rows
//! (`taskpool_bench::Suite`): every backend whose workers are processes runs them, here
//! `processes` (`ProcessPool`) and `procspawn` (`procspawn::Pool`, which has no memory limit
//! and no per-worker task quota, and reports a crash only as a closed connection). Every
//! fault must fail its task (an iteration whose faulty task returns stops the bench). With
//! one worker, the next task always waits for the replacement worker; with two it may run on
//! the survivor while the replacement starts.
//!
//! A thread cannot survive a segfault, an abort or a memory bomb, cannot be stopped when it
//! hangs, and has no fresh address space to recycle into: the report's failure rows show
//! that from a child process, and the `crash` example shows the segfault.
//!
//! Run with `cargo bench -p taskpool-bench --bench isolation`. Without the `process-pool`
//! feature only the procspawn cases run.

mod common;

use taskpool_bench::Suite;

fn main() {
    common::run_section(Suite::isolation, None);
}
