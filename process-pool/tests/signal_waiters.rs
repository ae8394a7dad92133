//! A program that waits for its signals (`sigwait`, `signalfd`) blocks them in every thread it
//! has, and the kernel gives a signal sent to the process to a thread that does not block it.
//! The pool's threads in the program (the supervisors, the launcher and the releasing thread,
//! which live as long as the process once started) block them too, whatever the thread that
//! started them blocked: else a SIGTERM meant for the program's `sigwait` ends it, at the
//! default action, on a thread that a one-off started long before the program set up its
//! signals. The faults a thread raises on itself, and SIGPROF, stay unblocked.

mod common;

use std::time::{Duration, Instant};

use common::*;
use taskpool_process::{Pool, ProcessPool, spawn};

/// The signals blocked by the thread whose `/proc` directory is `dir`.
fn blocked(dir: &str) -> u64 {
    let status = std::fs::read_to_string(format!("{dir}/status")).unwrap();
    let mask = status.lines().find_map(|line| line.strip_prefix("SigBlk:")).unwrap();
    u64::from_str_radix(mask.trim(), 16).unwrap()
}

/// The name and blocked signals of each of this process's threads named `taskpool-...`.
fn pool_threads() -> Vec<(String, u64)> {
    let mut threads = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let tid = entry.file_name().to_string_lossy().into_owned();
        let Ok(name) = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")) else {
            continue; // ended meanwhile
        };
        let name = name.trim().to_owned();
        if name.starts_with("taskpool-") {
            threads.push((name, blocked(&format!("/proc/self/task/{tid}"))));
        }
    }
    threads
}

fn bit(signal: libc::c_int) -> u64 {
    1 << (signal - 1)
}

#[test]
fn the_pools_threads_never_take_a_signal_sent_to_the_program() {
    // This thread blocks nothing, as a program's thread that has not set up its signals yet.
    assert_eq!(blocked("/proc/thread-self") & bit(libc::SIGTERM), 0);
    let pool = ProcessPool::new(2).unwrap();
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    assert_eq!(spawn(square, 4).unwrap().join().unwrap(), 16);
    // Large enough to be let go of on the releasing thread.
    drop(made(8 << 20, 7));

    // A thread names itself once it runs: wait for the releasing thread to.
    let threads = [
        "taskpool-superv", // thread names are cut to 15 bytes
        "taskpool-launch",
        "taskpool-releas",
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pools = pool_threads();
    while !threads.iter().all(|t| pools.iter().any(|(name, _)| name == t)) {
        assert!(Instant::now() < deadline, "not all of {threads:?} among {pools:?}");
        std::thread::yield_now();
        pools = pool_threads();
    }
    let waited = [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGCHLD,
        libc::SIGALRM,
        libc::SIGWINCH,
        libc::SIGPIPE,
    ];
    let own = [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE, libc::SIGPROF];
    for (name, mask) in pools {
        for signal in waited {
            assert_ne!(mask & bit(signal), 0, "{name} takes signal {signal}: mask {mask:x}");
        }
        for signal in own {
            assert_eq!(mask & bit(signal), 0, "{name} blocks signal {signal}: mask {mask:x}");
        }
    }
}
