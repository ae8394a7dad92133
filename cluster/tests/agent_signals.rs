//! An agent asked to stop finishes what it holds; asked again, it stops at once, as a
//! program does at a second Ctrl-C, however long its tasks would still run.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use taskpool_cluster::{ClusterConfig, ClusterPool, Pool, TaskHandle};

/// Long enough to call an agent that did not stop hung.
const DEADLINE: Duration = Duration::from_secs(60);

/// Connects to the test at `port` (which tells it the task runs) and returns once the test
/// hangs up.
fn held(port: u16) -> u16 {
    if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
        let _ = stream.read(&mut [0]);
    }
    port
}

/// An agent's ack wait of a second.
const ACK_WAIT_1_S: (&str, &str) = ("TASKPOOL_AGENT_ACK_WAIT_MS", "1000");

/// An agent of one worker on the server at `url` (with `vars` in its environment), a pool,
/// and a task of that pool that runs on the agent until the returned stream is dropped.
fn holding_a_task(
    url: String,
    vars: &[(&str, &str)],
) -> (common::Agent, ClusterPool, TaskHandle<u16>, TcpStream) {
    let agent = common::agent(&url, 1, vars);
    let pool = ClusterPool::with_config(ClusterConfig::new(url)).expect("the pool connects");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = pool.submit(held, port);
    let (running, _) = listener.accept().expect("the task runs");
    (agent, pool, task, running)
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status();
    assert!(status.expect("kill runs").success());
}

#[test]
fn a_second_signal_stops_an_agent_that_finishes_a_long_task() {
    let Some(server) = common::server("agent_signals") else { return };
    let url = server.url();
    let (agent, _pool, _task, _running) = holding_a_task(url, &[]);

    signal(agent.pid(), "TERM");
    signal(agent.pid(), "INT");
    assert!(!stops(agent), "a failure status");
}

/// An agent asked to stop while its server is gone for good does not wait for ever to store
/// the results of what it held: once the server has been out of reach for the ack wait
/// (after which it gives those tasks to other agents), the agent stops, with success.
#[test]
fn an_agent_asked_to_stop_without_its_server_stops_after_the_ack_wait() {
    let Some(mut server) = common::server("agent_stops_without_server") else { return };
    let url = server.url();
    let (agent, _pool, _task, running) = holding_a_task(url, &[ACK_WAIT_1_S]);

    server.kill();
    signal(agent.pid(), "TERM");
    // The task finishes; its result has nowhere to go.
    drop(running);
    assert!(stops(agent), "a success status");
}

/// An agent that gives up on what it holds, its server out of reach for the ack wait, does not
/// wait for the tasks that still run either: their results have nowhere to go, and the server
/// gives them to other agents. Its workers are stopped with it.
#[test]
fn an_agent_that_gives_up_on_its_server_does_not_wait_for_its_running_tasks() {
    let Some(mut server) = common::server("agent_gives_up_running") else { return };
    let url = server.url();
    // Held open until the test ends: the task runs on.
    let (agent, _pool, _task, _running) = holding_a_task(url, &[ACK_WAIT_1_S]);

    server.kill();
    signal(agent.pid(), "TERM");
    assert!(stops(agent), "a success status");
}

/// An agent whose standard error nobody reads any more (a log pipe whose reader died) serves
/// and stops as any other: what it says there is lost, and it does not panic.
#[test]
fn an_agent_whose_standard_error_is_a_broken_pipe_serves_and_stops() {
    let Some(server) = common::server("agent_broken_stderr") else { return };
    let url = server.url();
    let mut agent = Command::new(std::env::current_exe().unwrap())
        .env("TASKPOOL_AGENT", &url)
        .env("TASKPOOL_AGENT_WORKERS", "1")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the agent starts");
    // Its reader is gone before the agent says a word.
    drop(agent.stderr.take());
    let pool = ClusterPool::with_config(ClusterConfig::new(url)).expect("the pool connects");
    let served = pool.wait_for_agents(1, DEADLINE);
    if !served {
        let _ = agent.kill();
    }
    assert!(served, "the agent never served: {:?}", agent.try_wait());
    assert_eq!(pool.apply(held, 0).unwrap(), 0);
    signal(agent.id(), "TERM");
    let status = agent.wait().expect("the agent is waited for");
    assert!(status.success(), "the agent ended with {status}");
}

/// Waits (at most [`DEADLINE`]) for `agent` to stop, and says whether it stopped with
/// success; kills it and fails if it does not stop.
fn stops(mut agent: common::Agent) -> bool {
    let pid = agent.pid();
    let (tx, stopped) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(agent.wait().map(|status| status.success()));
    });
    let stopped = stopped.recv_timeout(DEADLINE);
    if stopped.is_err() {
        signal(pid, "KILL");
    }
    stopped.expect("the agent stops").expect("it is waited for")
}
