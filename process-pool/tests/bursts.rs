//! Single tasks submitted faster than the workers answer wait in the pool and travel together,
//! several to a frame; each still settles its own handle, alone and as soon as it is done.

mod common;

use common::*;
use taskpool_process::{Config, Exit, Pool, ProcessConfig, ProcessPool, TaskError};

const SIGABRT: i32 = 6;

/// Returns 3 at once for empty paths; otherwise creates the file `signal`, waits until the
/// file `go` exists, and returns 1.
fn hold(paths: (String, String)) -> u64 {
    let (signal, go) = paths;
    if signal.is_empty() {
        return 3;
    }
    std::fs::write(&signal, "").unwrap();
    wait_for_file(&go);
    1
}

#[test]
fn every_task_of_a_burst_settles_its_own_handle_and_a_cancelled_one_fails_alone() {
    let scratch = Scratch::new("burst-cancel");
    let (started, go) = (scratch.file("started"), scratch.file("go"));
    within("a burst of 5,000 tasks", move || {
        let pool = ProcessPool::with_config(ProcessConfig::new(Config::new().workers(1))).unwrap();
        // The only worker is held until every task of the burst is submitted and every
        // seventh cancelled: none of them has run yet, so each cancellation takes.
        let gate = pool.submit(SignalThenWait { signal: started.clone(), go: go.clone() }, 0);
        wait_for_file(&started);
        let handles: Vec<_> = (0..5_000u64).map(|i| pool.submit(square, i)).collect();
        let cancelled: Vec<bool> =
            handles.iter().enumerate().map(|(i, h)| i % 7 == 3 && h.cancel()).collect();
        std::fs::write(&go, "").unwrap();
        assert_eq!(gate.join().unwrap(), 0);
        // Joined last first: each handle has its own result, whatever frame carried it.
        for (i, handle) in handles.into_iter().enumerate().rev() {
            match handle.join() {
                Ok(value) => assert!(!cancelled[i] && value == (i * i) as u64, "task {i}"),
                Err(TaskError::Cancelled) => assert!(cancelled[i], "task {i} was not cancelled"),
                Err(e) => panic!("task {i}: {e}"),
            }
        }
        let stats = pool.stats();
        let failed = cancelled.iter().filter(|c| **c).count() as u64;
        assert!(failed > 0);
        assert_eq!(failed, 714, "every seventh task, from the fourth");
        // The gate is one more completed task.
        assert_eq!((stats.completed, stats.failed), (5_001 - failed, failed));
    });
}

#[test]
fn a_quick_task_is_not_held_back_by_a_slow_one_of_the_same_function_that_travelled_with_it() {
    let (threads, wakes) =
        quick_beside_slow("bursts", ProcessConfig::new(Config::new().workers(1)));
    assert_eq!(threads, 2, "the worker's flusher wrote the quick result");
    // Looking every millisecond, it would have woken about 50 times.
    let wakes = wakes.expect("the flusher's thread");
    assert!(wakes < 10, "the flusher sleeps while the task that held back runs: {wakes}");
}

/// A worker with a limit has no flusher: it writes each result of such a frame at once.
#[test]
fn a_quick_task_is_not_held_back_by_a_slow_one_in_a_worker_with_a_memory_limit_either() {
    let config = ProcessConfig::new(Config::new().workers(1)).memory_limit(4 << 30);
    let (threads, wakes) = quick_beside_slow("bursts-limited", config);
    assert_eq!((threads, wakes), (1, None), "no flusher in a worker with a limit");
}

/// A quick and a slow `hold` travel to the only worker in one frame; the slow one waits
/// until the quick result is here. Returns how many threads the worker had meanwhile, and
/// how many times its flusher's thread (if any) woke in 50 ms while the slow one waited.
fn quick_beside_slow(name: &str, config: ProcessConfig) -> (usize, Option<u64>) {
    let scratch = Scratch::new(name);
    let (gate_started, gate_go) = (scratch.file("gate-started"), scratch.file("gate-go"));
    let (started, go) = (scratch.file("started"), scratch.file("go"));
    within("a quick task's join while a slow one of its frame runs", move || {
        let pool = ProcessPool::with_config(config).unwrap();
        // The pool learns that `hold` is quick.
        for _ in 0..10 {
            assert_eq!(pool.apply(hold, (String::new(), String::new())).unwrap(), 3);
        }
        // While a gate holds the worker, a quick and a slow `hold` wait in the pool; released,
        // they travel together.
        let gate = SignalThenWait { signal: gate_started.clone(), go: gate_go.clone() };
        let gate = pool.submit(gate, 0);
        wait_for_file(&gate_started);
        let quick = pool.submit(hold, (String::new(), String::new()));
        let slow = pool.submit(hold, (started.clone(), go.clone()));
        std::fs::write(&gate_go, "").unwrap();
        assert_eq!(gate.join().unwrap(), 0);
        // The slow one waits for `go`, written only once the quick result is here.
        assert_eq!(quick.join().unwrap(), 3);
        wait_for_file(&started);
        let [pid] = pool.pids()[..] else { panic!("one worker") };
        let threads = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count();
        let before = flusher_switches(pid);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let wakes = flusher_switches(pid).zip(before).map(|(after, before)| after - before);
        std::fs::write(&go, "").unwrap();
        assert_eq!(slow.join().unwrap(), 1);
        (threads, wakes)
    })
}

