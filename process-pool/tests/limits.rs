//! Worker limits: a task that runs out of memory under the worker's cap, or uses up its CPU
//! time, fails alone with `ResourceLimit`; its worker is replaced and the pool goes on.

mod common;

use std::time::Duration;

use common::*;
use taskpool_process::{
    Config, Exit, IntoTask, Pool, ProcessConfig, ProcessPool, Resource, TaskError,
};

const MEMORY_LIMIT: u64 = 256 << 20;

/// Allocates and touches memory, a mebibyte at a time, until allocation fails (which aborts).
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

/// Runs [`memory_bomb`] for item 3, squares the others.
fn bomb_at_3(x: u64) -> u64 {
    if x == 3 { memory_bomb(x) } else { x * x }
}

/// Allocates and touches `mib` mebibytes, then frees them.
fn allocate(mib: u64) -> u64 {
    let mut block = vec![0u8; usize::try_from(mib << 20).unwrap()];
    for page in block.iter_mut().step_by(4096) {
        *page = 1;
    }
    std::hint::black_box(&block).len() as u64 >> 20
}

#[test]
fn a_memory_bomb_fails_with_resource_limit_and_the_pool_goes_on() {
    let config =
        ProcessConfig::new(Config::new().workers(1).chunk_size(8)).memory_limit(MEMORY_LIMIT);
    let pool = ProcessPool::with_config(config).unwrap();
    let bomber = pool.apply(worker_pid, 0).unwrap();
    // One batch: item 3 runs out of memory; the items around it succeed, those after it on a
    // new worker.
    let outcomes = pool.map_results(bomb_at_3, 0..8);
    assert_eq!(outcomes.len(), 8);
    for (i, outcome) in (0..).zip(outcomes) {
        match outcome {
            Err(TaskError::ResourceLimit { resource: Resource::Memory, limit }) if i == 3 => {
                assert_eq!(limit, MEMORY_LIMIT);
            }
            Ok(v) if i != 3 => assert_eq!(v, i * i),
            other => panic!("item {i}: {other:?}"),
        }
    }
    assert_ne!(pool.apply(worker_pid, 0).unwrap(), bomber, "the worker was replaced");
    assert_eq!(pool.apply(allocate, 64).unwrap(), 64, "the new worker has its memory");
    // An abort far from the cap is still a crash, not a lack of memory.
    assert!(matches!(pool.apply(abort, 0), Err(TaskError::Crashed(Exit::Signal(6)))));
    assert_eq!(pool.map(square, 0..4).unwrap(), [0, 1, 4, 9]);
    assert_eq!(pool.stats().crashes, 1, "running out of memory is not counted as a crash");
}

/// Grows one vector until it cannot grow: each step asks for twice what it holds, so the
/// request that fails comes while the address space is far below the cap.
fn growing_vector(_: u64) -> u64 {
    let mut hoard: Vec<u64> = Vec::new();
    loop {
        hoard.push(std::hint::black_box(1));
    }
}

/// Asks at once for more memory than the cap allows.
fn one_huge_allocation(_: u64) -> u64 {
    allocate(MEMORY_LIMIT >> 19)
}

