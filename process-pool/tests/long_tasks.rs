//! Work given to a pool while one of its tasks runs far longer than its function's tasks
//! were measured to take goes to the other workers, not behind that task.

mod common;

use common::*;
use serde::{Deserialize, Serialize};
use taskpool_process::{Pool, ProcessPool, Task};

/// Runs for a while (creates `ran` after 100 ms), then waits until the file `go` exists and
/// returns its input: a task that has been running long, and will go on until told.
#[derive(Serialize, Deserialize)]
struct RunLongThenWait {
    ran: String,
    go: String,
}

impl Task for RunLongThenWait {
    type Input = u64;
    type Output = u64;

    fn run(&self, x: u64) -> u64 {
        sleep_ms(100);
        std::fs::write(&self.ran, "").unwrap();
        wait_for_file(&self.go);
        x
    }
}

#[test]
fn a_map_given_while_a_task_runs_long_is_not_sent_behind_it() {
    let scratch = Scratch::new("long-task-map");
    let (ran, go) = (scratch.file("ran"), scratch.file("go"));
    within("a map while another worker's task runs long", move || {
        let pool = ProcessPool::new(2).unwrap();
        let long = pool.submit(RunLongThenWait { ran: ran.clone(), go: go.clone() }, 7);
        wait_for_file(&ran);
        // Items sent behind the long task would wait until it is told to end, after the map.
        let squares = pool.map(square, 0..64).unwrap();
        assert_eq!(squares, (0..64u64).map(|x| x * x).collect::<Vec<_>>());
        let singles: Vec<_> = (0..16).map(|x| pool.submit(square, x)).collect();
        for (x, handle) in (0..16u64).zip(singles) {
            assert_eq!(handle.join().unwrap(), x * x);
        }
        std::fs::write(&go, "").unwrap();
        assert_eq!(long.join().unwrap(), 7);
    });
}

/// Waits until the file `go` exists, then returns its input: a task that hangs until told.
#[derive(Serialize, Deserialize)]
struct WaitFor {
    go: String,
}

impl Task for WaitFor {
    type Input = u64;
    type Output = u64;

    fn run(&self, x: u64) -> u64 {
        wait_for_file(&self.go);
        x
    }
}

#[test]
fn work_sent_behind_a_task_that_then_hangs_runs_on_another_worker() {
    let scratch = Scratch::new("long-task-recall");
    let files: Vec<String> = (0..5).map(|i| scratch.file(&format!("go-{i}"))).collect();
    within("a map sent behind a task that then hangs", move || {
        let pool = ProcessPool::new(2).unwrap();
        let expected: Vec<u64> = (0..64u64).map(|x| x * x).collect();
        let (mut recalled, mut attempts) = (0, 0);
        // A map given within the first 10 ms of the task (its estimate's floor) sends part
        // of its items behind it; given later (a stalled machine), it sends none there,
        // so try again.
        for go in &files {
            attempts += 1;
            let before = pool.stats().requeued;
            let stuck = pool.submit(WaitFor { go: go.clone() }, 7);
            assert_eq!(pool.map(square, 0..64).unwrap(), expected);
            recalled = pool.stats().requeued - before;
            std::fs::write(go, "").unwrap();
            assert_eq!(stuck.join().unwrap(), 7);
            if recalled > 0 {
                break;
            }
        }
        assert!(recalled > 0, "no item was ever sent behind the task");
        // The pool goes on as before, and counted each item once.
        assert_eq!(pool.map(square, 0..64).unwrap(), expected);
        let stats = pool.stats();
        assert_eq!((stats.completed, stats.failed), (65 * attempts + 64, 0));
    });
}

/// Waits until the file `go` exists, then says which process ran it.
#[derive(Serialize, Deserialize)]
struct WaitThenSayWhere {
    go: String,
}

impl Task for WaitThenSayWhere {
    type Input = ();
    type Output = u32;

    fn run(&self, (): ()) -> u32 {
        wait_for_file(&self.go);
        std::process::id()
    }
}