/// How many times the flusher's thread of worker `pid` gave up or lost its CPU, if it has one.
fn flusher_switches(pid: u32) -> Option<u64> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != "taskpool-flush" {
            continue;
        }
        let status = std::fs::read_to_string(task.path().join("status")).ok()?;
        let switches = status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        return Some(switches);
    }
    None
}

/// As [`hold`], then (with `abort`) aborts the worker instead of returning.
fn hold_then_abort(args: (String, String, bool)) -> u64 {
    let (signal, go, abort) = args;
    let value = hold((signal, go));
    if abort {
        std::process::abort();
    }
    value
}

/// The quick task's result left the worker while the slow one ran (the worker's flusher wrote
/// it); the slow one then crashes. The crash costs that task alone: the quick result is not
/// sent twice, nor lost, and the worker's crash is reported with its signal.
#[test]
fn a_result_written_while_a_task_ran_is_neither_lost_nor_repeated_when_that_task_crashes() {
    let scratch = Scratch::new("bursts-crash");
    let (gate_started, gate_go) = (scratch.file("gate-started"), scratch.file("gate-go"));
    let (started, go) = (scratch.file("started"), scratch.file("go"));
    within("a crash after a result written early", move || {
        let pool = ProcessPool::with_config(ProcessConfig::new(Config::new().workers(1))).unwrap();
        let quick = || (String::new(), String::new(), false);
        for _ in 0..10 {
            assert_eq!(pool.apply(hold_then_abort, quick()).unwrap(), 3);
        }
        let gate = SignalThenWait { signal: gate_started.clone(), go: gate_go.clone() };
        let gate = pool.submit(gate, 0);
        wait_for_file(&gate_started);
        let first = pool.submit(hold_then_abort, quick());
        let crashing = pool.submit(hold_then_abort, (started.clone(), go.clone(), true));
        std::fs::write(&gate_go, "").unwrap();
        assert_eq!(gate.join().unwrap(), 0);
        assert_eq!(first.join().unwrap(), 3);
        wait_for_file(&started);
        std::fs::write(&go, "").unwrap();
        match crashing.join() {
            Err(TaskError::Crashed(exit)) => assert_eq!(exit, Exit::Signal(SIGABRT)),
            other => panic!("expected a crash, got {other:?}"),
        }
        assert_eq!(pool.apply(square, 7).unwrap(), 49, "the worker was replaced");
        let stats = pool.stats();
        assert_eq!((stats.completed, stats.failed), (13, 1), "each task counted once");
    });
}

/// Several threads submit and join tasks of one pool at once. A joining thread reads the
/// results that arrive meanwhile, its own and the other threads' (as a supervisor would):
/// every handle still settles with its own value, and no thread waits for a result that
/// another one read.
#[test]
fn threads_that_join_at_once_each_get_their_own_results() {
    within("four threads joining tasks of one pool", || {
        let pool = std::sync::Arc::new(ProcessPool::new(2).unwrap());
        let (threads, rounds, burst) = (4u64, 150u64, 10u64);
        let joining: Vec<_> = (0..threads)
            .map(|t| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    for round in 0..rounds {
                        let base = t * 1_000_000 + round * 1_000;
                        let handles: Vec<_> =
                            (base..base + burst).map(|x| (x, pool.submit(square, x))).collect();
                        for (x, handle) in handles {
                            assert_eq!(handle.join().unwrap(), x * x, "thread {t}");
                        }
                        assert_eq!(pool.apply(square, base + 999).unwrap(), (base + 999).pow(2));
                    }
                })
            })
            .collect();
        for thread in joining {
            thread.join().unwrap();
        }
        let stats = pool.stats();
        let tasks = threads * rounds * (burst + 1);
        assert_eq!((stats.completed, stats.failed, stats.crashes), (tasks, 0, 0));
    });
}
