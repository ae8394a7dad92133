//! Tasks that start programs, close descriptors, fork, or start pools and processes of their
//! own: the pool watches its workers as processes, so none of this blinds it, and what a task
//! leaves behind dies with its worker unless the task detached it on purpose.

mod common;

use std::time::{Duration, Instant};

use common::*;
use taskpool_process::{Config, Exit, IntoTask, Pool, ProcessPool, TaskError};

/// Starts `sleep 600` and returns its pid, leaving it running.
fn start_sleeper(_: u64) -> u32 {
    start("sleep", &["600"])
}

/// Runs `sleep 600` to its end (a task that waits on a program that hangs).
fn run_sleeper(_: u64) -> u64 {
    std::process::Command::new("sleep").arg("600").status().unwrap();
    0
}

/// Starts `sleep 600` in a session of its own (detached on purpose), returns its pid.
///
/// The session is made in the child before `exec`, and `spawn` returns once the `exec` is
/// done, so the program is detached by the time the task returns (the `setsid` command would
/// detach only once it runs, racing with the kill of its worker's group).
fn start_daemon(_: u64) -> u32 {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new("sleep");
    command.arg("600");
    // SAFETY: `setsid` is async-signal-safe, which is all a `pre_exec` hook may call.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    command.spawn().unwrap().id()
}

/// Closes the worker's result pipe (descriptor 4), then keeps running.
fn close_result_pipe(_: u64) -> u64 {
    // SAFETY: closes a descriptor this task does not own, on purpose: the fault under test.
    unsafe { libc::close(4) };
    sleep_ms(600_000)
}

/// Closes every descriptor from 3 up, as a daemon does, then keeps running.
fn close_everything(_: u64) -> u64 {
    close_every_descriptor();
    sleep_ms(600_000)
}

/// Appends `x` to the file `runs`: each run of a task noted.
fn note_run(x: u64, runs: &str) {
    let mut file = std::fs::OpenOptions::new().append(true).create(true).open(runs).unwrap();
    std::io::Write::write_all(&mut file, format!("{x}\n").as_bytes()).unwrap();
}

/// Closes every descriptor from 3 up, as a daemon does: the worker can no longer answer.
fn close_every_descriptor() {
    // SAFETY: closes descriptors this task does not own, on purpose: the fault under test.
    unsafe { libc::close_range(3, libc::c_uint::MAX, 0) };
}

/// Notes its run in the file `runs`; when `x` is 50, then closes every descriptor from 3 up
/// and returns: a task that leaves its worker unable to answer.
fn close_everything_at_50((x, runs): (u64, String)) -> u64 {
    note_run(x, &runs);
    if x == 50 {
        close_every_descriptor();
    }
    x
}

/// Notes its run in the file `runs`; when `x` ends in 50 (one in a hundred), then closes
/// every descriptor from 3 up and returns.
fn close_everything_at_each_hundredth((x, runs): (u64, String)) -> u64 {
    note_run(x, &runs);
    if x % 100 == 50 {
        close_every_descriptor();
    }
    x
}

/// Notes its run in the file `runs`; when `x` ends in 50 (one in a hundred), then closes
/// every descriptor from 3 up and runs on, past the time its worker is given to leave once
/// its pipe is seen closed.
fn close_everything_at_each_hundredth_and_run_on((x, runs): (u64, String)) -> u64 {
    note_run(x, &runs);
    if x % 100 == 50 {
        close_every_descriptor();
        sleep_ms(60_000);
    }
    x
}

/// Forks without exec: both copies return.
fn fork_and_return(x: u64) -> u64 {
    // SAFETY: the fault under test; the copy only returns.
    unsafe { libc::fork() };
    x
}

#[test]
fn a_task_that_leaves_a_program_running_does_not_blind_the_pool() {
    within("the pool after a task left a program running", || {
        let pool = ProcessPool::new(1).unwrap();
        let sleeper = pool.apply(start_sleeper, 0).unwrap();
        assert!(alive(sleeper));
        assert_eq!(crashed(pool.apply(segfault, 0)), Exit::Signal(11));
        wait_gone(sleeper);
        assert_eq!(pool.apply(square, 7).unwrap(), 49);
    });
}

