//! Chaos on threads: many tasks through `map`, `map_results`, `imap`, `imap_unordered` and
//! `submit` at once, on 2 and on 4 threads, with about 1% panics and 0.1% tasks that run past
//! the timeout, chosen by a hash of the item number. Every healthy task returns its own value
//! exactly once, every panic gets `Panicked` with its message, every slow task gets
//! `TimedOut { still_running: true }`. See `taskpool_core::conformance::chaos` for the checks.
//!
//! Threads cannot survive a segfault or an abort, and cannot stop a hung task, so the mix has
//! neither crashes nor real hangs: a slow task sleeps three times the timeout, long enough for
//! the watchdog to report it, then returns and frees its thread.
//!
//! Size: 60 000 items, a third on 2 threads and two thirds on 4, both pools at once. Each slow
//! task holds a thread for 1.5 s, so the 60 of them bound the run at about 15 s. The timeout
//! is long (500 ms) so that a healthy task, which takes microseconds, never reaches it even on
//! a machine so busy that a thread waits for its CPU a long while (with 100 ms, a healthy task
//! timed out once under a CI run's load).

use std::ops::Range;
use std::time::Duration;

use taskpool_core::conformance::chaos::{self, Expect, Fault, Mix};
use taskpool_thread::{Config, ThreadPool};

const MIX: Mix = Mix { segfault: 0, abort: 0, panic: 100, hang: 10 };
const TIMEOUT: Duration = Duration::from_millis(500);
const EXPECT: Expect = Expect { timeout: TIMEOUT, hang_still_running: true };
/// Items in the CI run, split between the two pools.
const ITEMS: u64 = 60_000;

fn chaos_task(item: u64) -> u64 {
    match MIX.fault(item) {
        Fault::None => chaos::value(item),
        Fault::Panic => panic!("{}", chaos::panic_message(item)),
        Fault::Hang => {
            std::thread::sleep(3 * TIMEOUT);
            chaos::value(item)
        }
        Fault::Segfault | Fault::Abort => unreachable!("threads cannot survive these"),
    }
}

fn chaos_on(threads: usize, items: Range<u64>) {
    let pool = ThreadPool::with_config(Config::new().workers(threads).timeout(TIMEOUT)).unwrap();
    let tally = chaos::run(&pool, chaos_task, MIX, items, &EXPECT);
    assert_eq!((tally.segfaults, tally.aborts), (0, 0));
    assert!(tally.panics > 0 && tally.hangs > 0, "{tally:?}");
}

#[test]
fn chaos_on_2_threads() {
    chaos_on(2, 0..ITEMS / 3);
}

#[test]
fn chaos_on_4_threads() {
    chaos_on(4, ITEMS / 3..ITEMS);
}
