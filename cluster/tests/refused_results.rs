//! An agent whose results the server refuses to store (a results stream that stays full, a
//! permission refused, a limit) says so on standard error, and, asked to stop, does not wait
//! for ever to store them: once its stores have failed for the ack wait, it stops, saying what
//! it could not store. It tells their callers too, which fail those tasks once their results
//! have been refused for their agent wait, saying why, rather than wait for as long as the
//! agent lives.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use async_nats::jetstream::stream;
use common::SpeakingAgent;
use taskpool_cluster::{ClusterConfig, ClusterPool, NextTimeout, Pool, Side, TaskError};

/// Long enough to call an agent that did not speak or did not stop hung.
const DEADLINE: Duration = Duration::from_secs(60);

/// A result larger than a fast copy, and than the results stream takes.
fn large(n: usize) -> Vec<u8> {
    vec![7; n]
}

fn length(bytes: Vec<u8>) -> usize {
    bytes.len()
}

#[test]
fn an_agent_whose_results_are_refused_says_so_and_stops_when_asked() {
    let Some(server) = common::server("refused_results") else { return };
    let url = server.url();
    make_stream(&url, capped_results());
    let mut agent = speaking_agent(&url);
    // The agent stops about its ack wait (a second) after its first refusal; its caller
    // fails the task as refused only after its agent wait, kept well past that, so that the
    // task fails as one whose agent is gone on a slow machine too.
    let config = ClusterConfig::new(url).agent_wait(Duration::from_secs(15));
    let pool = ClusterPool::with_config(config).expect("the pool connects");
    assert!(pool.wait_for_agents(1, DEADLINE), "the agent serves");
    let task = pool.submit(large, 64 << 10);

    let refused = agent.said("refuses to store", DEADLINE);
    assert!(refused.contains("TASKPOOL_RESULTS"), "which stream: {refused}");
    assert!(refused.contains("maximum bytes exceeded"), "the server's reason: {refused}");

    signal(agent.child.id(), "TERM");
    let gave_up = agent.said("without storing", DEADLINE);
    assert!(gave_up.contains("1 result"), "what it could not store: {gave_up}");
    assert!(gave_up.contains("maximum bytes exceeded"), "why: {gave_up}");
    let status = agent.stops(DEADLINE);
    assert!(status.success(), "the agent ended with {status}");
    // No other agent takes the task: it fails as one whose agents are gone.
    match task.join() {
        Err(TaskError::NoWorker { other_agents: 0, other_streams: 0, .. }) => {}
        other => panic!("expected the task to fail for want of an agent, got {other:?}"),
    }
}

/// The pool hears from the agent that the server refuses its results, and fails the tasks
/// (a single task, or the chunks of an `imap`) once they have been refused for its agent
/// wait, saying why; a result the server takes still comes.
#[test]
fn a_caller_whose_results_are_refused_fails_those_tasks_saying_why() {
    let Some(server) = common::server("refused_results_caller") else { return };
    let url = server.url();
    make_stream(&url, capped_results());
    let wait = Duration::from_secs(3);
    let config = ClusterConfig::new(url.clone()).agent_wait(wait);
    let (_agent, pool) = common::pool_on(&url, config, 1, 1, &[]);
    let refused = |outcome: Result<Vec<u8>, TaskError>| match outcome {
        Err(TaskError::Unreachable { waited, source }) => {
            assert!(waited >= wait, "refused for {waited:?}");
            let why = source.to_string();
            assert!(why.contains("refuses to store the results"), "what: {why}");
            assert!(why.contains("maximum bytes exceeded"), "the server's reason: {why}");
        }
        other => panic!("expected the results to be refused, got {other:?}"),
    };
    refused(pool.submit(large, 64 << 10).join_timeout(DEADLINE));
    let mut items = pool.imap(large, [64 << 10]);
    refused(items.next_timeout(DEADLINE).expect("the imap settles").expect("an item"));
    drop(items);
    assert_eq!(pool.apply(length, vec![7u8; 100]).unwrap(), 100);
}

/// A result the server refuses to store for a caller that no longer waits for it (it dropped
/// its pool, which cancels its tasks; or it is gone, killed) is thrown away: retried for
/// ever, it held its task, and, on a server whose store is full, kept the results stored for
/// that caller (removed only once the agent holds nothing of it) filling the store for good.
#[test]
fn a_result_refused_for_a_caller_that_dropped_its_pool_is_thrown_away() {
    let Some(server) = common::server("refused_results_gone") else { return };
    let url = server.url();
    make_stream(&url, capped_results());
    let agent = speaking_agent(&url);
    let config = ClusterConfig::new(url).abandon_after(Duration::from_secs(3));
    let pool = ClusterPool::with_config(config).expect("the pool connects");
    assert!(pool.wait_for_agents(1, DEADLINE), "the agent serves");
    let _task = pool.submit(large, 64 << 10);
    agent.said("refuses to store", DEADLINE);
    drop(pool);
    let line = agent.said("no result waits to be stored", DEADLINE);
    assert!(line.contains("TASKPOOL_RESULTS"), "which stream: {line}");
}

