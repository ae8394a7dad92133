//! A program whose executable its user may run but not read (mode 0711, as some deploys
//! install binaries) is made not dumpable by the kernel, and so are its workers and one-offs,
//! which run the same file. Workers start and tasks run, but no queue handle or shared bytes
//! can be opened through `/proc/PID/fd` in either direction: such a task fails with
//! `Serialization`, and the message says why. Checked when the tests run as root, on an
//! unreadable copy of this binary that another user runs.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use common::*;
use taskpool_process::{Direction, Pool, ProcessPool, Queue, SharedBytes, Side, TaskError, spawn};

/// Set in the unreadable copy of this binary.
const UNREADABLE: &str = "TASKPOOL_TEST_UNREADABLE_EXECUTABLE";

fn length(bytes: SharedBytes) -> usize {
    bytes.as_slice().len()
}

fn shared(len: usize) -> SharedBytes {
    SharedBytes::new(len, |bytes| bytes.fill(7)).unwrap()
}

fn dumpable(_: ()) -> i32 {
    // SAFETY: PR_GET_DUMPABLE only reads a flag of the calling process.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE) }
}

/// Asserts that `result` failed to decode on `side`, saying that a process is not dumpable.
fn not_dumpable<T: std::fmt::Debug>(result: Result<T, TaskError>, side: Side) {
    match result {
        Err(TaskError::Serialization { side: s, direction: Direction::Decode, message })
            if s == side =>
        {
            assert!(message.contains("Permission denied"), "{message}");
            assert!(message.contains("not dumpable"), "the message does not say why: {message}");
        }
        other => panic!("expected a decode failure on the {side:?} side, got {other:?}"),
    }
}

#[test]
fn an_unreadable_executable_runs_tasks_and_says_why_nothing_crosses_through_proc() {
    let name = "an_unreadable_executable_runs_tasks_and_says_why_nothing_crosses_through_proc";
    if std::env::var_os(UNREADABLE).is_some() {
        let pool = ProcessPool::new(1).unwrap();
        assert_eq!(dumpable(()), 0, "the kernel made this process dumpable");
        assert_eq!(pool.apply(dumpable, ()).unwrap(), 0, "a worker is dumpable");
        assert_eq!(pool.apply(square, 3).unwrap(), 9);
        assert_eq!(spawn(square, 4).unwrap().join().unwrap(), 16);
        // This process's shared bytes and queues, to a worker and to a one-off.
        not_dumpable(pool.apply(length, shared(100)), Side::Argument);
        not_dumpable(spawn(length, shared(100)).and_then(|child| child.join()), Side::Argument);
        let queue = Queue::<u64>::new().unwrap();
        let producer = queue.producer().unwrap();
        not_dumpable(
            pool.apply(|_: taskpool_process::Producer<u64>| 0u8, producer),
            Side::Argument,
        );
        // A worker's shared bytes, to this process.
        not_dumpable(pool.apply(shared, 100), Side::Result);
        assert_eq!(pool.apply(square, 5).unwrap(), 25, "the pool goes on");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: running an executable that its user cannot read needs root");
        return;
    }
    let dir = Scratch::new("unreadable-executable");
    let copy = dir.file("unreadable-copy");
    std::fs::copy(std::env::current_exe().unwrap(), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o711)).unwrap();
    let parent = std::path::Path::new(&copy).parent().unwrap().to_owned();
    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711)).unwrap();
    let mut command = Command::new(&copy);
    command.env(UNREADABLE, "1").uid(65534).gid(65534);
    if let Err(e) = run_test_in(command, name, "from an unreadable executable") {
        // A scratch directory the other user cannot reach cannot show it.
        println!("skipped: cannot run an unreadable copy: {e}");
    }
}
