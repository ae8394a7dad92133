//! A task that panics in a program built with `panic = "abort"`, as many release profiles
//! are: nothing can catch the panic, yet the caller still gets the task's `Panicked` error
//! with its message and location. The worker reports it as it aborts; the pool replaces the
//! worker and goes on.
//!
//! Run with `cargo run -p taskpool-process --example panic_abort --config 'profile.dev.panic="abort"'`.
//! Built the usual way (unwinding) it prints the same: only the cost differs (a new worker
//! per panic under `abort`).
//!
//! With the argument `logger`, the pool's initializer installs a panic hook of its own in each
//! worker, as one that sets up logging may: the task's panic still reaches the caller.
//!
//! With the argument `initializer`, the pool's initializer panics: the task fails with
//! `WorkerStart`, whose reason carries the initializer's panic.
//!
//! With the argument `here`, the panic happens in this process instead, as in a thread pool's
//! task: under `panic = "abort"` the program then dies, after printing the panic.

use taskpool_process::{Config, Pool, ProcessConfig, ProcessPool, TaskError, spawn};

/// Panics for 1, returns anything else.
fn fragile(x: u64) -> u64 {
    if x == 1 {
        panic!("item {x} panics");
    }
    x * 10
}

/// Installs a panic hook that logs panics, as a logger's set-up may.
fn install_a_logger() {
    std::panic::set_hook(Box::new(|info| eprintln!("logged: {info}")));
}

/// A pool initializer that panics, as a set-up that finds its configuration missing may.
fn failing_setup() {
    panic!("no configuration");
}

/// One outcome, in a line: the value, or the panic's message and location.
fn say(what: &str, outcome: Result<u64, TaskError>) {
    match outcome {
        Ok(value) => println!("{what}: {value}"),
        Err(TaskError::Panicked(report)) => {
            let location = report.location.as_deref().unwrap_or("unknown");
            println!("{what}: panicked: {} (at {location})", report.message);
        }
        Err(other) => println!("{what}: failed: {other}"),
    }
}

fn main() -> Result<(), TaskError> {
    if std::env::args().nth(1).as_deref() == Some("here") {
        let outcome = taskpool_core::backend::catch_panic(false, || fragile(1));
        println!("caught here: {outcome:?}");
        return Ok(());
    }
    if std::env::args().nth(1).as_deref() == Some("initializer") {
        let config = Config::new().workers(1).initializer(failing_setup).start_attempts(1);
        let pool = ProcessPool::with_config(ProcessConfig::new(config))?;
        say("initializer", pool.apply(fragile, 2));
        return Ok(());
    }
    if std::env::args().nth(1).as_deref() == Some("logger") {
        let config = Config::new().workers(1).initializer(install_a_logger);
        let pool = ProcessPool::with_config(ProcessConfig::new(config))?;
        say("apply", pool.apply(fragile, 1));
        return Ok(());
    }
    let pool = ProcessPool::new(2)?;
    for (i, outcome) in pool.map_results(fragile, 0..4).into_iter().enumerate() {
        say(&format!("map item {i}"), outcome);
    }
    say("apply", pool.apply(fragile, 1));
    say("spawn", spawn(fragile, 1)?.join());
    println!("the pool goes on: {:?}", pool.map(fragile, [2, 3])?);
    Ok(())
}