/// Tells the copy of this binary that plays the killed caller where the server is.
const URL_VAR: &str = "REFUSED_RESULTS_URL";

/// The caller of the test below, run as a copy of this binary: it submits a task whose result
/// the server refuses to store, and waits to be killed.
#[test]
#[ignore = "run in a copy of this binary by the test below"]
fn killed_caller_child() {
    let Ok(url) = std::env::var(URL_VAR) else {
        panic!("run by the test below, which sets {URL_VAR}");
    };
    let config = ClusterConfig::new(url).abandon_after(Duration::from_secs(3));
    let pool = ClusterPool::with_config(config).expect("the pool connects");
    assert!(pool.wait_for_agents(1, DEADLINE), "the agent serves");
    let _task = pool.submit(large, 64 << 10);
    // Killed by the test once the agent says the result is refused.
    std::thread::sleep(DEADLINE * 10);
}

/// As above for a caller that is gone without cancelling anything (killed): once the agent
/// takes it for gone, after the caller's `abandon_after`, it throws the refused result away.
#[test]
fn a_result_refused_for_a_caller_that_was_killed_is_thrown_away() {
    let Some(server) = common::server("refused_results_killed") else { return };
    let url = server.url();
    make_stream(&url, capped_results());
    let agent = speaking_agent(&url);
    let mut caller = Command::new(std::env::current_exe().unwrap())
        .args(["killed_caller_child", "--exact", "--ignored", "--test-threads=1"])
        .env(URL_VAR, &url)
        .stdout(Stdio::null())
        .spawn()
        .expect("the caller starts");
    agent.said("refuses to store", DEADLINE);
    caller.kill().expect("the caller is killed");
    caller.wait().expect("the caller is waited for");
    agent.said("is gone", DEADLINE);
    let line = agent.said("no result waits to be stored", DEADLINE);
    assert!(line.contains("TASKPOOL_RESULTS"), "which stream: {line}");
}

/// A result the server refuses to store, whose caller has it from its fast copy, does not
/// hold its task for ever: the caller tells the agent (it cancels the task) and the agent
/// throws the result away and acknowledges the task. Held, each such task took one of the
/// agent's slots until none was left: in a store full of task messages, which are deleted
/// only once their results are stored, nothing ever ran again.
#[test]
fn a_refused_result_its_caller_has_does_not_hold_its_task() {
    let Some(server) = common::server("refused_results_had") else { return };
    let url = server.url();
    make_stream(&url, refusing_results());
    let agent = speaking_agent(&url);
    let pool = ClusterPool::with_config(ClusterConfig::new(url)).expect("the pool connects");
    assert!(pool.wait_for_agents(1, DEADLINE), "the agent serves");
    // One task at a time, each its own message: more than the agent's four slots.
    for _ in 0..6 {
        let mut task = pool.submit(length, vec![7u8; 100]);
        assert_eq!(task.join_timeout(DEADLINE).expect("its fast copy settles it"), 100);
    }
    agent.said("refuses to store", DEADLINE);
}

/// A results stream made beforehand with a `max_msg_size` below the server's payload limit
/// stores results up to its own limit: a larger one fails as too large, by that limit, and
/// does not wait for ever for a store the stream refuses for good.
#[test]
fn a_results_stream_with_a_message_limit_of_its_own_fails_larger_results_as_too_large() {
    let Some(server) = common::server("results_message_limit") else { return };
    let url = server.url();
    let limited = stream::Config {
        name: "TASKPOOL_RESULTS".into(),
        subjects: vec!["taskpool.results.>".into()],
        retention: stream::RetentionPolicy::WorkQueue,
        discard: stream::DiscardPolicy::New,
        max_message_size: 128 << 10,
        max_age: Duration::from_secs(24 * 3600),
        ..Default::default()
    };
    make_stream(&url, limited);
    let (_agent, pool) = common::pool_on(&url, ClusterConfig::new(url.clone()), 1, 1, &[]);
    let mut task = pool.submit(large, 200 << 10);
    match task.join_timeout(DEADLINE) {
        Err(TaskError::TooLarge { side: Side::Result, size, limit }) => {
            assert!(size > 200 << 10, "{size}");
            assert!(limit < 128 << 10, "the stream's limit: {limit}");
        }
        other => panic!("expected the result to be too large, got {other:?}"),
    }
    assert_eq!(
        pool.map(large, [100 << 10, 64 << 10]).unwrap().iter().map(Vec::len).sum::<usize>(),
        164 << 10
    );
}

