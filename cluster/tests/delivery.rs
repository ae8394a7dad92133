//! Delivery semantics: progress reports keep a long task with its agent, a task that kills
//! every agent that takes it stops at the delivery limit, and a task with no agent of its
//! executable image fails once the configured wait is over, saying how long it waited.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::Agent;
use taskpool_cluster::{ClusterConfig, ClusterPool, Config, Pool, TaskError};

/// Appends a line to the file at `path` (one per run), sleeps `ms`, returns the line count.
fn log_and_sleep(path: String, ms: u64) -> usize {
    let mut file = std::fs::OpenOptions::new().append(true).create(true).open(&path).unwrap();
    writeln!(file, "run").unwrap();
    std::thread::sleep(Duration::from_millis(ms));
    std::fs::read_to_string(&path).unwrap().lines().count()
}

/// Kills the agent whose worker runs it.
fn kill_my_agent(_: u64) -> u64 {
    // SAFETY: kill has no memory preconditions; the parent of a worker is its agent.
    unsafe { libc::kill(libc::getppid(), libc::SIGKILL) };
    std::thread::sleep(Duration::from_secs(60));
    0
}

fn square(x: u64) -> u64 {
    x * x
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("taskpool-delivery-{}-{name}", std::process::id()))
}

#[test]
fn a_task_longer_than_the_ack_wait_stays_with_its_agent_and_runs_once() {
    let Some(server) = common::server("long_task") else { return };
    let vars = [("TASKPOOL_AGENT_ACK_WAIT_MS", "1000")];
    let config = ClusterConfig::new(server.url());
    let (_agents, pool) = common::pool_on(&server.url(), config, 2, 1, &vars);
    let log = temp_path("long");
    let _ = std::fs::remove_file(&log);
    // Three ack waits long: without progress reports the server would give it to the other
    // agent after the first, and the second run would log its start before this one ends.
    let runs = pool.apply(log_and_sleep, (log.to_str().unwrap().to_string(), 3000)).unwrap();
    assert_eq!(runs, 1, "the task ran once");
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);
    assert_eq!(pool.stats().duplicates, 0);
    std::fs::remove_file(&log).unwrap();
}

#[test]
fn a_long_task_stays_with_its_agent_when_the_server_keeps_a_shorter_ack_wait() {
    let Some(server) = common::server("kept_ack_wait") else { return };
    let url = server.url();
    // The first agent of the image makes the consumer, with its 1 s ack wait; the server
    // keeps it for the agents that come after, whatever they ask for.
    let mut first = common::agent(&url, 1, &[("TASKPOOL_AGENT_ACK_WAIT_MS", "1000")]);
    first.kill();
    let vars = [("TASKPOOL_AGENT_ACK_WAIT_MS", "9000")];
    let (_agents, pool) = common::pool_on(&url, ClusterConfig::new(url.clone()), 2, 1, &vars);
    let log = temp_path("kept");
    let _ = std::fs::remove_file(&log);
    // Three of the kept ack waits long: progress reported at a third of the agents' own 9 s
    // would come too late, and the other agent would run it again meanwhile.
    let runs = pool.apply(log_and_sleep, (log.to_str().unwrap().to_string(), 3000)).unwrap();
    assert_eq!(runs, 1, "the task ran once");
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 1);
    std::fs::remove_file(&log).unwrap();
}

