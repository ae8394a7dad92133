//! Work given to a pool while a `map` has many items waiting goes after a batch or two of
//! the `map`, not after all of it: the waiting jobs take turns (`waiting.rs`).
//!
//! Every task here tells a queue the test reads when it starts, and the items of the long
//! `map` then wait for the test to let them go, one at a time. The pool has one worker, so
//! the order of the queue's values is the order the tasks ran in.

mod common;

use common::*;
use serde::{Deserialize, Serialize};
use taskpool_process::{Consumer, Pool, ProcessPool, Producer, Queue, Task};

/// Items of the long `map`.
const LONG: u64 = 2000;
/// What tasks other than the long `map`'s add to their input in the queue of starts.
const OTHER: u64 = 1 << 32;

/// Says that it started, then waits for the test to let it go.
#[derive(Serialize, Deserialize)]
struct Gated {
    started: Producer<u64>,
    gate: Consumer<()>,
}

impl Task for Gated {
    type Input = u64;
    type Output = u64;

    fn run(&self, x: u64) -> u64 {
        self.started.put(x).unwrap();
        self.gate.get().unwrap();
        x
    }
}

/// Says that it started, as `OTHER + x`, and returns at once.
#[derive(Serialize, Deserialize)]
struct Started {
    started: Producer<u64>,
}

impl Task for Started {
    type Input = u64;
    type Output = u64;

    fn run(&self, x: u64) -> u64 {
        self.started.put(OTHER + x).unwrap();
        x * x
    }
}

/// A pool of one worker, and the queues its tasks use.
struct Bench {
    pool: ProcessPool,
    started: Queue<u64>,
    gate: Queue<()>,
}

impl Bench {
    fn new() -> Self {
        let (started, gate) = (Queue::new().unwrap(), Queue::new().unwrap());
        Bench { pool: ProcessPool::new(1).unwrap(), started, gate }
    }

    /// Runs a `map` of [`LONG`] gated items.
    fn long_map(&self) -> Vec<u64> {
        let gated = Gated {
            started: self.started.producer().unwrap(),
            gate: self.gate.consumer().unwrap(),
        };
        self.pool.map(gated, 0..LONG).unwrap()
    }

    /// A task that says it started as `OTHER + x`.
    fn other(&self) -> Started {
        Started { started: self.started.producer().unwrap() }
    }

    /// Once the long `map` runs on another thread: waits until its first item starts, calls
    /// `beside` (which gives the pool other work), then lets the map's items go one at a time
    /// until `others` other tasks started, and then all of them. Returns the starts in the
    /// order they came, and what `beside` returned.
    fn drive<T>(&self, others: usize, beside: impl FnOnce() -> T) -> (Vec<u64>, T) {
        // The map's items wait in the queue now, all but those its worker took.
        assert_eq!(self.started.get().unwrap(), 0);
        let mut order = vec![0];
        let got = beside();
        let (mut seen, mut running) = (0, true);
        while seen < others {
            // Each of the map's items runs until it is let go; the others run through.
            if running {
                self.gate.put(()).unwrap();
            }
            let x = self.started.get().unwrap();
            order.push(x);
            running = x < OTHER;
            seen += usize::from(!running);
        }
        let ran = order.iter().filter(|&&x| x < OTHER).count();
        for _ in 0..LONG as usize - ran + usize::from(running) {
            self.gate.put(()).unwrap();
        }
        (order, got)
    }
}

/// How many of the long `map`'s items started before the first other task did.
fn long_items_before_others(order: &[u64]) -> usize {
    order.iter().take_while(|&&x| x < OTHER).count()
}

#[test]
fn a_task_submitted_while_a_map_waits_goes_before_the_rest_of_the_map() {
    let before = within("a task beside a long map", || {
        let bench = Bench::new();
        std::thread::scope(|s| {
            let long = s.spawn(|| bench.long_map());
            let (order, handle) = bench.drive(1, || bench.pool.submit(bench.other(), 7));
            assert_eq!(handle.join().unwrap(), 49);
            assert_eq!(long.join().unwrap(), (0..LONG).collect::<Vec<_>>());
            long_items_before_others(&order)
        })
    });
    // The worker holds at most two batches' worth of the map's items, and the map's next
    // batch may go before the task: far fewer than the map's items (before, all of them).
    assert!(before < LONG as usize / 4, "the task started after {before} of the map's items");
}

#[test]
fn a_map_given_while_another_waits_takes_turns_with_it() {
    const SHORT: u64 = 100;
    let (before, after) = within("a map beside a long map", || {
        let bench = Bench::new();
        std::thread::scope(|s| {
            let long = s.spawn(|| bench.long_map());
            let (order, short) = bench.drive(SHORT as usize, || {
                s.spawn(|| bench.pool.map(bench.other(), 0..SHORT).unwrap())
            });
            assert_eq!(short.join().unwrap(), (0..SHORT).map(|x| x * x).collect::<Vec<_>>());
            assert_eq!(long.join().unwrap(), (0..LONG).collect::<Vec<_>>());
            let last = order.iter().rposition(|&x| x >= OTHER).unwrap();
            (long_items_before_others(&order), order[..last].iter().filter(|&&x| x < OTHER).count())
        })
    });
    // Both maps' batches alternate: the short one started after a batch or two of the long
    // one, and ended long before the long one's last items (before, after all of them).
    assert!(before < LONG as usize / 4, "the short map started after {before} long items");
    assert!(after < LONG as usize / 2, "the short map ended after {after} long items");
}
