//! The common traits the public types promise, checked when the tests are built (a pool
//! shared in an `Arc` across threads, a handle moved to the thread that joins it, errors that
//! are `std::error::Error + Send + Sync + 'static`), and the settings users can check and
//! read back without a server.

use std::error::Error;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use taskpool_cluster::local::{Agent, Cluster, Server};
use taskpool_cluster::{
    AgentConfig, ClusterConfig, ClusterPool, ClusterStats, Config, TaskError, TaskHandle,
};

fn send_sync<T: Send + Sync>() {}
fn error<T: Error + Send + Sync + 'static>() {}
fn value<T: Debug + Clone + Send + Sync + 'static>() {}

#[test]
fn pools_and_handles_cross_threads() {
    send_sync::<ClusterPool>();
    send_sync::<Arc<ClusterPool>>();
    send_sync::<TaskHandle<u64>>();
    send_sync::<Server>();
    send_sync::<Agent>();
    send_sync::<Cluster>();
    error::<TaskError>();
}

/// A shared cluster is read through `&`; stopping its server takes `&mut`.
#[allow(dead_code)]
fn cluster_accessors(cluster: &mut Cluster) -> (String, Option<u32>) {
    let read = |c: &Cluster| (c.url(), c.server().pid(), c.agents());
    let (url, pid, _agents) = read(cluster);
    assert_eq!(url, cluster.server().url());
    cluster.server_mut().kill();
    (url, pid)
}

#[test]
fn settings_and_stats_clone_and_compare() {
    value::<ClusterConfig>();
    value::<AgentConfig>();
    value::<ClusterStats>();
    fn eq<T: Eq + Default>() {}
    eq::<ClusterStats>();
}

#[test]
fn settings_are_checked_without_a_server() {
    let config = ClusterConfig::new("nats://127.0.0.1:4222").config(Config::new().workers(2));
    assert!(config.validate().is_ok());
    match ClusterConfig::new("http://127.0.0.1:4222").validate() {
        Err(TaskError::InvalidConfig { reason }) => assert!(reason.contains("http://"), "{reason}"),
        other => panic!("expected an invalid configuration, got {other:?}"),
    }
    match config.delivery_limit(0).validate() {
        Err(TaskError::InvalidConfig { reason }) => {
            assert!(reason.contains("delivery"), "{reason}")
        }
        other => panic!("expected an invalid configuration, got {other:?}"),
    }
    let agent = AgentConfig::new("nats://127.0.0.1:4222");
    assert!(agent.validate().is_ok());
    assert_eq!(agent.get_capacity(), None);
    assert_eq!(agent.clone().capacity(3).get_capacity(), Some(3));
    match agent.clone().capacity(0).validate() {
        Err(TaskError::InvalidConfig { reason }) => {
            assert!(reason.contains("capacity"), "{reason}")
        }
        other => panic!("expected an invalid configuration, got {other:?}"),
    }
    match agent.ack_wait(Duration::from_millis(10)).validate() {
        Err(TaskError::InvalidConfig { reason }) => {
            assert!(reason.contains("ack wait"), "{reason}")
        }
        other => panic!("expected an invalid configuration, got {other:?}"),
    }
}

#[test]
fn every_server_setting_reads_back() {
    let path = std::path::Path::new;
    let plain = ClusterConfig::new("nats://127.0.0.1:4222");
    assert_eq!(plain.get_credentials_file(), None);
    assert_eq!(plain.get_root_certificates(), None);
    assert_eq!(plain.get_client_certificate(), None);
    assert!(!plain.get_require_tls());
    let secured = plain
        .credentials_file("user.creds")
        .root_certificates("ca.pem")
        .client_certificate("cert.pem", "key.pem");
    assert_eq!(secured.get_credentials_file(), Some(path("user.creds")));
    assert_eq!(secured.get_root_certificates(), Some(path("ca.pem")));
    assert_eq!(secured.get_client_certificate(), Some((path("cert.pem"), path("key.pem"))));
    assert!(secured.get_require_tls());
    let agent = AgentConfig::new("nats://127.0.0.1:4222").require_tls(true);
    assert!(agent.get_require_tls());
    assert_eq!(agent.get_credentials_file(), None);
}

#[test]
fn an_agents_process_limits_need_no_other_crate() {
    use taskpool_cluster::ProcessConfig;

    let limited = ProcessConfig::new(Config::new().workers(2)).memory_limit(256 << 20);
    let agent = AgentConfig::new("nats://127.0.0.1:4222").pool(limited);
    assert_eq!(agent.get_pool().get_memory_limit(), Some(256 << 20));
    assert!(agent.validate().is_ok());
}
