//! Mistakes of configuration fail at once with what is wrong, not as an unreachable server
//! after many retries: a url that is not a NATS url, replicas that a single server cannot
//! have, a server without JetStream, a `tls://` url for a server without TLS, a stream name
//! too long.

mod common;

use std::time::Duration;

use common::PlainServer;
use taskpool_cluster::{ClusterConfig, ClusterPool, TaskError};

#[test]
fn a_url_that_is_not_a_nats_url_is_an_invalid_config() {
    for url in ["not a url at all", "http://127.0.0.1:1"] {
        match ClusterPool::connect(url) {
            Err(TaskError::InvalidConfig { reason }) => assert!(reason.contains(url), "{reason}"),
            other => panic!("{url}: expected an invalid configuration, got {other:?}"),
        }
    }
}

#[test]
fn replicas_a_single_server_cannot_have_are_an_invalid_config() {
    let Some(server) = common::server("setup_replicas") else { return };
    match ClusterPool::with_config(ClusterConfig::new(server.url()).replicas(3)) {
        Err(TaskError::InvalidConfig { reason }) => {
            assert!(reason.contains("replicas: 3"), "{reason}");
            assert!(reason.contains("non-clustered"), "the server's own words: {reason}");
        }
        other => panic!("expected an invalid configuration, got {other:?}"),
    }
}

#[test]
fn replicas_a_single_server_cannot_have_are_an_invalid_config_when_the_streams_exist() {
    let Some(server) = common::server("setup_replicas_existing") else { return };
    let _first = ClusterPool::connect(server.url()).expect("the streams are made, one replica");
    match ClusterPool::with_config(ClusterConfig::new(server.url()).replicas(3)) {
        Err(TaskError::InvalidConfig { reason }) => {
            assert!(reason.contains("replicas: 3"), "{reason}");
            assert!(reason.contains("non-clustered"), "the server's own words: {reason}");
        }
        other => panic!("expected an invalid configuration, got {other:?}"),
    }
}

#[test]
fn a_server_without_jetstream_is_unreachable_without_retrying() {
    let Some(server) = PlainServer::start("setup_no_jetstream", false) else { return };
    match ClusterPool::connect(server.url()) {
        Err(e @ TaskError::Unreachable { waited, .. }) => {
            assert_eq!(waited, Duration::ZERO, "its answer is final: no retry");
            let source = e.to_string();
            assert!(source.contains("JetStream is not enabled"), "{source}");
        }
        other => panic!("expected an unreachable server, got {other:?}"),
    }
}

#[test]
fn a_tls_url_to_a_server_without_tls_says_the_server_does_not_speak_tls() {
    let Some(server) = PlainServer::start("setup_tls_to_plain", true) else { return };
    let url = server.url().replace("nats://", "tls://");
    match ClusterPool::connect(url.clone()) {
        Err(e @ TaskError::Unreachable { .. }) => {
            let source = e.to_string();
            assert!(source.contains(&url), "{source}");
            assert!(source.contains("does not speak TLS"), "{source}");
            assert!(source.contains("nats://"), "the fix: {source}");
        }
        other => panic!("expected an unreachable server, got {other:?}"),
    }
}

#[test]
fn a_stream_name_longer_than_jetstream_allows_is_an_invalid_config() {
    let longest = "a".repeat(247);
    let config = ClusterConfig::new("nats://127.0.0.1:1").stream_name(longest.clone() + "a");
    match ClusterPool::with_config(config) {
        Err(TaskError::InvalidConfig { reason }) => {
            assert!(reason.contains("248 bytes"), "{reason}");
            assert!(reason.contains("247"), "the longest allowed: {reason}");
        }
        other => panic!("expected an invalid configuration, got {other:?}"),
    }
    let Some(server) = common::server("setup_long_stream_name") else { return };
    let config = ClusterConfig::new(server.url()).stream_name(longest);
    assert!(ClusterPool::with_config(config).is_ok(), "the longest name is taken");
}
