//! What the pool's kills leave behind in a program that is pid 1 of its namespace.
//!
//! A container's program started without an init is the first process (pid 1) of its
//! process-id namespace, and every orphan of the namespace becomes its child. When the pool
//! kills a worker's or a one-off's process group (a timeout, a crash, recycling, a drop), the
//! programs its tasks started there die too, but as orphans: children of the program, which
//! never waits for them, so each stays a zombie for good, and they pile up until the pids
//! limit refuses new processes. So in such a program, before the pool reaps the leader of a
//! group it killed, it reaps the group's other members that became its children: a process
//! whose group is that leader's cannot be another's (the unreaped leader keeps the group's id
//! from being reused), so no child of the program's own is waited for. Members still dying are
//! waited for a little ([`LINGER`]), those in another's hands not at all. Orphans that left the
//! group (`setsid`, a daemon) are the program's to reap, or an init's (`docker run --init`).

use std::fs;
use std::time::{Duration, Instant};

use crate::sys;

/// How long the group's killed members are waited for, at most.
const LINGER: Duration = Duration::from_millis(500);

/// Reaps the members of the process group that the unreaped child `leader` leads, other than
/// the leader, that are children of this process, if it is pid 1 of its namespace.
pub(crate) fn reap_group(leader: libc::pid_t) {
    if sys::pid() != 1 {
        return;
    }
    let deadline = Instant::now() + LINGER;
    loop {
        let mut left = false;
        for (pid, parent, zombie) in members(leader) {
            if parent == 1 && zombie {
                sys::reap_ended(pid);
            } else {
                left = true;
            }
        }
        if !left || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The processes of group `group` other than its leader: pid, parent's pid, and whether it
/// is a zombie.
fn members(group: libc::pid_t) -> Vec<(libc::pid_t, libc::pid_t, bool)> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: libc::pid_t = entry.file_name().to_str()?.parse().ok()?;
            if pid == group {
                return None;
            }
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            // The fields after the command name, which ends at the last ')': state, parent,
            // group.
            let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
            let zombie = fields.next()? == "Z";
            let parent = fields.next()?.parse().ok()?;
            let pgrp: libc::pid_t = fields.next()?.parse().ok()?;
            (pgrp == group).then_some((pid, parent, zombie))
        })
        .collect()
}
