//! Benchmarks and the comparison report of taskpool: what threads and processes cost.
//!
//! The report binary (`cargo run --release -p taskpool-bench`), the criterion benches
//! (`cargo bench -p taskpool-bench`) and the examples share this library: the kernels and
//! tasks every variant runs, the peers, the fixtures of the benches, the statistics and the
//! report writers.
//!
//! Any binary that uses the peers must call [`init`] first thing in `main`: procspawn and the
//! pipe floor start their helper processes by re-running the binary.
#![deny(unsafe_code)]

mod crash;
pub mod fixtures;
pub mod kernels;
pub mod peers;
pub mod probe;
pub mod report;
pub mod scenarios;
pub mod stats;
pub mod tasks;

/// The README's Rust blocks, compiled and run as doctests: what a user copies must work.
#[cfg(all(doctest, feature = "thread-pool", feature = "process-pool"))]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

/// Lets this binary serve as a peer's helper process. Call first thing in `main`; in a helper
/// process it never returns.
pub fn init() {
    peers::pipe_floor::run_child_if_requested();
    peers::procspawn::init();
    probe::init();
}