#[test]
fn a_task_sent_to_a_stopped_worker_runs_on_another_once_that_one_is_idle() {
    let scratch = Scratch::new("stopped-worker");
    let go = scratch.file("go");
    within("tasks given while a worker is stopped", move || {
        let pool = ProcessPool::new(2).unwrap();
        assert_eq!(pool.map(square, 0..4).unwrap(), [0, 1, 4, 9]);
        let pids = pool.pids();
        // SAFETY: kill has no memory effects; the pid is a live, idle worker of ours.
        assert_eq!(unsafe { libc::kill(pids[0].cast_signed(), libc::SIGSTOP) }, 0);
        // Each idle worker is sent one; the one that runs waits for `go`, then is idle.
        let task = || pool.submit(WaitThenSayWhere { go: go.clone() }, ());
        let tasks = [task(), task()];
        std::fs::write(&go, "").unwrap();
        for task in tasks {
            assert_eq!(task.join().unwrap(), pids[1], "ran on the worker that was not stopped");
        }
        assert_eq!(pool.stats().requeued, 1, "the stopped worker's task was taken back");
        // SAFETY: as above; the worker is stopped, not gone.
        assert_eq!(unsafe { libc::kill(pids[0].cast_signed(), libc::SIGCONT) }, 0);
        // Woken, it skips what was taken back, and works on: no worker was replaced.
        let expected: Vec<u64> = (0..64u64).map(|x| x * x).collect();
        assert_eq!(pool.map(square, 0..64).unwrap(), expected);
        let stats = pool.stats();
        assert_eq!((stats.completed, stats.failed, stats.workers_started), (4 + 2 + 64, 0, 2));
        assert_eq!(pool.pids(), pids);
    });
}

/// Writes which process runs it into the file `at`, then waits until the file `go` exists.
#[derive(Serialize, Deserialize)]
struct SayWhereThenWait {
    at: String,
    go: String,
}

impl Task for SayWhereThenWait {
    type Input = ();
    type Output = ();

    fn run(&self, (): ()) {
        let written = format!("{}.tmp", self.at);
        std::fs::write(&written, std::process::id().to_string()).unwrap();
        std::fs::rename(&written, &self.at).unwrap();
        wait_for_file(&self.go);
    }
}

/// Says which process ran it.
fn say_where((): ()) -> u32 {
    std::process::id()
}

#[test]
fn a_time_limit_counts_from_when_the_task_starts_not_while_its_worker_is_stopped() {
    let scratch = Scratch::new("stopped-timed");
    let (at, go) = (scratch.file("at"), scratch.file("go"));
    within("a task with a time limit sent to a stopped worker", move || {
        let pool = ProcessPool::new(2).unwrap();
        assert_eq!(pool.map(square, 0..4).unwrap(), [0, 1, 4, 9]);
        let busy = pool.submit(SayWhereThenWait { at: at.clone(), go: go.clone() }, ());
        wait_for_file(&at);
        let busy_pid: u32 = std::fs::read_to_string(&at).unwrap().parse().unwrap();
        let stopped = pool.pids().into_iter().find(|&pid| pid != busy_pid).unwrap();
        // SAFETY: kill has no memory effects; the pid is a live, idle worker of ours.
        assert_eq!(unsafe { libc::kill(stopped.cast_signed(), libc::SIGSTOP) }, 0);
        // The only worker not busy is the stopped one: the task goes there, and does not
        // start while the worker is stopped, for five times its limit.
        let limit = std::time::Duration::from_millis(100);
        let timed = pool.submit_timeout(say_where, (), limit);
        std::thread::sleep(5 * limit);
        // SAFETY: as above; the worker is stopped, or was killed and reaped if the pool
        // counted its time already (then the call fails, with no effect).
        let woken = unsafe { libc::kill(stopped.cast_signed(), libc::SIGCONT) };
        let ran = timed.join();
        assert!(
            matches!(ran, Ok(pid) if pid == stopped),
            "the task ran on the worker it was sent to: {ran:?}"
        );
        assert_eq!(woken, 0, "the stopped worker was not killed");
        std::fs::write(&go, "").unwrap();
        busy.join().unwrap();
        let stats = pool.stats();
        assert_eq!((stats.completed, stats.failed, stats.workers_started), (4 + 2, 0, 2));
    });
}
