//! Benchmarks and the comparison report of taskpool: what threads and processes cost.
//!
//! The report binary (`cargo run --release -p taskpool-bench`), the criterion benches
//! (`cargo bench -p taskpool-bench`) and the examples share this library:
//!
//! - `columns.rs`: the one table of what is compared ([`BACKENDS`], [`Column`]): how each
//!   backend starts a pool, which Cargo feature enables it, what it can run;
//! - the scenarios, each defined once (task, sizes, repeats) for the report and the benches
//!   alike: the report runs them with [`run`], the benches through a [`Suite`];
//! - the tasks and kernels every backend runs ([`tasks`], [`kernels`]), and the slow local
//!   service that I/O-bound tasks wait on ([`SlowService`]);
//! - the statistics ([`Summary`], [`Samples`]) and the report writers ([`report`]).
//!
//! Any binary that uses the peers must call [`init`] first thing in `main`: procspawn, the
//! floors and the probes start their helper processes by re-running the binary.
#![deny(unsafe_code)]

mod backends;
mod columns;
mod crash;
pub mod kernels;
mod probe;
pub mod report;
mod scenarios;
mod slow_service;
mod stats;
pub mod tasks;
mod versions;

#[cfg(feature = "process-pool")]
pub use crate::backends::messages::messages;
pub use crate::columns::{BACKENDS, Backend, Column, How, Kind, Op, Shows, backend};
pub use crate::scenarios::{
    Bar, Case, Channel, Count, Event, Group, Iteration, Measured, Mode, Plan, Progress, RunMode,
    Settings, Suite, TaskSize, cores, run, tree_pss_kib,
};
pub use crate::slow_service::SlowService;
pub use crate::stats::{Samples, Summary};

/// The README's Rust blocks, compiled and run as doctests: what a user copies must work.
#[cfg(all(doctest, feature = "thread-pool", feature = "process-pool"))]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// Lets this binary serve as a peer's helper process. Call first thing in `main`; in a helper
/// process it never returns.
pub fn init() {
    backends::pipe_floor::run_child_if_requested();
    backends::spin_floor::run_child_if_requested();
    backends::procspawn::init();
    probe::init();
}
