//! Runs taskpool tasks in persistent OS worker processes (work in progress).
//!
//! This crate will hold `ProcessPool`, which implements the same [`Pool`] trait as
//! `taskpool-thread`; for now it re-exports the shared API.
#![deny(unsafe_code)]

pub use taskpool_core::{Config, Exit, IntoTask, Pool, Task, TaskError, TaskHandle};
