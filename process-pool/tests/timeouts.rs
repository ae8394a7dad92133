//! Hard timeouts and cancellation: the worker running the task is killed and replaced.

mod common;

use std::time::Duration;

use common::*;
use taskpool_process::{Config, Exit, Pool, ProcessConfig, ProcessPool, TaskError};

fn timed_out(result: Result<u64, TaskError>) -> Duration {
    match result {
        Err(TaskError::TimedOut { limit, still_running: false }) => limit,
        other => panic!("expected a timeout that killed the worker, got {other:?}"),
    }
}

#[test]
fn pool_timeout_kills_the_worker_and_the_pool_goes_on() {
    let limit = Duration::from_millis(100);
    let pool = ProcessPool::with_config(Config::new().workers(1).timeout(limit)).unwrap();
    let before = pool.apply(worker_pid, 0).unwrap();
    assert_eq!(timed_out(pool.apply(sleep_ms, 60_000)), limit);
    let after = pool.apply(worker_pid, 0).unwrap();
    assert_ne!(before, after, "the hung worker was replaced");
    assert!(!alive(before), "the hung worker is gone");
    assert_eq!(pool.stats().timeouts, 1);
}

#[test]
fn per_call_timeout_overrides_the_pool() {
    let pool = ProcessPool::new(1).unwrap();
    let limit = Duration::from_millis(50);
    assert_eq!(timed_out(pool.submit_timeout(sleep_ms, 60_000, limit).join()), limit);
    assert_eq!(pool.submit_timeout(sleep_ms, 1, Duration::from_secs(60)).join().unwrap(), 1);
}

#[test]
fn a_hang_inside_a_map_fails_only_that_item() {
    let limit = Duration::from_millis(200);
    let pool =
        ProcessPool::with_config(Config::new().workers(2).timeout(limit).chunk_size(4)).unwrap();
    let items = [1, 2, 3, 60_000, 5, 6, 7, 8, 9, 10];
    let outcomes = pool.map_results(sleep_ms, items);
    assert_eq!(outcomes.len(), items.len());
    for (item, outcome) in items.iter().zip(outcomes) {
        if *item == 60_000 {
            assert_eq!(timed_out(outcome), limit);
        } else {
            assert_eq!(outcome.unwrap(), *item);
        }
    }
}

#[test]
fn a_timed_task_behind_one_whose_caller_read_its_result_still_times_out() {
    // A caller that joins a quick task reads its result from the worker itself, without its
    // supervisor; the timed task sent behind it then runs, and must still be stopped at its
    // limit. A fresh pool each round: the quick task's result is read by whichever of the
    // caller and the supervisor comes first.
    let limit = Duration::from_millis(50);
    for _ in 0..5 {
        let pool = ProcessPool::new(1).unwrap();
        assert_eq!(pool.apply(square, 1).unwrap(), 1);
        let quick = pool.submit(square, 2);
        let timed = pool.submit_timeout(sleep_ms, 5_000, limit);
        assert_eq!(quick.join().unwrap(), 4);
        assert_eq!(timed_out(timed.join()), limit);
    }
}

#[test]
fn cancelling_a_running_task_kills_its_worker() {
    let dir = Scratch::new("cancel-running");
    let signal = dir.file("running");
    let pool = ProcessPool::new(1).unwrap();
    let running = pool.submit(SignalThenSleep { signal: signal.clone() }, 60_000);
    let queued = pool.submit(square, 9);
    wait_for_file(&signal);
    let pid: u32 = std::fs::read_to_string(&signal).unwrap().parse().unwrap();
    assert!(running.cancel());
    assert!(matches!(running.join(), Err(TaskError::Cancelled)));
    assert_eq!(queued.join().unwrap(), 81);
    assert!(!alive(pid), "the cancelled task's worker was killed");
}

/// Signals that it runs (its worker's pid in the file `signal`), then sleeps two minutes: a
/// function, so that its tasks share one shipped job (a struct task carries its own state).
fn signal_then_sleep(signal: String) -> u64 {
    signal_pid(&signal);
    std::thread::sleep(Duration::from_secs(120));
    0
}