#[test]
fn a_timeout_fires_while_the_task_waits_on_a_program() {
    within("the timeout of a task waiting on a program", || {
        let limit = Duration::from_millis(300);
        let pool = ProcessPool::with_config(Config::new().workers(1).timeout(limit)).unwrap();
        match pool.apply(run_sleeper, 0) {
            Err(TaskError::TimedOut { limit: l, still_running: false }) => assert_eq!(l, limit),
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert_eq!(pool.apply(square, 3).unwrap(), 9);
    });
}

#[test]
fn drop_returns_in_time_and_kills_what_tasks_left_running() {
    let grace = Duration::from_millis(200);
    let pool = ProcessPool::with_config(Config::new().workers(2).shutdown_grace(grace)).unwrap();
    let sleepers = pool.map(start_sleeper, 0..4).unwrap();
    let started = Instant::now();
    within("dropping the pool", move || drop(pool));
    // Generous: the point is that it does not wait for the programs (600 s).
    assert!(started.elapsed() < grace + Duration::from_secs(20), "{:?}", started.elapsed());
    sleepers.into_iter().for_each(wait_gone);
}

#[test]
fn a_program_detached_with_setsid_outlives_its_worker() {
    let pool = ProcessPool::new(1).unwrap();
    let daemon = pool.apply(start_daemon, 0).unwrap();
    assert_eq!(crashed(pool.apply(abort, 0)), Exit::Signal(6));
    drop(pool);
    assert!(alive(daemon), "a detached program survives its worker and the pool");
    std::process::Command::new("kill").args(["-KILL", &daemon.to_string()]).status().unwrap();
}

#[test]
fn a_task_that_closes_the_result_pipe_fails_alone_with_protocol() {
    within("tasks that close their pipes", || {
        let pool = ProcessPool::new(1).unwrap();
        for (what, outcome) in [
            ("descriptor 4", pool.apply(close_result_pipe, 0)),
            ("every descriptor", pool.apply(close_everything, 0)),
        ] {
            match outcome {
                Err(TaskError::Protocol { reason }) => {
                    assert!(reason.contains("closed"), "{reason}")
                }
                other => panic!("{what}: expected a protocol error, got {other:?}"),
            }
            assert_eq!(pool.apply(square, 4).unwrap(), 16);
        }
    });
}

#[test]
fn a_function_that_closes_every_descriptor_and_returns_costs_other_tasks_once_at_most() {
    let scratch = Scratch::new("close-and-return");
    let runs = [scratch.file("runs-0"), scratch.file("runs-1")];
    within("tasks beside one that closes its worker's descriptors and returns", move || {
        let pool = ProcessPool::new(1).unwrap();
        // Runs 200 tasks, task 50 of which closes its worker's descriptors: which others
        // failed, and what ran.
        let round = |runs: &String| {
            let task = |x| pool.submit(close_everything_at_50, (x, runs.clone()));
            let tasks: Vec<_> = (0..200).map(task).collect();
            let mut failed = Vec::new();
            for (x, task) in (0..200u64).zip(tasks) {
                match task.join() {
                    Ok(value) => assert_eq!(value, x),
                    Err(TaskError::Protocol { reason }) => {
                        assert!(reason.contains("closed"), "{reason}");
                        failed.extend((x != 50).then_some(x));
                    }
                    Err(e) => panic!("task {x} failed: {e:?}"),
                }
            }
            let ran = std::fs::read_to_string(runs).unwrap();
            (failed, ran.lines().filter(|&line| line == "50").count(), ran.lines().count())
        };
        // The first time, the pool notices the closed pipe as the worker runs a later task,
        // which may fail in its place; the one that closed it runs once more, and is then
        // found out as it returns.
        let (failed, closer_ran, _) = round(&runs[0]);
        assert!(failed.len() <= 1, "others failed: {failed:?}");
        assert!(closer_ran <= 2, "it ran {closer_ran} times");
        assert!(pool.stats().workers_started <= 3, "{:?}", pool.stats());
        // From then on its worker checks the pipe after each of its tasks: only it fails, if
        // its result does not come through, and every task runs once.
        let started = pool.stats().workers_started;
        assert_eq!(round(&runs[1]), (vec![], 1, 200));
        let stats = pool.stats();
        assert_eq!((stats.workers_started - started, stats.crashes), (1, 0), "one replaced");
    });
}

/// In a map whose function closes every descriptor in one item of a hundred (and was never
/// seen to before), every other item returns its value, having run once; each closer returns
/// its value too, or fails with `Protocol` naming the closed pipe, having run at most twice.
#[test]
fn items_beside_ones_that_close_every_descriptor_in_a_map_return_their_values() {
    let scratch = Scratch::new("close-in-a-map");
    let runs: Vec<String> = (0..3).map(|i| scratch.file(&format!("runs-{i}"))).collect();
    within("a map with items that close their worker's descriptors", move || {
        for runs in runs {
            let pool = ProcessPool::new(4).unwrap();
            let items = (0..1000u64).map(|x| (x, runs.clone()));
            let outcomes: Vec<_> = pool.imap(close_everything_at_each_hundredth, items).collect();
            let mut failed = Vec::new();
            for (x, outcome) in (0..1000u64).zip(outcomes) {
                match outcome {
                    Ok(value) => assert_eq!(value, x),
                    Err(TaskError::Protocol { reason }) if x % 100 == 50 => {
                        assert!(reason.contains("closed"), "{reason}")
                    }
                    Err(e) => failed.push((x, e)),
                }
            }
            assert!(failed.is_empty(), "items that closed nothing failed: {failed:?}");
            let ran = std::fs::read_to_string(&runs).unwrap();
            let mut times = vec![0; 1000];
            ran.lines().for_each(|x| times[x.parse::<usize>().unwrap()] += 1);
            let twice: Vec<_> = (0..1000).filter(|&x| x % 100 != 50 && times[x] != 1).collect();
            assert!(twice.is_empty(), "items that closed nothing ran other than once: {twice:?}");
            assert!((0..1000).all(|x| times[x] <= 2), "{times:?}");
        }
    });
}

/// In a map whose function closes its worker's descriptors in one item of a hundred and runs
/// on, each such item fails with `Protocol`, and every other returns its value. Once the
/// first was seen, the items before each later one in its batch, whose results the worker
/// would otherwise hold when it is killed for it, run once; before it, they may run twice
/// (as after any kill of a worker that held results).
#[test]
fn items_before_a_known_closer_that_runs_on_keep_their_results() {
    let scratch = Scratch::new("close-and-run-on");
    let runs = scratch.file("runs");
    within("a map with items that close their worker's descriptors and run on", move || {
        let pool = ProcessPool::new(1).unwrap();
        let items = (0..300u64).map(|x| (x, runs.clone()));
        let outcomes: Vec<_> =
            pool.imap(close_everything_at_each_hundredth_and_run_on, items).collect();
        for (x, outcome) in (0..300u64).zip(outcomes) {
            match outcome {
                Ok(value) if x % 100 != 50 => assert_eq!(value, x),
                Err(TaskError::Protocol { reason }) if x % 100 == 50 => {
                    assert!(reason.contains("closed"), "{reason}")
                }
                other => panic!("item {x}: {other:?}"),
            }
        }
        let ran = std::fs::read_to_string(&runs).unwrap();
        let mut times = vec![0; 300];
        ran.lines().for_each(|x| times[x.parse::<usize>().unwrap()] += 1);
        assert!(times.iter().all(|&t| (1..=2).contains(&t)), "{times:?}");
        let again: Vec<_> = (100..300).filter(|&x| times[x] != 1).collect();
        assert_eq!(again, Vec::<usize>::new(), "items that ran twice once the closer was known");
    });
}

#[test]
fn with_a_timeout_and_the_pipes_closed_drop_still_returns() {
    within("drop with a task that closed its pipes", || {
        let config = Config::new().workers(1).timeout(Duration::from_millis(200));
        let pool =
            ProcessPool::with_config(config.shutdown_grace(Duration::from_millis(100))).unwrap();
        let handle = pool.submit(close_everything, 0);
        match handle.join() {
            Err(TaskError::Protocol { reason }) => assert!(reason.contains("closed"), "{reason}"),
            other => panic!("expected a protocol error, got {other:?}"),
        }
        let busy = pool.submit(close_everything, 0);
        drop(pool);
        // Dropped before it closed its pipes, or after.
        match busy.join() {
            Err(TaskError::ShutDown) => {}
            Err(TaskError::Protocol { reason }) => assert!(reason.contains("closed"), "{reason}"),
            other => panic!("expected a shutdown or a protocol error, got {other:?}"),
        }
    });
}

#[test]
fn a_task_that_forks_without_exec_cannot_wedge_the_pool() {
    within("a pool whose task forked", || {
        let pool = ProcessPool::new(1).unwrap();
        assert_eq!(pool.apply(fork_and_return, 5).unwrap(), 5);
        let out = pool.map(fork_and_return, 0..50).unwrap();
        assert_eq!(out, (0..50).collect::<Vec<_>>());
        assert_eq!(pool.map(square, 0..100).unwrap().len(), 100);
        assert!(zombie_children().is_empty(), "{:?}", zombie_children());
    });
}

/// Forks; the copy leaves through `exit(3)`, which runs the process's exit handlers. The
/// task waits for it and returns `x`.
fn fork_and_exit(x: u64) -> u64 {
    // SAFETY: the fault under test; the copy only exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        std::process::exit(0);
    }
    wait_for(pid);
    x
}

