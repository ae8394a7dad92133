//! rayon called inside a task runs on the pool's own threads (see the crate's notes, "rayon
//! inside a task"), on every path a task takes: a single task, a `map`, a timed task.

use std::time::Duration;

use rayon::prelude::*;
use taskpool_thread::{Config, Pool, ThreadPool};

/// rayon's view from inside a task: its thread count, and whether this is one of its threads.
fn rayon_view(_: u32) -> (usize, bool) {
    (rayon::current_num_threads(), rayon::current_thread_index().is_some())
}

fn sum_of_squares(n: u64) -> u64 {
    (0..n).into_par_iter().map(|x| x * x).sum()
}

#[test]
fn rayon_inside_a_task_uses_the_pools_threads() {
    let pool = ThreadPool::new(3).unwrap();
    assert_eq!(pool.apply(rayon_view, 0).unwrap(), (3, true));
    assert!(pool.map(rayon_view, 0..100).unwrap().iter().all(|&view| view == (3, true)));
    let handle = pool.submit_timeout(rayon_view, 0, Duration::from_secs(600));
    assert_eq!(handle.join().unwrap(), (3, true));

    let timed = ThreadPool::with_config(Config::new().workers(2).timeout(Duration::from_secs(600)))
        .unwrap();
    assert!(timed.map(rayon_view, 0..10).unwrap().iter().all(|&view| view == (2, true)));
}

#[test]
fn parallel_iterators_inside_tasks_give_their_results() {
    let pool = ThreadPool::new(2).unwrap();
    let expected = (0..10_000u64).map(|x| x * x).sum::<u64>();
    assert!(pool.map(sum_of_squares, [10_000; 64]).unwrap().iter().all(|&s| s == expected));
    let handles: Vec<_> = (0..64).map(|_| pool.submit(sum_of_squares, 10_000)).collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap(), expected);
    }
}
