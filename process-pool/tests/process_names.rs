//! What `ps -e`, `top` and `pgrep` show of the processes a program's pools start: their
//! short name (`/proc/PID/comm`), not `exe`, the name of the file they were started from
//! (`/proc/self/exe`).

mod common;

use std::collections::HashSet;
use std::fs;

use common::*;
use taskpool_process::{Pool, ProcessPool};

/// The pipes this process holds a descriptor of.
fn pipes_of(pid: &str) -> HashSet<String> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else { return HashSet::new() };
    entries
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .filter(|target| target.starts_with("pipe:"))
        .collect()
}

/// The process that reads a pipe this process holds and runs as `taskpool-undertaker`.
fn undertaker() -> Option<String> {
    let mine = pipes_of("self");
    fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|entry| {
        let pid = entry.file_name().to_string_lossy().into_owned();
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let is_undertaker = cmdline.split(|&b| b == 0).next() == Some(b"taskpool-undertaker");
        let reads_ours = pipes_of(&pid).iter().any(|pipe| mine.contains(pipe));
        (is_undertaker && reads_ours && pid != std::process::id().to_string()).then_some(pid)
    })
}

fn comm(pid: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm")).unwrap().trim_end().to_string()
}

#[test]
fn the_workers_and_the_undertaker_show_their_names() {
    let pool = ProcessPool::new(1).unwrap();
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    let worker = pool.pids()[0].to_string();
    assert_eq!(comm(&worker), "taskpool-0");
    if std::process::id() == 1 {
        // The first process of its process-id namespace starts no undertaker.
        println!("skipped the undertaker's name: this program is pid 1, which starts none");
        return;
    }
    let undertaker = undertaker().expect("no undertaker reads this program's pipe");
    // The kernel keeps 15 bytes of a name.
    assert_eq!(comm(&undertaker), "taskpool-undert");
}