/// Forks; the copy dies of a segmentation fault. The task waits for it and returns `x`.
fn fork_and_crash(x: u64) -> u64 {
    // SAFETY: the fault under test; the copy only raises a signal, which ends it.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above.
        unsafe { libc::raise(libc::SIGSEGV) };
    }
    wait_for(pid);
    x
}

/// Waits for the child `pid`.
fn wait_for(pid: libc::pid_t) {
    assert!(pid > 0, "fork failed");
    let mut status = 0;
    // SAFETY: waits for a child this task forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
}

/// Every tenth item forks a copy that exits; the items between are quick, so their results
/// still wait in the worker's buffer when the copy is made.
fn sometimes_fork_and_exit(x: u64) -> u64 {
    if x % 10 == 9 { fork_and_exit(x) } else { x }
}

/// As [`sometimes_fork_and_exit`], with copies that crash.
fn sometimes_fork_and_crash(x: u64) -> u64 {
    if x % 10 == 9 { fork_and_crash(x) } else { x }
}

/// The copy holds a copy of the worker's unsent results; were it to send them on its way out
/// (the crash-time flush), the parent would read results twice and fail the `map`.
#[test]
fn a_forked_copy_that_exits_or_crashes_sends_nothing() {
    within("a pool whose tasks' copies exit and crash", || {
        let pool = ProcessPool::new(1).unwrap();
        let expected: Vec<u64> = (0..2000).collect();
        for _ in 0..3 {
            assert_eq!(pool.map(sometimes_fork_and_exit, 0..2000).unwrap(), expected);
            assert_eq!(pool.map(sometimes_fork_and_crash, 0..2000).unwrap(), expected);
        }
        assert_eq!(pool.map(square, 0..100).unwrap().len(), 100);
        assert!(zombie_children().is_empty(), "{:?}", zombie_children());
    });
}

