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

use std::collections::VecDeque;
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

/// The undertaker of this process, if one was started.
static LINK: Mutex<Option<Link>> = Mutex::new(None);

/// The program's end of its undertaker's pipe.
///
/// The undertaker may stop reading (stopped with SIGSTOP, say) and read again later, or never:
/// writing to it must never wait, since the starts and reaps of the program's workers tell it
/// (and the program's exit waits for them, `at_exit.rs`). And it must hear of every group it
/// heard of being reaped before it acts: a group's id may be another's once its leader is
/// reaped, and the undertaker kills every group it holds when the program has ended. So a
/// group is told only while the pipe keeps room for the record of its reaping (and for those
/// of every group told before): a reaping is always told at once, and a start the pipe has no
/// such room for waits here, never told if the group is reaped first.
struct Link {
    /// The process that started the undertaker (a copy made by `fork()` has the pipe, not the
    /// children).
    owner: u32,
    /// The write end, non-blocking.
    pipe: OwnedFd,
    /// The bytes the pipe holds.
    capacity: usize,
    /// The groups the undertaker was told of and not of their reaping.
    told: usize,
    /// Groups started that the undertaker was not told of yet, oldest first.
    held: VecDeque<libc::pid_t>,
}

impl Link {
    fn new(owner: u32, pipe: OwnedFd) -> Self {
        // A pipe holds its bytes in pages: a record does not straddle two (a few bytes of each
        // page stay unused), and the part of the first page read already is not written again
        // until the rest of it is read. Count that much less.
        let capacity = sys::pipe_capacity(pipe.as_fd()).unwrap_or(0);
        let capacity = capacity.saturating_sub(sys::page_bytes() + capacity / 64);
        Link { owner, pipe, capacity, told: 0, held: VecDeque::new() }
    }

    /// Tells the undertaker that group `pid` started, if the pipe has room for that and for
    /// the reaping of every group told, else holds it back; `false` if the undertaker is gone.
    fn started(&mut self, pid: libc::pid_t) -> bool {
        self.held.push_back(pid);
        self.tell_held()
    }

    /// Tells the undertaker that group `pid` was reaped, if it was told that it started;
    /// `false` if the undertaker is gone.
    fn reaped(&mut self, pid: libc::pid_t) -> bool {
        if let Some(i) = self.held.iter().position(|&held| held == pid) {
            // It never heard of it: it need not hear of its reaping.
            self.held.remove(i);
            return self.tell_held();
        }
        // The room was kept for it: written whole at once.
        if !self.write(REAPED, pid) {
            return false;
        }
        self.told = self.told.saturating_sub(1);
        self.tell_held()
    }

    /// Tells the groups held back while the pipe has room for them and for their reapings.
    fn tell_held(&mut self) -> bool {
        while let Some(&pid) = self.held.front() {
            let Ok(unread) = sys::pipe_unread(self.pipe.as_fd()) else { return false };
            if unread + RECORD * (self.told + 2) > self.capacity {
                return true;
            }
            if !self.write(STARTED, pid) {
                return false;
            }
            self.held.pop_front();
            self.told += 1;
        }
        true
    }

    /// Writes one record; `false` if the undertaker is gone (or, against the room kept, the
    /// pipe is full).
    fn write(&self, what: u8, pid: libc::pid_t) -> bool {
        // Five bytes, far below `PIPE_BUF`: written whole or not at all.
        matches!(sys::write_to_child(self.pipe.as_fd(), &record(what, pid)), Ok(RECORD))
    }
}

/// The bytes of one record.
const RECORD: usize = 5;

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
    let told = match &mut *link {
        Some(link) if link.owner == me => link.started(pid),
        _ => false,
    };
    if told {
        return;
    }
    // None yet, one that ended, or the original's (in a copy made by `fork()`: this copy's
    // descriptor of the original's pipe is closed here).
    *link = None;
    let Ok((read, write)) = sys::pipe() else { return };
    if sys::set_nonblocking(write.as_fd()).is_err() {
        return;
    }
    if !launch::start_undertaker(&format!("{VERSION};{me}"), read.as_fd()) {
        return;
    }
    drop(read);
    let mut new = Link::new(me, write);
    if live.iter().all(|&pid| new.started(pid)) {
        *link = Some(new);
    }
}

/// Tells the undertaker that `pid`, which led a group, was reaped: its id may be another
/// process's from now on.
pub(crate) fn reaped(pid: libc::pid_t) {
    let mut link = LINK.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(link) = &mut *link {
        if link.owner == sys::pid() {
            link.reaped(pid);
        }
    }
}

/// One record: what happened, and the group's id.
fn record(what: u8, pid: libc::pid_t) -> [u8; RECORD] {
    let mut record = [0u8; RECORD];
    record[0] = what;
    record[1..].copy_from_slice(&pid.to_le_bytes());
    record
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads exactly `len` bytes from `read`.
    fn read_exactly(read: &OwnedFd, len: usize) -> Vec<u8> {
        let mut got = vec![0u8; len];
        let mut at = 0;
        while at < len {
            let n = sys::read(read.as_fd(), &mut got[at..]).unwrap();
            assert!(n > 0, "the pipe ended");
            at += n;
        }
        got
    }

    #[test]
    fn an_undertaker_that_does_not_read_never_holds_up_the_program_nor_misses_a_reaping() {
        let (read, write) = sys::pipe().unwrap();
        sys::set_nonblocking(write.as_fd()).unwrap();
        let mut link = Link::new(sys::pid(), write);
        // The undertaker does not read (stopped): starts are told while the pipe keeps room
        // for their reapings, then held back, and telling never waits.
        let first: libc::pid_t = 1_000_000;
        let mut started = 0;
        while link.held.is_empty() {
            assert!(link.started(first + started));
            started += 1;
        }
        let told = started - 1;
        assert_eq!(link.told, usize::try_from(told).unwrap());
        // Every group told of is reaped, and the undertaker hears of each at once.
        for i in 0..told {
            assert!(link.reaped(first + i));
        }
        // A group held back and reaped is never told; those held back meanwhile are told
        // once the undertaker reads again.
        assert!(link.started(7));
        assert!(link.reaped(first + told));
        assert!(link.reaped(7));
        assert!(link.started(8));
        let expected: Vec<u8> = (0..told)
            .map(|i| record(STARTED, first + i))
            .chain((0..told).map(|i| record(REAPED, first + i)))
            .flatten()
            .collect();
        assert_eq!(read_exactly(&read, expected.len()), expected);
        assert!(link.started(9));
        assert!(link.held.is_empty());
        let expected: Vec<u8> = [record(STARTED, 8), record(STARTED, 9)].concat();
        assert_eq!(read_exactly(&read, expected.len()), expected);

        // Gone: telling says so.
        drop(read);
        assert!(!link.started(10));
    }
}
