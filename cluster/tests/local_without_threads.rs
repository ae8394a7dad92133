//! A local server started when no thread or process can be started (a container's pids
//! limit reached): `Server::start` fails with the operating system's error instead of
//! panicking in the library.
//!
//! The test makes a pids cgroup of its own under this process's, which takes root; where
//! that cannot be done, or without a `nats-server` binary, it says why and passes.

mod common;

use std::fs;
use std::io;

use taskpool_cluster::local::Server;
use taskpool_core::conformance::cgroup::{Cgroup, own_cgroup};

/// Run by the test below, inside a pids cgroup of its own.
#[test]
#[ignore = "run in a copy of this binary, in a pids cgroup, by the test after it"]
fn start_a_server_when_no_thread_can_start() {
    let cgroup = own_cgroup("pids").unwrap();
    let current = fs::read_to_string(cgroup.join("pids.current")).unwrap();
    // No thread or process more from here on.
    fs::write(cgroup.join("pids.max"), current.trim()).unwrap();
    // Before, the library panicked, as the thread that starts local processes could not start.
    let started = std::panic::catch_unwind(Server::start);
    fs::write(cgroup.join("pids.max"), "max").unwrap();
    match started {
        Ok(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}"),
        Ok(Ok(server)) => panic!("a server started without a process: {server:?}"),
        Err(_) => panic!("starting a server panicked"),
    }
    // Threads and processes can start again: so can a server.
    let server = Server::start().expect("a server starts once processes can");
    assert!(server.pid().is_some());
}

#[test]
fn a_local_server_that_cannot_start_a_thread_says_so() {
    let name = "start_a_server_when_no_thread_can_start";
    if common::server_or_skip(name).is_none() {
        return;
    }
    let cgroup = match Cgroup::with("pids", name, "pids.max", "max") {
        Ok(cgroup) => cgroup,
        Err(why) => {
            println!("skipped: no pids cgroup of this test's own: {why}");
            return;
        }
    };
    cgroup.run_test(name);
}
