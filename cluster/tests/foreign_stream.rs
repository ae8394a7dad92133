//! A stream of the deployment's name made by someone else, with other settings, fails a
//! pool at once with what is wrong: not every task, later, as a server that does not take it.

mod common;

use std::error::Error;
use std::time::Duration;

use taskpool_cluster::{ClusterPool, TaskError};

#[test]
fn a_stream_of_the_same_name_with_other_subjects_is_refused_at_once() {
    let Some(server) = common::server("foreign_stream") else { return };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(server.url()).await.expect("connects");
        let js = async_nats::jetstream::new(client);
        let orders = async_nats::jetstream::stream::Config {
            name: "TASKPOOL_TASKS".into(),
            subjects: vec!["orders.>".into()],
            ..Default::default()
        };
        js.create_stream(orders).await.expect("someone else's stream");
    });
    match ClusterPool::connect(server.url()) {
        Err(e @ TaskError::Unreachable { waited, .. }) => {
            assert_eq!(waited, Duration::ZERO, "final: no retry");
            let source = e.source().expect("why").to_string();
            assert!(source.contains("TASKPOOL_TASKS"), "{source}");
            assert!(source.contains("orders.>"), "{source}");
        }
        other => panic!("expected the stream to be refused, got {other:?}"),
    }
}
