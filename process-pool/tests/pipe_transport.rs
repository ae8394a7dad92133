//! The fallback where `memfd` is unavailable: with `TASKPOOL_TRANSPORT=pipes` (the switch that
//! stands in for a kernel or a sandbox without it) workers get no shared memory, and requests
//! and results travel on the pipes alone.
//!
//! The switch is read once per process, so each test runs in a fresh copy of this test binary
//! started with it (`over_pipes`): the whole conformance suite, a crash that costs only its
//! task, a short chaos run (crashes while workers hold more work, which a supervisor must see
//! from the process, not from its pipe's end), and a check that the worker really has no shared memory (and has it without the
//! switch, so the check means something). Queues, pipes and shared bytes do not depend on
//! the pool's transport: they work the same with the switch. Where the kernel itself refuses
//! `memfd` (a copy of this binary under a seccomp filter, as a sandbox would have), the pool
//! falls back to pipes, and queues, pipes and shared bytes fail to be made with an error that
//! says why.

mod common;

use std::io::ErrorKind;
use std::os::unix::process::CommandExt;
use std::process::Command;

use common::*;
use taskpool_core::conformance::chaos::{self, Expect};
use taskpool_process::{
    Config, End, Exit, Pipe, Pool, ProcessConfig, ProcessPool, Producer, Queue, SharedBytes,
    TaskError, spawn,
};

const SWITCH: &str = "TASKPOOL_TRANSPORT";
const SIGSEGV: i32 = 11;

/// Whether this process was started with the switch (by [`over_pipes`]).
fn switched() -> bool {
    std::env::var_os(SWITCH).is_some_and(|v| v == "pipes")
}

/// Runs the test `name` in a copy of this binary started with the switch; in that copy, runs
/// `body`.
fn over_pipes(name: &str, body: impl FnOnce()) {
    if switched() {
        body();
        return;
    }
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env(SWITCH, "pipes");
    run_test_in(command, name, "over pipes").unwrap();
}

#[test]
fn large_arguments_among_small_ones_cross_whole_over_pipes() {
    over_pipes("large_arguments_among_small_ones_cross_whole_over_pipes", || {
        let pool = ProcessPool::with_config(Config::new().workers(1)).unwrap();
        large_arguments_reach_their_tasks(&pool);
    });
}

/// 1 if this worker maps a shared-memory region of the pool, else 0.
fn maps_shared_memory(_: u64) -> u64 {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    u64::from(maps.contains("memfd:taskpool-worker"))
}

macro_rules! suite_over_pipes {
    ($($name:ident),+) => {$(
        #[test]
        fn $name() {
            over_pipes(stringify!($name), || {
                taskpool_core::conformance::$name(|config| {
                    ProcessPool::with_config(config).unwrap()
                })
            });
        }
    )+};
}

taskpool_core::conformance_suite!(each: suite_over_pipes);

#[test]
fn workers_have_no_shared_memory_over_pipes() {
    over_pipes("workers_have_no_shared_memory_over_pipes", || {
        let pool = ProcessPool::new(2).unwrap();
        assert_eq!(pool.map(maps_shared_memory, 0..8).unwrap(), [0; 8]);
    });
}

#[test]
fn workers_map_their_region_without_the_switch() {
    if switched() {
        return;
    }
    let pool = ProcessPool::new(1).unwrap();
    assert_eq!(pool.apply(maps_shared_memory, 0).unwrap(), 1);
}

#[test]
fn a_crash_over_pipes_costs_only_its_task() {
    over_pipes("a_crash_over_pipes_costs_only_its_task", || {
        let pool = ProcessPool::new(1).unwrap();
        let crashed = pool.submit(segfault, 0);
        let after = pool.submit(square, 9);
        match crashed.join() {
            Err(e @ TaskError::Crashed(_)) => assert_eq!(e.signal(), Some(SIGSEGV)),
            other => panic!("expected a crash, got {other:?}"),
        }
        assert_eq!(after.join().unwrap(), 81);
        // Over the size from which a result is written from its own buffer.
        let big = vec![7u8; 6 << 20];
        let echoed: Vec<u8> = pool.apply(echo_bytes, big.clone()).unwrap();
        assert_eq!(echoed, big);
    });
}

/// Squares, and crashes on the items that leave 3 divided by 7.
fn crash_on_threes_of_seven(x: u64) -> u64 {
    if x % 7 == 3 { segfault(x) } else { square(x) }
}

