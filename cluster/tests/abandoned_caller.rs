//! A caller that is gone (killed, so that it never drops its pool) leaves nothing running for
//! nobody: once the agents have not heard it for its `abandon_after`, its running task is
//! stopped (its worker killed and replaced), its queued tasks are dropped without running,
//! and nothing of it is left in the streams. A caller that is only stopped for a while, within
//! that bound, loses nothing.
//!
//! The caller is this test binary run again as a child (its `caller_child` test), so that it
//! can be killed or stopped; its tasks say that they started in marker files.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use async_nats::jetstream::stream::State;
use taskpool_cluster::{ClusterConfig, ClusterPool, Config, Pool};

/// Long enough to call something that did not happen hung.
const DEADLINE: Duration = Duration::from_secs(60);
/// The caller's `abandon_after` in the test of a killed caller.
const SHORT_BOUND: Duration = Duration::from_secs(3);
/// The caller's `abandon_after` in the test of a stopped caller.
const STOP_BOUND: Duration = Duration::from_secs(8);
/// How late an agent hears the callers' beats in the test of a new caller's first task.
const BEAT_LAG: Duration = Duration::from_secs(1);
/// How many tasks the caller sends, each in a message of its own: more than the agent holds.
const TASKS: u32 = 8;

/// The variables that make the `caller_child` test a caller.
const URL_VAR: &str = "ABANDONED_CALLER_URL";
const DIR_VAR: &str = "ABANDONED_CALLER_DIR";
const MODE_VAR: &str = "ABANDONED_CALLER_MODE";

/// The caller: sends [`TASKS`] tasks, each in a message of its own, says so, then waits for
/// their results (in mode `stop`, checks them and returns; in mode `kill`, it is killed
/// first). Run only in a copy of this binary started by a test below.
#[test]
#[ignore = "run in a copy of this binary by the tests below"]
fn caller_child() {
    let (Ok(url), Ok(dir), Ok(mode)) =
        (std::env::var(URL_VAR), std::env::var(DIR_VAR), std::env::var(MODE_VAR))
    else {
        panic!("run by the tests below, which set {URL_VAR}, {DIR_VAR} and {MODE_VAR}");
    };
    let bound = if mode == "stop" { STOP_BOUND } else { SHORT_BOUND };
    let config =
        ClusterConfig::new(url.clone()).config(Config::new().workers(1)).abandon_after(bound);
    let pool = ClusterPool::with_config(config).expect("the pool connects");
    assert!(pool.wait_for_agents(1, DEADLINE));
    if mode == "one" {
        let handle = pool.submit(common::mark_and_hold, (dir.clone(), 0));
        std::fs::write(Path::new(&dir).join("submitted"), "").unwrap();
        assert_eq!(handle.join().unwrap(), 0);
        return;
    }
    if mode == "map" {
        // One chunk of several items, which the agent's one worker takes together.
        std::fs::write(Path::new(&dir).join("submitted"), "").unwrap();
        let items: Vec<(String, u32)> = (0..4).map(|i| (dir.clone(), i)).collect();
        assert_eq!(pool.map(common::mark_and_hold, items).unwrap(), [0, 1, 2, 3]);
        return;
    }
    let handles: Vec<_> = (0..TASKS)
        .map(|i| {
            let handle = pool.submit(common::mark_and_hold, (dir.clone(), i));
            wait_until_stored(&url, u64::from(i) + 1);
            handle
        })
        .collect();
    std::fs::write(Path::new(&dir).join("submitted"), "").unwrap();
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.join().expect("every task's result"), i as u32);
    }
}

/// Returns once the tasks stream has taken `n` messages.
fn wait_until_stored(url: &str, n: u64) {
    streams(url, |tasks, _| tasks.last_sequence >= n);
}

/// Returns once `done` holds of the states of the tasks and results streams.
fn streams(url: &str, done: impl Fn(&State, &State) -> bool) {
    common::streams_reach(url, DEADLINE, done);
}

/// The caller, killed when dropped.
struct Caller(Child);

impl Caller {
    fn start(url: &str, dir: &Path, mode: &str) -> Caller {
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["caller_child", "--exact", "--ignored", "--test-threads=1"])
            .env(URL_VAR, url)
            .env(DIR_VAR, dir)
            .env(MODE_VAR, mode)
            .spawn()
            .expect("the caller starts");
        Caller(child)
    }

    fn signal(&self, name: &str) {
        signal(self.0.id(), name);
    }
}

/// Sends the signal called `name` to process `pid`.
fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status();
    assert!(status.expect("kill runs").success());
}

