//! Under Valgrind, which runs the program in its tool's process, `/proc/self/exe` names the
//! tool, which refuses to run on its own: workers and one-offs start from the program's file
//! instead, natively, or under Valgrind too with `--trace-children=yes`.

mod common;

use std::process::Command;

use common::*;
use taskpool_process::{Config, Pool, ProcessConfig, ProcessPool, TaskError, spawn};

/// Set in the copy of this binary run under Valgrind.
const UNDER_VALGRIND: &str = "TASKPOOL_TEST_UNDER_VALGRIND";

fn run_under_valgrind(name: &str, trace_children: &str) {
    if std::env::var_os(UNDER_VALGRIND).is_some() {
        let pool = ProcessPool::new(1).unwrap();
        assert_eq!(pool.map(square, 1..=3).unwrap(), [1, 4, 9]);
        pool_crashes_are_exact(&pool);
        assert_eq!(spawn(square, 4).unwrap().join().unwrap(), 16);
        return;
    }
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("skipped: valgrind is not installed");
        return;
    }
    let mut command = Command::new("valgrind");
    command
        .args(["-q", trace_children, "--error-exitcode=0"])
        .arg(std::env::current_exe().unwrap())
        .env(UNDER_VALGRIND, "1");
    let (_, stderr) = run_test_with_stderr(command, name, "under valgrind").unwrap();
    assert!(!stderr.contains("cannot run"), "a worker ran Valgrind's tool:\n{stderr}");
}

#[test]
fn workers_start_from_the_program_under_valgrind() {
    run_under_valgrind("workers_start_from_the_program_under_valgrind", "--trace-children=no");
}

#[test]
fn workers_run_under_valgrind_too_with_trace_children() {
    run_under_valgrind(
        "workers_run_under_valgrind_too_with_trace_children",
        "--trace-children=yes",
    );
}

/// Set, to the program's path, in the copy of this binary whose file a deploy replaces while
/// it runs under Valgrind.
const REPLACED: &str = "TASKPOOL_TEST_REPLACED_UNDER_VALGRIND";

/// A deploy: a new file (here with the same bytes) renamed over the program at `path`.
fn deploy(path: String) {
    let fresh = format!("{path}.new");
    std::fs::copy(&path, &fresh).unwrap();
    std::fs::rename(&fresh, &path).unwrap();
}

/// Under Valgrind workers start from the program's path, so once a deploy put another file
/// there, they can start no more (they would run another build): every start fails with
/// `WorkerStart`, saying so, rather than only that the images differ.
#[test]
fn under_valgrind_workers_of_a_replaced_program_say_that_its_file_was_replaced() {
    let name = "under_valgrind_workers_of_a_replaced_program_say_that_its_file_was_replaced";
    if let Some(path) = std::env::var_os(REPLACED) {
        let config = Config::new().workers(1).max_tasks_per_worker(1).start_attempts(1);
        let pool = ProcessPool::with_config(ProcessConfig::new(config)).unwrap();
        // The deploy is the first worker's one task, so the worker that replaces it starts
        // after the deploy (made here, its replacement could start before).
        let path = path.into_string().unwrap();
        pool.apply(deploy, path).unwrap();
        match pool.apply(square, 4) {
            Err(TaskError::WorkerStart { reason }) => {
                assert!(reason.contains("was replaced"), "the reason says not why: {reason}");
            }
            other => panic!("expected a start failure, got {other:?}"),
        }
        return;
    }
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("skipped: valgrind is not installed");
        return;
    }
    let dir = Scratch::new("replaced-under-valgrind");
    let program = dir.file("program");
    std::fs::copy(std::env::current_exe().unwrap(), &program).unwrap();
    let mut command = Command::new("valgrind");
    command
        .args(["-q", "--trace-children=no", "--error-exitcode=0"])
        .arg(&program)
        .env(REPLACED, &program);
    run_test_with_stderr(command, name, "under valgrind, replaced").unwrap();
}
