//! Dropping an `imap` withdraws its chunks in flight: an agent runs none of their items not
//! yet started, whether a chunk still waits in the stream or already in the agent's pool.

mod common;

use std::time::Duration;

use taskpool_cluster::{ClusterConfig, Config, Pool};
use taskpool_core::conformance::Touch;

/// How many files are in `dir`.
fn count_files(dir: String) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| entries.count() as u64)
}

#[test]
fn an_agent_drops_the_items_of_a_dropped_imap() {
    let Some(server) = common::server("imap_drop") else { return };
    // One worker: it runs everything in the order the agent queues it.
    let config = ClusterConfig::new(server.url()).config(Config::new().workers(1).chunk_size(50));
    let (_agent, pool) = common::pool_on(&server.url(), config, 1, 1, &[]);
    let dir = std::env::temp_dir().join(format!("taskpool-imap-drop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.to_string_lossy().into_owned();

    // The first chunk's result comes once its 50 items ran (a second): by then the agent
    // holds the next chunks, queued behind it in its pool.
    let mut lazy = pool.imap(Touch { dir: path.clone(), ms: 20 }, 0u64..);
    assert_eq!(lazy.next().unwrap().unwrap(), 0);
    drop(lazy);
    // The agent takes turns between the chunks it holds and the task: the task runs before
    // they end, withdrawn or not.
    let ran = pool.apply(count_files, path.clone()).unwrap();
    assert!((50..100).contains(&ran), "{ran} items ran: the first chunk and a few more");
    // Once the agents have acknowledged every task message, whatever of the chunks was not
    // withdrawn has run.
    wait_until_all_acknowledged(&server.url());
    let ran = count_files(path);
    assert!((50..100).contains(&ran), "{ran} items ran in all: the first chunk and a few more");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Returns once the tasks stream (a work queue, which deletes a message once an agent
/// acknowledges it) is empty.
fn wait_until_all_acknowledged(url: &str) {
    common::streams_reach(url, Duration::from_secs(60), |tasks, _| tasks.messages == 0);
}
