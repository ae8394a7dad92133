//! On a server with NATS's default message limit (1 MiB), a value that fits a message alone
//! travels however large its neighbours in the same chunk are, on either side; only a value
//! that alone is over the limit fails, with `TooLarge` and its own size. On a server whose
//! limit is over what a stream keeps (32 MiB), that is the limit.

mod common;

use std::time::Duration;

use common::PlainServer;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use taskpool_cluster::{ClusterConfig, ClusterPool, Config, Pool, Side, Task, TaskError};

const KIB: usize = 1 << 10;

fn make_bytes(n: usize) -> ByteBuf {
    ByteBuf::from(vec![7u8; n])
}

/// A server of NATS's defaults, an agent, and a pool that sends `chunk` items to a unit, so
/// that the items of a test share a chunk whatever the measured time per item.
fn start(test: &str, chunk: usize) -> Option<(ClusterPool, common::Agent, PlainServer)> {
    let server = PlainServer::start(test, true)?;
    let config = ClusterConfig::new(server.url()).config(Config::new().chunk_size(chunk));
    let (mut agents, pool) = common::pool_on(&server.url(), config, 1, 2, &[]);
    Some((pool, agents.remove(0), server))
}

#[test]
fn results_that_each_fit_a_message_travel_together_in_a_chunk() {
    let Some((pool, _agent, _server)) = start("message_limit_results", 20) else { return };
    let sizes = vec![300 * KIB; 20];
    let values = pool.map(make_bytes, sizes.clone()).expect("every result fits a message");
    let lens: Vec<usize> = values.iter().map(|v| v.len()).collect();
    assert_eq!(lens, sizes);
    let lens: Vec<usize> = pool.imap(make_bytes, sizes.clone()).map(|v| v.unwrap().len()).collect();
    assert_eq!(lens, sizes, "imap too");
}

#[test]
fn only_a_result_over_the_limit_alone_fails_with_its_own_size() {
    let Some((pool, _agent, _server)) = start("message_limit_one_over", 7) else { return };
    let sizes = [10, 600 * KIB, 10, 600 * KIB, 2 << 20, 600 * KIB, 10];
    let outcomes = pool.map_results(make_bytes, sizes);
    assert_eq!(outcomes.len(), sizes.len());
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(value) => {
                assert_ne!(i, 4, "a result of 2 MiB cannot travel");
                assert_eq!(value.len(), sizes[i]);
            }
            Err(TaskError::TooLarge { side: Side::Result, size, limit }) if i == 4 => {
                assert!(size > limit, "{size} is over {limit}");
                assert!(size >= 2 << 20, "its own size, not {size}");
            }
            Err(e) => panic!("item {i} of {} bytes failed: {e:?}", sizes[i]),
        }
    }
}

/// Appends its argument's length to a large state of its own: a unit carries the state once
/// beside its items' arguments.
#[derive(Serialize, Deserialize)]
struct Tagged {
    tag: ByteBuf,
}

impl Task for Tagged {
    type Input = ByteBuf;
    type Output = (usize, usize);

    fn run(&self, input: ByteBuf) -> (usize, usize) {
        (self.tag.len(), input.len())
    }
}

#[test]
fn arguments_that_each_fit_a_message_travel_together_in_a_chunk() {
    let Some((pool, _agent, _server)) = start("message_limit_arguments", 6) else { return };
    let task = || Tagged { tag: make_bytes(300 * KIB) };
    // Each with the state fits a message; two of them with it do not.
    let sizes = [500 * KIB, 10, 500 * KIB, 500 * KIB, 2 << 20, 10];
    let outcomes = pool.map_results(task(), sizes.map(make_bytes));
    assert_eq!(outcomes.len(), sizes.len());
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(lens) => {
                assert_ne!(i, 4, "an argument of 2 MiB cannot travel");
                assert_eq!(lens, (300 * KIB, sizes[i]));
            }
            Err(TaskError::TooLarge { side: Side::Argument, size, limit }) if i == 4 => {
                assert!(size > limit, "{size} is over {limit}");
                assert!(size >= 2 << 20, "its own size, not {size}");
            }
            Err(e) => panic!("item {i} of {} bytes failed: {e:?}", sizes[i]),
        }
    }
}

