//! Tasks that wait for a busy agent are not delivered again meanwhile: an agent takes from
//! the server only the tasks it can start, so none waits, unreported, past the ack wait (to
//! run twice, or to fail its delivery limit without having run).

mod common;

use std::time::Duration;

use taskpool_cluster::{ClusterConfig, Config, Pool};

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn tasks_queued_behind_a_busy_agent_run_once() {
    let Some(server) = common::server("busy_agent") else { return };
    let url = server.url();
    // One worker: four tasks held, and the agent's shortest ack wait.
    let config = ClusterConfig::new(url.clone()).config(Config::new().workers(1)).delivery_limit(1);
    let (_agent, pool) =
        common::pool_on(&url, config, 1, 1, &[("TASKPOOL_AGENT_ACK_WAIT_MS", "300")]);
    // Each task in a message of its own: many more than the agent holds at once.
    let handles: Vec<_> = (1..=8)
        .map(|n| {
            let handle = pool.submit(nap, 400);
            wait_until_stored(&url, n);
            handle
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap(), 400);
    }
}

/// Returns once the tasks stream has taken `n` messages.
fn wait_until_stored(url: &str, n: u64) {
    common::streams_reach(url, Duration::from_secs(60), |tasks, _| tasks.last_sequence >= n);
}
