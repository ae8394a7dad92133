//! The worker marker: a forged or stray one never turns a program into a worker, and a worker
//! whose parent died while it started exits without running the program's `main` again.

use std::os::unix::fs::MetadataExt;
use std::process::{Command, Output, Stdio};

use taskpool_process::{Pool, ProcessPool};

const MARKER: &str = "TASKPOOL_WORKER";
/// Set in the copies of this binary that the tests start: they only say that `main` ran.
const CHILD: &str = "TASKPOOL_TEST_MARKER_CHILD";

/// The marker's image field for this very executable file (device and inode; the layout
/// probe is left at 0).
fn this_file() -> String {
    let meta = std::fs::metadata("/proc/self/exe").unwrap();
    format!("{}:{}:0", meta.dev(), meta.ino())
}

fn square(x: u64) -> u64 {
    x * x
}

/// In a child copy: reports that the harness, hence `main`, ran as usual, with the marker
/// removed and pools of its own working.
fn play_child() {
    assert!(std::env::var_os(MARKER).is_none(), "the marker is removed before main");
    assert_eq!(ProcessPool::new(1).unwrap().apply(square, 3).unwrap(), 9);
    println!("main ran");
}

fn run_copy(command: &mut Command, marker: &str) -> Output {
    command.env(MARKER, marker).env(CHILD, "1").stdout(Stdio::piped()).output().unwrap()
}

#[test]
fn a_forged_marker_runs_main_normally() {
    if std::env::var_os(CHILD).is_some() {
        return play_child();
    }
    let me = std::process::id();
    let this = this_file();
    for marker in [
        // Names a parent that is not this process's.
        "taskpool-worker-1;1;0:0:0".to_owned(),
        // Names the right parent, but descriptors 3 and 4 are not pipes.
        format!("taskpool-worker-1;{me};0:0:0"),
        format!("taskpool-worker-1;{me};{this}"),
        // Another protocol version, and garbage.
        format!("taskpool-worker-2;{me};{this}"),
        "garbage".to_owned(),
    ] {
        let mut copy = Command::new(std::env::current_exe().unwrap());
        copy.args(["a_forged_marker_runs_main_normally", "--exact", "--nocapture"]);
        let out = run_copy(&mut copy, &marker);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{marker}: {:?} {stdout}", out.status);
        assert!(stdout.contains("main ran") && stdout.contains("1 passed"), "{marker}: {stdout}");
    }
}

#[test]
fn an_orphaned_worker_exits_without_running_main() {
    if std::env::var_os(CHILD).is_some() {
        return play_child();
    }
    // What a worker sees when its parent died while it started: pipes on descriptors 3 and 4
    // (the shell makes them from its stdin and stdout), a marker for this very program, and a
    // parent other than the one named (pid 1 is never the test's parent).
    let exe = std::env::current_exe().unwrap();
    let mut copy = Command::new("sh");
    copy.args(["-c", r#"exec "$0" "$1" --exact --nocapture 3<&0 4>&1"#])
        .arg(&exe)
        .arg("an_orphaned_worker_exits_without_running_main")
        .stdin(Stdio::piped());
    let out = run_copy(&mut copy, &format!("taskpool-worker-1;1;{}", this_file()));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "main ran: {}", String::from_utf8_lossy(&out.stdout));
}