/// The same with single tasks submitted in bursts: they travel several to a frame, whose
/// results the worker's flusher may write while a task runs, from a second thread that the
/// copies do not have. Each handle still gets its own value, once.
#[test]
fn a_forked_copy_sends_nothing_in_a_worker_with_a_flusher_either() {
    within("bursts of tasks whose copies exit and crash", || {
        let pool = ProcessPool::new(1).unwrap();
        bursts_of(&pool, sometimes_fork_and_exit);
        bursts_of(&pool, sometimes_fork_and_crash);
        let [pid] = pool.pids()[..] else { panic!("one worker") };
        let threads = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().count();
        assert_eq!(threads, 2, "the frames were covered by a flusher");
        assert_eq!(pool.stats().completed, 3000);
        assert!(zombie_children().is_empty(), "{:?}", zombie_children());
    });
}

/// Three bursts of 500 `submit`s of `task`, each joined in turn: every handle gets its input.
fn bursts_of<M, T: IntoTask<M, Input = u64, Output = u64> + Copy>(pool: &ProcessPool, task: T) {
    for _ in 0..3 {
        let handles: Vec<_> = (0..500).map(|i| pool.submit(task, i)).collect();
        for (i, handle) in handles.into_iter().enumerate() {
            assert_eq!(handle.join().unwrap(), i as u64);
        }
    }
}

