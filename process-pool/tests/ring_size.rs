//! `ProcessConfig::ring_bytes`: a bad size fails pool creation with a typed error, a good one
//! is the size of the rings the workers get, and payloads many times larger than a ring
//! still cross whole.

mod common;

use common::*;
use taskpool_process::{Config, Pool, ProcessConfig, ProcessPool, TaskError};

/// Bytes of the worker's shared-memory mapping, from its `/proc/self/maps` (0 if none).
fn region_bytes(_: u64) -> u64 {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines()
        .filter(|line| line.contains("memfd:taskpool-worker"))
        .filter_map(|line| {
            let (start, end) = line.split_whitespace().next()?.split_once('-')?;
            let start = u64::from_str_radix(start, 16).ok()?;
            Some(u64::from_str_radix(end, 16).ok()? - start)
        })
        .sum()
}

fn echo_bytes(bytes: Vec<u8>) -> Vec<u8> {
    bytes
}

fn pool(ring_bytes: usize) -> Result<ProcessPool, TaskError> {
    ProcessPool::with_config(ProcessConfig::new(Config::new().workers(2)).ring_bytes(ring_bytes))
}

#[test]
fn a_bad_ring_size_fails_pool_creation_with_invalid_config() {
    for bytes in [0, 1000, 4095, 3 << 12, (1 << 20) + 4096, 2 << 30] {
        match pool(bytes) {
            Err(TaskError::InvalidConfig { reason }) => {
                assert!(reason.contains("ring_bytes"), "{bytes}: {reason}")
            }
            other => panic!("{bytes}: expected InvalidConfig, got {:?}", other.map(|_| ())),
        }
    }
}

#[test]
fn workers_get_rings_of_the_size_asked() {
    let default = ProcessPool::new(1).unwrap();
    if default.apply(region_bytes, 0).unwrap() == 0 {
        println!("skipped: workers get no shared memory here (no memfd, or pipes asked for)");
        return;
    }
    assert_eq!(default.apply(region_bytes, 0).unwrap(), 130 * 4096, "the default rings");
    // A page of status, then two rings of a 256-byte header and their data, in whole pages.
    for (ring_bytes, region) in
        [(4096_u64, 4 * 4096), (64 << 10, 34 * 4096), (256 << 10, 130 * 4096)]
    {
        let pool = pool(ring_bytes as usize).unwrap();
        assert_eq!(pool.apply(region_bytes, 0).unwrap(), region, "rings of {ring_bytes}");
    }
}

#[test]
fn payloads_larger_than_the_ring_cross_whole() {
    let pool = pool(4096).unwrap();
    let payload: Vec<u8> = (0..300_000_u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(pool.apply(echo_bytes, payload.clone()).unwrap(), payload);
    let squares = pool.map(square, 0..20_000).unwrap();
    assert!(squares.iter().enumerate().all(|(i, &s)| s == (i as u64) * (i as u64)));
}
