//! Values that cannot travel fail their task alone, with a typed error.

mod common;

use common::*;
use serde::{Serialize, Serializer};
use taskpool_process::{Config, Pool, ProcessConfig, ProcessPool, Side, TaskError};

/// A value whose serialization always fails.
#[derive(Debug)]
pub struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this value refuses to be serialized"))
    }
}

impl<'de> serde::Deserialize<'de> for Unserializable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Unserializable)
    }
}

fn make_unserializable(_: u64) -> Unserializable {
    Unserializable
}

fn bytes_of_len(n: u64) -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from(vec![7; usize::try_from(n).unwrap()])
}

fn echo(bytes: serde_bytes::ByteBuf) -> serde_bytes::ByteBuf {
    bytes
}

#[test]
fn a_result_that_cannot_serialize_fails_alone() {
    let pool = ProcessPool::new(1).unwrap();
    match pool.apply(make_unserializable, 0) {
        // postcard reports custom serializer errors without their text.
        Err(TaskError::Serialization { side: Side::Result, message, .. }) => {
            assert!(!message.is_empty())
        }
        other => panic!("expected a result serialization error, got {other:?}"),
    }
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
}

#[test]
fn an_argument_over_the_limit_fails_before_sending() {
    let pool = ProcessPool::with_config(
        ProcessConfig::new(Config::new().workers(1)).max_frame_bytes(1024),
    )
    .unwrap();
    match pool.apply(echo, serde_bytes::ByteBuf::from(vec![0; 4096])) {
        Err(TaskError::TooLarge { side: Side::Argument, size, limit: 1024 }) => {
            assert!(size > 4096)
        }
        other => panic!("expected an oversized argument error, got {other:?}"),
    }
    assert_eq!(pool.apply(echo, serde_bytes::ByteBuf::from(vec![1; 100])).unwrap().len(), 100);
}

#[test]
fn a_result_over_the_limit_fails_alone() {
    let pool = ProcessPool::with_config(
        ProcessConfig::new(Config::new().workers(1)).max_frame_bytes(1024),
    )
    .unwrap();
    let outcomes = pool.map_results(bytes_of_len, [10, 5000, 20]);
    assert_eq!(outcomes[0].as_ref().unwrap().len(), 10);
    match &outcomes[1] {
        Err(TaskError::TooLarge { side: Side::Result, size, limit: 1024 }) => assert!(*size > 5000),
        other => panic!("expected an oversized result error, got {other:?}"),
    }
    assert_eq!(outcomes[2].as_ref().unwrap().len(), 20);
}

#[test]
fn large_payloads_round_trip() {
    let pool = ProcessPool::new(2).unwrap();
    for len in [0, 1 << 10, 1 << 16, 1 << 20, 16 << 20] {
        let back = pool.apply(echo, serde_bytes::ByteBuf::from(vec![3; len])).unwrap();
        assert_eq!(back.len(), len);
        assert!(back.iter().all(|&b| b == 3));
    }
}
