//! A task with no agent to run it fails once the agent wait is over, not a heartbeat after:
//! the pool listens for agents of other builds and stream names (which the error counts)
//! during the wait's last heartbeat, not after it.

mod common;

use std::time::{Duration, Instant};

use taskpool_cluster::{ClusterConfig, ClusterPool, Pool, TaskError};

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn a_task_without_an_agent_fails_when_the_wait_is_over() {
    let Some(server) = common::server("no_worker_wait") else { return };
    // Longer than the heartbeat the pool listens for other agents.
    let wait = Duration::from_millis(1_500);
    let pool = ClusterPool::with_config(ClusterConfig::new(server.url()).agent_wait(wait))
        .expect("the pool connects");
    let started = Instant::now();
    let outcome = pool.apply(square, 3);
    let elapsed = started.elapsed();
    match outcome {
        Err(TaskError::NoWorker { waited, other_agents: 0, other_streams: 0 }) => {
            assert!(waited >= wait, "said {waited:?}, less than the wait {wait:?}");
            assert!(waited <= elapsed, "said {waited:?}, but the call only {elapsed:?}");
            // Listened to once the wait was over, the pool failed the task at least a
            // heartbeat and a quarter (1.25 s) after it, whatever the machine's speed; now it
            // listens during the wait and fails the task at the police's next round.
            let listening = Duration::from_millis(1_250);
            assert!(waited < wait + listening, "said {waited:?}: listened after {wait:?}");
        }
        other => panic!("expected no agent, got {other:?}"),
    }
}
