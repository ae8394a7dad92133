//! A pool made, used and dropped inside an async runtime, as an async program holds one, and
//! an agent started from async code: neither may start or stop its own runtime on a thread
//! of the caller's.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use taskpool_cluster::{AgentConfig, ClusterConfig, ClusterPool, Config, Pool, TaskError};

fn square(x: u64) -> u64 {
    x * x
}

/// Connects, awaits a task, runs a `map` and drops the pool, all on `runtime`'s thread.
fn connect_use_and_drop(test: &str, runtime: tokio::runtime::Runtime) {
    let Some(server) = common::server(test) else { return };
    let _agent = common::agent(&server.url(), 1, &[]);
    let url = server.url();
    runtime
        .block_on(async move {
            let pool = ClusterPool::with_config(ClusterConfig::new(url))?;
            assert!(pool.wait_for_agents(1, Duration::from_secs(30)));
            assert_eq!(pool.submit(square, 7).await?, 49);
            assert_eq!(pool.map(square, 1..=3)?, [1, 4, 9]);
            drop(pool);
            Ok::<(), TaskError>(())
        })
        .unwrap();
}

#[test]
fn a_pool_lives_inside_a_multi_thread_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    connect_use_and_drop("async_multi_thread", runtime);
}

#[test]
fn a_pool_lives_inside_a_current_thread_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    connect_use_and_drop("async_current_thread", runtime);
}

/// Set, to the server's url, in this test binary started again as an agent from code.
const AGENT_URL: &str = "ASYNC_RUNTIME_AGENT_URL";

/// An agent started from code inside an async runtime (a command of an async program's
/// command line) serves, and returns when it is asked to stop. A no-op unless started by
/// `an_agent_serves_from_inside_a_runtime`.
#[test]
fn agent_started_from_async_code() {
    let Some(url) = std::env::var_os(AGENT_URL) else { return };
    let config = AgentConfig::new(url.into_string().unwrap()).pool(Config::new().workers(1));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async move { taskpool_cluster::serve_agent(config) }).unwrap();
}

#[test]
fn an_agent_serves_from_inside_a_runtime() {
    let Some(server) = common::server("async_agent") else { return };
    let mut agent = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "agent_started_from_async_code", "--nocapture"])
        .env(AGENT_URL, server.url())
        .stdin(Stdio::null())
        .spawn()
        .expect("the agent starts");
    let pool = ClusterPool::with_config(ClusterConfig::new(server.url())).unwrap();
    assert!(pool.wait_for_agents(1, Duration::from_secs(30)), "the agent serves");
    assert_eq!(pool.apply(square, 5).unwrap(), 25);
    let status = Command::new("kill").arg("-TERM").arg(agent.id().to_string()).status();
    assert!(status.expect("kill runs").success());
    let status = agent.wait().unwrap();
    assert!(status.success(), "serve_agent returned Ok, and the test passed: {status:?}");
}
