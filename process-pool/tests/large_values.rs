//! A large value crosses a worker and back whole, and the memory its crossing took (the
//! transport's buffers, kept while large values keep coming) is given back once the pool has
//! been idle a while. This binary reads resident memory, so it holds this single test.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_bytes::ByteBuf;
use taskpool_process::{Pool, ProcessPool};

/// The value: large enough that a buffer kept for it stands out of allocator noise.
const LEN: usize = 64 << 20;
/// What the parent or the worker may keep, resident, after the crossing.
const KEPT: u64 = 16 << 20;

fn echo(data: ByteBuf) -> ByteBuf {
    data
}

#[test]
fn a_64_mib_echo_crosses_whole_and_its_buffers_go_back_once_idle() {
    let pool = ProcessPool::new(1).unwrap();
    assert!(pool.apply(echo, ByteBuf::from(vec![1; 1000])).unwrap().len() == 1000);
    let worker = pool.pids()[0];
    let (parent, child) = (resident_bytes(), resident_bytes_of(worker));

    let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    let back = pool.apply(echo, ByteBuf::from(data.clone())).unwrap();
    assert!(back.as_slice() == data.as_slice(), "the echo differs");
    drop((back, data));

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let parent_kept = resident_bytes().saturating_sub(parent);
        let worker_kept = resident_bytes_of(worker).saturating_sub(child);
        if parent_kept < KEPT && worker_kept < KEPT {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still resident a minute later: {parent_kept} bytes more in the parent, \
             {worker_kept} in the worker"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(pool.pids(), [worker], "the same worker served throughout");
    assert_eq!(pool.apply(echo, ByteBuf::from(vec![2; 10])).unwrap().len(), 10);
}
