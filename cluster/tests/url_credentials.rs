//! A user and password (or a token) in the server's url authenticate callers and agents, as
//! in every NATS client.

mod common;

use common::PlainServer;

use taskpool_cluster::{ClusterPool, Pool, TaskError};

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn a_user_and_password_in_the_url_authenticate() {
    let config = "authorization { user: alice, password: secret }";
    let Some(server) = PlainServer::configured("url_credentials", config) else { return };
    let url = server.url().replace("nats://", "nats://alice:secret@");
    let _agent = common::agent(&url, 1, &[]);
    let pool = ClusterPool::connect(url).expect("the pool connects");
    assert_eq!(pool.map(square, 1..=3).unwrap(), [1, 4, 9]);
}

#[test]
fn a_refused_password_is_not_repeated_in_the_error() {
    let config = "authorization { user: alice, password: secret }";
    let Some(server) = PlainServer::configured("url_credentials_refused", config) else { return };
    let url = server.url().replace("nats://", "nats://alice:wrong-secret@");
    match ClusterPool::connect(url) {
        Err(e @ TaskError::Unreachable { .. }) => {
            let source = e.to_string();
            assert!(source.contains("authorization violation"), "{source}");
            assert!(!source.contains("wrong-secret"), "the password is shown: {source}");
        }
        other => panic!("expected the server to refuse the password, got {other:?}"),
    }
}