#[test]
fn a_program_that_takes_back_sigpipe_survives_its_workers_dying_over_pipes() {
    over_pipes("a_program_that_takes_back_sigpipe_survives_its_workers_dying_over_pipes", || {
        // As a command-line program does, to end quietly when its output's reader goes: then
        // a write to the pipe of a worker that died must fail, not end the program.
        // SAFETY: the default disposition installs no handler.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let pool = ProcessPool::new(2).unwrap();
        let large = || serde_bytes::ByteBuf::from(vec![7u8; 4 << 20]);
        for round in 0..10 {
            let outcomes = pool.map_results(crash_on_threes_of_seven, 0..50);
            assert_eq!(outcomes.len(), 50);
            for (x, outcome) in (0..).zip(outcomes) {
                match outcome {
                    Err(TaskError::Crashed(Exit::Signal(11))) if x % 7 == 3 => {}
                    Ok(value) if x % 7 != 3 => assert_eq!(value, x * x),
                    other => panic!("round {round}, item {x}: {other:?}"),
                }
            }
            let handles: Vec<_> = (0..4).map(|_| pool.submit(describe, large())).collect();
            let crashed = pool.apply(segfault, 0);
            assert!(matches!(crashed, Err(TaskError::Crashed(Exit::Signal(11)))), "{crashed:?}");
            for handle in handles {
                assert_eq!(handle.join().unwrap().0, 4 << 20, "round {round}");
            }
        }
        assert_eq!(pool.map(square, 0..4).unwrap(), [0, 1, 4, 9]);
    });
}

#[test]
fn chaos_over_pipes_gives_every_item_its_own_outcome() {
    over_pipes("chaos_over_pipes_gives_every_item_its_own_outcome", || {
        let config = Config::new().workers(2).timeout(CHAOS_TIMEOUT);
        let pool = ProcessPool::with_config(config).unwrap();
        let expect = Expect { timeout: CHAOS_TIMEOUT, hang_still_running: false };
        let tally = chaos::run(&pool, chaos_task, CHAOS_MIX, 0..10_000, &expect);
        let stats = pool.stats();
        assert_eq!(stats.crashes, tally.crashes(), "{stats:?}");
        assert_eq!(stats.timeouts, tally.hangs, "{stats:?}");
    });
}

/// Returns its input.
fn echo_bytes(bytes: Vec<u8>) -> Vec<u8> {
    bytes
}

/// Puts `0..n` and returns `n`.
fn put_range((queue, n): (Producer<u64>, u64)) -> u64 {
    (0..n).for_each(|i| queue.put(i).unwrap());
    n
}

/// Answers each number with its double until the other end is gone.
fn double_back(end: End<u64>) {
    while let Ok(x) = end.recv() {
        end.send(x * 2).unwrap();
    }
}

/// The sum of the bytes, read in place.
fn byte_sum(data: SharedBytes) -> u64 {
    data.iter().map(|&b| u64::from(b)).sum()
}

#[test]
fn queues_pipes_and_shared_bytes_work_over_pipes() {
    over_pipes("queues_pipes_and_shared_bytes_work_over_pipes", || {
        let pool = ProcessPool::new(2).unwrap();
        let queue = Queue::<u64>::new().unwrap();
        let consumer = queue.consumer().unwrap();
        let counts = pool.map(put_range, (0..2).map(|_| (queue.producer().unwrap(), 100)));
        assert_eq!(counts.unwrap(), [100, 100]);
        drop(queue);
        let mut got = drain(&consumer);
        got.sort_unstable();
        let mut want: Vec<u64> = (0..100).chain(0..100).collect();
        want.sort_unstable();
        assert_eq!(got, want);

        let (here, there) = Pipe::new::<u64>().unwrap();
        let child = spawn(double_back, there).unwrap();
        here.send(21).unwrap();
        assert_eq!(here.recv(), Ok(42));
        drop(here);
        child.join().unwrap();

        let data = SharedBytes::copy_from_slice(&[3; 1 << 20]).unwrap();
        assert_eq!(pool.apply(byte_sum, data).unwrap(), 3 << 20);
    });
}

const NO_MEMFD: &str = "TASKPOOL_TEST_NO_MEMFD";

