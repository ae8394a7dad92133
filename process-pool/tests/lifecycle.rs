//! Worker lifecycle: recycling, initializers, shutdown and drop, reaping, descriptors, and the
//! worker marker.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use taskpool_process::{Config, Exit, Pool, ProcessConfig, ProcessPool, TaskError};

static INITIALIZED: AtomicU64 = AtomicU64::new(0);

fn set_up() {
    INITIALIZED.store(42, Ordering::SeqCst);
}

fn read_initialized(_: u64) -> u64 {
    INITIALIZED.load(Ordering::SeqCst)
}

fn failing_initializer() {
    panic!("cannot connect to the license server");
}

fn marker_present(_: u64) -> bool {
    std::env::var_os("TASKPOOL_WORKER").is_some()
}

fn own_descriptors(_: u64) -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    fds.sort();
    fds
}

#[test]
fn workers_are_other_processes() {
    let pool = ProcessPool::new(2).unwrap();
    let pids = pool.map(worker_pid, 0..20).unwrap();
    assert!(pids.iter().all(|&p| p != std::process::id()));
    let mut workers = pool.pids();
    workers.sort_unstable();
    for pid in pids {
        assert!(workers.binary_search(&pid).is_ok(), "{pid} is not one of {workers:?}");
    }
}

#[test]
fn every_worker_is_listed_when_the_pool_is_made() {
    for _ in 0..20 {
        let pool = ProcessPool::new(3).unwrap();
        let pids = pool.pids();
        assert_eq!(pids.len(), 3, "{pids:?}");
        assert!(pids.iter().all(|&p| p != std::process::id() && p != 0), "{pids:?}");
    }
}

#[test]
fn initializer_runs_in_every_worker() {
    let pool = ProcessPool::with_config(Config::new().workers(2).initializer(set_up)).unwrap();
    assert!(pool.map(read_initialized, 0..50).unwrap().iter().all(|&v| v == 42));
    assert_eq!(INITIALIZED.load(Ordering::SeqCst), 0, "the parent never ran it");
}

#[test]
fn a_failing_initializer_fails_tasks_with_a_typed_error() {
    let config = Config::new().workers(1).initializer(failing_initializer).start_attempts(3);
    let pool = ProcessPool::with_config(config).unwrap();
    match pool.apply(square, 2) {
        Err(TaskError::WorkerStart { reason }) => {
            assert!(reason.contains("cannot connect to the license server"), "{reason}");
        }
        other => panic!("expected a start failure, got {other:?}"),
    }
    // Three attempts failed in a row; the pool keeps trying, further apart, in the background.
    let stats = pool.stats();
    assert!(stats.workers_started >= 3 && stats.failed_starts >= 3, "{stats:?}");
    assert!(matches!(pool.apply(square, 2), Err(TaskError::WorkerStart { .. })));
}

/// Fails in the worker of slot 1 (named `slot-1`), as an initializer that claims a device by
/// the worker's index fails where there is no such device.
fn fails_in_slot_1() {
    let args = std::fs::read_to_string("/proc/self/cmdline").unwrap();
    assert!(!args.split('\0').any(|arg| arg == "slot-1"), "no device for slot 1");
}

#[test]
fn starts_that_fail_in_one_slot_do_not_stop_the_workers_of_the_others() {
    within("a pool with one slot whose starts fail", || {
        let config = Config::new()
            .workers(2)
            .name_prefix("slot")
            .initializer(fails_in_slot_1)
            .start_attempts(2);
        let pool = ProcessPool::with_config(config).unwrap();
        // Slot 1 may fail its attempts before slot 0's worker is ready: tasks wait for it.
        let served_by = pool.apply(worker_pid, 0).unwrap();
        while pool.stats().failed_starts < 2 {
            std::thread::yield_now();
        }
        // Slot 1 failed its attempts; slot 0's worker still runs every task.
        assert_eq!(pool.map(worker_pid, 0..20).unwrap(), [served_by; 20]);
        assert_eq!(pool.apply(square, 3).unwrap(), 9);
    });
}

#[test]
fn shutdown_runs_what_is_queued_on_workers_recycled_or_crashed_meanwhile() {
    within("a shutdown while workers are replaced", || {
        let config = Config::new().workers(1).max_tasks_per_worker(1);
        let pool = ProcessPool::with_config(config).unwrap();
        let handles: Vec<_> = (0..6).map(|i| pool.submit(sleep_ms, i)).collect();
        let crash = pool.submit(abort, 0);
        let after: Vec<_> = (6..9).map(|i| pool.submit(sleep_ms, i)).collect();
        pool.shutdown();
        for (i, handle) in (0..).zip(handles.into_iter().chain(after)) {
            assert_eq!(handle.join().unwrap(), i);
        }
        assert_eq!(crashed(crash.join()), Exit::Signal(6));
    });
}

#[test]
fn shutdown_ends_workers_stopped_with_sigstop_after_the_grace() {
    within("a shutdown of stopped workers", || {
        let config = Config::new().workers(2).shutdown_grace(Duration::from_millis(200));
        let pool = ProcessPool::with_config(config).unwrap();
        assert_eq!(pool.map(square, 0..4).unwrap(), [0, 1, 4, 9]);
        let pids = pool.pids();
        for &pid in &pids {
            // SAFETY: kill has no memory effects; the pid is a live, idle worker of ours.
            assert_eq!(unsafe { libc::kill(pid.cast_signed(), libc::SIGSTOP) }, 0);
        }
        pool.shutdown();
        for pid in pids {
            assert!(!alive(pid), "worker {pid} outlived the shutdown");
        }
    });
}