/// Where Rust prints a backtrace for a failed allocation (`RUST_BACKTRACE` set), printing it
/// changes what the worker can tell of the failure: the test then runs again, in a copy of
/// this test binary, without the variable.
#[test]
fn an_allocation_refused_far_below_the_cap_fails_with_resource_limit_too() {
    if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0") {
        let name = "an_allocation_refused_far_below_the_cap_fails_with_resource_limit_too";
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--test-threads=1"])
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("1 passed"), "{text}");
        return;
    }
    let config = ProcessConfig::new(Config::new().workers(1)).memory_limit(MEMORY_LIMIT);
    let pool = ProcessPool::with_config(config).unwrap();
    for (name, outcome) in
        [("growing", pool.apply(growing_vector, 0)), ("huge", pool.apply(one_huge_allocation, 0))]
    {
        match outcome {
            Err(TaskError::ResourceLimit { resource: Resource::Memory, limit }) => {
                assert_eq!(limit, MEMORY_LIMIT, "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(matches!(pool.apply(abort, 0), Err(TaskError::Crashed(Exit::Signal(6)))));
    assert_eq!(pool.apply(allocate, 64).unwrap(), 64, "the new worker has its memory");
    assert_eq!(pool.stats().crashes, 1, "running out of memory is not counted as a crash");
}

#[test]
fn a_task_over_its_cpu_time_fails_with_resource_limit_and_the_pool_goes_on() {
    // One batch: the limit is per task, so the 400 ms tasks succeed (1.6 s in all, two on
    // each worker), and the endless one fails alone.
    stopped_alone(spin, &[400, 400, u64::MAX, 400, 400], "SIGXCPU handled");
}

#[test]
fn a_fraction_of_a_second_is_rounded_up() {
    let config =
        ProcessConfig::new(Config::new().workers(1)).cpu_time_limit(Duration::from_millis(1500));
    let pool = ProcessPool::with_config(config).unwrap();
    assert!(matches!(
        pool.apply(spin, u64::MAX),
        Err(TaskError::ResourceLimit { resource: Resource::CpuTime, limit: 2 })
    ));
}

#[test]
fn a_cpu_time_limit_too_long_for_the_kernel_is_no_limit() {
    // The kernel counts the limit in nanoseconds: 2^64 ns is about 584 years, and a limit
    // past it must not wrap round to a short one.
    for limit in [Duration::MAX, Duration::from_secs(1 << 40)] {
        within("a task under an endless cpu time limit", move || {
            let config = ProcessConfig::new(Config::new().workers(1)).cpu_time_limit(limit);
            let pool = ProcessPool::with_config(config).unwrap();
            assert_eq!(pool.apply(spin, 1600).unwrap(), 1600, "{limit:?}");
        });
    }
}

/// Sets SIGXCPU to be ignored, then spins for `ms` milliseconds of CPU time.
fn spin_ignoring_sigxcpu(ms: u64) -> u64 {
    // SAFETY: SIG_IGN is a valid disposition for SIGXCPU.
    unsafe { libc::signal(libc::SIGXCPU, libc::SIG_IGN) };
    spin(ms)
}

/// Blocks every signal on the task's thread, then spins for `ms` milliseconds of CPU time.
fn spin_with_signals_blocked(ms: u64) -> u64 {
    // SAFETY: `all` is filled by sigfillset before pthread_sigmask reads it.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
    spin(ms)
}

/// Runs `items` through `task` in one batch on a pool of one worker whose tasks get a second
/// of CPU time: the one item over a second fails with the CPU-time limit, the others give
/// their value, and the pool goes on with a new worker, counting no crash.
fn stopped_alone<M>(task: impl IntoTask<M, Input = u64, Output = u64>, items: &[u64], name: &str) {
    let config = ProcessConfig::new(Config::new().workers(1).chunk_size(8))
        .cpu_time_limit(Duration::from_secs(1));
    let pool = ProcessPool::with_config(config).unwrap();
    let first = pool.apply(worker_pid, 0).unwrap();
    let outcomes = pool.map_results(task, items.iter().copied());
    assert_eq!(outcomes.len(), items.len());
    for ((i, outcome), &ms) in outcomes.into_iter().enumerate().zip(items) {
        match outcome {
            Err(TaskError::ResourceLimit { resource: Resource::CpuTime, limit: 1 })
                if ms > 1000 => {}
            Ok(value) if ms <= 1000 && value == ms => {}
            other => panic!("{name}, item {i}: {other:?}"),
        }
    }
    assert_ne!(pool.apply(worker_pid, 0).unwrap(), first, "{name}: the worker was replaced");
    assert_eq!(pool.apply(square, 5).unwrap(), 25);
    assert_eq!(pool.map(square, 0..4).unwrap(), [0, 1, 4, 9]);
    assert_eq!(pool.stats().crashes, 0, "{name}: a limit is not a crash");
}

#[test]
fn a_task_that_ignores_sigxcpu_is_stopped_all_the_same() {
    stopped_alone(spin_ignoring_sigxcpu, &[100, 60_000, 100], "SIGXCPU ignored");
}

#[test]
fn a_task_that_blocks_every_signal_is_stopped_all_the_same() {
    stopped_alone(spin_with_signals_blocked, &[100, 60_000, 100], "signals blocked");
}

/// Sends its own process SIGXCPU, as `kill -XCPU` from outside would, having used no CPU
/// time to speak of.
fn raise_sigxcpu(_: u64) -> u64 {
    // SAFETY: raise only sends a signal to the calling thread.
    unsafe { libc::raise(libc::SIGXCPU) };
    0
}

#[test]
fn a_sigxcpu_that_the_kernel_did_not_send_is_a_crash_not_the_cpu_time_limit() {
    let config = ProcessConfig::new(Config::new().workers(1)).cpu_time_limit(Duration::MAX);
    let pool = ProcessPool::with_config(config).unwrap();
    assert_eq!(crashed(pool.apply(raise_sigxcpu, 0)), Exit::Signal(libc::SIGXCPU));
    let config =
        ProcessConfig::new(Config::new().workers(1)).cpu_time_limit(Duration::from_secs(60));
    let pool = ProcessPool::with_config(config).unwrap();
    assert_eq!(crashed(pool.apply(raise_sigxcpu, 0)), Exit::Signal(libc::SIGXCPU));
    assert_eq!(pool.apply(square, 5).unwrap(), 25);
}

/// The length of its argument.
fn length(bytes: serde_bytes::ByteBuf) -> u64 {
    bytes.len() as u64
}

#[test]
fn an_item_whose_workers_die_before_starting_it_fails_instead_of_going_round_for_ever() {
    // Too little memory for a worker to take any request (though more than the argument
    // needs, so the parent sends it): each worker that says hello dies of the failed
    // allocation (SIGABRT) before it starts the item.
    within("a pool whose workers die on every request", || {
        let config = ProcessConfig::new(Config::new().workers(1)).memory_limit(1 << 20);
        let pool = ProcessPool::with_config(config).unwrap();
        assert!(matches!(pool.apply(square, 3), Err(TaskError::Crashed(Exit::Signal(6)))));
        let stats = pool.stats();
        assert_eq!((stats.requeued, stats.crashes), (2, 1), "three workers held it");
    });
}

#[test]
fn a_pool_whose_workers_cannot_work_fails_its_items_instead_of_retrying_them_for_ever() {
    within("a map on workers that die at every request", || {
        let config = ProcessConfig::new(Config::new().workers(2)).memory_limit(1 << 20);
        let pool = ProcessPool::with_config(config).unwrap();
        let outcomes = pool.map_results(square, 0..100);
        assert_eq!(outcomes.len(), 100);
        let given_up = |outcome: &Result<u64, TaskError>| {
            matches!(outcome, Err(TaskError::WorkerStart { reason })
                if reason.contains("workers in a row ended before they started any task"))
        };
        // Some items were held by three workers that died, and failed with their crash
        // first; the others with the reason the pool gave up.
        for (i, outcome) in outcomes.iter().enumerate() {
            let crashed = matches!(outcome, Err(TaskError::Crashed(Exit::Signal(6))));
            assert!(crashed || given_up(outcome), "item {i}: {outcome:?}");
        }
        assert!(outcomes.iter().any(given_up), "{:?}", &outcomes[..4]);
        let later = pool.apply(square, 3);
        assert!(given_up(&later), "{later:?}");
        // The setting that is the likely cause is named, with its value.
        let text = later.unwrap_err().to_string();
        assert!(text.contains("under a memory_limit of 1048576 bytes"), "{text}");
    });
}

#[test]
fn workers_that_die_before_they_start_anything_are_replaced_more_and_more_slowly() {
    within("a pool whose workers die even idle", || {
        let config = ProcessConfig::new(Config::new().workers(1)).memory_limit(1 << 20);
        let pool = ProcessPool::with_config(config).unwrap();
        assert!(matches!(pool.apply(square, 3), Err(TaskError::Crashed(Exit::Signal(6)))));
        // Its replacements die idle as well (they cannot even wait for work in 4 KiB): the
        // pool replaces them more and more slowly instead of hundreds of times a second.
        // The sleep is the interval the starts are counted over, not a wait for an event.
        let before = pool.stats().workers_started;
        std::thread::sleep(Duration::from_millis(500));
        let started = pool.stats().workers_started - before;
        assert!(started < 15, "{started} workers started in half a second");
        // Slowly, but still: the pool keeps replacing them.
        let deadline = std::time::Instant::now() + HANG;
        let then = pool.stats().workers_started;
        while pool.stats().workers_started < then + 2 {
            assert!(std::time::Instant::now() < deadline, "the pool gave up replacing workers");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(pool.stats().crashes, 1, "deaths without an item are no crash");
    });
}

#[test]
fn an_argument_as_large_as_the_memory_limit_is_refused_before_it_is_sent() {
    within("an argument over the memory limit", || {
        let config = ProcessConfig::new(Config::new().workers(2)).memory_limit(MEMORY_LIMIT);
        let pool = ProcessPool::with_config(config).unwrap();
        let huge = serde_bytes::ByteBuf::from(vec![1u8; (MEMORY_LIMIT + (16 << 20)) as usize]);
        let outcome = pool.apply(length, huge.clone());
        assert!(
            matches!(
                outcome,
                Err(TaskError::ResourceLimit { resource: Resource::Memory, limit: MEMORY_LIMIT })
            ),
            "{outcome:?}"
        );
        // The same in a `map` and an `imap`, among arguments that fit: only that item fails.
        let small = serde_bytes::ByteBuf::from(vec![1u8; 10]);
        let items = || vec![small.clone(), huge.clone(), small.clone()];
        let mapped = pool.map_results(length, items());
        let iterated: Vec<_> = pool.imap(length, items()).collect();
        for outcomes in [mapped, iterated] {
            assert_eq!(outcomes[0].as_ref().ok(), Some(&10));
            let refused = &outcomes[1];
            assert!(matches!(refused, Err(TaskError::ResourceLimit { .. })), "{refused:?}");
            assert_eq!(outcomes[2].as_ref().ok(), Some(&10));
        }
        let stats = pool.stats();
        assert_eq!((stats.crashes, stats.requeued), (0, 0), "no worker was sent it");
        assert_eq!(pool.apply(square, 4).unwrap(), 16, "the pool goes on");
    });
}

/// How many values its argument holds.
fn count(values: Vec<f64>) -> u64 {
    values.len() as u64
}

#[test]
fn an_argument_under_the_memory_limit_that_no_worker_can_receive_fails_with_resource_limit() {
    within("arguments that fit under the limit but not in a worker", || {
        const LIMIT: u64 = 64 << 20;
        let config = ProcessConfig::new(Config::new().workers(1)).memory_limit(LIMIT);
        let pool = ProcessPool::with_config(config).unwrap();
        let too_large = |outcome: &Result<u64, TaskError>| {
            matches!(outcome, Err(TaskError::ResourceLimit { resource: Resource::Memory, limit })
                if *limit == LIMIT)
        };
        // A byte string just under the limit, which crosses as one bulk frame, and numbers
        // that the worker must hold twice (as received and as decoded).
        let bytes = serde_bytes::ByteBuf::from(vec![1u8; (LIMIT - (1 << 20)) as usize]);
        let outcome = pool.apply(length, bytes);
        assert!(too_large(&outcome), "{outcome:?}");
        let numbers = vec![0.5f64; (LIMIT / 8 - (1 << 17)) as usize];
        let outcome = pool.apply(count, numbers);
        assert!(too_large(&outcome), "{outcome:?}");
        assert_eq!(pool.apply(square, 4).unwrap(), 16, "the pool goes on");
    });
}

#[test]
fn many_arguments_no_worker_can_receive_fail_alone_and_the_pool_goes_on() {
    within("a map of arguments too large for the memory limit", || {
        const LIMIT: u64 = 64 << 20;
        let config = ProcessConfig::new(Config::new().workers(1)).memory_limit(LIMIT);
        let pool = ProcessPool::with_config(config).unwrap();
        let big = serde_bytes::ByteBuf::from(vec![1u8; (LIMIT - (1 << 20)) as usize]);
        let small = serde_bytes::ByteBuf::from(vec![1u8; 10]);
        // Each too large item takes three workers, more than the deaths after which a pool
        // whose workers cannot work at all gives up: these workers could.
        let mut items = vec![big; 4];
        items.push(small.clone());
        let outcomes = pool.map_results(length, items);
        for outcome in &outcomes[..4] {
            assert!(
                matches!(
                    outcome,
                    Err(TaskError::ResourceLimit { resource: Resource::Memory, limit: LIMIT })
                ),
                "{outcome:?}"
            );
        }
        assert_eq!(outcomes[4].as_ref().ok(), Some(&10));
        assert_eq!(pool.apply(length, small).unwrap(), 10, "the pool goes on");
        assert_eq!(pool.stats().crashes, 0, "an item over the limit is no crash");
    });
}

/// The sum of the bytes it reads in place.
fn shared_sum(data: taskpool_process::SharedBytes) -> u64 {
    data.iter().map(|&b| u64::from(b)).sum()
}

#[test]
fn shared_bytes_larger_than_the_memory_limit_fail_saying_so() {
    within("shared bytes over a worker's memory limit", || {
        const LIMIT: u64 = 64 << 20;
        let config = ProcessConfig::new(Config::new().workers(1)).memory_limit(LIMIT);
        let pool = ProcessPool::with_config(config).unwrap();
        let data = taskpool_process::SharedBytes::new((LIMIT + (1 << 20)) as usize, |out| {
            out.fill(1);
        })
        .unwrap();
        match pool.apply(shared_sum, data) {
            Err(TaskError::Serialization {
                side: taskpool_process::Side::Argument,
                message,
                ..
            }) => {
                assert!(message.contains("memory limit"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(pool.apply(square, 4).unwrap(), 16, "the pool goes on");
    });
}
