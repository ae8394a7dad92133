//! The comparison report: what threads and processes cost on this machine.
//!
//! This first version measures the thread backend only; the process rows follow with the
//! process backend.
#![forbid(unsafe_code)]

fn main() {
    println!("taskpool report: the full comparison is not built yet");
}
