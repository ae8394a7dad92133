//! Runs taskpool tasks in persistent OS worker processes, with crash isolation.
//!
//! [`ProcessPool`] implements the shared [`Pool`] trait, so code written for
//! `taskpool-thread` runs here unchanged, and [`spawn`] starts a one-off process like
//! Python's `multiprocessing.Process`. A task that segfaults, aborts or hangs costs that one
//! task, never the program:
//!
//! ```
//! use taskpool_process::{Exit, Pool, ProcessPool, TaskError};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn write_through_null(_: u64) -> u64 {
//!     let p: *mut u64 = std::hint::black_box(std::ptr::null_mut());
//!     // SAFETY: none; this writes through a null pointer on purpose, to crash the worker.
//!     unsafe { p.write_volatile(1) };
//!     0
//! }
//!
//! # fn main() -> Result<(), TaskError> {
//! let pool = ProcessPool::new(4)?;
//! assert_eq!(pool.map(square, 1..=5)?, [1, 4, 9, 16, 25]);
//!
//! let err = pool.apply(write_through_null, 0).unwrap_err();
//! assert!(matches!(err, TaskError::Crashed(Exit::Signal(11))), "{err}"); // SIGSEGV
//! assert_eq!(pool.map(square, 1..=3)?, [1, 4, 9]); // a fresh worker took over
//! # Ok(())
//! # }
//! ```
//!
//! A panic fails its task with [`TaskError::Panicked`], its message and location, also where
//! nothing can catch it: in a program built with `panic = "abort"` (the `panic_abort` example
//! shows it), and in any build a panic that reaches an `extern "C"` function (a callback a C
//! library calls) or one a `Drop` raises while the task unwinds from another (the error then
//! names that second panic). The worker reports it as it aborts, and a new worker takes
//! over. A stack overflow is `Crashed` by SIGSEGV, and the worker says on standard error that
//! the task overflowed its stack. A worker runs tasks on its main thread, so a task has a main
//! thread's stack (`ulimit -s`, 8 MiB by default), not a spawned thread's 2 MiB: recursion
//! that fits in the program's `main` fits in a task.
//!
//! A task is a function item, a closure that captures nothing, or a struct that implements
//! [`Task`]: a worker rebuilds a function from its type alone. A fn pointer or a closure that
//! captures data fails the build at the line that passes it, with the fix in the message:
//!
//! ```compile_fail,E0080
//! use taskpool_process::{Pool, ProcessPool};
//!
//! let pool = ProcessPool::new(2).unwrap();
//! let offset = 10;
//! pool.map(move |x: u64| x + offset, 1..=3); // captures `offset`
//! ```
//!
//! # Queues and pipes between processes
//!
//! [`Queue`] is a typed, bounded queue that the parent, pool workers and spawned processes
//! put into and get from at the same time, like Python's `multiprocessing.Queue`; [`Pipe`]
//! makes two connected [`End`]s, like `multiprocessing.Pipe()`. Both live in shared memory
//! and are passed to tasks as ordinary arguments. A process that dies holding one (even
//! killed in the middle of a put) corrupts nothing; the others see [`GetError::Disconnected`]
//! or [`PutError::Disconnected`] once nobody is left on the other side.
//!
//! ```
//! use taskpool_process::{Pool, ProcessPool, Producer, Queue};
//!
//! fn report(queue: Producer<String>) -> u32 {
//!     queue.put(format!("hello from {}", std::process::id())).unwrap();
//!     std::process::id()
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = ProcessPool::new(2)?;
//! let queue = Queue::<String>::new()?;
//! let pid = pool.apply(report, queue.producer()?)?;
//! assert_eq!(queue.get()?, format!("hello from {pid}"));
//! # Ok(())
//! # }
//! ```
//!
//! Large arguments and results cross without a copy as [`SharedBytes`]: written once into
//! shared memory, sealed, and read in place by the worker (and back).
//!
//! # Limits and costs
//!
//! [`ProcessConfig::memory_limit`] and [`ProcessConfig::cpu_time_limit`] cap what a task may use in its
//! worker; a task over a cap fails alone with [`TaskError::ResourceLimit`], and a new worker
//! takes over. [`ProcessPool::submit_with_usage`] returns with a task's value what it cost
//! ([`Usage`]: CPU time, wall-clock time, the worker's peak memory), and
//! [`ProcessPool::stats`] sums it for the whole pool.
//!
//! A worker is persistent, as in Python's `multiprocessing.Pool`: what a task changes in its
//! process (the current directory, environment variables, the umask, signal dispositions or
//! mask, resource limits, globals) stays for the later tasks that worker runs, and no other
//! worker sees it. Set up what every task needs with `Config::initializer`, and undo what
//! one task changes for itself (or set `max_tasks_per_worker(1)` for a fresh process per
//! task). A worker keeps its own process group: `setsid()` in a task fails with `EPERM`.
//!
//! # How it works
//!
//! Workers are the running executable started again (`/proc/self/exe`) with a private marker
//! that a constructor recognizes before `main`, so nothing changes in a program's `main`, its
//! tests or its benches. A plain function travels as its offset in the executable image, a
//! struct task as its serialized state; arguments and results are encoded with serde in a
//! self-describing binary format (any value that round-trips through `serde_json` comes back
//! unchanged, and a `Vec<u8>` or `String` crosses in one copy) and sent in length-prefixed
//! frames through two rings per worker in a sealed, anonymous shared-memory file (`memfd`): a
//! message costs a copy, and a system call only when the peer sleeps (after a short spin that
//! stops when it does not pay). Every position and length a worker publishes there is checked,
//! and the memory dies with its worker. Where `memfd` is unavailable, a pair of pipes per
//! worker carries the frames instead. The worker protocol, its lifecycle, the transport, the
//! codec and the failure paths are described in this crate's `README.md`.
//!
//! Workers start from the program's executable, so this crate must be linked into it: from a
//! shared library (a plugin, a Python extension module), in a program started through its
//! dynamic loader (`ld.so program`), or in one that runs set-user-ID (whose workers could not
//! trust what makes them workers), pools and one-offs fail with [`TaskError::WorkerStart`]
//! saying so, and start no process.
//!
//! Linux only.
#![deny(unsafe_code)]

