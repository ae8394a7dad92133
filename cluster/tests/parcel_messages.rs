//! A pass of a `map` too large for one task message per agent: each agent still takes about
//! an equal share. The server hands the messages to the agents' pull requests in turn, so a
//! share cut into a full message and a small rest gave one agent both full messages.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use taskpool_cluster::{ClusterConfig, ClusterPool, Config, Pool};

/// Says which agent ran it: the parent of the worker process.
fn agent_of_worker(_: u32) -> u32 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("the worker's stat");
    // The fields after the command's name, which ends with the last ')': state, parent.
    let after = &stat[stat.rfind(')').expect("a command name") + 1..];
    after.split_whitespace().nth(1).expect("a parent").parse().expect("a pid")
}

#[test]
fn a_pass_of_more_items_than_a_message_per_agent_is_shared_evenly() {
    let Some(server) = common::server("parcel_messages") else { return };
    let url = server.url();
    let agents = [common::agent(&url, 2, &[]), common::agent(&url, 2, &[])];
    // Chunks of 16 items, as many at once as 4 chunks per worker and 2 more: 18 chunks, the
    // whole `map` of 288 items in one pass, 144 items for each agent, more than one task
    // message holds (128).
    let config = ClusterConfig::new(url.clone()).config(Config::new().workers(4).chunk_size(16));
    let pool = ClusterPool::with_config(config).expect("the pool connects");
    assert!(pool.wait_for_agents(2, Duration::from_secs(30)));
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
