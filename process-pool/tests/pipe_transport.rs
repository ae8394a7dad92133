//! The fallback where `memfd` is unavailable: with `TASKPOOL_TRANSPORT=pipes` (the switch that
//! stands in for a kernel or a sandbox without it) workers get no shared memory, and requests
//! and results travel on the pipes alone.
//!
//! The switch is read once per process, so each test runs in a fresh copy of this test binary
//! started with it (`over_pipes`): the whole conformance suite, a crash that costs only its
//! task, a short chaos run (crashes while workers hold more work, which a supervisor must see
//! from the process, not from its pipe's end), and a check that the worker really has no shared memory (and has it without the
//! switch, so the check means something). Queues, pipes and shared bytes do not depend on
//! the pool's transport: they work the same with the switch.

mod common;

use std::process::Command;

use common::*;
use taskpool_core::conformance::chaos::{self, Expect};
use taskpool_process::{
    Config, End, GetError, Pipe, Pool, ProcessPool, Producer, Queue, SharedBytes, TaskError, spawn,
};

const SWITCH: &str = "TASKPOOL_TRANSPORT";
const SIGSEGV: i32 = 11;

/// Whether this process was started with the switch (by [`over_pipes`]).
fn switched() -> bool {
    std::env::var_os(SWITCH).is_some_and(|v| v == "pipes")
}

/// Runs the test `name` in a copy of this binary started with the switch; in that copy, runs
/// `body`.
fn over_pipes(name: &str, body: impl FnOnce()) {
    if switched() {
        body();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(SWITCH, "pipes")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name} over pipes failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{name} did not run over pipes:\n{stdout}");
}

/// 1 if this worker maps a shared-memory region of the pool, else 0.
fn maps_shared_memory(_: u64) -> u64 {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    u64::from(maps.contains("memfd:taskpool-worker"))
}

macro_rules! suite_over_pipes {
    ($($name:ident),+) => {$(
        #[test]
        fn $name() {
            over_pipes(stringify!($name), || {
                taskpool_core::conformance::$name(|config| {
                    ProcessPool::with_config(config).unwrap()
                })
            });
        }
    )+};
}

taskpool_core::conformance_suite!(each: suite_over_pipes);

#[test]
fn workers_have_no_shared_memory_over_pipes() {
    over_pipes("workers_have_no_shared_memory_over_pipes", || {
        let pool = ProcessPool::new(2).unwrap();
        assert_eq!(pool.map(maps_shared_memory, 0..8).unwrap(), [0; 8]);
    });
}

#[test]
fn workers_map_their_region_without_the_switch() {
    if switched() {
        return;
    }
    let pool = ProcessPool::new(1).unwrap();
    assert_eq!(pool.apply(maps_shared_memory, 0).unwrap(), 1);
}

#[test]
fn a_crash_over_pipes_costs_only_its_task() {
    over_pipes("a_crash_over_pipes_costs_only_its_task", || {
        let pool = ProcessPool::new(1).unwrap();
        let crashed = pool.submit(segfault, 0);
        let after = pool.submit(square, 9);
        match crashed.join() {
            Err(e @ TaskError::Crashed(_)) => assert_eq!(e.signal(), Some(SIGSEGV)),
            other => panic!("expected a crash, got {other:?}"),
        }
        assert_eq!(after.join().unwrap(), 81);
        // Over the size from which a result is written from its own buffer.
        let big = vec![7u8; 6 << 20];
        let echoed: Vec<u8> = pool.apply(echo_bytes, big.clone()).unwrap();
        assert_eq!(echoed, big);
    });
}

#[test]
fn chaos_over_pipes_gives_every_item_its_own_outcome() {
    over_pipes("chaos_over_pipes_gives_every_item_its_own_outcome", || {
        let config = Config::new().workers(2).timeout(CHAOS_TIMEOUT);
        let pool = ProcessPool::with_config(config).unwrap();
        let expect = Expect { timeout: CHAOS_TIMEOUT, hang_still_running: false };
        let tally = chaos::run(&pool, chaos_task, CHAOS_MIX, 0..10_000, &expect);
        let stats = pool.stats();
        assert_eq!(stats.crashes, tally.crashes(), "{stats:?}");
        assert_eq!(stats.timeouts, tally.hangs, "{stats:?}");
    });
}

/// Returns its input.
fn echo_bytes(bytes: Vec<u8>) -> Vec<u8> {
    bytes
}

/// Puts `0..n` and returns `n`.
fn put_range((queue, n): (Producer<u64>, u64)) -> u64 {
    (0..n).for_each(|i| queue.put(i).unwrap());
    n
}

/// Answers each number with its double until the other end is gone.
fn double_back(end: End<u64>) {
    while let Ok(x) = end.recv() {
        end.send(x * 2).unwrap();
    }
}

/// The sum of the bytes, read in place.
fn byte_sum(data: SharedBytes) -> u64 {
    data.iter().map(|&b| u64::from(b)).sum()
}

#[test]
fn queues_pipes_and_shared_bytes_work_over_pipes() {
    over_pipes("queues_pipes_and_shared_bytes_work_over_pipes", || {
        let pool = ProcessPool::new(2).unwrap();
        let queue = Queue::<u64>::new().unwrap();
        let consumer = queue.consumer().unwrap();
        let counts = pool.map(put_range, (0..2).map(|_| (queue.producer().unwrap(), 100)));
        assert_eq!(counts.unwrap(), [100, 100]);
        drop(queue);
        let mut got = Vec::new();
        let end = loop {
            match consumer.get() {
                Ok(v) => got.push(v),
                Err(e) => break e,
            }
        };
        assert_eq!(end, GetError::Disconnected);
        got.sort_unstable();
        let mut want: Vec<u64> = (0..100).chain(0..100).collect();
        want.sort_unstable();
        assert_eq!(got, want);

        let (here, there) = Pipe::new::<u64>().unwrap();
        let child = spawn(double_back, there).unwrap();
        here.send(21).unwrap();
        assert_eq!(here.recv(), Ok(42));
        drop(here);
        child.join().unwrap();

        let data = SharedBytes::copy_from_slice(&[3; 1 << 20]).unwrap();
        assert_eq!(pool.apply(byte_sum, data).unwrap(), 3 << 20);
    });
}
