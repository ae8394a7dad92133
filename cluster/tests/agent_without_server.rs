//! An agent whose server cannot be reached (not started yet, or a mistyped url) says so on
//! standard error, with the url and the reason, without a flood while it retries; once the
//! server is there it says it connected, once, and serves; a server lost while it serves,
//! and back, it says once each.

mod common;

use std::time::Duration;

use common::{PlainServer, SpeakingAgent};

/// Long enough to call an agent that says nothing hung.
const DEADLINE: Duration = Duration::from_secs(60);

/// The next line of `agent` that `wanted` accepts (it sees every line up to that one);
/// panics if none comes.
fn next_line(agent: &SpeakingAgent, what: &str, wanted: impl FnMut(&str) -> bool) -> String {
    match agent.next_line(DEADLINE, wanted) {
        Ok((line, _)) => line,
        Err(seen) => panic!("the agent did not say {what}: {seen:?}"),
    }
}

#[test]
fn an_agent_without_a_server_says_why_until_one_comes() {
    let port = common::free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let mut agent = SpeakingAgent::start(&url, &[]);
    let says_unreachable = |line: &str| line.contains("cannot connect");

    let first = next_line(&agent, "that it cannot connect", says_unreachable);
    assert!(first.contains(&url), "the url: {first}");
    assert!(first.contains("Connection refused"), "the OS reason: {first}");
    assert!(matches!(agent.child.try_wait(), Ok(None)), "the agent waits for its server");

    if let Some(server) = PlainServer::start_on("agent_without_server", port, true) {
        let mut unreachable_after = 0;
        let connected = next_line(&agent, "that it connected", |line| {
            unreachable_after += usize::from(says_unreachable(line));
            line.contains("connected to")
        });
        assert!(connected.contains(&url), "{connected}");
        let mut connected_again = 0;
        next_line(&agent, "that it serves", |line| {
            connected_again += usize::from(line.contains("connected to"));
            line.contains("serving image")
        });
        // Not a flood: its quick first retries while the server started said nothing more
        // (the reminder comes every 15 s; not waited for here).
        assert!(unreachable_after <= 1, "at most an attempt made as the server started");
        assert_eq!(connected_again, 0, "it says once that it connected");

        // A server lost while it serves, and back: said once each.
        drop(server);
        let lost = next_line(&agent, "that it lost the server", |line| line.contains("lost"));
        assert!(lost.contains(&url), "{lost}");
        let _server = PlainServer::start_on("agent_without_server", port, true);
        let back = next_line(&agent, "that it reconnected", |line| line.contains("reconnected"));
        assert!(back.contains(&url), "{back}");
    }
}
