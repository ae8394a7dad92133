//! Values larger than the server's message limit fail typed, on either side, and the pool
//! goes on: an argument too large never leaves the caller, a result too large comes back as
//! `TooLarge` instead of never arriving.

mod common;

use taskpool_cluster::{ClusterConfig, Pool, Side, TaskError};

/// Returns `mib` mebibytes of bytes.
fn bytes_of(mib: usize) -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from(vec![7u8; mib << 20])
}

fn len_of(bytes: serde_bytes::ByteBuf) -> usize {
    bytes.len()
}

#[test]
fn values_over_the_message_limit_fail_with_too_large() {
    let Some(server) = common::server("large_values") else { return };
    let config = ClusterConfig::new(server.url());
    let (_agent, pool) = common::pool_on(&server.url(), config, 1, 1, &[]);
    // The test servers take messages of up to 32 MiB.
    match pool.apply(len_of, bytes_of(40)) {
        Err(TaskError::TooLarge { side: Side::Argument, .. }) => {}
        other => panic!("expected the argument to be too large, got {other:?}"),
    }
    match pool.apply(bytes_of, 40) {
        Err(TaskError::TooLarge { side: Side::Result, size, .. }) => assert!(size > 40 << 20),
        other => panic!("expected the result to be too large, got {:?}", other.map(|b| b.len())),
    }
    assert_eq!(pool.apply(bytes_of, 3).unwrap().len(), 3 << 20, "large values below it travel");
    assert_eq!(pool.apply(len_of, bytes_of(3)).unwrap(), 3 << 20);
}