mod aborting_panic;
mod at_exit;
mod batching;
mod bulk;
mod channel;
#[allow(unsafe_code)]
mod codec;
mod config;
#[allow(unsafe_code)]
mod cpu_watch;
mod crowding;
mod deliveries;
mod doorbell;
#[allow(unsafe_code)]
mod entry;
mod flusher;
#[cfg(test)]
mod fuzz;
mod handoff;
mod inbox;
mod launch;
mod oom;
mod orphans;
mod outlet;
mod pipe;
mod pool;
mod protocol;
mod queue;
mod queue_error;
mod reception;
mod region;
#[doc(hidden)]
#[allow(unsafe_code)]
pub mod remote;
mod ring;
mod run;
mod scheduler;
mod shared_bytes;
mod shared_lock;
#[allow(unsafe_code)]
mod ship;
mod sink;
mod spawn;
mod status;
mod supervisor;
#[allow(unsafe_code)]
mod sys;
mod undertaker;
mod usage;
mod wire;
mod worker;

pub use crate::config::ProcessConfig;
pub use crate::pipe::{End, Pipe};
pub use crate::pool::{PoolStats, ProcessPool};
pub use crate::queue::{Consumer, Producer, Queue};
pub use crate::queue_error::{GetError, PutError};
pub use crate::shared_bytes::SharedBytes;
pub use crate::spawn::spawn;
pub use crate::usage::Usage;
pub use taskpool_core::{
    Config, Direction, Exit, IntoTask, PanicReport, Pool, Resource, Side, Spawned, Task, TaskError,
    TaskHandle, TryError,
};
