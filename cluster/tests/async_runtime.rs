//! A pool made, used and dropped inside an async runtime, as an async program holds one:
//! the pool's own runtime must not be started or stopped on the caller's runtime's thread.

mod common;

use std::time::Duration;

use taskpool_cluster::{ClusterConfig, ClusterPool, Pool, TaskError};

fn square(x: u64) -> u64 {
    x * x
}

/// Connects, awaits a task, runs a `map` and drops the pool, all on `runtime`'s thread.
fn connect_use_and_drop(test: &str, runtime: tokio::runtime::Runtime) {
    let Some(server) = common::server(test) else { return };
    let _agent = common::agent(&server.url(), 1, &[]);
    let url = server.url();
    runtime
        .block_on(async move {
            let pool = ClusterPool::with_config(ClusterConfig::new(url))?;
            assert!(pool.wait_for_agents(1, Duration::from_secs(30)));
            assert_eq!(pool.submit(square, 7).await?, 49);
            assert_eq!(pool.map(square, 1..=3)?, [1, 4, 9]);
            drop(pool);
            Ok::<(), TaskError>(())
        })
        .unwrap();
}

#[test]
fn a_pool_lives_inside_a_multi_thread_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    connect_use_and_drop("async_multi_thread", runtime);
}

#[test]
fn a_pool_lives_inside_a_current_thread_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    connect_use_and_drop("async_current_thread", runtime);
}
