//! A result reaches its caller while the worker runs a long task after it: the worker never
//! holds a finished result back until a later task ends.

mod common;

use common::*;
use taskpool_process::{Config, Pool, ProcessConfig, ProcessPool};

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
