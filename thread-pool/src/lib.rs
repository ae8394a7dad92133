//! Runs taskpool tasks on threads.
//!
//! [`ThreadPool`] implements the shared [`Pool`] trait on a rayon thread pool, so code written
//! for `taskpool-process` runs here unchanged, and [`spawn`] starts a one-off thread with the
//! same handle API as a one-off process. Nothing is serialized on the way: a task's argument
//! and result move between threads as they are.
//!
//! ```
//! use taskpool_thread::{Pool, ThreadPool};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! # fn main() -> Result<(), taskpool_thread::TaskError> {
//! let pool = ThreadPool::new(4)?;
//! assert_eq!(pool.map(square, 1..=5)?, [1, 4, 9, 16, 25]);
//! let h = pool.submit(square, 7);
//! assert_eq!(h.join()?, 49);
//! # Ok(())
//! # }
//! ```
//!
//! # What threads cannot do
//!
//! Threads share one address space, which makes them cheap and makes these limits real:
//!
//! - A panic fails only its task, but a segfault, an `abort()` or a stack overflow in any task
//!   ends the whole program, and so does a panic that cannot unwind: any panic in a program
//!   built with `panic = "abort"`, one that reaches an `extern "C"` function, one a `Drop`
//!   raises while the task unwinds from another (each printed first, as without a pool).
//! - A task runs on a pool thread, whose stack is that of any spawned thread: 2 MiB, unless
//!   the environment the program starts with sets `RUST_MIN_STACK` (in bytes). Recursion that
//!   fits in `main`'s 8 MiB can overflow it, and a stack overflow ends the program; on
//!   processes a worker runs tasks on its main thread, with a main thread's stack.
//! - A thread cannot be stopped from outside. A timed-out or cancelled task is reported as
//!   such at once ([`TaskError::TimedOut`] with `still_running: true`), but its thread keeps
//!   running it until it returns. A task past its time limit has a *relief* thread
//!   (`<name_prefix>-relief`) take its thread's place meanwhile, so the other tasks still
//!   run; a task that never returns keeps its thread, and its relief, for the life of the
//!   program, and [`Pool::shutdown`], which finishes every task submitted, waits for it for
//!   ever (dropping the pool does not wait).
//! - With a time limit (the pool's [`Config::timeout`] or a task's), each task needs a watch:
//!   a `map` then goes one task at a time through the pool's queue instead of rayon's
//!   batches, which costs a tiny task about fifty times its time without one.
//! - What a task changes in its process (the current directory, environment variables, the
//!   umask, signal dispositions, resource limits, standard output redirected with `dup2`)
//!   changes it for the whole program and every other task at once, while they run; on
//!   processes it stays in the one worker that ran the task.
//! - [`Spawned::kill`] returns [`TaskError::Unsupported`].
//! - `max_tasks_per_worker` has nothing to recycle: memory a task leaks stays leaked.
//! - There is no per-task memory or CPU-time limit: threads share one address space and one
//!   CPU-time account (the process backend's `ProcessConfig` has both).
//!
//! Use `taskpool-process` when any of these matter.
//!
//! # rayon inside a task
//!
//! A task runs on one of rayon's threads, so rayon called inside it (`par_iter`,
//! `rayon::join`, `rayon::scope`) runs on the pool's own threads, not on rayon's global pool:
//! `rayon::current_num_threads()` is the pool's size there, and the threads never outnumber
//! the pool's. (A task that a relief thread runs, while another is past its time limit,
//! uses rayon's global pool. On processes each worker has rayon's global pool of its own,
//! one thread per CPU, so a pool of n workers whose tasks use rayon runs n threads per CPU.)
//!
//! This is rayon's work stealing, and it has rayon's consequence: while a task waits inside
//! such a call for work another thread took, its thread runs other work of the pool meanwhile,
//! and that may be another whole task, queued or submitted while it waits, run inside the
//! first on the same thread; so may the thread that took part of the first task's work. So:
//!
//! - A task must not hold, across a rayon call, a lock that other tasks of the pool take (a
//!   static `Mutex`, a `RefCell` of a `thread_local!` borrowed): a task run inside it that
//!   takes the lock waits for the task it runs inside, which cannot go on before it returns,
//!   so both wait for ever and their thread with them (a `RefCell` panics instead, "already
//!   borrowed"). Take the lock only around the rayon call's result, or give each task the
//!   data it needs.
//! - A task run inside another finishes first, so a long task can hold back the result of
//!   the one it runs inside, past that one's time limit too.
//!
//! The pool's own `map` (and its kin) runs so too, from a task or from any thread: its
//! threads give the tasks queued meanwhile their turn between its items (see
//! [`ThreadPool`], "Work given while a `map` runs"), so the same holds for a lock held
//! across a `map`.
//!
//! A worker process runs one task at a time, so none of this happens on processes.
#![deny(unsafe_code)]

mod carry;
#[allow(unsafe_code)]
mod cpu;
#[allow(unsafe_code)]
mod forks;
mod pool;
mod queue;
mod relief;
mod spawn;
mod tally;
mod watchdog;

pub use crate::pool::ThreadPool;
pub use crate::spawn::spawn;
pub use taskpool_core::{
    Config, Direction, Exit, IntoTask, NextTimeout, PanicReport, Pool, Resource, Side, Spawned,
    Task, TaskError, TaskHandle, Timeout, TryError,
};
