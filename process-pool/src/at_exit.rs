//! What a normal exit of the program does to the processes this crate started and has not
//! reaped: it kills their process groups.
//!
//! Each worker and one-off process leads a process group of its own, where the programs its
//! tasks start also run. The kernel kills the worker when the program ends
//! (`PR_SET_PDEATHSIG`), but not those programs: dropping a pool kills its workers' groups,
//! and a pool that is never dropped (kept in a `static`, or leaked) would leave them running
//! after the program exits. So the first child started registers, with the C library's
//! `atexit`, [`kill_groups`], which kills the group of every child still unreaped when the
//! program exits normally (`main` returns, or `std::process::exit`). A program killed by a
//! signal runs no exit handlers: there the undertaker (`undertaker.rs`), told of every group
//! here, kills them.
//!
//! A copy of the program made by `fork()` inherits the list but not the children: its exit
//! kills nothing, and the first child it starts replaces the list with its own.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once, PoisonError};

use crate::{sys, undertaker};

/// The unreaped children, each a process group's leader.
static LIVE: Mutex<Vec<libc::pid_t>> = Mutex::new(Vec::new());

/// The process whose children [`LIVE`] lists (0 before the first).
static OWNER: AtomicU32 = AtomicU32::new(0);

static REGISTER: Once = Once::new();

/// Records `pid`, a child just started that leads its own process group, here and with the
/// undertaker (which kills the group if the program ends by a signal).
pub(crate) fn started(pid: libc::pid_t) {
    REGISTER.call_once(|| sys::at_exit(kill_groups));
    let me = sys::pid();
    let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
    if OWNER.swap(me, Ordering::Relaxed) != me {
        // A copy made by `fork()`: the children listed are the original's.
        live.clear();
    }
    live.push(pid);
    undertaker::started(pid, &live);
}

/// Forgets `pid`, a child just reaped: its id may be another process's from now on.
pub(crate) fn reaped(pid: libc::pid_t) {
    if OWNER.load(Ordering::Relaxed) == sys::pid() {
        let mut live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|&p| p != pid);
        undertaker::reaped(pid);
    }
}

/// The exit handler: kills the process group of every child still unreaped, unless this is a
/// copy of the process that started them.
extern "C" fn kill_groups() {
    // Before the lock: a copy made by `fork()` may have been made while another thread held
    // it, and then nothing would ever release it.
    if OWNER.load(Ordering::Relaxed) != sys::pid() {
        return;
    }
    let live = LIVE.lock().unwrap_or_else(PoisonError::into_inner);
    for &pid in live.iter() {
        let _ = sys::kill_unreaped_group(pid);
    }
}

/// Whether `pid` is listed among the unreaped children.
#[cfg(test)]
pub(crate) fn listed(pid: libc::pid_t) -> bool {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner).contains(&pid)
}