impl Drop for Caller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn a_killed_callers_running_task_stops_and_its_queued_tasks_never_start() {
    let Some(server) = common::server("abandoned_caller_killed") else { return };
    let url = server.url();
    // One worker: it holds four messages, so four wait in the stream.
    let _agent = common::agent(&url, 1, &[]);
    let dir = common::markers("abandoned-killed");
    let mut caller = Caller::start(&url, &dir, "kill");
    let first = dir.join("started-0");
    assert!(
        common::poll(DEADLINE, || dir.join("submitted").exists() && first.exists()),
        "the caller sent its tasks and the first runs"
    );
    let worker: u32 = std::fs::read_to_string(&first).unwrap().parse().unwrap();
    caller.signal("KILL");
    let _ = caller.0.wait();
    let killed = Instant::now();

    // Within the bound and some slack, the running task's worker is killed...
    let slack = Duration::from_secs(20);
    assert!(
        common::poll(SHORT_BOUND + slack, || common::ended(worker)),
        "the running task was stopped"
    );
    // ... and every message of the caller is taken off the stream, without running.
    streams(&url, |tasks, results| tasks.messages == 0 && results.messages == 0);
    assert!(killed.elapsed() < SHORT_BOUND + slack + DEADLINE);
    for i in 1..TASKS {
        assert!(!dir.join(format!("started-{i}")).exists(), "task {i} of the gone caller ran");
    }
    // The agent serves on, with a new worker.
    let pool = ClusterPool::connect(url).expect("the pool connects");
    assert_eq!(pool.map(square, 1..=3).unwrap(), [1, 4, 9]);
    for i in 1..TASKS {
        assert!(!dir.join(format!("started-{i}")).exists(), "task {i} of the gone caller ran");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_killed_callers_chunk_stops_on_its_worker() {
    let Some(server) = common::server("abandoned_caller_chunk") else { return };
    let url = server.url();
    let _agent = common::agent(&url, 1, &[]);
    let dir = common::markers("abandoned-chunk");
    let mut caller = Caller::start(&url, &dir, "map");
    let first = dir.join("started-0");
    assert!(common::poll(DEADLINE, || first.exists()), "the chunk runs");
    let worker: u32 = std::fs::read_to_string(&first).unwrap().parse().unwrap();
    caller.signal("KILL");
    let _ = caller.0.wait();
    assert!(
        common::poll(SHORT_BOUND + DEADLINE, || common::ended(worker)),
        "the running chunk was stopped"
    );
    streams(&url, |tasks, results| tasks.messages == 0 && results.messages == 0);
    // The agent serves on, with a new worker; the chunk's other items never ran.
    let pool = ClusterPool::connect(url).expect("the pool connects");
    assert_eq!(pool.map(square, 1..=3).unwrap(), [1, 4, 9]);
    for i in 1..4 {
        assert!(!dir.join(format!("started-{i}")).exists(), "item {i} of the gone caller ran");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A result stored after its caller died, when no other task of it is left, is removed too
/// once the caller is taken for gone, rather than kept for a day.
#[test]
fn a_result_stored_after_its_caller_died_is_removed() {
    let Some(server) = common::server("abandoned_caller_result") else { return };
    let url = server.url();
    let _agent = common::agent(&url, 1, &[]);
    let dir = common::markers("abandoned-result");
    let mut caller = Caller::start(&url, &dir, "one");
    assert!(common::poll(DEADLINE, || dir.join("started-0").exists()), "the task runs");
    caller.signal("KILL");
    let _ = caller.0.wait();
    // The task ends at once, well within the bound: its result is stored for nobody.
    std::fs::write(dir.join("go"), "").unwrap();
    streams(&url, |tasks, results| {
        tasks.messages == 0 && results.last_sequence >= 1 && results.messages == 0
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_caller_stopped_and_continued_within_its_bound_gets_every_result() {
    let Some(server) = common::server("abandoned_caller_stopped") else { return };
    let url = server.url();
    let _agent = common::agent(&url, 1, &[]);
    let dir = common::markers("abandoned-stopped");
    let mut caller = Caller::start(&url, &dir, "stop");
    assert!(
        common::poll(DEADLINE, || dir.join("submitted").exists() && dir.join("started-0").exists()),
        "the caller sent its tasks and the first runs"
    );
    caller.signal("STOP");
    // The tasks run while the caller is stopped: their results wait for it. (An agent
    // acknowledges a task's message once its results are stored, and may store several
    // results in one message: every task message acknowledged is every result stored.)
    std::fs::write(dir.join("go"), "").unwrap();
    streams(&url, |tasks, _| tasks.last_sequence >= u64::from(TASKS) && tasks.messages == 0);
    caller.signal("CONT");
    let status = caller.0.wait().expect("the caller is waited for");
    assert!(status.success(), "the caller got every result ({status})");
    for i in 0..TASKS {
        assert!(dir.join(format!("started-{i}")).exists(), "task {i} ran");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An agent that was itself stopped for longer than a caller's bound heard no one meanwhile,
/// which says nothing about the callers: their tasks run on.
#[test]
fn an_agent_stopped_for_longer_than_the_bound_keeps_the_tasks_of_a_live_caller() {
    let Some(server) = common::server("abandoned_caller_agent_stopped") else { return };
    let url = server.url();
    let agent = common::agent(&url, 1, &[]);
    let dir = common::markers("abandoned-agent-stopped");
    let config =
        ClusterConfig::new(url).config(Config::new().workers(1)).abandon_after(SHORT_BOUND);
    let pool = ClusterPool::with_config(config).expect("the pool connects");
    assert!(pool.wait_for_agents(1, DEADLINE));
    let dir_name = dir.to_string_lossy().into_owned();
    let handles: Vec<_> =
        (0..3).map(|i| pool.submit(common::mark_and_hold, (dir_name.clone(), i))).collect();
    assert!(common::poll(DEADLINE, || dir.join("started-0").exists()), "the first task runs");
    signal(agent.pid(), "STOP");
    std::thread::sleep(SHORT_BOUND + Duration::from_secs(1));
    std::fs::write(dir.join("go"), "").unwrap();
    signal(agent.pid(), "CONT");
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.join().unwrap(), i as u32);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A pool's first task may reach an agent before the pool's first beat does: the beat comes
/// another way (on a connection of its own, maybe through another server of a cluster). An
/// agent that has listened for longer than the pool's bound waits for that beat, rather than
/// take the new pool for gone and drop its first task.
#[test]
fn a_new_callers_first_task_runs_though_its_first_beat_comes_after_it() {
    let Some(server) = common::server("abandoned_caller_first_beat") else { return };
    let relay = LaggingRelay::to(server.port(), BEAT_LAG);
    let _agent = common::agent(&relay.url(), 1, &[]);
    // The agent listened for the callers before it served: for longer than the bound when
    // the pool's first task comes.
    std::thread::sleep(SHORT_BOUND);
    let config = ClusterConfig::new(server.url()).abandon_after(SHORT_BOUND);
    let pool = ClusterPool::with_config(config).expect("the pool connects");
    assert_eq!(pool.submit(square, 7).join().expect("the first task runs"), 49);
}

/// A relay to the server that passes what the server sends on an agent's beats connection
/// (the one whose `CONNECT` names it so) a fixed lag late, and all else at once: the agent
/// hears the callers' beats late, as through a slower way than their tasks.
struct LaggingRelay {
    port: u16,
}

impl LaggingRelay {
    fn to(server_port: u16, lag: Duration) -> LaggingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { return };
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", server_port)) else {
                    continue;
                };
                let (Ok(up_from), Ok(down_to)) = (inbound.try_clone(), inbound.try_clone()) else {
                    continue;
                };
                let Ok(down_from) = outbound.try_clone() else { continue };
                let beats = Arc::new(AtomicBool::new(false));
                let lagging = beats.clone();
                std::thread::spawn(move || relay_up(up_from, outbound, &beats));
                std::thread::spawn(move || relay_down(down_from, down_to, &lagging, lag));
            }
        });
        LaggingRelay { port }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// Passes what the client sends to the server at once, and sets `beats` before it passes the
/// `CONNECT` of a beats connection.
fn relay_up(mut from: TcpStream, mut to: TcpStream, beats: &AtomicBool) {
    let mut buf = vec![0u8; 64 << 10];
    let mut start = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if start.len() < 4096 {
            start.extend_from_slice(&buf[..n]);
            if start.windows(7).any(|w| w == b" beats\"") {
                beats.store(true, Ordering::SeqCst);
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}

/// Passes what the server sends to the client, `lag` late once the connection is known for a
/// beats connection.
fn relay_down(mut from: TcpStream, mut to: TcpStream, beats: &AtomicBool, lag: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = std::thread::spawn(move || {
        for (due, bytes) in rx {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let due = if beats.load(Ordering::SeqCst) { Instant::now() + lag } else { Instant::now() };
        if tx.send((due, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.join();
}
