//! Values of a few MiB, which the allocator serves from its heap rather than mapping each
//! anew, do not leave their memory resident in an idle worker: once the worker has had
//! nothing to do a while, it gives back what it freed. This binary reads resident memory, so
//! it holds this single test.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_bytes::ByteBuf;
use taskpool_process::{Pool, ProcessPool};

/// The values: above what the transport keeps for reuse (4 MiB) and below what glibc maps
/// anew for each allocation once it has seen one this large (up to 32 MiB).
const LEN: usize = 8 << 20;
/// What the worker may keep, resident, once idle.
const KEPT: u64 = 4 << 20;

/// A task whose argument is large.
fn length(data: ByteBuf) -> usize {
    data.len()
}

/// A task whose result is large.
fn filled(len: usize) -> ByteBuf {
    ByteBuf::from(vec![7; len])
}

#[test]
fn an_idle_worker_gives_back_the_heap_that_values_of_a_few_mib_took() {
    let pool = ProcessPool::new(1).unwrap();
    assert_eq!(pool.apply(length, ByteBuf::from(vec![1; 1000])).unwrap(), 1000);
    let worker = pool.pids()[0];
    let before = resident_bytes_of(worker);

    for _ in 0..5 {
        assert_eq!(pool.apply(length, ByteBuf::from(vec![1; LEN])).unwrap(), LEN);
        assert_eq!(pool.apply(filled, LEN).unwrap().len(), LEN);
    }
    let busy = resident_bytes_of(worker).saturating_sub(before);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let kept = resident_bytes_of(worker).saturating_sub(before);
        if kept < KEPT {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still resident a minute later: {kept} bytes more in the worker ({busy} while busy)"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(pool.pids(), [worker], "the same worker served throughout");
    assert_eq!(pool.apply(length, ByteBuf::from(vec![2; 10])).unwrap(), 10);
}
