//! Workers start with no change to the program: in this test harness (every test here), in a
//! plain binary (the `square` example, which cargo builds for the tests), and after the
//! program's file was replaced on disk; and they die with their parent, however it dies.

mod common;

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde::{Deserialize, Serialize};
use taskpool_process::{Config, Pool, ProcessConfig, ProcessPool, Task, spawn};

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

const ROLE: &str = "TASKPOOL_TEST_PARENT_DIR";

/// Leaves its worker's pid in `dir`, then waits until `count` workers have: run at once on
/// `count` workers, it returns when all of them are serving.
#[derive(Serialize, Deserialize)]
struct Gather {
    dir: String,
    count: usize,
}

impl Task for Gather {
    type Input = u64;
    type Output = u32;

    fn run(&self, _: u64) -> u32 {
        let pid = std::process::id();
        std::fs::write(Path::new(&self.dir).join(pid.to_string()), "").unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::fs::read_dir(&self.dir).unwrap().count() < self.count {
            assert!(Instant::now() < deadline, "the other workers never came");
            std::thread::sleep(Duration::from_millis(2));
        }
        pid
    }
}

/// In the parent role (the variable names a scratch directory): starts a pool with a worker in
/// each state (running a task, idle, just replaced after a crash) and a one-off process that
/// runs a task, prints their pids, and waits to be killed.
fn play_parent(dir: &Path) {
    // A shell without job control starts background commands with interrupts ignored, and
    // this copy would inherit that: the role is a program that an interrupt ends.
    // SAFETY: setting a signal's disposition to the default has no memory-safety
    // preconditions.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
    let signal = |name: &str| dir.join(name).to_string_lossy().into_owned();
    // A pool that has not timed any task yet sends one item at a time, and `in_flight(1)`
    // keeps one per worker: the three gathering tasks go to the three workers.
    let pool = ProcessPool::with_config(ProcessConfig::new(Config::new().workers(3)).in_flight(1))
        .unwrap();
    assert_eq!(crashed(pool.apply(abort, 0)), taskpool_process::Exit::Signal(6));
    // Every worker serves, the replacement of the crashed one included.
    std::fs::create_dir(dir.join("gather")).unwrap();
    let gather = Gather { dir: signal("gather"), count: 3 };
    let serving: HashSet<u32> = pool.map(gather, 0..3).unwrap().into_iter().collect();
    assert_eq!(serving.len(), 3);
    let _busy = pool.submit(SignalThenSleep { signal: signal("busy") }, 60_000);
    wait_for_file(signal("busy"));
    let one_off = spawn(SignalThenSleep { signal: signal("one-off") }, 60_000).unwrap();
    wait_for_file(signal("one-off"));
    let mut pids: Vec<String> = pool.pids().iter().map(u32::to_string).collect();
    pids.push(one_off.id().to_string());
    println!("worker pids: {}", pids.join(" "));
    // Long enough to be killed; short enough that a broken test still ends.
    std::thread::sleep(Duration::from_secs(60));
}

/// Starts a copy of this binary, in a process group of its own, that runs `test` in the
/// parent role. Returns it and the pids of its workers, all running.
fn start_parent(test: &str, dir: &Scratch) -> (Child, Vec<u32>) {
    let mut parent = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, dir.file(""))
        .process_group(0)
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
    assert_eq!(pids.len(), 4, "three workers and a one-off");
    assert!(pids.iter().all(|&p| alive(p)));
    (parent, pids)
}

/// Waits until none of `pids` is alive; fails if that takes a second from `since`.
fn gone_within_a_second(pids: &[u32], since: Instant) {
    while let Some(pid) = pids.iter().find(|&&p| alive(p)) {
        assert!(since.elapsed() < Duration::from_secs(1), "worker {pid} outlived its parent");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Run twice: as the test, it kills a copy of this binary in the parent role with SIGKILL and
/// checks that all its workers and its one-off process die within a second.
#[test]
fn workers_die_with_their_parent() {
    if let Some(dir) = std::env::var_os(ROLE) {
        return play_parent(Path::new(&dir));
    }
    let dir = Scratch::new("sigkill-parent");
    let (mut parent, pids) = start_parent("workers_die_with_their_parent", &dir);
    parent.kill().unwrap();
    let killed_at = Instant::now();
    assert_eq!(parent.wait().unwrap().signal(), Some(9));
    gone_within_a_second(&pids, killed_at);
}

/// Run twice: as the test, it sends SIGINT (a terminal's Ctrl-C) to the process group of a
/// copy of this binary in the parent role. The parent dies of it; its workers, which survive
/// an interrupt themselves, die with it within a second.
#[test]
fn an_interrupt_to_the_group_stops_the_pool() {
    if let Some(dir) = std::env::var_os(ROLE) {
        return play_parent(Path::new(&dir));
    }
    let dir = Scratch::new("sigint-group");
    let (mut parent, pids) = start_parent("an_interrupt_to_the_group_stops_the_pool", &dir);
    let group = format!("-{}", parent.id());
    let status = Command::new("kill").args(["-INT", "--", &group]).status().unwrap();
    assert!(status.success());
    let interrupted_at = Instant::now();
    assert_eq!(parent.wait().unwrap().signal(), Some(2), "the parent died of SIGINT");
    gone_within_a_second(&pids, interrupted_at);
}

/// Set in the copy of this binary that replaces itself on disk.
const REPLACES_ITSELF: &str = "TASKPOOL_TEST_REPLACES_ITSELF";

/// Run twice: as the test, it runs a copy of this binary, which deletes its own executable
/// and writes another file in its place (as a deploy or a rebuild does under a running
/// program); workers started after that, by a crash's replacement, a one-off and a new pool,
/// still run the program that is running.
#[test]
fn workers_start_after_the_running_binary_is_replaced_on_disk() {
    let name = "workers_start_after_the_running_binary_is_replaced_on_disk";
    if std::env::var_os(REPLACES_ITSELF).is_some() {
        let pool = ProcessPool::new(1).unwrap();
        assert_eq!(pool.apply(square, 3).unwrap(), 9);
        let me = std::env::current_exe().unwrap();
        fs::remove_file(&me).unwrap();
        fs::write(&me, "#!/bin/sh\necho not the program\n").unwrap();
        assert!(matches!(
            pool.apply(segfault, 0),
            Err(taskpool_process::TaskError::Crashed(taskpool_process::Exit::Signal(11)))
        ));
        assert_eq!(pool.apply(square, 4).unwrap(), 16, "a replacement worker");
        assert_eq!(spawn(square, 5).unwrap().join().unwrap(), 25, "a one-off");
        let fresh = ProcessPool::new(2).unwrap();
        assert_eq!(fresh.map(square, 0..4).unwrap(), [0, 1, 4, 9], "a new pool");
        println!("ran after the replacement");
        return;
    }
    let dir = Scratch::new("replaced-binary");
    let copy = dir.file("copy-of-the-test");
    // Copied by another program: a file this one held open for writing could be inherited
    // by a child another test forks meanwhile, and the kernel refuses to run a file open for
    // writing anywhere ("text file busy").
    let exe = std::env::current_exe().unwrap();
    let copied = Command::new("cp").arg(&exe).arg(&copy).status().unwrap();
    assert!(copied.success(), "cp {} {copy}: {copied}", exe.display());
    let mut command = Command::new(&copy);
    command.env(REPLACES_ITSELF, "1");
    let stdout = run_test_in(command, name, "in a copy that replaces itself").unwrap();
    assert!(stdout.contains("ran after the replacement"), "{stdout}");
}
