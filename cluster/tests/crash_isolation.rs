//! A task that segfaults, aborts, hangs past its limit or runs out of memory on an agent fails
//! with the same typed error as on one machine, and the agent serves on.

mod common;

use std::time::Duration;

use taskpool_cluster::{ClusterConfig, ClusterPool, Config, Exit, Pool, Resource, TaskError};

const MEMORY_LIMIT: u64 = 256 << 20;

fn write_through_null(_: u64) -> u64 {
    let p: *mut u64 = std::hint::black_box(std::ptr::null_mut());
    // SAFETY: none; this writes through a null pointer on purpose, to crash the worker.
    unsafe { p.write_volatile(1) };
    0
}

fn abort(_: u64) -> u64 {
    std::process::abort()
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Allocates and touches memory, a mebibyte at a time, until allocation fails.
fn memory_bomb(_: u64) -> u64 {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; 1 << 20];
        for page in chunk.iter_mut().step_by(4096) {
            *page = 1;
        }
        hoard.push(std::hint::black_box(chunk));
    }
}

/// The pid of the process whose worker runs the task: the agent.
fn agent_pid(_: u64) -> u32 {
    std::os::unix::process::parent_id()
}

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn crashes_on_an_agent_fail_one_task_each_and_the_agent_serves_on() {
    let Some(server) = common::server("crash_isolation") else { return };
    let limit = MEMORY_LIMIT.to_string();
    let mut agent = common::agent(&server.url(), 2, &[("TASKPOOL_AGENT_MEMORY_LIMIT", &limit)]);
    let config = ClusterConfig::new(server.url()).config(Config::new().workers(2));
    let pool = ClusterPool::with_config(config).unwrap();
    assert!(pool.wait_for_agents(1, Duration::from_secs(30)));
    assert_eq!(pool.apply(agent_pid, 0).unwrap(), agent.pid());

    match pool.apply(write_through_null, 0) {
        Err(TaskError::Crashed(exit)) => assert_eq!(exit, Exit::Signal(libc::SIGSEGV)),
        other => panic!("expected a segfault, got {other:?}"),
    }
    assert!(matches!(pool.apply(abort, 0), Err(TaskError::Crashed(Exit::Signal(6)))));
    let limit = Duration::from_millis(300);
    match pool.submit_timeout(sleep_ms, 60_000, limit).join() {
        Err(TaskError::TimedOut { limit: l, still_running: false }) => assert_eq!(l, limit),
        other => panic!("expected a timeout, got {other:?}"),
    }
    match pool.apply(memory_bomb, 0) {
        Err(TaskError::ResourceLimit { resource: Resource::Memory, limit }) => {
            assert_eq!(limit, MEMORY_LIMIT)
        }
        other => panic!("expected the memory limit, got {other:?}"),
    }
    // Inside a batch too, one item fails and the others are right.
    let outcomes = pool.map_results(|x: u64| if x == 5 { abort(x) } else { x * x }, 0..10);
    assert_eq!(outcomes.len(), 10);
    for (i, outcome) in (0..).zip(outcomes) {
        match outcome {
            Err(TaskError::Crashed(Exit::Signal(6))) if i == 5 => {}
            Ok(v) if i != 5 => assert_eq!(v, i * i),
            other => panic!("item {i}: {other:?}"),
        }
    }

    assert!(agent.is_alive(), "the agent survived every crash");
    assert_eq!(pool.apply(agent_pid, 0).unwrap(), agent.pid(), "and still serves");
    assert_eq!(pool.map(square, 0..100).unwrap(), (0..100).map(square).collect::<Vec<_>>());
    assert_eq!(pool.stats().duplicates, 0);
}
