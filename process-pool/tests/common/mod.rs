//! Tasks and helpers shared by the process backend's tests.
#![allow(dead_code, unreachable_pub)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use taskpool_core::conformance::chaos::{self, Fault, Mix};
use taskpool_process::{
    Consumer, Exit, GetError, Pool, ProcessPool, SharedBytes, Task, TaskError, spawn,
};

/// Squares its input.
pub fn square(x: u64) -> u64 {
    x * x
}

/// Returns the worker's process id.
pub fn worker_pid(_: u64) -> u32 {
    std::process::id()
}

/// Writes through a null pointer: a real SIGSEGV.
pub fn segfault(_: u64) -> u64 {
    let p: *mut u64 = std::hint::black_box(std::ptr::null_mut());
    // SAFETY: none: this is the crash under test, in a worker process.
    unsafe { p.write_volatile(1) };
    0
}

/// Calls `abort()`.
pub fn abort(_: u64) -> u64 {
    std::process::abort()
}

/// Exits the worker with code 3.
pub fn exit_3(_: u64) -> u64 {
    std::process::exit(3)
}

/// Recurses until the stack overflows.
pub fn overflow_stack(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 32]);
    if depth == u64::MAX { 0 } else { overflow_stack(depth + 1).wrapping_add(frame[1]) }
}

/// Sleeps `ms` milliseconds.
pub fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// This process's CPU time, user plus system, in nanoseconds (to the clock tick, 10 ms).
pub fn cpu_ns() -> u64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap();
    // The fields after the command name, which ends at the last ')', start with field 3;
    // utime and stime are fields 14 and 15, in ticks of 1/100 s.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks * 10_000_000
}

/// Spins until it has used `ms` milliseconds of CPU time; `u64::MAX` spins for ever.
pub fn spin(ms: u64) -> u64 {
    let start = cpu_ns();
    while cpu_ns() - start < ms.saturating_mul(1_000_000) {
        std::hint::black_box(start);
    }
    ms
}

/// A fresh, empty scratch directory for one test, removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("taskpool-test-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// A path inside the directory, as a string a task can carry.
    pub fn file(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Waits until `path` exists: the event a task signals by creating it.
pub fn wait_for_file(path: impl AsRef<Path>) {
    let path = path.as_ref();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Writes this process's pid to `signal` whole: the file appears, by a rename, only once it
/// holds the pid, so a test that sees it can read the pid at once.
pub fn signal_pid(signal: &str) {
    let partial = format!("{signal}.partial");
    fs::write(&partial, std::process::id().to_string()).unwrap();
    fs::rename(&partial, signal).unwrap();
}

/// Creates the file `signal` holding the worker's pid, then sleeps `ms` milliseconds: lets a
/// test know the task runs.
#[derive(Serialize, Deserialize)]
pub struct SignalThenSleep {
    pub signal: String,
}

impl Task for SignalThenSleep {
    type Input = u64;
    type Output = u64;

    fn run(&self, ms: u64) -> u64 {
        signal_pid(&self.signal);
        sleep_ms(ms)
    }
}

/// Creates the file `signal` holding the worker's pid, then waits until the file `go` exists,
/// and returns its input: lets a test act while the task runs, for as long as it needs.
#[derive(Serialize, Deserialize)]
pub struct SignalThenWait {
    pub signal: String,
    pub go: String,
}

impl Task for SignalThenWait {
    type Input = u64;
    type Output = u64;

    fn run(&self, x: u64) -> u64 {
        signal_pid(&self.signal);
        wait_for_file(&self.go);
        x
    }
}

/// Appends its input to a log file (one line per run), then crashes in the way `crash` says
/// when the input is `crash_at`.
#[derive(Serialize, Deserialize)]
pub struct Logged {
    pub log: String,
    pub crash_at: u64,
    pub crash: Crash,
}

/// How [`Logged`] crashes.
#[derive(Serialize, Deserialize, Clone, Copy)]
pub enum Crash {
    Segfault,
    Abort,
    Panic,
}

impl Task for Logged {
    type Input = u64;
    type Output = u64;

    fn run(&self, x: u64) -> u64 {
        if x == self.crash_at {
            match self.crash {
                Crash::Segfault => return segfault(x),
                Crash::Abort => return abort(x),
                Crash::Panic => panic!("item {x} panics"),
            }
        }
        let mut log = fs::OpenOptions::new().append(true).create(true).open(&self.log).unwrap();
        log.write_all(format!("{x}\n").as_bytes()).unwrap();
        x * 10
    }
}

/// How many times each number appears in a log written by [`Logged`].
pub fn runs_in(log: impl AsRef<Path>, n: u64) -> Vec<usize> {
    let text = fs::read_to_string(log).unwrap_or_default();
    let mut counts = vec![0; usize::try_from(n).unwrap()];
    for line in text.lines() {
        counts[line.parse::<usize>().unwrap()] += 1;
    }
    counts
}

/// Process ids of this process's children that stay zombies (exited, not reaped): those that
/// still are after up to 5 s of waiting for them to be reaped. The tests of a binary run at
/// once in one process, so a child that another test's pool or command reaps a moment after
/// it ends is a zombie of this process for that moment; one that nobody reaps stays.
pub fn zombie_children() -> Vec<u32> {
    let mut zombies = zombies_now();
    let patience = Instant::now() + Duration::from_secs(5);
    while !zombies.is_empty() && Instant::now() < patience {
        std::thread::sleep(Duration::from_millis(20));
        let now = zombies_now();
        zombies.retain(|pid| now.contains(pid));
    }
    zombies
}

/// Process ids of this process's children that are zombies now.
fn zombies_now() -> Vec<u32> {
    let me = std::process::id();
    let mut zombies = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else { continue };
        // The command name may hold spaces: the fields after it start after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 1 && fields[0] == "Z" && fields[1] == me.to_string() {
            zombies.push(entry.file_name().to_string_lossy().parse().unwrap_or(0));
        }
    }
    zombies
}

