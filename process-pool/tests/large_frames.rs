//! Large arguments and results among small ones: from 4 KiB on the rings (4 MiB on pipes) an
//! argument is written to its worker straight from the buffer it was encoded in, after its
//! batch's head and before the frames queued after it, and a result that is one byte string
//! travels in a bulk frame of its own; every task gets its own argument and result whole
//! (from 4 MiB, with the buffers reserved at once). A worker that dies while a large frame
//! crosses, either way, costs only its own task: the parent is neither wedged nor handed a
//! damaged value, also when it dies halfway through a large byte string that the parent reads
//! straight into the vector it would hand over. (`pipe_transport.rs` runs the first test over
//! pipes.)

mod common;

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde::{Deserialize, Deserializer, Serialize};
use serde_bytes::ByteBuf;
use taskpool_process::{Config, Exit, Pool, ProcessPool, TaskError};

const SIGSEGV: i32 = 11;
const SIGKILL: i32 = 9;

#[test]
fn large_arguments_among_small_ones_reach_their_tasks_whole_and_in_order() {
    let pool = ProcessPool::with_config(Config::new().workers(1)).unwrap();
    large_arguments_reach_their_tasks(&pool);
}

/// A large argument queued behind a task that crashes its worker: the argument may be half
/// written when the worker dies. The crash costs its own task; the large one runs on the next
/// worker with its argument whole.
#[test]
fn a_worker_that_dies_while_a_large_argument_is_written_to_it_costs_only_its_own_task() {
    let pool = ProcessPool::with_config(Config::new().workers(1)).unwrap();
    for len in [5 << 20, 40 << 20] {
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let crash = pool.submit(segfault, 0);
        let large = pool.submit(describe, ByteBuf::from(data.clone()));
        let err = crash.join().unwrap_err();
        assert!(matches!(err, TaskError::Crashed(Exit::Signal(SIGSEGV))), "{err:?}");
        assert_eq!(large.join().unwrap(), describe(ByteBuf::from(data)));
    }
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
}

/// Returns `len` bytes after arranging for its own process to be killed `micros` later:
/// while the result is encoded, written, or after.
fn large_result_then_killed((len, micros): (usize, u64)) -> ByteBuf {
    let result = ByteBuf::from((0..len).map(|i| (i % 241) as u8).collect::<Vec<u8>>());
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_micros(micros));
        // SAFETY: raising a signal has no memory-safety preconditions.
        unsafe { libc::raise(libc::SIGKILL) };
    });
    result
}

/// A worker killed while it may be writing a large result, sooner or later from one round to
/// the next (until a result makes it through): the task gets the whole result or `Crashed` by
/// SIGKILL, never part of one, and the pool serves the next task.
#[test]
fn a_worker_killed_while_writing_a_large_result_gives_all_of_it_or_a_crash() {
    let pool = ProcessPool::with_config(Config::new().workers(1)).unwrap();
    let len = 48 << 20;
    for micros in [0, 1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000] {
        let outcome = pool.apply(large_result_then_killed, (len, micros));
        assert_eq!(pool.apply(square, 4).unwrap(), 16);
        match outcome {
            Ok(back) => {
                assert_eq!(back.len(), len);
                assert!(back.iter().enumerate().all(|(i, &b)| b == (i % 241) as u8));
                return;
            }
            Err(err) => {
                assert!(matches!(err, TaskError::Crashed(Exit::Signal(SIGKILL))), "{err:?}")
            }
        }
    }
}

/// Whether a [`Held`] is being decoded in the parent (`.0`), and whether it may go on (`.1`).
static GATE: (Mutex<(bool, bool)>, Condvar) = (Mutex::new((false, false)), Condvar::new());

/// A result whose decoding in the parent waits at [`GATE`]: it holds up the thread that reads
/// its worker's results, so that nothing reads them meanwhile.
#[derive(Debug, Serialize)]
struct Held;

impl<'de> Deserialize<'de> for Held {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d)?;
        let (lock, changed) = &GATE;
        let mut gate = lock.lock().unwrap();
        gate.0 = true;
        changed.notify_all();
        while !gate.1 {
            gate = changed.wait(gate).unwrap();
        }
        Ok(Held)
    }
}

fn held(_: u64) -> Held {
    Held
}

/// Tells the test its pid (in the file `signal`), then returns 16 MiB: far more than the
/// result ring holds.
fn large_after_signal(signal: String) -> ByteBuf {
    signal_pid(&signal);
    ByteBuf::from(vec![9; 16 << 20])
}

/// The state letter of process `pid` (`R`, `S`, `D`, ...).
fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(") ").next()?.chars().next()
}

