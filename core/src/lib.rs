//! The task API that every taskpool backend shares.
//!
//! taskpool runs the same tasks on threads (`taskpool-thread`), in persistent worker
//! processes (`taskpool-process`) or on many machines (`taskpool-cluster`). This crate holds
//! what they share: the [`Pool`] trait, the [`Task`] and [`IntoTask`] traits that make plain
//! functions tasks, the [`TaskHandle`] of a submitted task, the typed [`TaskError`], the
//! [`Config`] builder and the conformance suite every backend passes. Users depend on a
//! backend crate, which re-exports all of this.
//!
//! # A tour
//!
//! A plain function is a task, with no cast, macro or registration:
//!
//! ```
//! use taskpool_core::{Pool, TaskError};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! # fn main() -> Result<(), TaskError> {
//! let pool = taskpool_thread::ThreadPool::new(4)?; // or taskpool_process::ProcessPool::new(4)?
//!
//! // Ordered results, like Python's Pool.map.
//! assert_eq!(pool.map(square, 1..=5)?, [1, 4, 9, 16, 25]);
//!
//! // One task, like apply_async; handles join in any order.
//! let h = pool.submit(square, 7);
//! assert_eq!(h.join()?, 49);
//!
//! // Lazily, with a bounded window in flight: fine for endless input.
//! let first: Vec<u64> = pool.imap(square, 1..).take(3).collect::<Result<_, _>>()?;
//! assert_eq!(first, [1, 4, 9]);
//! # Ok(())
//! # }
//! ```
//!
//! Failures are typed, so a caller can tell a panic from a crash from a timeout:
//!
//! ```
//! use taskpool_core::{Pool, TaskError};
//!
//! fn checked_div(a: u64, b: u64) -> u64 {
//!     a.checked_div(b).expect("division by zero")
//! }
//!
//! # fn main() -> Result<(), TaskError> {
//! let pool = taskpool_thread::ThreadPool::new(2)?;
//! match pool.apply(checked_div, (1, 0)) {
//!     Err(TaskError::Panicked(report)) => assert_eq!(report.message, "division by zero"),
//!     other => panic!("unexpected {other:?}"),
//! }
//! assert_eq!(pool.apply(checked_div, (9, 3))?, 3); // the pool still works
//! # Ok(())
//! # }
//! ```
//!
//! # For backend authors
//!
//! Everything a backend implements and uses is in [`backend`]: the [`backend::Execute`]
//! trait that runs one job, the [`backend::Completer`] that settles a handle, and the
//! [`backend::Job`] and [`backend::Shipper`] that say how a task travels. Run the conformance
//! suite (feature `conformance`) with `conformance_suite!`.
#![forbid(unsafe_code)]

pub mod backend;
mod config;
mod cpu;
mod crowding;
mod error;
mod feed;
mod handle;
mod imap;
mod pace;
mod panic;
mod pool;
mod reorder;
mod spawn;
mod task;
mod try_error;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use crate::config::Config;
pub use crate::error::{Direction, Exit, PanicReport, Resource, Side, TaskError};
pub use crate::handle::TaskHandle;
pub use crate::imap::{NextTimeout, Timeout};
pub use crate::pool::Pool;
pub use crate::spawn::Spawned;
pub use crate::task::{IntoTask, Task};
pub use crate::try_error::TryError;