/// The number of descriptors this process has open.
pub fn open_fds() -> usize {
    fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The memfds of shared bytes this process has open.
pub fn memfds() -> usize {
    fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("/memfd:taskpool-bytes"))
        .count()
}

/// This process's resident memory (`VmRSS`), in bytes.
pub fn resident_bytes() -> u64 {
    resident_bytes_in("/proc/self/status")
}

/// The resident memory of process `pid`, in bytes.
pub fn resident_bytes_of(pid: u32) -> u64 {
    resident_bytes_in(&format!("/proc/{pid}/status"))
}

fn resident_bytes_in(status: &str) -> u64 {
    let status = fs::read_to_string(status).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 =
        line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().unwrap();
    kib * 1024
}

/// Whether a process with this id exists.
pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// How long any one test may wait for an event before it is called a hang.
pub const HANG: Duration = Duration::from_secs(60);

/// Runs `f` on another thread and returns its value; fails with `what` if it takes longer
/// than [`HANG`], so that a test that would hang fails with a message instead of blocking.
pub fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(HANG) {
        Ok(Ok(value)) => value,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("hung: {what} did not finish within {HANG:?}"),
    }
}

/// Waits until the process `pid` is gone (or a zombie); fails after [`HANG`].
pub fn wait_gone(pid: u32) {
    let deadline = Instant::now() + HANG;
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} is still alive");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Starts `program` with `args` from inside a task and returns its pid, without waiting.
pub fn start(program: &str, args: &[&str]) -> u32 {
    std::process::Command::new(program).args(args).spawn().unwrap().id()
}

/// The chaos tests' mix of faults, items per 10 000: 1% segfaults, 1% aborts, 1% panics and
/// 0.1% hangs past [`CHAOS_TIMEOUT`].
pub const CHAOS_MIX: Mix = Mix { segfault: 100, abort: 100, panic: 100, hang: 10 };

/// The chaos tests' per-task time limit: long enough that no other task reaches it on a
/// loaded machine. A hang holds its worker this long, so hangs are few: at 250 ms (and 0.5%
/// hangs) a segfaulting task was once reported timed out, its worker not scheduled for a
/// quarter of a second on 2 cores that two builds and the test's own 6 workers shared.
pub const CHAOS_TIMEOUT: Duration = Duration::from_secs(1);

/// The chaos tests' task: item `item` does what [`CHAOS_MIX`] says for it.
pub fn chaos_task(item: u64) -> u64 {
    match CHAOS_MIX.fault(item) {
        Fault::None => chaos::value(item),
        Fault::Segfault => segfault(item),
        Fault::Abort => abort(item),
        Fault::Panic => panic!("{}", chaos::panic_message(item)),
        Fault::Hang => sleep_ms(3_600_000),
    }
}

/// The pattern byte at `i` of a buffer seeded with `seed`.
pub fn pattern(seed: u8, i: usize) -> u8 {
    (i as u8).wrapping_mul(31).wrapping_add(seed)
}

/// `len` bytes of the pattern seeded with `seed`, in shared memory.
pub fn made(len: usize, seed: u8) -> SharedBytes {
    SharedBytes::new(len, |out| {
        for (i, b) in out.iter_mut().enumerate() {
            *b = pattern(seed, i);
        }
    })
    .unwrap()
}

