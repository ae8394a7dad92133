//! A task that runs out of a memory cgroup's limit (a container's): the kernel's OOM killer
//! ends its worker with SIGKILL, and the task fails with `ResourceLimit { Memory }` naming
//! the cgroup's limit, not with a `Crashed(Signal(9))` that says nothing of memory.
//!
//! The test makes a memory cgroup of its own under this process's, which takes root; where
//! that cannot be done it says why and passes.

mod common;

use std::process::Command;

use common::*;
use taskpool_core::conformance::cgroup::Cgroup;
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

/// A memory cgroup limited to `limit` bytes (swap included); `Err` says why it cannot be had.
fn memory_cgroup(limit: u64) -> Result<Cgroup, String> {
    let cgroup = Cgroup::new("memory", "oom")?;
    let limit = limit.to_string();
    if cgroup.has("memory.limit_in_bytes") {
        // cgroup v1.
        cgroup.set("memory.limit_in_bytes", &limit)?;
        if cgroup.has("memory.memsw.limit_in_bytes") {
            cgroup.set("memory.memsw.limit_in_bytes", &limit)?;
        }
    } else {
        cgroup.set("memory.max", &limit)?;
        if cgroup.has("memory.swap.max") {
            cgroup.set("memory.swap.max", "0")?;
        }
    }
    Ok(cgroup)
}

#[test]
fn a_task_past_the_memory_cgroup_limit_fails_with_resource_limit() {
    let cgroup = match memory_cgroup(LIMIT) {
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
