//! Chaos: many tasks through `map`, `map_results`, `imap`, `imap_unordered` and `submit` at
//! once, on 2 and on 4 workers, with about 1% segfaults, 1% aborts, 1% panics and 0.1% hangs
//! past the timeout, chosen by a hash of the item number. Every healthy task returns its own
//! value exactly once, every faulty one gets exactly its typed error, and the pool's counters
//! agree. See `taskpool_core::conformance::chaos` for the checks.
//!
//! Size: 200 000 items, a third on 2 workers and two thirds on 4, both pools at once. A hang
//! holds its worker for the whole timeout, so the hangs bound the run: 200 hangs of 1 s over
//! 6 workers is 33 s; the 4 000 crashes cost a respawn of about 2 ms each. The timeout is that
//! long so that no task but a hang reaches it on a loaded machine: at 150 ms a healthy task
//! did with 8 busy loops on the 2 cores, and at 250 ms a segfaulting one did beside two
//! builds.
//!
//! `chaos_soak` (ignored) runs rounds of 20 000 items on two long-lived pools for
//! `TASKPOOL_SOAK_SECS` seconds (default 600):
//! `cargo test -p taskpool-process --test chaos -- --ignored --nocapture`.

mod common;

use std::ops::Range;
use std::time::{Duration, Instant};

use common::*;
use taskpool_core::conformance::chaos::{self, Expect, Tally};
use taskpool_process::{Config, Pool, ProcessPool};

const MIX: chaos::Mix = CHAOS_MIX;
const TIMEOUT: Duration = CHAOS_TIMEOUT;
const EXPECT: Expect = Expect { timeout: TIMEOUT, hang_still_running: false };
/// Items in the CI run, split between the two pools.
const ITEMS: u64 = 200_000;

fn pool(workers: usize) -> ProcessPool {
    ProcessPool::with_config(Config::new().workers(workers).timeout(TIMEOUT)).unwrap()
}

/// Runs `items` through `pool`, adds what they did to `total` (what the pool did before),
/// and checks that the pool's counters say the same.
fn round(pool: &ProcessPool, items: Range<u64>, total: &mut Tally) {
    *total += chaos::run(pool, chaos_task, MIX, items, &EXPECT);
    let stats = pool.stats();
    assert_eq!(stats.completed, total.healthy, "{stats:?}");
    assert_eq!(stats.failed, total.failed(), "{stats:?}");
    assert_eq!(stats.crashes, total.crashes(), "{stats:?}");
    assert_eq!(stats.timeouts, total.hangs, "{stats:?}");
}

fn chaos_on(workers: usize, items: Range<u64>) {
    let pool = pool(workers);
    let mut tally = Tally::default();
    round(&pool, items, &mut tally);
    pool.shutdown();
    // Every crash and every timeout cost a worker; a replacement started for each.
    let started = workers as u64 + tally.crashes() + tally.hangs;
    assert_eq!(pool.stats().workers_started, started, "{:?}", pool.stats());
}

#[test]
fn chaos_on_2_workers() {
    chaos_on(2, 0..ITEMS / 3);
}

#[test]
fn chaos_on_4_workers() {
    chaos_on(4, ITEMS / 3..ITEMS);
}

#[test]
#[ignore = "a long soak: run with --ignored, TASKPOOL_SOAK_SECS sets the duration"]
fn chaos_soak() {
    const ROUND: u64 = 20_000;
    let secs = std::env::var("TASKPOOL_SOAK_SECS").map_or(600, |s| s.parse().unwrap());
    let end = Instant::now() + Duration::from_secs(secs);
    let mut pools = [(pool(2), Tally::default()), (pool(4), Tally::default())];
    let mut rounds = 0;
    while Instant::now() < end {
        let base = rounds * 2 * ROUND;
        std::thread::scope(|s| {
            for (k, (pool, total)) in (0..).zip(&mut pools) {
                let items = base + k * ROUND..base + (k + 1) * ROUND;
                s.spawn(move || round(pool, items, total));
            }
        });
        rounds += 1;
    }
    for (pool, total) in &pools {
        println!("soak: {rounds} rounds of {ROUND} items on {} workers: {total:?}", pool.workers());
    }
}