#[test]
fn cancelling_kills_the_worker_of_the_pool_the_task_was_sent_to_when_two_pools_run_one_function() {
    let dir = Scratch::new("cancel-two-pools");
    let (first, second) = (dir.file("first"), dir.file("second"));
    let (pool_a, pool_b) = (ProcessPool::new(1).unwrap(), ProcessPool::new(1).unwrap());
    // One thread sends the same function to one pool, then to another.
    let in_a = pool_a.submit(signal_then_sleep, first.clone());
    let in_b = pool_b.submit(signal_then_sleep, second.clone());
    wait_for_file(&first);
    wait_for_file(&second);
    let pid_of =
        |signal: &str| -> u32 { std::fs::read_to_string(signal).unwrap().parse().unwrap() };
    let (pid_a, pid_b) = (pid_of(&first), pid_of(&second));
    assert!(in_b.cancel());
    wait_gone(pid_b);
    assert!(alive(pid_a), "the other pool's worker runs on");
    assert_eq!(pool_b.apply(square, 5).unwrap(), 25);
    assert!(in_a.cancel());
    wait_gone(pid_a);
    assert!(matches!(in_b.join(), Err(TaskError::Cancelled)));
    assert!(matches!(in_a.join(), Err(TaskError::Cancelled)));
}

#[test]
fn cancelling_a_queued_task_never_runs_it() {
    let dir = Scratch::new("cancel-queued");
    let signal = dir.file("running");
    let log = dir.file("log");
    let pool = ProcessPool::with_config(ProcessConfig::new(Config::new().workers(1)).in_flight(1))
        .unwrap();
    let blocker = pool.submit(SignalThenSleep { signal: signal.clone() }, 300);
    wait_for_file(&signal);
    let queued =
        pool.submit(Logged { log: log.clone(), crash_at: u64::MAX, crash: Crash::Panic }, 5);
    assert!(queued.cancel());
    assert_eq!(blocker.join().unwrap(), 300);
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    assert!(matches!(queued.join(), Err(TaskError::Cancelled)));
    assert_eq!(runs_in(&log, 6)[5], 0, "a cancelled queued task never runs");
}

#[test]
fn cancelling_a_task_sent_to_a_busy_worker_never_runs_it() {
    let dir = Scratch::new("cancel-sent");
    let (signal, go, log) = (dir.file("running"), dir.file("go"), dir.file("log"));
    // Two items in flight per worker: the second is sent while the first runs.
    let pool = ProcessPool::with_config(ProcessConfig::new(Config::new().workers(1)).in_flight(2))
        .unwrap();
    let busy = pool.submit(SignalThenWait { signal: signal.clone(), go: go.clone() }, 1);
    let sent = pool.submit(Logged { log: log.clone(), crash_at: u64::MAX, crash: Crash::Panic }, 5);
    wait_for_file(&signal);
    let pid: u32 = std::fs::read_to_string(&signal).unwrap().parse().unwrap();
    assert!(sent.cancel());
    std::fs::write(&go, "").unwrap();
    assert_eq!(busy.join().unwrap(), 1);
    assert!(matches!(sent.join(), Err(TaskError::Cancelled)));
    assert_eq!(pool.apply(worker_pid, 0).unwrap(), pid, "the worker was not killed");
    assert_eq!(runs_in(&log, 6)[5], 0, "a cancelled task never starts");
}

#[test]
fn a_cancelled_task_requeued_after_a_crash_is_dropped_and_shutdown_completes() {
    let dir = Scratch::new("cancel-requeue-shutdown");
    let signal = dir.file("running");
    let pool = ProcessPool::with_config(ProcessConfig::new(Config::new().workers(1)).in_flight(2))
        .unwrap();
    let victim = pool.submit(SignalThenSleep { signal: signal.clone() }, 60_000);
    let behind = pool.submit(square, 5);
    wait_for_file(&signal);
    // `behind` was sent to the worker with the victim but has not started: cancelling it
    // settles its handle, and it stays in the worker until its turn.
    assert!(behind.cancel());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            pool.shutdown();
            tx.send(()).unwrap();
        });
        // Kill the worker: the victim fails, `behind` goes back to the queue already
        // settled, and the pool drops it unsent. Shutdown must notice the pool is idle.
        let pid = std::fs::read_to_string(&signal).unwrap();
        assert!(
            std::process::Command::new("kill").args(["-KILL", &pid]).status().unwrap().success()
        );
        let returned = rx.recv_timeout(std::time::Duration::from_secs(60));
        assert!(returned.is_ok(), "shutdown hung");
    });
    assert!(matches!(victim.join(), Err(TaskError::Crashed(Exit::Signal(9)))));
    assert!(matches!(behind.join(), Err(TaskError::Cancelled)));
}
