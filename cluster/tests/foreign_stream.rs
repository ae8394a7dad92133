//! A stream of the deployment's name made by someone else, with other settings, fails a
//! pool at once with what is wrong: not every task, later, as a server that does not take it.
//! So does a stream name that differs from another's only in case, whose subjects overlap.

mod common;

use std::time::Duration;

use taskpool_cluster::{ClusterConfig, ClusterPool, TaskError};

#[test]
fn a_stream_of_the_same_name_with_other_subjects_is_refused_at_once() {
    let Some(server) = common::server("foreign_stream") else { return };
    let orders = async_nats::jetstream::stream::Config {
        name: "TASKPOOL_TASKS".into(),
        subjects: vec!["orders.>".into()],
        ..Default::default()
    };
    make_stream(&server.url(), orders);
    let source = refused(ClusterPool::connect(server.url()));
    assert!(source.contains("TASKPOOL_TASKS"), "{source}");
    assert!(source.contains("orders.>"), "{source}");
}

/// A tasks stream made beforehand with a size limit that discards old messages (NATS's default
/// discard policy) would delete stored tasks silently once full, and their callers would wait
/// for ever while agents live: it is refused at once, saying what to change.
#[test]
fn a_tasks_stream_that_discards_old_tasks_at_a_limit_is_refused_at_once() {
    let Some(server) = common::server("discarding_stream") else { return };
    let capped = async_nats::jetstream::stream::Config {
        name: "TASKPOOL_TASKS".into(),
        subjects: vec!["taskpool.tasks.>".into()],
        retention: async_nats::jetstream::stream::RetentionPolicy::WorkQueue,
        max_bytes: 300_000,
        ..Default::default()
    };
    make_stream(&server.url(), capped);
    let source = refused(ClusterPool::connect(server.url()));
    assert!(source.contains("TASKPOOL_TASKS"), "{source}");
    assert!(source.contains("max_bytes 300000"), "the limit: {source}");
    assert!(source.contains("discard new"), "the fix: {source}");
}

#[test]
fn a_stream_name_differing_only_in_case_from_anothers_is_refused_saying_why() {
    let Some(server) = common::server("case_stream") else { return };
    let first = ClusterConfig::new(server.url()).stream_name("Orders");
    let _first = ClusterPool::with_config(first).expect("the first name is taken");
    let source =
        refused(ClusterPool::with_config(ClusterConfig::new(server.url()).stream_name("orders")));
    assert!(source.contains("orders.tasks.>"), "the subjects: {source}");
    assert!(source.contains("only in case"), "{source}");
    assert!(source.contains("choose another stream name"), "the fix: {source}");
}

/// Makes the stream `config` on the server at `url`, as another program would.
fn make_stream(url: &str, config: async_nats::jetstream::stream::Config) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(url).await.expect("connects");
        let js = async_nats::jetstream::new(client);
        js.create_stream(config).await.expect("the stream is made");
    });
}

/// The reason `connect` gives for refusing the server's streams: at once, for good.
fn refused(connect: Result<ClusterPool, TaskError>) -> String {
    match connect {
        Err(e @ TaskError::Unreachable { waited, .. }) => {
            assert_eq!(waited, Duration::ZERO, "final: no retry");
            e.to_string()
        }
        other => panic!("expected the stream to be refused, got {other:?}"),
    }
}
