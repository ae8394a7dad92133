//! A `map`'s chunks spread over the agents: a task message holds a few dozen items at most,
//! so the chunks a `map` sends at once do not travel in one message to one agent.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use taskpool_cluster::{ClusterConfig, Config, Pool};

/// Works a millisecond, then says which worker process ran it.
fn worker_after_a_millisecond(_: u32) -> u32 {
    std::thread::sleep(Duration::from_millis(1));
    std::process::id()
}

#[test]
fn a_maps_chunks_spread_over_the_agents() {
    let Some(server) = common::server("spread") else { return };
    let url = server.url();
    // Two agents of one worker each: each takes one message at a time.
    let config = ClusterConfig::new(url.clone()).config(Config::new().workers(2));
    let (_agents, pool) = common::pool_on(&url, config, 2, 1, &[]);
    // 400 items go in chunks sized from what the first ones cost, several at once. Packed
    // into one message they all went to one agent.
    let ran = pool.map(worker_after_a_millisecond, 0..400).unwrap();
    let mut by_worker: HashMap<u32, usize> = HashMap::new();
    for pid in ran {
        *by_worker.entry(pid).or_default() += 1;
    }
    assert_eq!(by_worker.len(), 2, "one worker ran every item: {by_worker:?}");
    assert!(by_worker.values().all(|&n| n >= 100), "{by_worker:?}");
}
