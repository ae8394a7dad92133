//! A worker that writes garbage to its result pipe is killed, the task it was running fails
//! with `Protocol` naming what was wrong, and the pool goes on with a new worker.

mod common;

use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;

use common::*;
use taskpool_process::{Pool, ProcessPool, TaskError};

/// Writes `junk` to the worker's result pipe (descriptor 4), among its real result frames.
fn write_junk(junk: Vec<u8>) -> u64 {
    // SAFETY: descriptor 4 is this worker's result pipe, open for the worker's whole life;
    // `ManuallyDrop` keeps this `File` from closing it.
    let mut pipe = ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(4) });
    pipe.write_all(&junk).unwrap();
    0
}

/// A frame: its length (kind plus body), its kind, its body.
fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(body.len() + 1).unwrap().to_le_bytes().to_vec();
    out.push(kind);
    out.extend_from_slice(body);
    out
}

#[test]
fn garbage_on_the_result_pipe_fails_the_task_with_protocol() {
    let done = 12;
    let batch = 2;
    // A result header: the first item's sequence number, then the items' elapsed, user and
    // system time and peak memory, then how many items follow.
    let header = |seq: u64, count: u32| -> Vec<u8> {
        let mut out: Vec<u8> = [seq, 0, 0, 0, 0].iter().flat_map(|f| f.to_le_bytes()).collect();
        out.extend_from_slice(&count.to_le_bytes());
        out
    };
    // A well-formed result (one value of one byte) for an item never sent.
    let stray_result = [header(1000, 1), 1u32.to_le_bytes().to_vec(), vec![0]].concat();
    // Two items announced, one value given.
    let short_list = [header(0, 2), 1u32.to_le_bytes().to_vec(), vec![0]].concat();
    let cases: [(Vec<u8>, &str); 8] = [
        (u32::MAX.to_le_bytes().to_vec(), "over the"),
        (frame(99, b"junk"), "unknown frame kind 99"),
        (vec![0; 4], "empty frame"),
        (frame(batch, b"junk"), "unexpected Batch frame"),
        (frame(done, b"short"), "too short"),
        (frame(done, &header(0, 0)), "without items"),
        (frame(done, &short_list), "too short for result value"),
        (frame(done, &stray_result), "result for item 1000"),
    ];
    let pool = ProcessPool::new(1).unwrap();
    for (junk, what) in cases {
        let before = pool.apply(worker_pid, 0).unwrap();
        match pool.apply(write_junk, junk) {
            Err(TaskError::Protocol { reason }) => assert!(reason.contains(what), "{reason}"),
            other => panic!("expected a protocol error about {what:?}, got {other:?}"),
        }
        assert_eq!(pool.apply(square, 3).unwrap(), 9, "the pool goes on");
        assert!(!alive(before), "the worker that sent {what:?} was killed");
    }
    let stats = pool.stats();
    assert_eq!((stats.crashes, stats.workers_started), (0, 9), "{stats:?}");
}