/// Starts a process pool of one worker inside the task, maps `n` squares on it, and returns
/// their sum and that worker's pid; the inner pool is dropped before the task returns.
fn map_on_a_pool_of_its_own(n: u64) -> Result<(u64, u32), String> {
    let pool = ProcessPool::new(1).map_err(|e| e.to_string())?;
    let squares = pool.map(square, 0..n).map_err(|e| e.to_string())?;
    let inner = pool.apply(worker_pid, 0).map_err(|e| e.to_string())?;
    Ok((squares.iter().sum(), inner))
}

/// Runs `square(x)` as a one-off process spawned from inside the task.
fn square_in_a_spawned_process(x: u64) -> Result<(u64, u32), String> {
    let child = taskpool_process::spawn(worker_pid, 0).map_err(|e| e.to_string())?;
    let squared = taskpool_process::spawn(square, x).map_err(|e| e.to_string())?;
    let pid = child.join().map_err(|e| e.to_string())?;
    Ok((squared.join().map_err(|e| e.to_string())?, pid))
}

/// Maps `n` squares on a thread pool started inside the task.
fn map_on_threads_of_its_own(n: u64) -> Result<u64, String> {
    let pool = taskpool_thread::ThreadPool::new(2).map_err(|e| e.to_string())?;
    let squares = pool.map(square, 0..n).map_err(|e| e.to_string())?;
    Ok(squares.iter().sum())
}

#[test]
fn a_task_can_start_pools_and_processes_of_its_own_and_they_end_with_it() {
    let pool = ProcessPool::new(2).unwrap();
    let outer = pool.apply(worker_pid, 0).unwrap();
    let sum = (0..100u64).map(|x| x * x).sum::<u64>();
    for round in 0..2 {
        let (got, inner) = pool.apply(map_on_a_pool_of_its_own, 100).unwrap().unwrap();
        assert_eq!(got, sum, "round {round}");
        assert_ne!(inner, outer, "the inner pool's worker is a process of its own");
        wait_gone(inner);
    }
    let (squared, spawned) = pool.apply(square_in_a_spawned_process, 7).unwrap().unwrap();
    assert_eq!(squared, 49);
    wait_gone(spawned);
    assert_eq!(pool.apply(map_on_threads_of_its_own, 100).unwrap(), Ok(sum));
    assert_eq!(pool.map(square, 0..4).unwrap(), [0, 1, 4, 9], "the outer pool goes on");
    assert_eq!(pool.stats().crashes, 0);
}

/// Where [`exit_with_a_pool_kept_in_a_static`], run in a copy of this binary, writes the pids
/// of the programs its tasks started.
const SLEEPERS_FILE: &str = "TASKPOOL_TEST_SLEEPERS_FILE";

