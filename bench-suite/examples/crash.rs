//! A task that segfaults, on each backend: what survives it.
//!
//! - `[processes]`: a `ProcessPool` runs `tasks::segfault`. Only that task fails, with a typed
//!   error naming the signal (`TaskError::Crashed(Exit::Signal(11))`, "worker killed by signal
//!   SIGSEGV (11)"); the pool replaces the worker and serves the next task.
//! - `[threads]`: a `ThreadPool` cannot survive it: the segfault takes the whole program down.
//!   To show that without dying itself, the example runs itself again as a child process
//!   that runs the segfault on a `ThreadPool`, and reports how that child ended
//!   ("whole program died: SIGSEGV").
//!
//! Run with `cargo run -p taskpool-bench --example crash`; add
//! `--no-default-features --features process-pool` (or `thread-pool`) for one backend.

use taskpool_core::TaskError;

/// Set in the child that runs the segfault on a thread pool.
#[cfg(feature = "thread-pool")]
const THREAD_CHILD_ENV: &str = "TASKPOOL_CRASH_EXAMPLE_THREAD_CHILD";

#[cfg(any(feature = "thread-pool", feature = "process-pool"))]
fn square(x: u64) -> u64 {
    x * x
}

fn main() -> Result<(), TaskError> {
    taskpool_bench::init();

    #[cfg(feature = "thread-pool")]
    if std::env::var_os(THREAD_CHILD_ENV).is_some() {
        threads::child();
    }

    #[cfg(feature = "process-pool")]
    processes::run()?;

    #[cfg(feature = "thread-pool")]
    threads::parent()?;
    Ok(())
}

#[cfg(feature = "process-pool")]
mod processes {
    use taskpool_bench::tasks;
    use taskpool_core::{Exit, Pool, TaskError};
    use taskpool_process::ProcessPool;

    /// A segfault on a process pool: the task fails, the pool goes on.
    pub(crate) fn run() -> Result<(), TaskError> {
        let pool = ProcessPool::new(2)?;
        println!("[processes] squares before: {:?}", pool.map(super::square, 1..=3)?);
        match pool.apply(tasks::segfault, 0) {
            Err(err @ TaskError::Crashed(exit @ Exit::Signal(_))) => {
                let name = exit.signal_name().unwrap_or("an unnamed signal");
                println!("[processes] the segfaulting task failed with {name}: {err} ({err:?})");
            }
            other => panic!("expected a crash by signal, got {other:?}"),
        }
        let next = pool.apply(super::square, 7)?;
        println!("[processes] the pool survived: the next task returned square(7) = {next}");
        let stats = pool.stats();
        println!(
            "[processes] crashes: {}, worker processes started: {}",
            stats.crashes, stats.workers_started
        );
        Ok(())
    }
}

#[cfg(feature = "thread-pool")]
mod threads {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    use taskpool_bench::tasks;
    use taskpool_core::{Exit, Pool, TaskError};
    use taskpool_thread::ThreadPool;

    /// Runs this example again as a child that segfaults on a thread pool, and reports how
    /// the child ended.
    pub(crate) fn parent() -> Result<(), TaskError> {
        println!("[threads] running the segfault on a ThreadPool in a child process...");
        let status = Command::new(std::env::current_exe()?)
            .env(super::THREAD_CHILD_ENV, "1")
            .env("RUST_BACKTRACE", "0")
            .status()?;
        match status.signal() {
            Some(signal) => {
                let name = Exit::Signal(signal).signal_name().unwrap_or("an unnamed signal");
                println!(
                    "[threads] whole program died: {name} (signal {signal}); every task and \
                     thread of that process went with it"
                );
            }
            None => println!("[threads] the child was expected to die by a signal: {status}"),
        }
        Ok(())
    }

    /// The child: a thread pool runs a healthy task, then the segfault. Never returns.
    pub(crate) fn child() -> ! {
        let pool = ThreadPool::new(2).expect("starting a thread pool");
        let square = pool.apply(super::square, 7).expect("a healthy task");
        println!(
            "[threads] child pid {}: square(7) = {square} on a ThreadPool",
            std::process::id()
        );
        let outcome = pool.apply(tasks::segfault, 0);
        println!("[threads] the thread pool survived the segfault (unexpected): {outcome:?}");
        std::process::exit(1);
    }
}