#[test]
fn max_tasks_per_worker_recycles_workers() {
    let pool = ProcessPool::with_config(Config::new().workers(1).max_tasks_per_worker(3)).unwrap();
    let pids: Vec<u32> = (0..9).map(|i| pool.apply(worker_pid, i).unwrap()).collect();
    for chunk in pids.chunks(3) {
        assert!(chunk.iter().all(|&p| p == chunk[0]), "{pids:?}");
    }
    assert!(pids[0] != pids[3] && pids[3] != pids[6], "{pids:?}");
    // The first two were retired before the next could start; the third once it is
    // answered, which may come after its caller has the result.
    let stats = pool.stats();
    assert!((2..=3).contains(&stats.workers_retired), "{stats:?}");
    assert_eq!((stats.crashes, stats.timeouts), (0, 0), "{stats:?}");
    let mapped = pool.map(worker_pid, 0..30).unwrap();
    let distinct: std::collections::HashSet<u32> = mapped.into_iter().collect();
    assert!(distinct.len() >= 10, "30 tasks at 3 per worker need 10 workers: {distinct:?}");
    // 39 items at 3 per worker: 13 workers, each but the last retired before the next.
    let stats = pool.stats();
    assert!((12..=13).contains(&stats.workers_retired), "{stats:?}");
    assert!(stats.workers_started >= 13, "{stats:?}");
}

/// An exit handler that never returns, as one that joins a thread that never ends.
extern "C" fn never_returns() {
    loop {
        std::thread::park();
    }
}

/// Registers [`never_returns`] to run when the worker exits; returns the worker's pid.
fn hang_at_exit(_: u64) -> u32 {
    // SAFETY: `never_returns` is a plain function that lives for the whole process.
    assert_eq!(unsafe { libc::atexit(never_returns) }, 0);
    std::process::id()
}

#[test]
fn a_recycled_worker_that_never_exits_is_killed_after_the_grace() {
    within("a recycled worker that hangs in its exit handlers", || {
        let grace = Duration::from_millis(100);
        let config = Config::new().workers(1).max_tasks_per_worker(1).shutdown_grace(grace);
        let pool = ProcessPool::with_config(config).unwrap();
        let hung = pool.apply(hang_at_exit, 0).unwrap();
        // The slot's next worker runs the next task; the one that would not end is gone.
        let next = pool.apply(worker_pid, 1).unwrap();
        assert_ne!(next, hung);
        assert!(!alive(hung), "the recycled worker {hung} still runs");
        let stats = pool.stats();
        assert_eq!((stats.completed, stats.failed, stats.crashes), (2, 0, 0), "{stats:?}");
    });
}

#[test]
fn drop_kills_hung_workers_after_the_grace_period() {
    let grace = Duration::from_millis(100);
    // One task per worker: the hung ones take both, whenever the workers become ready, and
    // the last one waits in the queue.
    let config = ProcessConfig::new(Config::new().workers(2).shutdown_grace(grace)).in_flight(1);
    let pool = ProcessPool::with_config(config).unwrap();
    let hung: Vec<_> = (0..2).map(|_| pool.submit(sleep_ms, 60_000)).collect();
    let queued = pool.submit(square, 2);
    let pids = pool.pids();
    let started = Instant::now();
    drop(pool);
    assert!(started.elapsed() < Duration::from_secs(30));
    for h in hung {
        assert!(matches!(h.join(), Err(TaskError::ShutDown)));
    }
    assert!(matches!(queued.join(), Err(TaskError::ShutDown)));
    for pid in pids {
        assert!(!alive(pid), "worker {pid} survived the drop");
    }
}

#[test]
fn a_worker_holds_only_its_own_descriptors() {
    let pool = ProcessPool::new(1).unwrap();
    let fds = pool.apply(own_descriptors, 0).unwrap();
    // stdin, stdout, stderr, the request and result pipes, and the directory being listed.
    assert_eq!(fds, ["0", "1", "2", "3", "4", "5"], "{fds:?}");
}

#[test]
fn a_worker_survives_an_interrupt() {
    let dir = Scratch::new("interrupt");
    let (signal, go) = (dir.file("running"), dir.file("go"));
    let pool = ProcessPool::new(1).unwrap();
    let task = pool.submit(SignalThenWait { signal: signal.clone(), go: go.clone() }, 7);
    wait_for_file(&signal);
    let pid = std::fs::read_to_string(&signal).unwrap();
    // What a terminal's Ctrl-C does to every process of the group; the parent decides.
    let status = std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(status.success());
    std::fs::write(&go, "").unwrap();
    assert_eq!(task.join().unwrap(), 7, "the task finished despite the interrupt");
    assert_eq!(pool.apply(worker_pid, 0).unwrap().to_string(), pid, "the same worker");
}

#[test]
fn the_marker_is_removed_inside_workers() {
    let pool = ProcessPool::new(1).unwrap();
    assert!(!pool.apply(marker_present, 0).unwrap());
}
