//! A program that runs set-user-ID (or with file capabilities) cannot have workers: a worker
//! of such a program must not trust the marker in its environment, which anyone could have
//! set, so it would run the program's `main` again instead. Pools and one-offs there fail
//! with `TaskError::WorkerStart` saying why, and start no process. Checked when the tests run
//! as root, on a set-user-ID copy of this binary that another user runs.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use common::*;
use taskpool_process::{Pool, ProcessPool, TaskError, spawn};

/// Set in the set-user-ID copy of this binary.
const SET_USER_ID: &str = "TASKPOOL_TEST_SET_USER_ID";

fn square(x: u64) -> u64 {
    x * x
}

/// Whether `result` is the refusal a set-user-ID program gets.
fn refused<T: std::fmt::Debug>(result: Result<T, TaskError>) -> bool {
    match result {
        Err(TaskError::WorkerStart { reason }) => reason.contains("set-user-ID"),
        other => {
            println!("not refused: {other:?}");
            false
        }
    }
}

#[test]
fn a_set_user_id_program_refuses_to_start_workers() {
    if std::env::var_os(SET_USER_ID).is_some() {
        if std::env::args().next().is_some_and(|name| name.starts_with("taskpool-")) {
            println!("the program's main ran again in a worker");
            return;
        }
        let pool = ProcessPool::new(1).and_then(|pool| pool.apply(square, 3));
        let one_off = spawn(square, 4).and_then(|child| child.join());
        assert!(refused(pool) && refused(one_off));
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: making a set-user-ID program another user runs needs root");
        return;
    }
    let dir = Scratch::new("set-user-id");
    let copy = dir.file("set-user-id-copy");
    let copied = Command::new("cp").arg(std::env::current_exe().unwrap()).arg(&copy).status();
    assert!(copied.unwrap().success());
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let mut command = Command::new(&copy);
    command.env(SET_USER_ID, "1").uid(65534).gid(65534);
    let out = run_test_in(command, "a_set_user_id_program_refuses_to_start_workers", "set-user-ID");
    match out {
        Ok(out) => assert!(!out.contains("ran again"), "{out}"),
        // A scratch directory on a file system mounted `nosuid`, or that the other user
        // cannot reach, cannot show it.
        Err(e) => println!("skipped: cannot run a set-user-ID copy: {e}"),
    }
}
