//! A pool sizes its chunks from what its items cost on the agents, not from how long its
//! units waited there behind other callers' work: a `map` of cheap items sent while an
//! agent is busy with another caller's slow items still travels in a few large chunks,
//! rather than one item to a chunk for as long as the agent stays busy.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use taskpool_cluster::{ClusterConfig, ClusterPool, Config, Pool};

/// Takes 20 ms, unless the file `stop` is in `dir`.
fn slow((dir, i): (String, u64)) -> u64 {
    if !PathBuf::from(dir).join("stop").exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    i
}

fn cheap(x: u64) -> u64 {
    x * 2
}

/// Items of the cheap `map`.
const CHEAP: u64 = 100;

#[test]
fn chunks_are_sized_from_what_items_cost_not_from_how_long_they_waited() {
    let Some(server) = common::server("chunk_time") else { return };
    let url = server.url();
    // One worker, kept busy by the slow items of the first pool.
    let _agent = common::agent(&url, 1, &[]);
    let config = || ClusterConfig::new(url.clone()).config(Config::new().workers(1));
    let busy = ClusterPool::with_config(config()).expect("the pool connects");
    let pool = ClusterPool::with_config(config()).expect("the pool connects");
    assert!(busy.wait_for_agents(1, Duration::from_secs(30)));
    let dir = common::markers("chunk_time");
    let path = dir.to_string_lossy().into_owned();
    let mut slow_items = busy.imap(slow, (0..).map(|i| (path.clone(), i)));
    assert_eq!(slow_items.next().unwrap().unwrap(), 0, "the agent is busy");
    let doubled = pool.map(cheap, 0..CHEAP).unwrap();
    assert_eq!(doubled, (0..CHEAP).map(cheap).collect::<Vec<u64>>());
    let units = pool.stats().settled;
    std::fs::write(dir.join("stop"), "").unwrap();
    drop(slow_items);
    // A few chunks of one item while the first is measured, then ever larger ones (a fair
    // share of what is left): 13 units. Taken for the items' cost, the wait of each unit for
    // a slow item in the agent's line kept the chunks small: 33 units.
    assert!(units <= 20, "the map of {CHEAP} cheap items travelled in {units} units");
    std::fs::remove_dir_all(dir).unwrap();
}