#[test]
fn a_task_state_over_the_limit_alone_fails_naming_the_task() {
    let Some((pool, _agent, _server)) = start("message_limit_state", 3) else { return };
    let task = || Tagged { tag: make_bytes(2 << 20) };
    let check = |outcome: Result<(usize, usize), TaskError>| match outcome {
        Err(TaskError::TooLarge { side: Side::Task, size, limit }) => {
            assert!(size >= 2 << 20, "the state's own size, not {size}");
            assert!(limit > 0 && limit < size, "{limit}");
        }
        other => panic!("expected the task's state to be too large, got {other:?}"),
    };
    check(pool.submit(task(), make_bytes(10)).join());
    let outcomes = pool.map_results(task(), [10, 20].map(make_bytes));
    assert_eq!(outcomes.len(), 2);
    outcomes.into_iter().for_each(check);
    let lens = pool.apply(Tagged { tag: make_bytes(10) }, make_bytes(20)).unwrap();
    assert_eq!(lens, (10, 20), "the pool serves on");
}

/// Panics with a message of `len` bytes after "start".
fn panic_at_length(len: usize) -> u8 {
    panic!("start{}", "x".repeat(len))
}

#[test]
fn an_error_larger_than_a_message_arrives_cut_to_fit() {
    // The smallest message limit a pool accepts: a worker's panic message (cut at 64 KiB by
    // the process backend) with its location does not fit one message alone.
    let Some(server) = PlainServer::configured("message_limit_error", "max_payload: 65536\n")
    else {
        return;
    };
    let config = ClusterConfig::new(server.url()).config(Config::new().chunk_size(3));
    let (_agent, pool) = common::pool_on(&server.url(), config, 1, 2, &[]);
    let outcomes = pool.map_results(panic_at_length, [10, 1 << 20, 10]);
    assert_eq!(outcomes.len(), 3);
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let Err(TaskError::Panicked(report)) = outcome else { panic!("item {i}: {outcome:?}") };
        if i == 1 {
            assert!(report.message.starts_with("startxxx"), "its start is kept");
            let end = &report.message[report.message.len().saturating_sub(80)..];
            assert!(report.message.ends_with("bytes cut to fit one message]"), "ends {end:?}");
            assert!(report.message.len() < 64 << 10, "{} bytes", report.message.len());
        } else {
            assert_eq!(report.message, format!("start{}", "x".repeat(10)));
        }
    }
}

#[test]
fn values_over_what_the_store_keeps_fail_with_too_large_under_a_larger_message_limit() {
    // NATS's largest message limit, 64 MiB; a stream's file store keeps messages of at most
    // 32 MiB whatever the server takes, and refuses larger ones on every try.
    let config = "max_payload: 67108864\nmax_pending: 134217728\n";
    let Some(server) = PlainServer::configured("message_limit_store", config) else { return };
    let config = ClusterConfig::new(server.url()).agent_wait(Duration::from_secs(5));
    let (_agent, pool) = common::pool_on(&server.url(), config, 1, 1, &[]);
    let len = |bytes: ByteBuf| bytes.len();
    match pool.apply(len, make_bytes(40 << 20)) {
        Err(TaskError::TooLarge { side: Side::Argument, size, limit }) => {
            assert!(size >= 40 << 20, "its own size, not {size}");
            assert!(limit < 32 << 20, "{limit}");
        }
        other => panic!("expected the argument to be too large, got {other:?}"),
    }
    // A hang guard, not a time limit on the outcome: a result refused by the store on every
    // try was stored for ever, and its caller waited for ever.
    let guard = Duration::from_secs(120);
    match pool.submit(make_bytes, 40 << 20).join_timeout(guard) {
        Err(TaskError::TooLarge { side: Side::Result, size, limit }) => {
            assert!(size >= 40 << 20, "its own size, not {size}");
            assert!(limit < 32 << 20, "{limit}");
        }
        other => panic!("expected the result to be too large, got {:?}", other.map(|v| v.len())),
    }
    let below = 31 << 20;
    assert_eq!(pool.apply(len, make_bytes(below)).unwrap(), below, "an argument below it travels");
    let value = pool.submit(make_bytes, below).join_timeout(guard).unwrap();
    assert_eq!(value.len(), below, "a result below it travels");
}

