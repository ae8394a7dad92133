//! Results that pile up in the results stream while their caller does not read (stopped, busy,
//! or a `map` whose chunks all finish at once) reach it without the server taking it for a
//! slow consumer: a caller asks for a bounded number of bytes at a time. A pull of unbounded
//! size made the server push every stored result at once, more than it buffers for a client
//! (its `max_pending`, 64 MiB by default); it closed the caller's connection, and the results
//! it had pushed came again only after their ack wait, 30 s later.
//!
//! The caller is this test binary run again as a child (its `caller_child` test), so that it
//! can be stopped while its results are stored.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::PlainServer;
use serde_bytes::ByteBuf;
use taskpool_cluster::{ClusterConfig, ClusterPool, Config, Pool};

/// Long enough to call something that did not happen hung.
const DEADLINE: Duration = Duration::from_secs(120);
/// How many tasks the caller sends.
const TASKS: usize = 120;
/// The size of each task's result: one result message each, on a server of NATS's default
/// message limit (1 MiB); [`TASKS`] of them are more than the server buffers for a client.
const RESULT: usize = 900 << 10;

const URL_VAR: &str = "RESULT_BURST_URL";
const DIR_VAR: &str = "RESULT_BURST_DIR";

/// Waits until the file `go` exists in `dir` (at most ten minutes), then returns [`RESULT`]
/// bytes.
fn wait_then_result(dir: String) -> ByteBuf {
    let go = PathBuf::from(dir).join("go");
    let until = Instant::now() + Duration::from_secs(600);
    while !go.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    ByteBuf::from(vec![7u8; RESULT])
}

/// The caller: sends [`TASKS`] tasks, says so, then waits for their results. Run only in a
/// copy of this binary started by the test below.
#[test]
#[ignore = "run in a copy of this binary by the test below"]
fn caller_child() {
    let (Ok(url), Ok(dir)) = (std::env::var(URL_VAR), std::env::var(DIR_VAR)) else {
        panic!("run by the test below, which sets {URL_VAR} and {DIR_VAR}");
    };
    // Stopped for less than this, the caller is not taken for gone.
    let config = ClusterConfig::new(url)
        .config(Config::new().workers(2))
        .abandon_after(Duration::from_secs(300));
    let pool = ClusterPool::with_config(config).expect("the pool connects");
    assert!(pool.wait_for_agents(1, DEADLINE));
    let handles: Vec<_> = (0..TASKS).map(|_| pool.submit(wait_then_result, dir.clone())).collect();
    std::fs::write(Path::new(&dir).join("submitted"), "").unwrap();
    for mut handle in handles {
        assert_eq!(handle.join_timeout(DEADLINE).expect("every task's result").len(), RESULT);
    }
}

/// Sends the signal called `name` to process `pid`.
fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status();
    assert!(status.expect("kill runs").success());
}

#[test]
fn results_stored_while_their_caller_is_stopped_reach_it_without_a_slow_consumer() {
    let monitor = common::free_port();
    let config = format!("http: \"127.0.0.1:{monitor}\"\n");
    let Some(server) = PlainServer::configured("result_burst", &config) else { return };
    let _agent = common::agent(&server.url(), 2, &[]);
    let dir = common::markers("result_burst");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["caller_child", "--exact", "--ignored", "--test-threads=1"])
        .env(URL_VAR, server.url())
        .env(DIR_VAR, &dir)
        .spawn()
        .expect("the caller starts");
    assert!(common::poll(DEADLINE, || dir.join("submitted").exists()), "the caller sent");
    signal(child.id(), "STOP");
    std::fs::write(dir.join("go"), b"").unwrap();
    // Every result stored while the caller cannot read.
    common::streams_reach(&server.url(), DEADLINE, |_, results| results.messages as usize >= TASKS);
    signal(child.id(), "CONT");
    let status = child.wait().expect("the caller is waited for");
    assert!(status.success(), "the caller got every result: {status}");
    assert_eq!(common::varz(monitor)["slow_consumers"], 0, "no client was a slow consumer");
    std::fs::remove_dir_all(dir).unwrap();
}
