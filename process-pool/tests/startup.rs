//! Workers start with no change to the program: in this test harness (every test here), in a
//! plain binary (the `square` example, which cargo builds for the tests), and they die with
//! their parent.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use taskpool_process::{Pool, ProcessPool};

/// The directory of the examples cargo built beside this test binary.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples").join(name)
}

#[test]
fn workers_start_in_a_plain_binary() {
    let path = example("square");
    if !path.exists() {
        // `cargo test` builds examples; a test run without them cannot check this.
        println!("skipped: example binary {} not built", path.display());
        return;
    }
    let out = Command::new(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("squares: [1, 4, 9, 16, 25]"), "{text}");
    assert!(text.contains("SIGSEGV"), "{text}");
    assert!(text.contains("after the crash: [1, 4, 9]"), "{text}");
    let parent_line = text.lines().find(|l| l.starts_with("parent pid")).unwrap();
    let (parent, workers) = parent_line.split_once(", worker pids: ").unwrap();
    let parent = parent.trim_start_matches("parent pid: ");
    assert!(!workers.contains(parent), "{parent_line}");
}

const ROLE: &str = "TASKPOOL_TEST_ORPHAN_PARENT";

/// Run twice: as the test, it starts a copy of this binary in the parent role, kills it with
/// SIGKILL and checks that its workers die within a second. In the parent role (the variable
/// set), it starts a pool, prints its worker pids and waits to be killed.
#[test]
fn workers_die_with_their_parent() {
    if std::env::var_os(ROLE).is_some() {
        let pool = ProcessPool::new(2).unwrap();
        assert_eq!(pool.map(square, 0..4).unwrap(), [0, 1, 4, 9]);
        let pids: Vec<String> = pool.pids().iter().map(u32::to_string).collect();
        println!("worker pids: {}", pids.join(" "));
        // Long enough to be killed; short enough that a broken test still ends.
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    let mut parent = Command::new(std::env::current_exe().unwrap())
        .args(["workers_die_with_their_parent", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(parent.stdout.take().unwrap()).lines();
    let pids: Vec<u32> = loop {
        let line = lines.next().expect("the parent printed its workers").unwrap();
        // libtest prints the test's name on the same line.
        if let Some((_, list)) = line.split_once("worker pids: ") {
            break list.split(' ').map(|p| p.parse().unwrap()).collect();
        }
    };
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|&p| alive(p)));
    parent.kill().unwrap();
    let killed_at = Instant::now();
    parent.wait().unwrap();
    while pids.iter().any(|&p| alive(p)) {
        assert!(killed_at.elapsed() < Duration::from_secs(1), "workers outlived their parent");
        std::thread::sleep(Duration::from_millis(5));
    }
}
