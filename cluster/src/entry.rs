//! The hook that turns the user's program into an agent before `main`, when started with
//! [`AGENT_VAR`] set.
//!
//! A constructor in `.init_array` runs before `main` in every program that links this crate.
//! When it finds `TASKPOOL_AGENT` (the server's url) in the environment, it removes the
//! variable (so the agent's own worker processes, which re-execute the same program, and
//! anything a task starts, do not become agents too), serves as an agent until `SIGTERM` or
//! `SIGINT`, and exits without running `main`. Nothing in the program has to change, and no
//! task function has to be registered: the agent runs the same executable as its callers.

use std::hint::black_box;

/// The environment variable that makes a program an agent: the server's url.
pub(crate) const AGENT_VAR: &str = "TASKPOOL_AGENT";

#[used]
#[unsafe(link_section = ".init_array")]
static AGENT_ENTRY: extern "C" fn() = enter;

/// Keeps the constructor in the final program: the linker only keeps this crate's objects
/// that something refers to, so every way of using a cluster pool or an agent calls this.
pub(crate) fn ensure_linked() {
    black_box(&AGENT_ENTRY);
}

extern "C" fn enter() {
    let Some(config) = crate::config::AgentConfig::from_env() else { return };
    // SAFETY: before `main` the program runs one thread, so nothing reads or writes the
    // environment concurrently.
    unsafe { std::env::remove_var(AGENT_VAR) };
    // SAFETY: setting a signal's disposition to "ignore" is async-signal-safe and has no
    // precondition. Rust's runtime does the same before `main`, which an agent never reaches:
    // a write to a worker that just died must fail with EPIPE, not kill the agent.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let code = match config.and_then(crate::agent::serve) {
        Ok(()) => 0,
        Err(e) => {
            say!("taskpool agent: {e}");
            if let Some(source) = std::error::Error::source(&e) {
                say!("taskpool agent: caused by: {source}");
            }
            1
        }
    };
    std::process::exit(code);
}
