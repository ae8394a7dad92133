//! A result reaches its caller while the worker runs a long task after it: the worker never
//! holds a finished result back until a later task ends. And a caller that joins a task
//! reads results itself, rather than wait for a supervisor to read them and wake it.

mod common;

use common::*;
use std::thread::{self, ThreadId};

use serde::{Deserialize, Deserializer, Serialize};
use taskpool_process::{Config, Pool, ProcessConfig, ProcessPool, Task};

#[test]
fn a_quick_result_is_not_held_back_by_a_long_task_after_it() {
    let scratch = Scratch::new("latency");
    let (started, go) = (scratch.file("started"), scratch.file("go"));
    let (gate_started, gate_go) = (scratch.file("gate-started"), scratch.file("gate-go"));
    within("a quick task's join while a long one runs", move || {
        let config = ProcessConfig::new(Config::new().workers(1)).in_flight(4);
        let pool = ProcessPool::with_config(config).unwrap();
        // The gate holds the worker while the quick and the long task are sent behind it, so
        // that the worker has both in hand when the quick one finishes.
        let gate = SignalThenWait { signal: gate_started.clone(), go: gate_go.clone() };
        let gate = pool.submit(gate, 0);
        let quick = pool.submit(square, 3);
        let long = pool.submit(SignalThenWait { signal: started.clone(), go: go.clone() }, 1);
        wait_for_file(&gate_started);
        std::fs::write(&gate_go, "").unwrap();
        // The long task waits for `go`, which is written only once the quick result is here:
        // a worker that held the quick result until the long task ended would hang here.
        assert_eq!(quick.join().unwrap(), 9);
        wait_for_file(&started);
        std::fs::write(&go, "").unwrap();
        assert_eq!(long.join().unwrap(), 1);
        assert_eq!(gate.join().unwrap(), 0);
    });
}

/// A number that remembers which thread decoded it: in the parent, the thread that read the
/// worker's result.
struct Decoded {
    value: u64,
    by: Option<ThreadId>,
}

impl Serialize for Decoded {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Decoded {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = u64::deserialize(d)?;
        Ok(Decoded { value, by: Some(thread::current().id()) })
    }
}

#[derive(Serialize, Deserialize)]
struct Doubled;

impl Task for Doubled {
    type Input = u64;
    type Output = Decoded;

    fn run(&self, x: u64) -> Decoded {
        Decoded { value: 2 * x, by: None }
    }
}

#[test]
fn a_caller_that_joins_reads_results_itself() {
    within("joins that read their results", || {
        let pool = ProcessPool::new(1).unwrap();
        let me = thread::current().id();
        // Results read by this thread, of `join`s and of `apply`s.
        let (mut joined, mut applied) = (0, 0);
        for x in 0..100 {
            let result = pool.submit(Doubled, x).join().unwrap();
            assert_eq!(result.value, 2 * x);
            joined += usize::from(result.by == Some(me));
            let result = pool.apply(Doubled, x).unwrap();
            assert_eq!(result.value, 2 * x);
            applied += usize::from(result.by == Some(me));
        }
        // Whoever reads first settles: the supervisor may have been awake already.
        eprintln!("read by the joining thread: {joined} of 100 joins, {applied} of 100 applies");
        assert!(joined > 0 && applied > 0, "{joined} joins, {applied} applies");
    });
}

/// `Doubled` again, as a function of its own for every `N`: each is new to the pool, with no
/// time per task measured yet.
#[derive(Serialize, Deserialize)]
struct Fresh<const N: u64>;

impl<const N: u64> Task for Fresh<N> {
    type Input = u64;
    type Output = Decoded;

    fn run(&self, x: u64) -> Decoded {
        Decoded { value: N * x, by: None }
    }
}

/// The caller reads the rings only for a function whose tasks proved quick: joining a task of
/// a function not measured yet (counted as slow), it leaves the reading to the supervisor.
#[test]
fn a_caller_does_not_read_results_for_a_function_not_measured_yet() {
    within("first joins of new functions", || {
        let pool = ProcessPool::new(1).unwrap();
        let me = thread::current().id();
        let firsts = [
            pool.submit(Fresh::<1>, 5).join().unwrap(),
            pool.submit(Fresh::<2>, 5).join().unwrap(),
            pool.submit(Fresh::<3>, 5).join().unwrap(),
            pool.submit(Fresh::<4>, 5).join().unwrap(),
            pool.submit(Fresh::<5>, 5).join().unwrap(),
            pool.submit(Fresh::<6>, 5).join().unwrap(),
            pool.submit(Fresh::<7>, 5).join().unwrap(),
            pool.submit(Fresh::<8>, 5).join().unwrap(),
        ];
        for (n, result) in (1..).zip(&firsts) {
            assert_eq!(result.value, 5 * n);
            assert_ne!(result.by, Some(me), "the first task of function {n}");
        }
    });
}
