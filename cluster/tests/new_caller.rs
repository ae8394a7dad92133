//! An agent answers the first beat of a pool it has not heard with a heartbeat at once: a
//! pool that connects while agents serve sees them within a round trip to the server, where
//! it waited up to a second for their next beat.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use taskpool_cluster::{ClusterConfig, ClusterPool};

/// Pools connected one after another, each waiting for the agent: each gets an answer,
/// where waiting for the agent's next beat, once a second, took more than [`WITHIN`] for all.
const POOLS: usize = 40;
/// Long enough for every answer on a loaded machine; a beat a second gives fewer than
/// [`POOLS`] heartbeats in it.
const WITHIN: Duration = Duration::from_secs(15);

#[test]
fn an_agent_answers_each_new_pools_first_beat_with_a_heartbeat() {
    let Some(server) = common::server("new_caller") else { return };
    let url = server.url();
    let first = ClusterPool::with_config(ClusterConfig::new(url.clone())).expect("connects");
    let _agent = common::agent(&url, 1, &[]);
    assert!(first.wait_for_agents(1, Duration::from_secs(30)), "the agent serves");
    let subject = format!("taskpool.agents.{}", first.image());
    // Every heartbeat on the agents' subject, from when the subscription is in place.
    let (ready_tx, ready) = mpsc::channel();
    let (beat_tx, beats) = mpsc::channel();
    let listener = url.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let client = async_nats::connect(listener).await.expect("connects");
            let mut heartbeats = client.subscribe(subject).await.expect("subscribes");
            client.flush().await.expect("the server has the subscription");
            let _ = ready_tx.send(());
            while heartbeats.next().await.is_some() {
                if beat_tx.send(()).is_err() {
                    return;
                }
            }
        });
    });
    ready.recv().expect("the listener subscribes");
    let deadline = Instant::now() + WITHIN;
    for i in 0..POOLS {
        let pool = ClusterPool::with_config(ClusterConfig::new(url.clone())).expect("connects");
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            pool.wait_for_agents(1, left),
            "new pool {i} of {POOLS} did not see the agent within {WITHIN:?} of the first"
        );
    }
    let mut heard = 0;
    while heard < POOLS {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            beats.recv_timeout(left).is_ok(),
            "{heard} heartbeats for {POOLS} new pools within {WITHIN:?}: the agent does not \
             answer a new pool's first beat"
        );
        heard += 1;
    }
}
