//! A `map`'s chunks spread over the agents: a task message holds a few dozen items at most,
//! so the chunks a `map` sends at once do not travel in one message to one agent, and a
//! pass too large for a message per agent still gives each agent about an equal share.

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

/// Says which agent ran it: the parent of the worker process.
fn agent_of_worker(_: u32) -> u32 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("the worker's stat");
    // The fields after the command's name, which ends with the last ')': state, parent.
    let after = &stat[stat.rfind(')').expect("a command name") + 1..];
    after.split_whitespace().nth(1).expect("a parent").parse().expect("a pid")
}

/// A pass of a `map` too large for one task message per agent: each agent still takes about
/// an equal share. The server hands the messages to the agents' pull requests in turn, so a
/// share cut into a full message and a small rest gave one agent both full messages.
#[test]
fn a_pass_of_more_items_than_a_message_per_agent_is_shared_evenly() {
    let Some(server) = common::server("spread_parcels") else { return };
    let url = server.url();
    // Chunks of 16 items, as many at once as 4 chunks per worker and 2 more: 18 chunks, the
    // whole `map` of 288 items in one pass, 144 items for each agent, more than one task
    // message holds (128).
    let config = ClusterConfig::new(url.clone()).config(Config::new().workers(4).chunk_size(16));
    let (agents, pool) = common::pool_on(&url, config, 2, 2, &[]);
    let ran = pool.map(agent_of_worker, 0..288).expect("the map runs");
    let mut by_agent: HashMap<u32, usize> = HashMap::new();
    for pid in ran {
        *by_agent.entry(pid).or_default() += 1;
    }
    for agent in &agents {
        let items = by_agent.get(&agent.pid()).copied().unwrap_or(0);
        assert!(items >= 112, "an agent ran {items} items of 288: {by_agent:?}");
    }
}