#[test]
fn a_task_that_kills_every_agent_fails_at_the_delivery_limit() {
    let Some(server) = common::server("poison") else { return };
    let url = server.url();
    let vars = [("TASKPOOL_AGENT_ACK_WAIT_MS", "500")];
    let pid = Arc::new(AtomicU32::new(0));
    let deaths = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Connected before the first agent starts, to hear its first heartbeat.
    let pool = ClusterPool::with_config(ClusterConfig::new(url.clone()).delivery_limit(2)).unwrap();
    // Keeps one agent running: starts a new one whenever the last dies.
    let keeper = {
        let (pid, deaths, stop, url, vars) =
            (pid.clone(), deaths.clone(), stop.clone(), url.clone(), vars);
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let mut agent = common::agent(&url, 1, &vars);
                pid.store(agent.pid(), Ordering::SeqCst);
                let _ = agent.wait();
                deaths.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    assert!(pool.wait_for_agents(1, Duration::from_secs(30)));
    let outcome = pool.apply(kill_my_agent, 0);
    match &outcome {
        Err(TaskError::DeliveryLimit { deliveries: 2 }) => {}
        other => panic!("expected the delivery limit, got {other:?}"),
    }
    assert_eq!(deaths.load(Ordering::SeqCst), 2, "two deliveries, two agents killed");
    // The next agent serves on.
    assert_eq!(pool.apply(square, 9).unwrap(), 81);
    stop.store(true, Ordering::SeqCst);
    // SAFETY: kill has no memory preconditions; the pid is the keeper's live agent.
    unsafe { libc::kill(pid.load(Ordering::SeqCst) as i32, libc::SIGKILL) };
    keeper.join().unwrap();
}

/// A copy of this test binary whose build id differs in one byte: the same code, another
/// executable image.
fn other_image() -> PathBuf {
    let mut bytes = std::fs::read("/proc/self/exe").unwrap();
    let copy = temp_path("other-image");
    // The build id follows the note header "GNU\0" of an NT_GNU_BUILD_ID note (type 3).
    let at = bytes
        .windows(8)
        .position(|w| w == [3, 0, 0, 0, b'G', b'N', b'U', 0])
        .expect("the test binary has a build id");
    bytes[at + 8] ^= 0xff;
    std::fs::write(&copy, &bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

#[test]
fn an_agent_runs_only_its_own_image_and_a_task_without_one_fails_after_the_wait() {
    let Some(server) = common::server("no_agent") else { return };
    let other = other_image();
    let mut command = Command::new(&other);
    command.env("TASKPOOL_AGENT", server.url()).env("TASKPOOL_AGENT_WORKERS", "1");
    let mut stranger = Agent::start_command(command).expect("the stranger serves");
    let wait = Duration::from_secs(2);
    let config = ClusterConfig::new(server.url()).config(Config::new().workers(2)).agent_wait(wait);
    let pool = ClusterPool::with_config(config).unwrap();
    let started = Instant::now();
    let one = pool.submit(square, 3);
    let many = pool.map_results(square, 0..10);
    assert_eq!(many.len(), 10);
    let waited = started.elapsed();
    for outcome in many.into_iter().chain([one.join()]) {
        match outcome {
            Err(error @ TaskError::NoWorker { waited, other_agents: 1, other_streams: 0 }) => {
                assert!(waited >= wait);
                assert!(
                    error.to_string().contains("an agent of another executable is alive"),
                    "{error}"
                );
            }
            other => panic!("expected no agent and a stranger heard, got {other:?}"),
        }
    }
    assert!(waited >= wait, "the tasks waited the configured time, not less");
    assert!(stranger.is_alive());
    assert_eq!(pool.stats().agents, 0, "the stranger is not an agent of this image");
    stranger.kill();
    std::fs::remove_file(other).unwrap();
}

#[test]
fn a_task_without_an_agent_says_how_long_it_waited_in_all() {
    let Some(server) = common::server("no_agent_waited") else { return };
    let wait = Duration::from_millis(300);
    let config = ClusterConfig::new(server.url()).agent_wait(wait);
    let pool = ClusterPool::with_config(config).unwrap();
    let started = Instant::now();
    let outcome = pool.apply(square, 3);
    let elapsed = started.elapsed();
    match outcome {
        Err(TaskError::NoWorker { waited, other_agents: 0, other_streams: 0 }) => {
            // The time the pool listened for agents of other builds or streams is waited too.
            assert!(waited >= wait, "said {waited:?}, waited at least {wait:?}");
            assert!(waited <= elapsed, "said {waited:?}, but the call only {elapsed:?}");
        }
        other => panic!("expected no agent, got {other:?}"),
    }
}

/// The pool listens for agents of other builds and stream names (which the error counts)
/// during the wait's last heartbeat, not after it: the task fails once the wait is over.
#[test]
fn a_task_without_an_agent_fails_when_the_wait_is_over() {
    let Some(server) = common::server("delivery_wait_over") else { return };
    // Longer than the heartbeat the pool listens for other agents.
    let wait = Duration::from_millis(1_500);
    let pool = ClusterPool::with_config(ClusterConfig::new(server.url()).agent_wait(wait))
        .expect("the pool connects");
    let started = Instant::now();
    let outcome = pool.apply(square, 3);
    let elapsed = started.elapsed();
    match outcome {
        Err(TaskError::NoWorker { waited, other_agents: 0, other_streams: 0 }) => {
            assert!(waited >= wait, "said {waited:?}, less than the wait {wait:?}");
            assert!(waited <= elapsed, "said {waited:?}, but the call only {elapsed:?}");
            // Listened to once the wait was over, the pool failed the task at least a
            // heartbeat and a quarter (1.25 s) after it, whatever the machine's speed; now it
            // listens during the wait and fails the task at the police's next round.
            let listening = Duration::from_millis(1_250);
            assert!(waited < wait + listening, "said {waited:?}: listened after {wait:?}");
        }
        other => panic!("expected no agent, got {other:?}"),
    }
}

/// A wait shorter than the heartbeat and a quarter (1.25 s) the pool listens for agents of
/// other builds and stream names ends the wait sooner than a longer one: a task of a pool
/// with a short wait fails while the task of a pool with a longer one, sent before it, still
/// waits. Listening for 1.25 s from the start of any wait, both pools failed their tasks
/// after that (in either order), the short one saying it waited that long.
#[test]
fn a_short_wait_fails_before_a_longer_one_sent_first() {
    let Some(server) = common::server("delivery_short_wait") else { return };
    let pool_waiting = |wait| {
        let config = ClusterConfig::new(server.url()).agent_wait(wait);
        ClusterPool::with_config(config).expect("the pool connects")
    };
    // Both shorter than the listening.
    let (long_wait, short_wait) = (Duration::from_millis(1_200), Duration::from_millis(100));
    let (long, short) = (pool_waiting(long_wait), pool_waiting(short_wait));
    let mut waiting_long = long.submit(square, 3);
    let outcome = short.apply(square, 4);
    let long_outcome = waiting_long.try_join();
    match outcome {
        Err(TaskError::NoWorker { waited, .. }) => {
            assert!(waited >= short_wait, "said {waited:?}, less than its wait");
            assert!(waited < long_wait, "said {waited:?}, as long as the longer wait or more");
        }
        other => panic!("expected no agent, got {other:?}"),
    }
    assert!(long_outcome.is_none(), "the longer wait ended first: {long_outcome:?}");
    match waiting_long.join() {
        Err(TaskError::NoWorker { waited, .. }) => assert!(waited >= long_wait, "{waited:?}"),
        other => panic!("expected no agent, got {other:?}"),
    }
}

#[test]
fn a_task_whose_agents_serve_another_stream_name_fails_saying_so() {
    let Some(server) = common::server("other_stream") else { return };
    let url = server.url();
    let _elsewhere = common::agent(&url, 1, &[("TASKPOOL_AGENT_STREAM", "ELSEWHERE")]);
    let wait = Duration::from_secs(2);
    let pool = ClusterPool::with_config(ClusterConfig::new(url).agent_wait(wait)).unwrap();
    match pool.apply(square, 3) {
        Err(error @ TaskError::NoWorker { other_agents: 0, other_streams: 1, .. }) => {
            let text = error.to_string();
            assert!(text.contains("an agent of this executable is alive"), "{text}");
            assert!(text.contains("streams of another name"), "{text}");
        }
        other => panic!("expected no agent and one on another stream name, got {other:?}"),
    }
}

#[test]
fn the_result_of_a_task_cancelled_while_it_ran_is_no_duplicate() {
    let Some(server) = common::server("cancelled_result") else { return };
    let config = ClusterConfig::new(server.url());
    let (_agent, pool) = common::pool_on(&server.url(), config, 1, 1, &[]);
    let dir = common::markers("cancelled-result");
    let held = pool.submit(common::mark_and_hold, (dir.to_string_lossy().into_owned(), 0));
    assert!(common::poll(Duration::from_secs(60), || dir.join("started-0").exists()));
    assert!(held.cancel());
    // The agent stops the task and stores its result (that it was cancelled); the pool has
    // handled that result once it acknowledged it (the results stream is a work queue).
    common::streams_reach(&server.url(), Duration::from_secs(60), |tasks, results| {
        tasks.messages == 0 && results.last_sequence >= 1 && results.messages == 0
    });
    // The task ran once: its one result is not a duplicate.
    assert_eq!(pool.stats().duplicates, 0);
    std::fs::remove_dir_all(dir).unwrap();
}
