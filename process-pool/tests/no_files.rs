//! Security hygiene: a pool creates nothing on the filesystem, no socket file, temporary file
//! or shared-memory segment, whatever its workers go through. The directories are shared by
//! everything on the machine, so this binary holds a single test and nothing else runs beside
//! it; the faults it injects dump no core (an exit, a kill after a timeout). Only the scratch
//! directories of other test processes of this project, which carry their pid in their name,
//! are not counted: test binaries may run at once; nor is what another program makes and
//! removes meanwhile (see `left_behind`).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use taskpool_process::{Config, Exit, Pool, ProcessPool, TaskError, spawn};

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

/// Whether `path` is the scratch space of another process's test of this project (named
/// `taskpool-test-<pid>-…` or `taskpool-conformance-<pid>-…`): where test binaries run at
/// once, others make theirs meanwhile. This process's own are not excused.
fn another_tests_scratch(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let rest = ["taskpool-test-", "taskpool-conformance-"]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix));
    let pid = rest.and_then(|rest| rest.split('-').next()?.parse::<u32>().ok());
    pid.is_some_and(|pid| pid != std::process::id())
}

#[test]
fn a_pool_creates_no_files() {
    let places = places();
    let before = entries(&places);
    let config = Config::new().workers(2).timeout(Duration::from_secs(60));
    let pool = ProcessPool::with_config(config).unwrap();
    assert_eq!(pool.map(square, 0..1000).unwrap().len(), 1000);
    assert_eq!(pool.imap_unordered(square, 0..1000).count(), 1000);
    assert_eq!(crashed(pool.apply(exit_3, 0)), Exit::Code(3));
    let limit = Duration::from_millis(50);
    assert!(matches!(
        pool.submit_timeout(sleep_ms, 60_000, limit).join(),
        Err(TaskError::TimedOut { .. })
    ));
    let one_off = spawn(square, 7).unwrap();
    assert_eq!(one_off.join().unwrap(), 49);
    pool.shutdown();
    drop(pool);
    let created: Vec<_> = entries(&places)
        .difference(&before)
        .filter(|path| !another_tests_scratch(path))
        .cloned()
        .collect();
    let left = left_behind(created);
    assert!(left.is_empty(), "the pool created {left:?} (looked in {places:?})");
}

/// Those of `created` that stay: a pool's file stays after it is dropped, where another
/// program's temporary file (a compiler's, say) made while the test ran goes when that
/// program is done with it, which this waits for, a few seconds at most.
fn left_behind(mut created: Vec<PathBuf>) -> Vec<PathBuf> {
    let patience = std::time::Instant::now() + Duration::from_secs(5);
    while !created.is_empty() && std::time::Instant::now() < patience {
        std::thread::sleep(Duration::from_millis(50));
        created.retain(|path| path.symlink_metadata().is_ok());
    }
    created
}
