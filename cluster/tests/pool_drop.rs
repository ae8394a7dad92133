//! Dropping a pool removes what it made on the server: its results consumer goes with it, as
//! the crate's documentation says, not ten minutes later when the server finds it unused.

mod common;

use futures_util::StreamExt;
use taskpool_cluster::{ClusterPool, Pool};

fn square(x: u64) -> u64 {
    x * x
}

/// The consumers of the results stream: one per caller whose pool lives.
fn results_consumers(url: &str) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(url).await.expect("connects");
        let js = async_nats::jetstream::new(client);
        let results = js.get_stream("TASKPOOL_RESULTS").await.expect("the results stream");
        let names: Vec<_> = results.consumer_names().collect().await;
        names.into_iter().map(|name| name.expect("a consumer's name")).collect()
    })
}

#[test]
fn a_dropped_pool_leaves_no_results_consumer_behind() {
    let Some(server) = common::server("pool_drop") else { return };
    let url = server.url();
    let _agent = common::agent(&url, 1, &[]);
    for round in 0..20u64 {
        let pool = ClusterPool::connect(url.clone()).expect("the pool connects");
        if round % 2 == 1 {
            assert_eq!(pool.map(square, [round]).unwrap(), [round * round]);
        }
        drop(pool);
    }
    assert_eq!(results_consumers(&url), Vec::<String>::new());
}

#[test]
fn every_handle_is_finished_when_shutdown_returns() {
    let Some(server) = common::server("pool_shutdown_settles") else { return };
    let url = server.url();
    let _agent = common::agent(&url, 2, &[]);
    let pool = ClusterPool::connect(url.clone()).expect("the pool connects");
    let handles: Vec<_> = (0..200).map(|i| pool.submit(square, i)).collect();
    pool.shutdown();
    for (i, mut handle) in (0..200).zip(handles) {
        assert!(handle.is_finished(), "task {i} is not settled after shutdown returned");
        assert_eq!(handle.try_join().expect("finished").unwrap(), i * i);
    }
}
