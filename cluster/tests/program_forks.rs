//! A program that forks after it started a cluster pool: the copy inherits the pool's memory,
//! not its runtime's threads. In the copy the inherited pool takes no work (every task fails
//! at once with `ShutDown`, and so does the join of a task sent before the fork), and
//! `shutdown` and dropping return at once without touching the streams, whose work is the
//! original's; the original's pool never notices.

mod common;
#[path = "../../process-pool/tests/common/copies.rs"]
mod copies;

use common::Fixture;
use copies::{in_a_copy, shut_down};
use taskpool_cluster::{Config, Pool, TaskError};

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn a_copy_of_the_program_cannot_use_or_stop_the_pool_it_inherited() {
    let config = common::config(Config::new().workers(2));
    let Some(fixture) = Fixture::start("program_forks", 1, config) else { return };
    let pool = &fixture.pool;
    let squares: Vec<u64> = (0..100).map(|x| x * x).collect();
    assert_eq!(pool.map(square, 0..100).unwrap(), squares);
    let copy = in_a_copy(|| {
        shut_down("apply", pool.apply(square, 3))?;
        shut_down("submit", pool.submit(square, 4).join())?;
        shut_down("map", pool.map(square, 0..100))?;
        for item in pool.imap(square, 0..3) {
            shut_down("imap", item)?;
        }
        pool.shutdown();
        // SAFETY: this process is the copy, which `_exit`s after the check: its `pool` is
        // never used or dropped again, so this is the copy's one owner of it.
        drop(unsafe { std::ptr::read(pool) });
        Ok(())
    });
    assert_eq!(copy, Ok(()));
    assert_eq!(pool.map(square, 0..100).unwrap(), squares);
    assert_eq!(pool.apply(square, 9).unwrap(), 81);
}

/// Waits until the file at `gate` exists, then returns 7.
fn wait_for(gate: String) -> u64 {
    while !std::path::Path::new(&gate).exists() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    7
}

/// A task still pending when the program forks: joined in the copy, which has none of the
/// pool's threads, it fails at once with `ShutDown` (it waited forever before); the original
/// gets its value.
#[test]
fn a_copy_does_not_wait_for_a_task_sent_before_it_was_made() {
    let config = common::config(Config::new().workers(1));
    let Some(fixture) = Fixture::start("program_forks_pending", 1, config) else { return };
    let pool = &fixture.pool;
    let gate = std::env::temp_dir().join(format!("taskpool-fork-gate-{}", std::process::id()));
    let _ = std::fs::remove_file(&gate);
    let mut pending = pool.submit(wait_for, gate.to_string_lossy().into_owned());
    let copy = in_a_copy(|| match pending.join_timeout(std::time::Duration::from_secs(30)) {
        Err(TaskError::ShutDown) => Ok(()),
        other => Err(format!("join_timeout of the task sent before: {other:?}")),
    });
    assert_eq!(copy, Ok(()));
    std::fs::write(&gate, "").unwrap();
    assert_eq!(pending.join().unwrap(), 7);
    std::fs::remove_file(&gate).unwrap();
}
