//! Telling a worker that the kernel's OOM killer ended from one killed from outside.
//!
//! Under a memory cgroup's limit (a container's), a task that allocates past the limit sees
//! no allocation fail: the kernel's OOM killer ends a process of the cgroup with SIGKILL,
//! usually the largest, which is most often the worker that runs the task. Its exit says
//! SIGKILL and nothing more, as a `kill -9` does. The cgroup counts the processes the OOM
//! killer ended (`oom_kill` in `memory.events.local` on cgroup v2, in `memory.oom_control`
//! on v1), so a worker that died of a SIGKILL the pool did not send, while that count rose,
//! was ended by it: its task fails with `ResourceLimit { resource: Memory, .. }` and the
//! cgroup's limit (the smallest on the way up), rather than `Crashed(Signal(9))`. Each rise
//! of the count is put down to one worker at most. (A rise that was another process of the
//! cgroup, followed by a `kill -9` of a worker, is put down to that worker.) Without a
//! memory cgroup, or without a limit in it or above it, nothing changes.
//!
//! The files are found once per process, from `/proc/self/cgroup` and `/proc/self/mountinfo`,
//! and read only when a worker died of SIGKILL.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A limit at or above this means none (cgroup v1 writes a huge page-aligned number).
const NO_LIMIT: u64 = 1 << 62;

/// This process's memory cgroup: its directory, the file that counts its OOM kills, and
/// which version of cgroups it is in.
struct Group {
    dir: PathBuf,
    events: &'static str,
    /// The mount point of its hierarchy, where the walk up for a limit stops.
    mount: PathBuf,
    v2: bool,
}

fn group() -> Option<&'static Group> {
    static GROUP: OnceLock<Option<Group>> = OnceLock::new();
    GROUP.get_or_init(find).as_ref()
}

/// Finds the memory cgroup: the v1 `memory` controller's if it is mounted, else the v2
/// unified hierarchy's.
fn find() -> Option<Group> {
    let cgroups = fs::read_to_string("/proc/self/cgroup").ok()?;
    let mounts = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let path_of = |v2: bool| {
        cgroups.lines().find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let wanted = if v2 {
                controllers.is_empty()
            } else {
                controllers.split(',').any(|c| c == "memory")
            };
            wanted.then(|| path.to_string())
        })
    };
    [false, true].into_iter().find_map(|v2| {
        let path = path_of(v2)?;
        let (root, mount) = mount_of(&mounts, v2)?;
        let relative = path.strip_prefix(root.as_str())?.trim_start_matches('/');
        let dir = Path::new(&mount).join(relative);
        // On v2, the kills of this cgroup's own processes (`memory.events` counts those of
        // the cgroups below it too), where the kernel has the file.
        let events = ["memory.events.local", "memory.events", "memory.oom_control"]
            .into_iter()
            .filter(|f| f.starts_with("memory.events") == v2)
            .find(|f| dir.join(f).exists())?;
        Some(Group { dir, events, mount: PathBuf::from(mount), v2 })
    })
}

/// The root and mount point of the hierarchy that holds the memory controller.
fn mount_of(mounts: &str, v2: bool) -> Option<(String, String)> {
    mounts.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        let fields: Vec<&str> = before.split(' ').collect();
        let mut after = after.split(' ');
        let (kind, _source, options) = (after.next()?, after.next()?, after.next()?);
        let ours = if v2 {
            kind == "cgroup2"
        } else {
            kind == "cgroup" && options.split(',').any(|o| o == "memory")
        };
        ours.then(|| Some((fields.get(3)?.to_string(), fields.get(4)?.to_string()))).flatten()
    })
}

/// The value of the line `key N` of `file` in `dir`.
fn read_key(dir: &Path, file: &str, key: &str) -> Option<u64> {
    let text = fs::read_to_string(dir.join(file)).ok()?;
    text.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// How many processes of this process's memory cgroup the OOM killer has ended.
pub(crate) fn kills() -> Option<u64> {
    let group = group()?;
    read_key(&group.dir, group.events, "oom_kill")
}

/// The memory limit of this process's cgroup in bytes: the smallest set on it or above it.
fn limit() -> Option<u64> {
    let group = group()?;
    let limit = if group.v2 {
        let mut smallest = None::<u64>;
        let mut dir = Some(group.dir.as_path());
        while let Some(at) = dir.filter(|d| d.starts_with(&group.mount)) {
            let max = fs::read_to_string(at.join("memory.max")).ok();
            if let Some(bytes) = max.and_then(|m| m.trim().parse::<u64>().ok()) {
                smallest = Some(smallest.map_or(bytes, |s| s.min(bytes)));
            }
            dir = at.parent();
        }
        smallest?
    } else {
        read_key(&group.dir, "memory.stat", "hierarchical_memory_limit")?
    };
    (limit < NO_LIMIT).then_some(limit)
}

/// What the cgroup said when a worker died of SIGKILL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reading {
    /// The count of OOM kills then.
    pub(crate) kills: u64,
    /// The cgroup's memory limit.
    pub(crate) limit: u64,
}

impl Reading {
    /// Reads the count and the limit; `None` without a memory cgroup that has a limit.
    pub(crate) fn take() -> Option<Reading> {
        Some(Reading { kills: kills()?, limit: limit()? })
    }
}

/// The OOM kills of a pool's cgroup already put down to a worker (or made before the pool
/// started).
#[derive(Debug)]
pub(crate) struct Ledger {
    seen: AtomicU64,
}

impl Ledger {
    /// A ledger that counts the kills made so far as seen.
    pub(crate) fn new() -> Self {
        Ledger { seen: AtomicU64::new(kills().unwrap_or(0)) }
    }

    /// Whether a worker that died of a SIGKILL the pool did not send, when the cgroup said
    /// `reading`, was ended by the OOM killer: the count rose past the kills already put
    /// down to a worker. If so, that kill is put down to this one.
    pub(crate) fn blame(&self, reading: Reading) -> bool {
        self.seen
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |seen| {
                (reading.kills > seen).then_some(seen + 1)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rise_of_the_count_is_put_down_to_one_worker() {
        let ledger = Ledger { seen: AtomicU64::new(3) };
        let reading = Reading { kills: 5, limit: 1 << 28 };
        assert!(ledger.blame(reading));
        assert!(ledger.blame(reading));
        assert!(!ledger.blame(reading));
        assert!(!ledger.blame(Reading { kills: 2, limit: 1 << 28 }));
    }

    #[test]
    fn the_memory_controller_is_found_in_mountinfo() {
        let mounts = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                      35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            mount_of(mounts, false),
            Some(("/".to_string(), "/sys/fs/cgroup/memory".to_string()))
        );
        assert_eq!(
            mount_of(mounts, true),
            Some(("/".to_string(), "/sys/fs/cgroup/unified".to_string()))
        );
    }
}
