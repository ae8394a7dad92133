//! Large arguments and results (4 MiB and more) among small ones: a large argument is written
//! to its worker straight from the buffer it was encoded in, after its batch's head and before
//! the frames queued after it, and every task gets its own argument whole. A worker that dies
//! while a large frame crosses, either way, costs only its own task: the parent is neither
//! wedged nor handed a damaged value. (`pipe_transport.rs` runs the first test over pipes.)

mod common;

use std::time::Duration;

use common::*;
use serde_bytes::ByteBuf;
use taskpool_process::{Config, Exit, Pool, ProcessPool, TaskError};

const SIGSEGV: i32 = 11;
const SIGKILL: i32 = 9;

#[test]
fn large_arguments_among_small_ones_reach_their_tasks_whole_and_in_order() {
    let pool = ProcessPool::with_config(Config::new().workers(1)).unwrap();
    large_arguments_reach_their_tasks(&pool);
}

/// A large argument queued behind a task that crashes its worker: the argument may be half
/// written when the worker dies. The crash costs its own task; the large one runs on the next
/// worker with its argument whole.
#[test]
fn a_worker_that_dies_while_a_large_argument_is_written_to_it_costs_only_its_own_task() {
    let pool = ProcessPool::with_config(Config::new().workers(1)).unwrap();
    for len in [5 << 20, 40 << 20] {
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let crash = pool.submit(segfault, 0);
        let large = pool.submit(describe, ByteBuf::from(data.clone()));
        let err = crash.join().unwrap_err();
        assert!(matches!(err, TaskError::Crashed(Exit::Signal(SIGSEGV))), "{err:?}");
        assert_eq!(large.join().unwrap(), describe(ByteBuf::from(data)));
    }
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
}

/// Returns `len` bytes after arranging for its own process to be killed `micros` later:
/// while the result is encoded, written, or after.
fn large_result_then_killed((len, micros): (usize, u64)) -> ByteBuf {
    let result = ByteBuf::from((0..len).map(|i| (i % 241) as u8).collect::<Vec<u8>>());
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_micros(micros));
        // SAFETY: raising a signal has no memory-safety preconditions.
        unsafe { libc::raise(libc::SIGKILL) };
    });
    result
}

/// A worker killed while it may be writing a large result, sooner or later from one round to
/// the next (until a result makes it through): the task gets the whole result or `Crashed` by
/// SIGKILL, never part of one, and the pool serves the next task.
#[test]
fn a_worker_killed_while_writing_a_large_result_gives_all_of_it_or_a_crash() {
    let pool = ProcessPool::with_config(Config::new().workers(1)).unwrap();
    let len = 48 << 20;
    for micros in [0, 1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000] {
        let outcome = pool.apply(large_result_then_killed, (len, micros));
        assert_eq!(pool.apply(square, 4).unwrap(), 16);
        match outcome {
            Ok(back) => {
                assert_eq!(back.len(), len);
                assert!(back.iter().enumerate().all(|(i, &b)| b == (i % 241) as u8));
                return;
            }
            Err(err) => {
                assert!(matches!(err, TaskError::Crashed(Exit::Signal(SIGKILL))), "{err:?}")
            }
        }
    }
}