/// So does a tasks stream with a `max_msg_size` of its own, for arguments.
#[test]
fn a_tasks_stream_with_a_message_limit_of_its_own_fails_larger_arguments_as_too_large() {
    let Some(server) = common::server("tasks_message_limit") else { return };
    let url = server.url();
    let limited = stream::Config {
        name: "TASKPOOL_TASKS".into(),
        subjects: vec!["taskpool.tasks.>".into()],
        retention: stream::RetentionPolicy::WorkQueue,
        discard: stream::DiscardPolicy::New,
        max_message_size: 128 << 10,
        ..Default::default()
    };
    make_stream(&url, limited);
    let _agent = common::agent(&url, 1, &[]);
    let pool = ClusterPool::connect(url).expect("the pool connects");
    match pool.submit(length, vec![7u8; 200 << 10]).join_timeout(DEADLINE) {
        Err(TaskError::TooLarge { side: Side::Argument, limit, .. }) => {
            assert!(limit < 128 << 10, "the stream's limit: {limit}");
        }
        other => panic!("expected the argument to be too large, got {other:?}"),
    }
    assert_eq!(pool.apply(length, vec![7u8; 64 << 10]).unwrap(), 64 << 10);
}

/// A publish the server refuses for want of permission is answered by an error of the
/// connection, not of the publish (which only times out): the agent says that error.
#[test]
fn an_agent_that_may_not_publish_results_says_what_the_server_said() {
    let config = r#"authorization { users = [
        { user: caller, password: c }
        { user: agent, password: a, permissions: { publish: { deny: ["taskpool.results.>"] } } }
    ] }"#;
    let Some(server) = common::PlainServer::configured("denied_results", config) else {
        return;
    };
    let url = server.url();
    let agent = speaking_agent(&url.replace("nats://", "nats://agent:a@"));
    let caller = url.replace("nats://", "nats://caller:c@");
    let config = ClusterConfig::new(caller).agent_wait(Duration::from_secs(3));
    let pool = ClusterPool::with_config(config).expect("the pool connects");
    assert!(pool.wait_for_agents(1, DEADLINE), "the agent serves");
    let mut task = pool.submit(large, 64 << 10);

    let refused = agent.said("refuses to store", DEADLINE);
    assert!(refused.contains("Permissions Violation for Publish"), "the reason: {refused}");
    assert!(refused.contains("taskpool.results."), "the subject: {refused}");
    // The caller hears it too.
    match task.join_timeout(DEADLINE) {
        Err(TaskError::Unreachable { source, .. }) => {
            let why = source.to_string();
            assert!(why.contains("Permissions Violation for Publish"), "the reason: {why}");
        }
        other => panic!("expected the result to be refused, got {other:?}"),
    }
}

/// An agent of this test binary of one worker and an ack wait of a second, whose standard
/// error the test reads.
fn speaking_agent(url: &str) -> SpeakingAgent {
    SpeakingAgent::start(url, &[("TASKPOOL_AGENT_ACK_WAIT_MS", "1000")])
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status();
    assert!(status.expect("kill runs").success());
}

/// Makes the stream `config` on the server at `url`, as its operator would.
/// A results stream made beforehand with a size cap, discarding new messages: it refuses
/// every result message larger than the cap, for good.
fn capped_results() -> stream::Config {
    stream::Config {
        name: "TASKPOOL_RESULTS".into(),
        subjects: vec!["taskpool.results.>".into()],
        retention: stream::RetentionPolicy::WorkQueue,
        discard: stream::DiscardPolicy::New,
        max_bytes: 4096,
        max_age: Duration::from_secs(24 * 3600),
        ..Default::default()
    }
}

/// A results stream made beforehand with a size cap below any result message, discarding new
/// messages: it refuses every result, for good; fast copies still reach the caller.
fn refusing_results() -> stream::Config {
    stream::Config { max_bytes: 16, ..capped_results() }
}

fn make_stream(url: &str, config: stream::Config) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(url).await.expect("connects");
        let js = async_nats::jetstream::new(client);
        js.create_stream(config).await.expect("the stream is made");
    });
}
