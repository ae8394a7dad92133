//! Task messages that wait in the tasks stream before an agent starts (or while every agent is
//! busy) reach it without the server taking it for a slow consumer: an agent asks for a
//! bounded number of bytes at a time. A pull of one message per free slot, of any size, made
//! the server push that many large messages at once, more than it buffers for a client (its
//! `max_pending`, 64 MiB by default); it closed the agent's connection, and the tasks it had
//! pushed came again only after their ack wait, each delivery counted against the task's
//! delivery limit.

mod common;

use std::time::Duration;

use common::PlainServer;
use serde_bytes::ByteBuf;
use taskpool_cluster::{ClusterConfig, ClusterPool, Pool};

/// Long enough to call something that did not happen hung.
const DEADLINE: Duration = Duration::from_secs(120);
/// How many tasks wait for the agent: more than its two workers' slots.
const TASKS: usize = 10;
/// The size of each task's argument: the slots' messages together are more than the server
/// buffers for a client.
const ARGUMENT: usize = 20 << 20;

fn len_of(bytes: ByteBuf) -> usize {
    bytes.len()
}

#[test]
fn large_tasks_queued_before_an_agent_starts_reach_it_without_a_slow_consumer() {
    let monitor = common::free_port();
    let config = format!("max_payload: 33554432\nhttp: \"127.0.0.1:{monitor}\"\n");
    let Some(server) = PlainServer::configured("task_burst", &config) else { return };
    let config = ClusterConfig::new(server.url()).agent_wait(DEADLINE);
    let pool = ClusterPool::with_config(config).expect("the pool connects");
    let handles: Vec<_> =
        (0..TASKS).map(|_| pool.submit(len_of, ByteBuf::from(vec![7u8; ARGUMENT]))).collect();
    common::streams_reach(&server.url(), DEADLINE, |tasks, _| tasks.messages as usize >= TASKS);
    let _agent = common::agent(&server.url(), 2, &[]);
    for mut handle in handles {
        assert_eq!(handle.join_timeout(DEADLINE).expect("every task's result"), ARGUMENT);
    }
    assert_eq!(common::varz(monitor)["slow_consumers"], 0, "no client was a slow consumer");
}

/// The size of each task's argument on a server of the default `max_payload` (1 MiB): the
/// messages of an agent's slots together are more than the lowered `max_pending` below.
const SMALLER_ARGUMENT: usize = 900 << 10;

#[test]
fn large_tasks_reach_an_agent_without_a_slow_consumer_under_a_lowered_max_pending() {
    let monitor = common::free_port();
    // Two messages of the server's 1 MiB limit: eight slots of 900 KiB are far more.
    let config = format!("max_pending: 2097152\nhttp: \"127.0.0.1:{monitor}\"\n");
    let Some(server) = PlainServer::configured("task_burst_pending", &config) else { return };
    let config = ClusterConfig::new(server.url()).agent_wait(DEADLINE);
    let pool = ClusterPool::with_config(config).expect("the pool connects");
    let handles: Vec<_> = (0..TASKS)
        .map(|_| pool.submit(len_of, ByteBuf::from(vec![7u8; SMALLER_ARGUMENT])))
        .collect();
    common::streams_reach(&server.url(), DEADLINE, |tasks, _| tasks.messages as usize >= TASKS);
    let _agent = common::agent(&server.url(), 2, &[]);
    for mut handle in handles {
        let len = handle.join_timeout(DEADLINE).expect("every task's result");
        assert_eq!(len, SMALLER_ARGUMENT);
    }
    assert_eq!(common::varz(monitor)["slow_consumers"], 0, "no client was a slow consumer");
}
