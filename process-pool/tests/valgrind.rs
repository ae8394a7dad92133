//! Under Valgrind, which runs the program in its tool's process, `/proc/self/exe` names the
//! tool, which refuses to run on its own: workers and one-offs start from the program's file
//! instead, natively, or under Valgrind too with `--trace-children=yes`.

mod common;

use std::process::Command;

use common::*;
use taskpool_process::{Pool, ProcessPool, spawn};

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
