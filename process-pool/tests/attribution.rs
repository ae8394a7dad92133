//! Exact blame for every way a worker can end: only the item that was running fails, with
//! exactly how its worker ended; every other item runs (again, if its result was lost), and
//! the culprit never runs twice.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use serde::{Deserialize, Serialize};
use taskpool_process::{Config, Exit, Pool, ProcessPool, Task, TaskError};

/// How [`Ends`] ends its worker.
#[derive(Serialize, Deserialize, Clone, Copy)]
enum End {
    /// `_exit(0)`: no exit handlers, buffered results lost.
    QuickExit,
    /// `raise(SIGTERM)`: a signal without a handler of the worker's.
    Terminate,
    /// `raise(SIGKILL)`: what a kill from outside looks like.
    Kill,
}

/// Logs its input, then ends its worker in the way given when the input is `at`.
#[derive(Serialize, Deserialize)]
struct Ends {
    log: String,
    at: u64,
    end: End,
}

impl Task for Ends {
    type Input = u64;
    type Output = u64;

    fn run(&self, x: u64) -> u64 {
        let mut log =
            std::fs::OpenOptions::new().append(true).create(true).open(&self.log).unwrap();
        log.write_all(format!("{x}\n").as_bytes()).unwrap();
        if x == self.at {
            // SAFETY: the fault under test, in a worker process.
            unsafe {
                match self.end {
                    End::QuickExit => libc::_exit(0),
                    End::Terminate => libc::raise(libc::SIGTERM),
                    End::Kill => libc::raise(libc::SIGKILL),
                };
            }
        }
        x * 10
    }
}

/// Runs 300 items in batches of 16 whose item 137 ends its worker; returns its error after
/// checking that it alone failed, ran once, and every other item gave its value.
fn only_the_culprit(end: End, name: &str) -> TaskError {
    let dir = Scratch::new(name);
    let log = dir.file("log");
    let pool = ProcessPool::with_config(Config::new().workers(2).chunk_size(16)).unwrap();
    let task = Ends { log: log.clone(), at: 137, end };
    let outcomes = within("the batch", move || pool.map_results(task, 0..300));
    assert_eq!(outcomes.len(), 300);
    let mut failure = None;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(v) => assert_eq!(v, i as u64 * 10),
            Err(e) => {
                assert_eq!(i, 137, "innocent item {i} was blamed: {e}");
                failure = Some(e);
            }
        }
    }
    let runs = runs_in(&log, 300);
    assert_eq!(runs[137], 1, "the culprit ran again");
    for (i, &n) in runs.iter().enumerate() {
        assert!((1..=2).contains(&n), "item {i} ran {n} times");
    }
    failure.expect("item 137 failed")
}

#[test]
fn quick_exit_in_a_batch_blames_only_its_item() {
    let err = only_the_culprit(End::QuickExit, "attr-exit");
    assert!(matches!(err, TaskError::Crashed(Exit::Code(0))), "{err:?}");
}

#[test]
fn sigterm_in_a_batch_blames_only_its_item() {
    let err = only_the_culprit(End::Terminate, "attr-term");
    assert_eq!(err.signal(), Some(libc::SIGTERM));
}

#[test]
fn sigkill_in_a_batch_blames_only_its_item() {
    let err = only_the_culprit(End::Kill, "attr-kill");
    assert_eq!(err.signal(), Some(libc::SIGKILL));
}

/// Spins for about 100 µs of wall-clock time and returns its input.
fn busy(x: u64) -> u64 {
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_micros(100) {
        std::hint::spin_loop();
    }
    x
}

/// Workers SIGKILLed from outside every 0.3 to 2 ms (300 kills) while a large batch runs:
/// items fail only as the one running when a kill landed, never as a failed start, and the
/// pool serves normally once the storm stops.
#[test]
fn a_kill_storm_costs_only_the_items_it_hit() {
    a_storm_costs_only_the_items_it_hit(libc::SIGKILL);
}

/// The same with SIGTERM, what `kill PID` sends: a worker it ends before it was ready was
/// killed from outside too, and is no failed start.
#[test]
fn a_sigterm_storm_costs_only_the_items_it_hit() {
    a_storm_costs_only_the_items_it_hit(libc::SIGTERM);
}

fn a_storm_costs_only_the_items_it_hit(signal: i32) {
    let pool = Arc::new(ProcessPool::new(2).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let storm = {
        let (pool, stop) = (pool.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut kills = 0;
            let mut turn = 0u64;
            while !stop.load(Ordering::Relaxed) && kills < 300 {
                turn += 1;
                let pids = pool.pids();
                if let Some(&pid) = pids.get(turn as usize % pids.len().max(1)) {
                    // SAFETY: kill has no memory effects; the pid is a live worker of ours.
                    if unsafe { libc::kill(pid.cast_signed(), signal) } == 0 {
                        kills += 1;
                    }
                }
                // Pacing of the stressor (0.3 to 2 ms), not a wait for an event.
                std::thread::sleep(Duration::from_micros(300 + (turn * 7919) % 1700));
            }
            kills
        })
    };
    let batch = pool.clone();
    let outcomes = within("the batch under the storm", move || batch.map_results(busy, 0..20_000));
    stop.store(true, Ordering::Relaxed);
    let kills = storm.join().unwrap();
    assert!(kills > 0, "the batch ended before the first kill");
    assert_eq!(outcomes.len(), 20_000);
    let mut hit = 0;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(v) => assert_eq!(v, i as u64),
            Err(TaskError::Crashed(Exit::Signal(s))) if s == signal => hit += 1,
            Err(e) => panic!("item {i}: {e}"),
        }
    }
    assert!(hit <= kills, "{hit} items failed, {kills} kills");
    assert!(hit < 20_000 / 2, "{hit} of 20000 items failed for {kills} kills");
    assert_eq!(pool.map(square, 0..1000).unwrap().len(), 1000, "the pool serves after the storm");
    assert_eq!(pool.stats().failed_starts, 0, "a worker killed from outside is no failed start");
}
