//! A server restarted with an empty store has lost the streams and the consumers: agents
//! and pools that outlive it make them again and serve on, instead of waiting for ever.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::PlainServer;
use taskpool_cluster::{ClusterConfig, ClusterPool, Config, Pool, TaskError};

/// Long enough to call a pool that gives no answer hung.
const DEADLINE: Duration = Duration::from_secs(90);

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn agents_and_pools_make_the_streams_again_after_the_store_is_lost() {
    let port = common::free_port();
    let Some(server) = PlainServer::start_on("store_lost", port, true) else { return };
    let url = server.url();
    let _agent = common::agent(&url, 2, &[]);
    let config = ClusterConfig::new(url.clone()).config(Config::new().workers(2));
    let pool = ClusterPool::with_config(config).expect("the pool connects");
    assert_eq!(pool.map(square, 1..=4).unwrap(), [1, 4, 9, 16]);

    // The same port, a new store: nothing of the streams is left.
    drop(server);
    let _server = PlainServer::start_on("store_lost", port, true).expect("the server restarts");

    let (tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let later = ClusterPool::connect(url).expect("a new pool connects");
        let _ = tx.send((pool.map(square, 5..=8), later.map(square, 1..=3)));
    });
    let (old, new) = done.recv_timeout(DEADLINE).expect("the pools are answered");
    assert_eq!(old.unwrap(), [25, 36, 49, 64]);
    assert_eq!(new.unwrap(), [1, 4, 9]);
}

#[test]
fn a_task_lost_with_the_store_fails_as_unreachable_while_agents_live() {
    let port = common::free_port();
    let Some(server) = PlainServer::start_on("store_lost_task", port, true) else { return };
    let url = server.url();
    let mut agent = common::agent(&url, 1, &[]);
    let config = ClusterConfig::new(url.clone())
        .config(Config::new().workers(1))
        .agent_wait(Duration::from_secs(5));
    let pool = ClusterPool::with_config(config).expect("the pool connects");
    assert!(pool.wait_for_agents(1, DEADLINE));
    // Stored, with no agent to take it, when the store is lost.
    agent.kill();
    let lost = pool.submit(square, 3);
    common::streams_reach(&url, DEADLINE, |tasks, _| tasks.messages > 0);
    drop(server);
    let _server = PlainServer::start_on("store_lost_task", port, true).expect("it restarts");
    let _agent = common::agent(&url, 1, &[]);

    let (tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(lost.join());
        drop(pool);
    });
    match done.recv_timeout(DEADLINE).expect("the task is answered") {
        Err(TaskError::Unreachable { .. }) => {}
        other => panic!("expected a lost task to fail as unreachable, got {other:?}"),
    }
}