/// Starts `sleep 600`, leaves it running, and writes its pid to `self.0` (whole, by a rename).
#[derive(serde::Serialize, serde::Deserialize)]
struct StartSleeperInto(String);

impl taskpool_process::Task for StartSleeperInto {
    type Input = u64;
    type Output = u32;

    fn run(&self, _: u64) -> u32 {
        let pid = start_sleeper(0);
        let partial = format!("{}.partial", self.0);
        std::fs::write(&partial, pid.to_string()).unwrap();
        std::fs::rename(partial, &self.0).unwrap();
        pid
    }
}

/// A program whose pool lives in a `static` (never dropped) and that exits while a one-off
/// process it never joined still runs: what their tasks started must end with it.
#[test]
#[ignore = "run in a copy of this binary by the test after it"]
fn exit_with_a_pool_kept_in_a_static() {
    static POOL: std::sync::LazyLock<ProcessPool> =
        std::sync::LazyLock::new(|| ProcessPool::new(1).unwrap());
    let file = std::env::var(SLEEPERS_FILE).expect("run by the test after it, which sets it");
    POOL.apply(StartSleeperInto(format!("{file}.pool")), 0).unwrap();
    let one_off = taskpool_process::spawn(StartSleeperInto(format!("{file}.one-off")), 0);
    std::mem::forget(one_off.unwrap());
    wait_for_file(format!("{file}.one-off"));
    std::process::exit(0);
}

#[test]
fn programs_that_tasks_started_end_when_the_program_exits_without_dropping_their_pool() {
    let dir = Scratch::new("static-pool");
    let file = dir.file("sleepers");
    let status = run_leaving_sleepers("exit_with_a_pool_kept_in_a_static", &file);
    assert!(status.success(), "{status}");
    // Before, a pool never dropped left them running for their 600 s.
    wait_sleepers_gone(&file);
}

/// Runs test `name` in a copy of this binary, which writes the pids of the programs its
/// tasks leave running next to `file`.
fn run_leaving_sleepers(name: &str, file: &str) -> std::process::ExitStatus {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--ignored", "--nocapture"])
        .env(SLEEPERS_FILE, file)
        .status()
        .unwrap()
}

/// Waits until the programs that the pool's task and the one-off left (their pids next to
/// `file`) are gone.
fn wait_sleepers_gone(file: &str) {
    for from in ["pool", "one-off"] {
        let pid = std::fs::read_to_string(format!("{file}.{from}")).unwrap();
        wait_gone(pid.parse().unwrap());
    }
}

/// A program that dies of a Ctrl-C (SIGINT, not handled) while a pool's task and a one-off's
/// each left a program running: no exit handler runs, so only the undertaker can end them.
#[test]
#[ignore = "run in a copy of this binary by the test after it"]
fn die_of_ctrl_c_with_programs_running() {
    let file = std::env::var(SLEEPERS_FILE).expect("run by the test after it, which sets it");
    let pool = ProcessPool::new(1).unwrap();
    pool.apply(StartSleeperInto(format!("{file}.pool")), 0).unwrap();
    let _one_off = taskpool_process::spawn(StartSleeperInto(format!("{file}.one-off")), 0);
    wait_for_file(format!("{file}.one-off"));
    // SAFETY: raise has no memory effects; SIGINT's default action ends this process.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::raise(libc::SIGINT);
    }
    unreachable!("SIGINT ends the program");
}

#[test]
fn programs_that_tasks_started_end_when_the_program_dies_of_a_signal() {
    use std::os::unix::process::ExitStatusExt;
    let dir = Scratch::new("ctrl-c");
    let file = dir.file("sleepers");
    let status = run_leaving_sleepers("die_of_ctrl_c_with_programs_running", &file);
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status}");
    // Before, they ran on for their 600 s, adopted by init.
    wait_sleepers_gone(&file);
}

