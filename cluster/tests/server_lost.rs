//! A pool whose server dies fails the tasks that wait on it with `Unreachable`, the cause,
//! not `NoWorker`: tasks submitted after the loss, and a task that was running then on an
//! agent that lives. `waited` is never more than the call itself waited.

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Fixture;
use taskpool_cluster::{Config, Pool, TaskError};

/// Long enough to call a task that did not start hung.
const DEADLINE: Duration = Duration::from_secs(60);

/// Connects to the test at `port` (which tells it the task runs) and returns once the test
/// hangs up.
fn held(port: u16) -> u16 {
    if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
        let _ = stream.read(&mut [0]);
    }
    port
}

fn square(x: u64) -> u64 {
    x * x
}

/// Checks that `outcome`, of a call that waited `elapsed`, is an unreachable server at `url`.
fn assert_unreachable<T: std::fmt::Debug>(
    outcome: Result<T, TaskError>,
    elapsed: Duration,
    url: &str,
) {
    match outcome {
        Err(e @ TaskError::Unreachable { waited, .. }) => {
            assert!(waited <= elapsed, "waited {waited:?}, but the call only {elapsed:?}");
            let reason = e.to_string();
            assert!(reason.contains(url), "the server's url: {reason}");
        }
        other => panic!("expected an unreachable server, got {other:?}"),
    }
}

#[test]
fn tasks_fail_as_unreachable_when_the_server_dies() {
    let config = common::config(Config::new().workers(2)).agent_wait(Duration::from_secs(2));
    let Some(mut fixture) = Fixture::start("server_lost", 1, config) else { return };
    let url = fixture.server.url();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, running) = mpsc::channel();
    std::thread::spawn(move || tx.send(listener.accept()));
    let was_running = Instant::now();
    let held_task = fixture.pool.submit(held, port);
    let (caller, _) = running.recv_timeout(DEADLINE).expect("the task runs").unwrap();

    fixture.server.kill();
    let submitted = Instant::now();
    let after: Vec<_> = (0..3).map(|i| fixture.pool.submit(square, i)).collect();
    for handle in after {
        let outcome = handle.join();
        assert_unreachable(outcome, submitted.elapsed(), &url);
    }
    let outcome = held_task.join();
    assert_unreachable(outcome, was_running.elapsed(), &url);
    drop(caller);
}

/// Once the server has been lost for the agent wait, a task sent after that does not wait
/// the whole agent wait again: a `map` of many chunks, whose later chunks are sent as earlier
/// ones fail, would otherwise wait once per window of chunks in flight.
#[test]
fn a_map_fails_in_one_agent_wait_when_the_server_dies() {
    let wait = Duration::from_secs(5);
    let config = common::config(Config::new().workers(1).chunk_size(1)).agent_wait(wait);
    let Some(mut fixture) = Fixture::start("server_lost_map", 1, config) else { return };
    let url = fixture.server.url();
    fixture.server.kill();
    let killed = Instant::now();
    let outcomes = fixture.pool.map_results(square, 0..40);
    assert_eq!(outcomes.len(), 40);
    let elapsed = killed.elapsed();
    let last = match outcomes.last() {
        Some(Err(TaskError::Unreachable { waited, .. })) => *waited,
        other => panic!("expected an unreachable server, got {other:?}"),
    };
    for outcome in outcomes {
        assert_unreachable(outcome, elapsed, &url);
    }
    assert!(last < wait, "the last chunk waited {last:?} again for a server lost before");

    let submitted = Instant::now();
    let outcome = fixture.pool.submit(square, 2).join();
    match &outcome {
        Err(TaskError::Unreachable { waited, .. }) => {
            assert!(*waited < wait, "waited {waited:?} again for a server lost before")
        }
        other => panic!("expected an unreachable server, got {other:?}"),
    }
    assert_unreachable(outcome, submitted.elapsed(), &url);
}
