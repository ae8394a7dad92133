//! The undertaker: a small process that kills the process groups of this program's workers
//! and one-offs once the program has ended, however it ended.
//!
//! Each worker and one-off leads a process group of its own, where the programs its tasks
//! start run too. The kernel kills a worker when the program dies (`PR_SET_PDEATHSIG`), but
//! not what its tasks started; a normal exit kills those groups (`at_exit.rs`), but a program
//! killed by a signal runs no exit handler: a Ctrl-C, a `kill`, a crash left a task's
//! `ffmpeg` or `sleep` running for good, adopted by init. (A terminal's Ctrl-C reaches the
//! program's own process group only, never the workers'.)
//!
//! So the first child this program starts is followed by the undertaker: `/proc/self/exe`
//! started again with a marker that makes it one before `main` (`entry.rs`), in a process
//! group of its own (so the Ctrl-C that ends the program does not reach it) and without a
//! death signal. It reads, from a pipe whose write end only this program holds
//! (close-on-exec), the ids of the groups as children start and are reaped. When the pipe
//! ends (every copy of the write end closed: the program has exited or died) it kills every
//! group still listed with SIGKILL, and exits. It does nothing else, costs no CPU while it
//! waits, and well under a megabyte of memory (650 KB resident, measured); it is started at
//! most once per program (and again in a copy made by `fork()` that starts children of its
//! own, or if it was killed). It detaches at once (the process the program started forks and
//! exits), so that it is no child of the program's: a program that waits for all its
//! children never waits for it. A program that is the first process (pid 1) of its
//! process-id namespace, as a container's program started without an init is, starts none:
//! it would adopt the undertaker as it adopts every orphan of the namespace, and when it ends
//! the kernel kills every process of the namespace anyway.
//!
//! Best effort: if it cannot be started, or is killed, the program runs as before, without
//! it. A copy of the program made by `fork()` (without `exec`) holds the write end too, so the
//! groups are killed once both copies have ended. A group's id is sent as soon as its leader
//! is reaped, so it is not killed after its id may name another group; the one window is a
//! program that dies between reaping a child and writing that.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, PoisonError};

use crate::launch;
use crate::sys::{self, REQUEST_FD};

/// The marker's version for an undertaker (see `entry.rs`).
pub(crate) const VERSION: &str = "taskpool-undertaker-1";

/// A group's leader started (followed by its pid, 4 bytes little-endian).
const STARTED: u8 = 1;
/// A group's leader reaped.
const REAPED: u8 = 2;

/// The undertaker of this process, if one was started: the write end of its pipe, and the
/// process that started it (a copy made by `fork()` has the pipe, not the children).
static LINK: Mutex<Option<(u32, OwnedFd)>> = Mutex::new(None);

/// Tells the undertaker that `pid` leads a process group of this program's from now on;
/// `live` lists every such group, `pid` included. Starts an undertaker first if this process
/// has none, or if its undertaker ended (killed), and then tells it all of `live`.
pub(crate) fn started(pid: libc::pid_t, live: &[libc::pid_t]) {
    let me = sys::pid();
    if me == 1 {
        // The first process of a process-id namespace (a container's program started without
        // an init) needs none: when it ends, the kernel kills every process of the namespace.
        // And it adopts every orphan there, so an undertaker would be a child of its own, one
        // that ends only with it: a program that waits for all its children would never
        // finish waiting.
        return;
    }
    let mut link = LINK.lock().unwrap_or_else(PoisonError::into_inner);
    let told = match &*link {
        Some((owner, pipe)) if *owner == me => tell(pipe, STARTED, pid),
        _ => false,
    };
    if told {
        return;
    }
    // None yet, one that ended, or the original's (in a copy made by `fork()`: this copy's
    // descriptor of the original's pipe is closed here).
    *link = None;
    let Ok((read, write)) = sys::pipe() else { return };
    if !launch::start_undertaker(&format!("{VERSION};{me}"), read.as_fd()) {
        return;
    }
    drop(read);
    if live.iter().all(|&pid| tell(&write, STARTED, pid)) {
        *link = Some((me, write));
    }
}

/// Tells the undertaker that `pid`, which led a group, was reaped: its id may be another
/// process's from now on.
pub(crate) fn reaped(pid: libc::pid_t) {
    let link = LINK.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((owner, pipe)) = &*link {
        if *owner == sys::pid() {
            tell(pipe, REAPED, pid);
        }
    }
}

/// Writes one record; `false` if the undertaker is gone.
fn tell(pipe: &OwnedFd, what: u8, pid: libc::pid_t) -> bool {
    let mut record = [0u8; 5];
    record[0] = what;
    record[1..].copy_from_slice(&pid.to_le_bytes());
    // Five bytes, far below `PIPE_BUF`: written whole or not at all.
    sys::write_all_to_child(pipe.as_fd(), &record).is_ok()
}

/// Serves as the undertaker, never returning: leaves the program's children (the process
/// that the program started exits at once, and the program reaps it), then reads the groups
/// started and reaped from [`REQUEST_FD`] until it ends, and kills every group still listed.
pub(crate) fn serve() -> ! {
    // Shown by `ps -e`, `top` and `pgrep` (else `exe`, the file it was started from; the
    // kernel keeps 15 bytes: `taskpool-undert`).
    sys::set_process_name("taskpool-undertaker");
    if !sys::detach() {
        sys::exit_now(0);
    }
    sys::null_standard_fds();
    sys::close_from(REQUEST_FD + 1);
    let mut groups: Vec<libc::pid_t> = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    // `entry.rs` checked that it is a pipe, given by the program.
    let fd = sys::fixed_fd(REQUEST_FD);
    loop {
        match sys::read(fd.as_fd(), &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
        let whole = pending.len() - pending.len() % 5;
        for record in pending[..whole].chunks_exact(5) {
            let pid = libc::pid_t::from_le_bytes([record[1], record[2], record[3], record[4]]);
            match record[0] {
                STARTED => groups.push(pid),
                REAPED => groups.retain(|&g| g != pid),
                _ => {}
            }
        }
        pending.drain(..whole);
    }
    for group in groups {
        sys::kill_group_of(group);
    }
    sys::exit_now(0)
}
