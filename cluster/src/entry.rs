//! The hook that turns the user's program into an agent before `main`, when started with
//! [`AGENT_VAR`] set.
//!
//! A constructor in `.init_array` runs before `main` in every program that links this crate.
//! When it finds `TASKPOOL_AGENT` (the server's url) in the environment, it removes the
//! variable (so the agent's own worker processes, which re-execute the same program, and
//! anything a task starts, do not become agents too), runs the program's constructors that
//! come after it (as the C library would before `main`), serves as an agent until `SIGTERM` or
//! `SIGINT`, and exits without running `main`. Nothing in the program has to change, and no
//! task function has to be registered: the agent runs the same executable as its callers.

use std::hint::black_box;

use taskpool_process::remote::LaterConstructors;

/// The environment variable that makes a program an agent: the server's url.
pub(crate) const AGENT_VAR: &str = "TASKPOOL_AGENT";

/// A constructor's signature as the C library calls it: `argc`, `argv`, `envp`.
type Entry = extern "C" fn(libc::c_int, *const *const libc::c_char, *const *const libc::c_char);

#[used]
#[unsafe(link_section = ".init_array")]
static AGENT_ENTRY: Entry = enter;

/// Keeps the constructor in the final program: the linker only keeps this crate's objects
/// that something refers to, so every way of using a cluster pool or an agent calls this.
pub(crate) fn ensure_linked() {
    black_box(&AGENT_ENTRY);
}

extern "C" fn enter(
    argc: libc::c_int,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
) {
    let Some(config) = crate::config::AgentConfig::from_env() else { return };
    // SAFETY: before `main` the program runs one thread, so nothing reads or writes the
    // environment concurrently.
    unsafe { std::env::remove_var(AGENT_VAR) };
    // SAFETY: setting a signal's disposition to "ignore" is async-signal-safe and has no
    // precondition. Rust's runtime does the same before `main`, which an agent never reaches:
    // a write to a worker that just died must fail with EPIPE, not kill the agent.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let slot = std::ptr::addr_of!(AGENT_ENTRY) as usize;
    // SAFETY: this is the constructor at `slot`, called by the C library before `main` with
    // these arguments; it runs no other constructor, and never returns once they have run
    // (it exits).
    let later = unsafe { LaterConstructors::after(slot, argc, argv, envp) };
    // The program's constructors after this one (a C or C++ library's, the coverage
    // runtime's, which the linker put last) run in the agent too, as they would before
    // `main`, and as they do in its workers.
    later.run();
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
