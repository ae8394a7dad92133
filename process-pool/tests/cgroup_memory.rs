//! A task that runs out of a memory cgroup's limit (a container's): the kernel's OOM killer
//! ends its worker with SIGKILL, and the task fails with `ResourceLimit { Memory }` naming
//! the cgroup's limit, not with a `Crashed(Signal(9))` that says nothing of memory.
//!
//! The test makes a memory cgroup of its own under this process's, which takes root; where
//! that cannot be done it says why and passes.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use taskpool_process::{Pool, ProcessPool, Resource, TaskError};

/// The cgroup's limit: more than the test program needs, far less than the task takes.
const LIMIT: u64 = 96 << 20;

/// Allocates and touches `mib` mebibytes, then frees them.
fn allocate(mib: u64) -> u64 {
    let mut block = vec![0u8; usize::try_from(mib << 20).unwrap()];
    for page in block.iter_mut().step_by(4096) {
        *page = 1;
    }
    std::hint::black_box(&block).len() as u64 >> 20
}

fn out_of_the_cgroup_memory<T: std::fmt::Debug>(result: Result<T, TaskError>) {
    match result {
        Err(TaskError::ResourceLimit { resource: Resource::Memory, limit }) => {
            assert_eq!(limit, LIMIT);
        }
        other => panic!("expected ResourceLimit {{ Memory }}, got {other:?}"),
    }
}

/// Run by the test below, inside a memory cgroup limited to [`LIMIT`].
#[test]
#[ignore = "run in a copy of this binary, in a memory cgroup, by the test after it"]
fn run_out_of_the_cgroup_memory() {
    let pool = ProcessPool::new(1).unwrap();
    assert_eq!(pool.apply(allocate, 8).unwrap(), 8);
    // Before, `Crashed(Signal(9))`.
    out_of_the_cgroup_memory(pool.apply(allocate, 1024));
    assert_eq!(pool.map(square, 0..4).unwrap(), [0, 1, 4, 9]);
    out_of_the_cgroup_memory(taskpool_process::spawn(allocate, 1024).unwrap().join());
    // A SIGKILL from outside is still a crash.
    let one_off = taskpool_process::spawn(sleep_ms, 60_000).unwrap();
    signal_pid_of(one_off.id(), "KILL");
    assert_eq!(crashed(one_off.join()), taskpool_process::Exit::Signal(9));
}

fn signal_pid_of(pid: u64, signal: &str) {
    let status = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status();
    assert!(status.unwrap().success());
}

/// A memory cgroup made under this process's, removed when dropped.
struct Cgroup(PathBuf);

impl Cgroup {
    /// Makes one limited to `limit` bytes (swap included); `Err` says why it cannot.
    fn new(limit: u64) -> Result<Cgroup, String> {
        let cgroups = fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        let line = |wanted: &dyn Fn(&str) -> bool| {
            cgroups.lines().find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                wanted(controllers).then(|| path.to_string())
            })
        };
        let (base, v1) = match line(&|c| c.split(',').any(|c| c == "memory")) {
            Some(path) => (format!("/sys/fs/cgroup/memory{path}"), true),
            None => {
                (format!("/sys/fs/cgroup{}", line(&|c| c.is_empty()).unwrap_or_default()), false)
            }
        };
        let dir = Path::new(&base).join(format!("taskpool-test-oom-{}", std::process::id()));
        fs::create_dir(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        let cgroup = Cgroup(dir);
        let set = |file: &str, value: &str| {
            fs::write(cgroup.0.join(file), value).map_err(|e| format!("cannot set {file}: {e}"))
        };
        if v1 {
            set("memory.limit_in_bytes", &limit.to_string())?;
            if cgroup.0.join("memory.memsw.limit_in_bytes").exists() {
                set("memory.memsw.limit_in_bytes", &limit.to_string())?;
            }
        } else {
            set("memory.max", &limit.to_string())?;
            if cgroup.0.join("memory.swap.max").exists() {
                set("memory.swap.max", "0")?;
            }
        }
        Ok(cgroup)
    }

    /// A command that runs `program` inside this cgroup.
    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("sh");
        let procs = self.0.join("cgroup.procs");
        command.args(["-c", "echo $$ > \"$0\" && exec \"$@\""]).arg(procs).arg(program);
        command
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Empty once the copy and its workers have ended.
        let procs = self.0.join("cgroup.procs");
        let deadline = Instant::now() + HANG;
        while fs::read_to_string(&procs).is_ok_and(|p| !p.trim().is_empty())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = fs::remove_dir(&self.0);
    }
}

#[test]
fn a_task_past_the_memory_cgroup_limit_fails_with_resource_limit() {
    let cgroup = match Cgroup::new(LIMIT) {
        Ok(cgroup) => cgroup,
        Err(why) => {
            println!("skipped: no memory cgroup of this test's own: {why}");
            return;
        }
    };
    let command = cgroup.command(&std::env::current_exe().unwrap());
    let name = "run_out_of_the_cgroup_memory";
    let mut command = command;
    command.arg("--ignored");
    run_test_in(command, name, "in a memory cgroup").unwrap();
}