/// Makes the kernel refuse `memfd_create` to this process and its children with `errno`, as
/// a sandbox's seccomp filter would.
fn refuse_memfd(errno: i32) -> std::io::Result<()> {
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter { code: code as u16, jt, jf, k };
    let filter = [
        // The system call's number (the first word of `seccomp_data`).
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
        op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 1, libc::SYS_memfd_create as u32),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_ERRNO | errno as u32),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let program = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr().cast_mut() };
    // SAFETY: prctl with these options only restricts this process; `program` points to the
    // filter, alive during the call.
    let done = unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &program) == 0
    };
    if done { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// Runs the test `name` in a copy of this binary to which the kernel refuses `memfd` with
/// `ENOSYS`; in that copy, runs `body`. Skipped, saying why, where a seccomp filter cannot be
/// installed.
fn without_memfd(name: &str, body: impl FnOnce()) {
    refused_memfd(name, libc::ENOSYS, body);
}

/// As [`without_memfd`], the kernel refusing `memfd` with `errno`.
fn refused_memfd(name: &str, errno: i32, body: impl FnOnce()) {
    if std::env::var_os(NO_MEMFD).is_some() {
        body();
        return;
    }
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env(NO_MEMFD, "1");
    // SAFETY: the hook only builds an array on its stack and calls prctl, which is
    // async-signal-safe.
    unsafe { command.pre_exec(move || refuse_memfd(errno)) };
    if let Err(e) = run_test_in(command, name, "without memfd") {
        println!("skipped: {name} needs a seccomp filter, which this system refuses: {e}");
    }
}

#[test]
fn without_memfd_the_pool_uses_pipes_and_queues_say_why_they_cannot_be_made() {
    without_memfd(
        "without_memfd_the_pool_uses_pipes_and_queues_say_why_they_cannot_be_made",
        || {
            let says_why = |err: std::io::Error| {
                assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
                assert!(err.to_string().contains("memfd is unavailable"), "{err}");
            };
            says_why(Queue::<u64>::new().unwrap_err());
            says_why(Pipe::new::<u64>().unwrap_err());
            says_why(SharedBytes::copy_from_slice(b"bytes").unwrap_err());
            let pool = ProcessPool::new(2).unwrap();
            assert_eq!(pool.map(maps_shared_memory, 0..8).unwrap(), [0; 8]);
            assert_eq!(pool.map(square, 1..=3).unwrap(), [1, 4, 9]);
            let child = spawn(square, 7).unwrap();
            assert_eq!(child.join().unwrap(), 49);
        },
    );
}

#[test]
fn a_refused_memfd_is_said_in_the_kernels_own_words_every_time() {
    refused_memfd(
        "a_refused_memfd_is_said_in_the_kernels_own_words_every_time",
        libc::EPERM,
        || {
            // The first refusal and every one after it, which the process remembers.
            for _ in 0..2 {
                let err = Queue::<u64>::new().unwrap_err();
                assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
                let said = "memfd is unavailable here: Operation not permitted (os error 1)";
                assert_eq!(err.to_string(), said);
            }
        },
    );
}

#[test]
fn a_memfd_refused_by_policy_leaves_the_pool_on_pipes() {
    // A security module's policy, or `vm.memfd_noexec=2` on Linux 6.3 to 6.5, refuses with
    // `EACCES`: before, every worker failed to start with "Permission denied".
    refused_memfd("a_memfd_refused_by_policy_leaves_the_pool_on_pipes", libc::EACCES, || {
        let err = SharedBytes::copy_from_slice(b"bytes").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
        assert_eq!(err.to_string(), "memfd is unavailable here: Permission denied (os error 13)");
        let pool = ProcessPool::new(2).unwrap();
        assert_eq!(pool.map(maps_shared_memory, 0..8).unwrap(), [0; 8]);
        assert_eq!(pool.map(square, 1..=3).unwrap(), [1, 4, 9]);
        assert_eq!(spawn(square, 7).unwrap().join().unwrap(), 49);
    });
}

const SMALL_ADDRESS_SPACE: &str = "TASKPOOL_TEST_SMALL_ADDRESS_SPACE";

#[test]
fn rings_that_do_not_fit_the_address_space_leave_the_pool_on_pipes() {
    let name = "rings_that_do_not_fit_the_address_space_leave_the_pool_on_pipes";
    if std::env::var_os(SMALL_ADDRESS_SPACE).is_some() {
        // Rings of 1 GiB each do not fit an address space of 1 GiB (`ulimit -v`): before,
        // every worker failed to start with "Cannot allocate memory", while one-offs, which
        // have no rings, ran.
        let config = ProcessConfig::new(Config::new().workers(2)).ring_bytes(1 << 30);
        let pool = ProcessPool::with_config(config).unwrap();
        assert_eq!(pool.map(maps_shared_memory, 0..8).unwrap(), [0; 8]);
        assert_eq!(pool.map(square, 1..=3).unwrap(), [1, 4, 9]);
        // Rings that fit are still had.
        let pool = ProcessPool::new(1).unwrap();
        assert_eq!(pool.apply(maps_shared_memory, 0).unwrap(), 1);
        return;
    }
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.env(SMALL_ADDRESS_SPACE, "1");
    // SAFETY: the hook only calls setrlimit, which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 1 << 30, rlim_max: libc::RLIM_INFINITY };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        })
    };
    run_test_in(command, name, "in an address space of 1 GiB").unwrap();
}