#[test]
fn a_server_whose_message_limit_is_below_what_a_pool_needs_is_refused() {
    // Below 64 KiB: a value between the server's limit and that was sent on every try for the
    // agent wait, and failed as a server that cannot be reached (a result: for ever).
    let Some(server) = PlainServer::configured("message_limit_small", "max_payload: 16384\n")
    else {
        return;
    };
    match ClusterPool::with_config(ClusterConfig::new(server.url())) {
        Err(TaskError::InvalidConfig { reason }) => {
            assert!(reason.contains("max_payload") && reason.contains("16384"), "{reason}");
        }
        other => panic!("expected the server to be refused, got {other:?}"),
    }
    match common::Agent::start(&server.url(), 1, &[]) {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}"),
        Ok(_) => panic!("an agent served a server whose messages are too small for it"),
    }
}

/// An agent whose server restarts with a lower `max_payload` splits its results by the new
/// limit: one that kept splitting them by the limit it started with had every result message
/// over the new limit refused, its task held for ever and its caller failing it as
/// `Unreachable` after its agent wait, rather than a unit's results travelling in parts and
/// only a result over the new limit alone failing as `TooLarge`.
#[test]
fn an_agent_splits_results_by_the_limit_of_a_server_restarted_with_a_lower_one() {
    let test = "message_limit_lowered";
    let Some(mut server) = PlainServer::configured(test, "max_payload: 8388608\n") else {
        return;
    };
    let agent = common::SpeakingAgent::start(&server.url(), &[]);
    agent.said("serving", Duration::from_secs(30));
    server.restart_with(test, "max_payload: 1048576\n");
    agent.said("reconnected", Duration::from_secs(30));
    let config = ClusterConfig::new(server.url())
        .agent_wait(Duration::from_secs(10))
        .config(Config::new().chunk_size(2));
    let pool = ClusterPool::with_config(config).expect("the pool connects");
    let sizes = vec![700 * KIB; 2];
    let values = pool.map(make_bytes, sizes.clone()).expect("the unit's results travel in parts");
    assert_eq!(values.iter().map(|v| v.len()).collect::<Vec<_>>(), sizes);
    match pool.apply(make_bytes, 2 << 20) {
        Err(TaskError::TooLarge { side: Side::Result, size, limit }) => {
            assert!(size > 2 << 20, "its own size: {size}");
            assert!(limit < 1 << 20, "the new limit: {limit}");
        }
        other => panic!("expected the result to be too large, got {other:?}"),
    }
}

fn length(bytes: ByteBuf) -> usize {
    bytes.len()
}

/// A pool whose server restarts with a lower `max_payload` fails an argument over the new
/// limit at once as `TooLarge`, naming that limit: one that kept the limit it connected with
/// sent it, and the server refused it on every try until the pool's agent wait ran out
/// (`Unreachable`).
#[test]
fn a_pool_fails_an_argument_over_the_limit_of_a_server_restarted_with_a_lower_one() {
    let test = "message_limit_lowered_pool";
    let Some(mut server) = PlainServer::configured(test, "max_payload: 8388608\n") else {
        return;
    };
    let agent = common::SpeakingAgent::start(&server.url(), &[]);
    agent.said("serving", Duration::from_secs(30));
    let config = ClusterConfig::new(server.url()).agent_wait(Duration::from_secs(30));
    let pool = ClusterPool::with_config(config).expect("the pool connects");
    server.restart_with(test, "max_payload: 1048576\n");
    agent.said("reconnected", Duration::from_secs(30));
    // A task that went through the restarted server: the pool is connected to it again.
    assert_eq!(pool.apply(length, make_bytes(KIB)).expect("a small task"), KIB);
    match pool.apply(length, make_bytes(2 << 20)) {
        Err(TaskError::TooLarge { side: Side::Argument, size, limit }) => {
            assert!(size > 2 << 20, "its own size: {size}");
            assert!(limit < 1 << 20, "the new limit: {limit}");
        }
        other => panic!("expected the argument to be too large, got {other:?}"),
    }
}
