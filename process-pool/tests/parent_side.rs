//! What runs in the parent on a task's behalf (decoding its result, its panic report) fails
//! that task alone, typed, and the pool goes on.

mod common;

use common::*;
use serde::{Deserialize, Deserializer, Serialize};
use taskpool_process::{Config, Direction, Pool, ProcessConfig, ProcessPool, Side, TaskError};

/// A value whose `Deserialize` panics (in the parent, where results are decoded) when it is 3.
#[derive(Debug, Serialize)]
struct Touchy(u64);

impl<'de> Deserialize<'de> for Touchy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        assert!(v != 3, "three cannot be decoded");
        Ok(Touchy(v))
    }
}

fn touchy(x: u64) -> Touchy {
    Touchy(x)
}

fn panic_at_length(len: usize) -> u64 {
    panic!("{}", "x".repeat(len))
}

fn decode_panic(result: Result<Touchy, TaskError>) -> String {
    match result {
        Err(TaskError::Serialization { side: Side::Result, direction, message }) => {
            assert_eq!(direction, Direction::Decode);
            message
        }
        other => panic!("expected a serialization error of the result, got {other:?}"),
    }
}

#[test]
fn a_result_whose_deserialize_panics_fails_alone() {
    within("results whose decoding panics", || {
        let pool = ProcessPool::new(2).unwrap();
        let message = decode_panic(pool.apply(touchy, 3));
        assert!(message.contains("three cannot be decoded"), "{message}");
        assert_eq!(pool.apply(touchy, 4).unwrap().0, 4);
        let outcomes = pool.map_results(touchy, 0..1000);
        assert_eq!(outcomes.len(), 1000);
        for (i, outcome) in outcomes.into_iter().enumerate() {
            if i == 3 {
                decode_panic(outcome);
            } else {
                assert_eq!(outcome.unwrap().0, i as u64);
            }
        }
        let lazy: Vec<_> = pool.imap(touchy, 0..10).collect();
        assert_eq!(lazy.len(), 10);
        for (i, outcome) in (0..).zip(lazy) {
            if i == 3 {
                decode_panic(outcome);
            } else {
                assert_eq!(outcome.unwrap().0, i);
            }
        }
        assert!(matches!(pool.map(touchy, 0..10), Err(TaskError::Serialization { .. })));
        assert_eq!(pool.map(square, 0..100).unwrap().len(), 100);
        let stats = pool.stats();
        assert_eq!(stats.completed + stats.failed, 1 + 1 + 1000 + 10 + 10 + 100, "{stats:?}");
    });
}

#[test]
fn a_panic_report_over_the_frame_limit_is_cut_and_stays_a_panic() {
    let limit = 256;
    let config =
        ProcessConfig::new(Config::new().workers(1).backtraces(true)).max_frame_bytes(limit);
    let pool = ProcessPool::with_config(config).unwrap();
    match pool.apply(panic_at_length, 100_000) {
        Err(TaskError::Panicked(report)) => {
            assert!(report.message.starts_with("xxxx"), "{}", report.message);
            assert!(report.message.ends_with("[cut to fit the frame limit]"), "{}", report.message);
            let size = report.message.len()
                + report.location.as_deref().map_or(0, str::len)
                + report.backtrace.as_deref().map_or(0, str::len);
            assert!(size <= limit, "{size} bytes of report");
        }
        other => panic!("expected a panic, got {other:?}"),
    }
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    assert_eq!(pool.stats().workers_started, 1, "the worker survived");
}