/// The parent stops reading while a worker writes a large byte string (the result before it
/// holds the reader up), so the worker fills the result ring partway through the string's bulk
/// frame and sleeps; it is killed there. The parent then reads the part it left: the task
/// gets `Crashed` by SIGKILL or its whole result (run again), never part of one; the result
/// before it arrives whole, and the pool serves on, large values included.
#[test]
fn a_worker_killed_halfway_through_a_large_byte_string_costs_only_its_task() {
    let scratch = Scratch::new("killed-halfway");
    let signal = scratch.file("pid");
    let pool = ProcessPool::with_config(Config::new().workers(1)).unwrap();
    let first = pool.submit(held, 0);
    let (lock, changed) = &GATE;
    drop(changed.wait_while(lock.lock().unwrap(), |gate| !gate.0).unwrap());
    let large = pool.submit(large_after_signal, signal.clone());
    wait_for_file(&signal);
    let pid: u32 = std::fs::read_to_string(&signal).unwrap().parse().unwrap();
    // Asleep after its pid: waiting for room in the ring, in the middle of the bulk frame.
    let deadline = Instant::now() + HANG;
    while state_of(pid) != Some('S') {
        assert!(Instant::now() < deadline, "worker {pid} never waited for room");
        std::thread::yield_now();
    }
    // SAFETY: signalling a process has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    wait_gone(pid);
    lock.lock().unwrap().1 = true;
    changed.notify_all();
    within("the held result", move || first.join().unwrap());
    // Its result is written as it is encoded, while it counts as running; were it written
    // after, the pool could run it again on the next worker (see
    // `a_worker_killed_while_writing_a_large_result_gives_all_of_it_or_a_crash`).
    match within("the killed task", move || large.join()) {
        Ok(back) => assert!(back.len() == 16 << 20 && back.iter().all(|&b| b == 9)),
        Err(err) => {
            assert!(matches!(err, TaskError::Crashed(Exit::Signal(SIGKILL))), "{err:?}")
        }
    }
    assert_eq!(pool.apply(square, 5).unwrap(), 25);
    assert_eq!(pool.stats().workers_started, 2, "{:?}", pool.stats());
    let data: Vec<u8> = (0..5 << 20).map(|i| (i % 239) as u8).collect();
    assert_eq!(pool.apply(describe, ByteBuf::from(data.clone())).unwrap(), describe(data.into()));
}

/// Forks; the copy returns from the task too (with a result of `len` bytes, as the worker
/// does), and the worker returns once the copy has ended.
fn large_result_from_both_sides_of_a_fork(len: usize) -> ByteBuf {
    // SAFETY: the child only returns from the task, as a copy of the worker does; the worker
    // leaves it without a word.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid > 0 {
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
    ByteBuf::from((0..len).map(|i| (i % 233) as u8).collect::<Vec<u8>>())
}

/// A copy of the worker that a task forked, back from the task with a large byte string, never
/// writes it (its bytes would go to the parent as they are encoded): the worker's result
/// arrives whole, once, and the pool serves on.
#[test]
fn a_forked_copy_of_a_worker_never_sends_a_large_result() {
    let pool = ProcessPool::with_config(Config::new().workers(1)).unwrap();
    let len = 6 << 20;
    let back = pool.apply(large_result_from_both_sides_of_a_fork, len).unwrap();
    assert!(back.len() == len && back.iter().enumerate().all(|(i, &b)| b == (i % 233) as u8));
    assert_eq!(pool.apply(square, 6).unwrap(), 36);
}

/// Bytes of item `i`'s argument: sizes on both sides of 4 KiB (from which a byte string
/// travels apart) and of the ring's 256 KiB, in turn.
fn around_apart(i: usize) -> Vec<u8> {
    const SIZES: [usize; 9] = [0, 1, 4095, 4096, 4097, 10_000, 70_000, 300_000, 17];
    (0..SIZES[i % SIZES.len()]).map(|k| ((k * 31 + i) % 251) as u8).collect()
}

fn echo(data: ByteBuf) -> ByteBuf {
    data
}

fn echo_tagged((tag, data): (u32, ByteBuf)) -> (u32, ByteBuf) {
    (tag + 1, data)
}

fn echo_vec(data: Vec<u8>) -> Vec<u8> {
    data
}

fn echo_string(text: String) -> String {
    text
}

/// A `map` over byte strings on both sides of 4 KiB, alone (as a `ByteBuf`, a plain `Vec<u8>`
/// and a `String`) and inside a tuple: a batch's inputs are written spliced from their run or
/// copied, as the batch's size has it; results of one batch go in bulk frames of their own or
/// with the others, as the worker finds its buffers; every item gets its own value back, in
/// order, on one worker and on two.
#[test]
fn a_map_of_byte_strings_around_4_kib_gets_each_back_whole_and_in_order() {
    for workers in [1, 2] {
        let pool = ProcessPool::with_config(Config::new().workers(workers)).unwrap();
        for round in 0..2 {
            let sent: Vec<Vec<u8>> = (round..round + 300).map(around_apart).collect();
            let back = pool.map(echo, sent.iter().cloned().map(ByteBuf::from)).unwrap();
            assert!(back.iter().map(|b| b.as_slice()).eq(sent.iter().map(Vec::as_slice)));
            let tagged =
                sent.iter().cloned().enumerate().map(|(i, b)| (i as u32, ByteBuf::from(b)));
            let back = pool.map(echo_tagged, tagged).unwrap();
            for (i, ((tag, bytes), sent)) in back.iter().zip(&sent).enumerate() {
                assert_eq!((*tag as usize, bytes.as_slice()), (i + 1, sent.as_slice()), "item {i}");
            }
            assert_eq!(pool.map(echo_vec, sent.clone()).unwrap(), sent);
            let texts: Vec<String> = sent
                .iter()
                .map(|b| b.iter().map(|&c| char::from(b'a' + c % 26)).collect())
                .collect();
            assert_eq!(pool.map(echo_string, texts.clone()).unwrap(), texts);
        }
    }
}