/// A program that waits for all its children once its pool is dropped and its one-off
/// joined: none is left (the undertaker is not one of them), so the wait ends at once.
#[test]
#[ignore = "run in a copy of this binary by the test after it"]
fn wait_for_every_child_after_the_pool_is_gone() {
    let pool = ProcessPool::new(2).unwrap();
    assert_eq!(pool.map(square, 0..4).unwrap(), [0, 1, 4, 9]);
    drop(pool);
    assert_eq!(taskpool_process::spawn(square, 5).unwrap().join().unwrap(), 25);
    // SAFETY: waitpid with a null status pointer only waits; -1 means any child.
    let waited = unsafe { libc::waitpid(-1, std::ptr::null_mut(), 0) };
    let error = std::io::Error::last_os_error();
    assert_eq!((waited, error.raw_os_error()), (-1, Some(libc::ECHILD)), "{error}");
}

#[test]
fn a_program_that_waits_for_all_its_children_is_not_kept_waiting() {
    let name = "wait_for_every_child_after_the_pool_is_gone";
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command.arg("--ignored");
    within("a copy that waits for all its children", move || {
        run_test_in(command, name, "as a program that waits for all its children")
    })
    .unwrap();
}

/// A command that runs a program as the first process (pid 1) of a new process-id namespace,
/// as a container's program started without an init runs, and kills it if the command dies;
/// `None`, saying why, where that cannot be done (it takes root and `unshare`).
fn as_pid_1() -> Option<std::process::Command> {
    let args = ["--pid", "--fork", "--kill-child", "--mount-proc"];
    let check = std::process::Command::new("unshare")
        .args(args)
        .arg("true")
        .stderr(std::process::Stdio::null())
        .status();
    if !check.as_ref().is_ok_and(std::process::ExitStatus::success) {
        println!("skipped: cannot run a program as pid 1 of a new namespace here: {check:?}");
        return None;
    }
    let mut command = std::process::Command::new("unshare");
    command.args(args);
    Some(command)
}

#[test]
fn a_program_that_is_pid_1_and_waits_for_all_its_children_is_not_kept_waiting() {
    let Some(mut command) = as_pid_1() else { return };
    let name = "wait_for_every_child_after_the_pool_is_gone";
    command.arg(std::env::current_exe().unwrap()).args([name, "--exact", "--ignored"]);
    let mut copy = command.spawn().unwrap();
    let deadline = Instant::now() + HANG;
    // Before, it waited for good: every orphan of the namespace is its child, the undertaker
    // too, which ends only with it.
    let status = loop {
        if let Some(status) = copy.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            // `--kill-child`: the namespace ends with the command.
            copy.kill().unwrap();
            copy.wait().unwrap();
            panic!("hung: a program that is pid 1 still waited for a child after {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(status.success(), "{status}");
}

/// Waits until the process `pid` is gone for good: not even a zombie.
fn wait_reaped(pid: u32) {
    let deadline = Instant::now() + HANG;
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "process {pid} is still there: {}", {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default()
        });
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A program that is pid 1 whose pool recycles a worker, and whose one-off ends, each with a
/// program its task started still running: killed with the group, each is an orphan of the
/// program, which the pool reaps.
#[test]
#[ignore = "run as pid 1 of a new namespace by the test after it"]
fn leave_no_zombie_as_pid_1() {
    let pool = ProcessPool::with_config(Config::new().workers(1).max_tasks_per_worker(1)).unwrap();
    let sleeper = pool.apply(start_sleeper, 0).unwrap();
    // Before, a zombie for good.
    wait_reaped(sleeper);
    let sleeper = taskpool_process::spawn(start_sleeper, 0).unwrap().join().unwrap();
    wait_reaped(sleeper);
    assert!(zombie_children().is_empty(), "zombies: {:?}", zombie_children());
}

#[test]
fn a_program_that_is_pid_1_is_left_no_zombie_by_the_groups_the_pool_kills() {
    let Some(mut command) = as_pid_1() else { return };
    command.arg(std::env::current_exe().unwrap()).arg("--ignored");
    run_test_in(command, "leave_no_zombie_as_pid_1", "as pid 1").unwrap();
}
