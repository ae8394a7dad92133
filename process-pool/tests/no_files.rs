//! Security hygiene: a pool creates nothing on the filesystem, no socket file, temporary file
//! or shared-memory segment, whatever its workers go through. The directories are shared by
//! everything on the machine, so this binary holds a single test and nothing else runs beside
//! it; the faults it injects dump no core (an exit, a kill after a timeout).

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use common::*;
use taskpool_process::{Config, Pool, ProcessPool, TaskError, spawn};

/// Where a process would put a socket, a temporary file or a shared-memory segment.
fn places() -> BTreeSet<PathBuf> {
    let mut places: BTreeSet<PathBuf> =
        ["/tmp", "/var/tmp", "/dev/shm", "/run/shm"].iter().map(PathBuf::from).collect();
    places.insert(std::env::temp_dir());
    places.insert(std::env::current_dir().unwrap());
    places.retain(|p| p.is_dir());
    places
}

/// Everything directly in `places`.
fn entries(places: &BTreeSet<PathBuf>) -> BTreeSet<PathBuf> {
    places
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()))
        .collect()
}

#[test]
fn a_pool_creates_no_files() {
    let places = places();
    let before = entries(&places);
    let config = Config::new().workers(2).timeout(Duration::from_secs(60));
    let pool = ProcessPool::with_config(config).unwrap();
    assert_eq!(pool.map(square, 0..1000).unwrap().len(), 1000);
    assert_eq!(pool.imap_unordered(square, 0..1000).count(), 1000);
    assert!(matches!(pool.apply(exit_3, 0), Err(TaskError::Crashed(_))));
    let limit = Duration::from_millis(50);
    assert!(matches!(
        pool.submit_timeout(sleep_ms, 60_000, limit).join(),
        Err(TaskError::TimedOut { .. })
    ));
    let one_off = spawn(square, 7).unwrap();
    assert_eq!(one_off.join().unwrap(), 49);
    pool.shutdown();
    drop(pool);
    let created: Vec<_> = entries(&places).difference(&before).cloned().collect();
    assert!(created.is_empty(), "the pool created {created:?} (looked in {places:?})");
}
