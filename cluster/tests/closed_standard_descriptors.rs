//! A program that closed its descriptors 0, 1 and 2 (a daemon that does not reopen them)
//! and then connects a pool: the pool's runtime and connection (whose descriptor numbers
//! tokio and async-nats pick) never take those numbers, or the program's next `println!`
//! would write into the server's connection. The binary holds this one test: it closes the
//! test process's own standard descriptors for a moment.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use common::PlainServer;
use taskpool_cluster::{ClusterPool, Pool};

fn double(x: u64) -> u64 {
    2 * x
}

/// What each of descriptors 0, 1 and 2 is open on in this process (`None`: closed).
fn standard_targets() -> Vec<Option<String>> {
    (0..3)
        .map(|fd| std::fs::read_link(format!("/proc/self/fd/{fd}")).ok())
        .map(|target| target.map(|path| path.display().to_string()))
        .collect()
}

#[test]
fn a_pool_connected_with_standard_descriptors_closed_keeps_its_own_off_their_numbers() {
    let Some(server) = PlainServer::start("closed_standard_descriptors", true) else {
        return;
    };
    let _agent = common::agent(&server.url(), 1, &[]);
    // SAFETY: F_DUPFD_CLOEXEC makes new descriptors that only these owners close.
    let saved: Vec<OwnedFd> = (0..3)
        .map(|fd| unsafe { OwnedFd::from_raw_fd(libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10)) })
        .collect();
    for fd in 0..3 {
        // SAFETY: closes this process's standard descriptors; copies are kept in `saved`.
        unsafe { libc::close(fd) };
    }
    let run = || -> Result<(Vec<Option<String>>, u64), String> {
        let pool = ClusterPool::connect(server.url()).map_err(|e| e.to_string())?;
        if !pool.wait_for_agents(1, Duration::from_secs(30)) {
            return Err("no agent came".into());
        }
        let doubled: u64 = pool.map(double, 1..=100).map_err(|e| e.to_string())?.iter().sum();
        Ok((standard_targets(), doubled))
    };
    let outcome = run();
    for (fd, copy) in saved.iter().enumerate() {
        // SAFETY: puts the saved standard descriptors back in place.
        unsafe { libc::dup2(copy.as_raw_fd(), fd as i32) };
    }
    let (targets, doubled) = outcome.unwrap();
    for (fd, target) in targets.iter().enumerate() {
        assert!(
            target.as_deref().is_none_or(|path| path == "/dev/null"),
            "descriptor {fd} is open on {target:?}"
        );
    }
    assert_eq!(doubled, 10_100);
}