/// Takes every value from `consumer` until every producer is gone.
pub fn drain<T: Serialize + DeserializeOwned>(consumer: &Consumer<T>) -> Vec<T> {
    let mut out = Vec::new();
    loop {
        match consumer.get() {
            Ok(v) => out.push(v),
            Err(GetError::Disconnected) => return out,
            Err(e) => panic!("drain: {e}"),
        }
    }
}

/// The sizes [`large_arguments_reach_their_tasks`] sends one after another with no wait
/// between: small ones, ones from 4 KiB on (on the rings, written to the worker straight from
/// the buffer they were encoded in, in a bulk frame of their own) several in a row, and large
/// ones (4 MiB and more, whose buffers are reserved at once; so on pipes too), also in a row.
const ARGUMENT_SIZES: [usize; 12] =
    [10, 5 << 20, 3, (9 << 20) + 7, 4 << 20, 0, 4095, 4096, 4097, 1 << 20, 70_000, (6 << 20) + 1];

/// What a task says about its argument: its length and a checksum of its bytes.
pub fn describe(data: serde_bytes::ByteBuf) -> (usize, u64) {
    (data.len(), checksum(&data))
}

fn checksum(bytes: &[u8]) -> u64 {
    let mix =
        |sum: u64, (i, &b): (usize, &u8)| sum.wrapping_mul(31).wrapping_add(b as u64 ^ i as u64);
    bytes.iter().enumerate().fold(0, mix)
}

/// Submits large arguments among small ones to `pool` (of one worker, so they queue for it)
/// before joining any, for a few rounds; asserts that each task got its own argument whole.
pub fn large_arguments_reach_their_tasks<P: taskpool_process::Pool>(pool: &P) {
    for round in 0..3 {
        let sent: Vec<Vec<u8>> = ARGUMENT_SIZES
            .iter()
            .enumerate()
            .map(|(k, &len)| (0..len).map(|i| ((i * 7 + (k + round) * 13) % 251) as u8).collect())
            .collect();
        let handles: Vec<_> = sent
            .iter()
            .map(|bytes| pool.submit(describe, serde_bytes::ByteBuf::from(bytes.clone())))
            .collect();
        for (bytes, handle) in sent.iter().zip(handles) {
            assert_eq!(handle.join().unwrap(), (bytes.len(), checksum(bytes)));
        }
    }
}

/// How a task that crashed ended; fails the test with what came instead.
pub fn crashed<T: std::fmt::Debug>(result: Result<T, TaskError>) -> Exit {
    match result {
        Err(TaskError::Crashed(exit)) => exit,
        other => panic!("expected a crash, got {other:?}"),
    }
}

/// Runs the test `name` alone with `command` (a copy of a test binary, with what sets that
/// run apart), and returns what it printed. Fails the test, saying `how` it ran, if the test
/// failed or did not run; the error is the one of starting the copy.
pub fn run_test_in(command: Command, name: &str, how: &str) -> std::io::Result<String> {
    run_test_with_stderr(command, name, how).map(|(stdout, _)| stdout)
}

/// [`run_test_in`], returning what the test printed on its standard output and on its
/// standard error (where its workers write too).
pub fn run_test_with_stderr(
    mut command: Command,
    name: &str,
    how: &str,
) -> std::io::Result<(String, String)> {
    let out = command.args([name, "--exact", "--test-threads=1", "--nocapture"]).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{name} {how} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{name} did not run {how}:\n{stdout}");
    Ok((stdout, stderr))
}

/// Checks that `pool` reports a segfault and an exit by their signal and code, and serves on.
pub fn pool_crashes_are_exact(pool: &ProcessPool) {
    assert_eq!(crashed(pool.apply(segfault, 0)), Exit::Signal(11));
    assert_eq!(crashed(pool.apply(exit_3, 0)), Exit::Code(3));
    assert_eq!(pool.apply(square, 5).unwrap(), 25);
}

/// Checks that one-off processes report an abort and an exit by their signal and code.
pub fn one_off_crashes_are_exact() {
    assert_eq!(crashed(spawn(abort, 0).unwrap().join()), Exit::Signal(6));
    assert_eq!(crashed(spawn(exit_3, 0).unwrap().join()), Exit::Code(3));
    assert_eq!(spawn(square, 6).unwrap().join().unwrap(), 36);
}

/// Decodes by waiting for ever: what follows it in an argument is never read.
pub struct NeverDecoded;

impl serde::Serialize for NeverDecoded {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ().serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for NeverDecoded {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        loop {
            std::thread::park();
        }
    }
}
