//! Queues, pipes and shared bytes inside the shapes users give them: a queue end in a struct
//! beside a `serde_json::Value`, in internally tagged and untagged enums, in a `flatten`ed
//! struct, in an `Option` skipped when empty; shared bytes in tasks that start programs,
//! fork, or close descriptors they did not open, and as the result of a process killed
//! before its parent read it; and one pool reused for every kind of job back to back.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use taskpool_process::{
    Config, Consumer, Direction, End, GetError, Pipe, Pool, ProcessConfig, ProcessPool, Producer,
    Queue, SharedBytes, Side, TaskError, remote, spawn,
};

// ---- queue ends inside users' types -------------------------------------------------------

/// A job that carries its own settings as JSON, next to the queue it reports to.
#[derive(Serialize, Deserialize)]
struct Configured {
    queue: Producer<u64>,
    settings: serde_json::Value,
}

/// Puts the values its JSON settings name.
fn put_configured(job: Configured) -> u64 {
    let start = job.settings["start"].as_u64().unwrap();
    let count = job.settings["count"].as_u64().unwrap();
    for i in start..start + count {
        job.queue.put(i).unwrap();
    }
    count
}

/// Commands in an internally tagged enum: the shape of many message protocols.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind")]
enum Command {
    Produce { queue: Producer<u64>, values: Vec<u64> },
    Relay { from: Consumer<u64>, to: Producer<u64> },
    Shout { end: End<String> },
    Wrapped(Configured),
}

fn run_command(command: Command) -> u64 {
    match command {
        Command::Produce { queue, values } => {
            let n = values.len() as u64;
            values.into_iter().for_each(|v| queue.put(v).unwrap());
            n
        }
        Command::Relay { from, to } => {
            let mut n = 0;
            while let Ok(v) = from.get() {
                to.put(v * 10).unwrap();
                n += 1;
            }
            n
        }
        Command::Shout { end } => {
            let mut n = 0;
            while let Ok(word) = end.recv() {
                end.send(word.to_uppercase()).unwrap();
                n += 1;
            }
            n
        }
        Command::Wrapped(job) => put_configured(job),
    }
}

/// An untagged enum whose variants all start with a queue end: decoding tries each in turn.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Target {
    Counted { queue: Producer<u64>, count: u64 },
    Named { queue: Producer<u64>, name: String },
    Talk(End<String>),
}

fn run_target(target: Target) -> String {
    match target {
        Target::Counted { queue, count } => {
            (0..count).for_each(|i| queue.put(i).unwrap());
            format!("counted {count}")
        }
        Target::Named { queue, name } => {
            queue.put(name.len() as u64).unwrap();
            format!("named {name}")
        }
        Target::Talk(end) => {
            end.send("talking".into()).unwrap();
            "talk".into()
        }
    }
}

/// Where results go, flattened into the job that uses it.
#[derive(Serialize, Deserialize)]
struct Outbox {
    results: Producer<String>,
    label: String,
}

#[derive(Serialize, Deserialize)]
struct Flattened {
    words: Vec<String>,
    #[serde(flatten)]
    outbox: Outbox,
}

fn run_flattened(job: Flattened) -> usize {
    for word in &job.words {
        job.outbox.results.put(format!("{}:{word}", job.outbox.label)).unwrap();
    }
    job.words.len()
}

/// A job that reports progress only if it was given somewhere to report to.
#[derive(Serialize, Deserialize)]
struct MaybeReporting {
    n: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    progress: Option<Consumer<u64>>,
}

/// Sums `1..=n`, plus whatever it finds on its progress queue (until every producer is gone).
fn run_maybe_reporting(job: MaybeReporting) -> u64 {
    let extra = match job.progress {
        Some(queue) => std::iter::from_fn(|| queue.get().ok()).sum(),
        None => 0,
    };
    (1..=job.n).sum::<u64>() + extra
}

#[test]
fn a_producer_beside_a_json_value_reaches_the_worker() {
    within("a producer beside a JSON value", || {
        let pool = ProcessPool::new(2).unwrap();
        let queue = Queue::<u64>::new().unwrap();
        let consumer = queue.consumer().unwrap();
        let jobs: Vec<_> = (0..4)
            .map(|k| Configured {
                queue: queue.producer().unwrap(),
                settings: serde_json::json!({"start": k * 100, "count": 50, "tags": ["a", null, 1.5]}),
            })
            .collect();
        drop(queue);
        assert_eq!(pool.map(put_configured, jobs).unwrap(), [50; 4]);
        let mut got = drain(&consumer);
        got.sort_unstable();
        let want: Vec<u64> = (0..4).flat_map(|k| k * 100..k * 100 + 50).collect();
        assert_eq!(got, want);
    });
}

#[test]
fn queue_ends_in_an_internally_tagged_enum_reach_the_worker() {
    within("queue ends in an internally tagged enum", || {
        // The relay blocks until its input ends: one task per worker at a time, so that the
        // tasks feeding it never wait behind it on its worker.
        let config = ProcessConfig::new(Config::new().workers(2)).in_flight(1);
        let pool = ProcessPool::with_config(config).unwrap();
        let inputs = Queue::<u64>::new().unwrap();
        let outputs = Queue::<u64>::new().unwrap();
        let relay = pool.submit(
            run_command,
            Command::Relay { from: inputs.consumer().unwrap(), to: outputs.producer().unwrap() },
        );
        let produce = pool.submit(
            run_command,
            Command::Produce { queue: inputs.producer().unwrap(), values: vec![1, 2, 3] },
        );
        assert_eq!(produce.join().unwrap(), 3);
        let wrapped = Command::Wrapped(Configured {
            queue: inputs.producer().unwrap(),
            settings: serde_json::json!({"start": 4, "count": 2}),
        });
        assert_eq!(pool.apply(run_command, wrapped).unwrap(), 2);
        let results = outputs.consumer().unwrap();
        drop((inputs, outputs)); // the relay's input ends once the parent's producer is gone
        assert_eq!(relay.join().unwrap(), 5);
        assert_eq!(drain(&results), [10, 20, 30, 40, 50]);

        let (here, there) = Pipe::new::<String>().unwrap();
        let shout = pool.submit(run_command, Command::Shout { end: there });
        here.send("quiet".into()).unwrap();
        assert_eq!(here.recv().unwrap(), "QUIET");
        drop(here);
        assert_eq!(shout.join().unwrap(), 1);
    });
}

#[test]
fn queue_ends_in_an_untagged_enum_reach_the_worker() {
    within("queue ends in an untagged enum", || {
        let pool = ProcessPool::new(1).unwrap();
        let queue = Queue::<u64>::new().unwrap();
        let counted = Target::Counted { queue: queue.producer().unwrap(), count: 3 };
        assert_eq!(pool.apply(run_target, counted).unwrap(), "counted 3");
        let named = Target::Named { queue: queue.producer().unwrap(), name: "four".into() };
        assert_eq!(pool.apply(run_target, named).unwrap(), "named four");
        let (here, there) = Pipe::new::<String>().unwrap();
        assert_eq!(pool.apply(run_target, Target::Talk(there)).unwrap(), "talk");
        assert_eq!(here.recv().unwrap(), "talking");
        assert_eq!(here.recv(), Err(GetError::Disconnected), "the worker's end is gone");
        let consumer = queue.consumer().unwrap();
        drop(queue);
        assert_eq!(drain(&consumer), [0, 1, 2, 4]);
    });
}

/// `value` in the pool's encoding, the only one a handle is written in.
fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = Vec::new();
    remote::encode_into(value, &mut bytes, Side::Argument).unwrap();
    bytes
}

/// An untagged value is decoded once per variant tried: the handle inside is received once,
/// so other copies still on their way keep the queue connected.
#[test]
fn a_handle_decoded_by_several_untagged_variants_is_received_once() {
    let queue = Queue::<u64>::new().unwrap();
    let consumer = queue.consumer().unwrap();
    let producer = queue.producer().unwrap();
    drop(queue);
    let named = Target::Named { queue: producer.clone(), name: "x".into() };
    let first = encode(&named);
    let second = encode(&producer);
    drop((named, producer)); // two copies on their way, no producer here
    let target: Target = remote::decode(&first, Side::Argument).unwrap();
    assert!(matches!(target, Target::Named { .. }));
    drop(target);
    // The second copy is still on its way: the queue is not disconnected.
    let waited = consumer.get_timeout(Duration::from_millis(50));
    assert_eq!(waited, Err(GetError::Timeout));
    let producer: Producer<u64> = remote::decode(&second, Side::Argument).unwrap();
    producer.put(7).unwrap();
    drop(producer);
    assert_eq!(drain(&consumer), [7]);
}

/// As above, for shared bytes: the sender keeps them until the last copy arrives.
#[test]
fn shared_bytes_decoded_by_several_untagged_variants_are_received_once() {
    let _serial = serial();
    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Payload {
        Sized { data: SharedBytes, size: u64 },
        Named { data: SharedBytes, name: String },
    }
    let data = SharedBytes::copy_from_slice(b"payload").unwrap();
    let named = Payload::Named { data: data.clone(), name: "x".into() };
    let first = serde_json::to_string(&named).unwrap();
    let second = serde_json::to_string(&data).unwrap();
    drop((named, data));
    let payload: Payload = serde_json::from_str(&first).unwrap();
    assert!(matches!(payload, Payload::Named { .. }));
    drop(payload);
    let again: SharedBytes = serde_json::from_str(&second).unwrap();
    assert_eq!(&again[..], b"payload");
}

#[test]
fn a_producer_in_a_flattened_struct_reaches_the_worker() {
    within("a producer in a flattened struct", || {
        let pool = ProcessPool::new(2).unwrap();
        let queue = Queue::<String>::new().unwrap();
        let job = |label: &str, words: &[&str]| Flattened {
            words: words.iter().map(|w| w.to_string()).collect(),
            outbox: Outbox { results: queue.producer().unwrap(), label: label.into() },
        };
        let jobs = vec![job("a", &["x", "y"]), job("b", &["z"])];
        assert_eq!(pool.map(run_flattened, jobs).unwrap(), [2, 1]);
        let consumer = queue.consumer().unwrap();
        drop(queue);
        let got: HashSet<String> = drain(&consumer).into_iter().collect();
        let want: HashSet<String> = ["a:x", "a:y", "b:z"].map(String::from).into();
        assert_eq!(got, want);
    });
}

#[test]
fn an_optional_consumer_skipped_when_empty_reaches_the_worker_or_is_none() {
    within("an optional consumer", || {
        let pool = ProcessPool::new(2).unwrap();
        let plain = MaybeReporting { n: 10, progress: None };
        assert_eq!(pool.apply(run_maybe_reporting, plain).unwrap(), 55);
        let queue = Queue::<u64>::new().unwrap();
        let job = MaybeReporting { n: 10, progress: Some(queue.consumer().unwrap()) };
        let handle = pool.submit(run_maybe_reporting, job);
        for v in [100, 200] {
            queue.put(v).unwrap();
        }
        drop(queue); // the last producer: the worker's get ends
        assert_eq!(handle.join().unwrap(), 355);
    });
}

/// A handle of another kind where a user's type expects a consumer fails to decode, with an
/// error that names what was expected.
#[test]
fn a_handle_of_the_wrong_kind_fails_to_decode_with_an_error_that_says_so() {
    #[derive(Serialize, Deserialize)]
    struct AsProducer {
        queue: Producer<u64>,
    }
    #[derive(Serialize, Deserialize)]
    struct AsConsumer {
        queue: Consumer<u64>,
    }
    let queue = Queue::<u64>::new().unwrap();
    let bytes = encode(&AsProducer { queue: queue.producer().unwrap() });
    let err = remote::decode::<AsConsumer>(&bytes, Side::Argument).err().unwrap();
    assert!(err.to_string().contains("not a Consumer"), "{err}");
}

// ---- shared bytes where tasks start programs, fork and close descriptors ---------------

fn sum(bytes: &[u8]) -> u64 {
    bytes.iter().map(|&b| u64::from(b)).sum()
}

/// Feeds the bytes to `wc -c` and lists the program's own descriptors: what it counted, and
/// whether it inherited a memfd.
fn count_with_a_program(data: SharedBytes) -> (u64, bool) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut wc =
        Command::new("wc").arg("-c").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    wc.stdin.take().unwrap().write_all(&data).unwrap();
    let out = wc.wait_with_output().unwrap();
    let counted = String::from_utf8(out.stdout).unwrap().trim().parse().unwrap();
    let fds = Command::new("sh").args(["-c", "ls -l /proc/$$/fd"]).output().unwrap();
    let inherited = String::from_utf8_lossy(&fds.stdout).contains("memfd:");
    (counted, inherited)
}

/// Forks without exec; the copy runs `child` and exits with the code it returns, which this
/// returns.
fn in_a_fork(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the copy runs only `child` (which reads memory, or puts on a queue, which takes
    // only the queue's own lock in shared memory) and `_exit`: nothing that needs a lock
    // another thread of the worker may have held at the fork.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = child();
        // SAFETY: ends the copy without running anything of its parent's.
        unsafe { libc::_exit(code) };
    }
    assert!(pid > 0, "fork failed");
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "the copy ended with status {status}");
    libc::WEXITSTATUS(status)
}

/// Forks; the copy reads the bytes in place and exits with their sum modulo 256.
fn read_in_a_fork(data: SharedBytes) -> i32 {
    in_a_fork(|| (sum(&data) % 256) as i32)
}

/// Forks; the copy puts the sum of the bytes on the queue and exits.
fn report_from_a_fork((data, queue): (SharedBytes, Producer<u64>)) -> bool {
    in_a_fork(|| i32::from(queue.put(sum(&data)).is_err())) == 0
}

/// Closes every descriptor from 5 up, as a daemon does but keeping the pool's own (3 and 4),
/// then reads the bytes in place.
fn close_then_read(data: SharedBytes) -> u64 {
    // SAFETY: closes descriptors this task did not open, on purpose: the shape under test.
    unsafe { libc::close_range(5, libc::c_uint::MAX, 0) };
    sum(&data)
}

/// As `close_then_read`, then hands the bytes back.
fn close_then_echo(data: SharedBytes) -> SharedBytes {
    // SAFETY: as in `close_then_read`.
    unsafe { libc::close_range(5, libc::c_uint::MAX, 0) };
    data
}

/// As `close_then_read`, then makes new bytes and returns them.
fn close_then_make(len: u64) -> SharedBytes {
    // SAFETY: as in `close_then_read`.
    unsafe { libc::close_range(5, libc::c_uint::MAX, 0) };
    made(len as usize, 3)
}

/// Held by the tests that make shared bytes, one at a time: some count this process's
/// memfds.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Puts 7.
fn put_seven(queue: Producer<u64>) {
    queue.put(7).unwrap();
}

/// Closes every descriptor from 5 up, then hands the queue on to a process of its own: the
/// worker's descriptor of the queue is gone, so the receiver opens it where the worker got it.
fn close_then_hand_on(queue: Producer<u64>) -> String {
    // SAFETY: as in `close_then_read`.
    unsafe { libc::close_range(5, libc::c_uint::MAX, 0) };
    match spawn(put_seven, queue) {
        Ok(child) => format!("{:?}", child.join()),
        Err(e) => e.to_string(),
    }
}

/// Makes a queue, closes every descriptor from 5 up, then tries to hand the queue on: nobody
/// holds it where another process could open it.
fn make_close_then_hand_on(_: u64) -> String {
    let queue = Queue::<u64>::new().unwrap();
    // SAFETY: as in `close_then_read`.
    unsafe { libc::close_range(5, libc::c_uint::MAX, 0) };
    match spawn(put_seven, queue.producer().unwrap()) {
        Ok(child) => format!("{:?}", child.join()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_queue_handed_on_after_its_descriptor_was_closed_opens_where_it_came_from() {
    within("a queue handed on after its descriptor was closed", || {
        let pool = ProcessPool::new(1).unwrap();
        let queue = Queue::<u64>::new().unwrap();
        assert_eq!(pool.apply(close_then_hand_on, queue.producer().unwrap()).unwrap(), "Ok(())");
        assert_eq!(queue.get(), Ok(7));
        let err = pool.apply(make_close_then_hand_on, 0).unwrap();
        assert!(err.contains("descriptor in this process was closed"), "{err}");
    });
}

/// Runs `body` with a one-worker pool and 1 MiB of shared bytes seeded with `seed`, then
/// checks that this process let go of every memfd of shared bytes made or received meanwhile.
fn leaving_no_memfds(
    what: &'static str,
    seed: u8,
    body: impl FnOnce(&ProcessPool, &SharedBytes) + Send + 'static,
) {
    let _serial = serial();
    within(what, move || {
        let pool = ProcessPool::new(1).unwrap();
        let before = memfds();
        let data = made(1 << 20, seed);
        body(&pool, &data);
        drop(data);
        assert_eq!(memfds(), before, "the parent let go of the bytes");
    });
}

#[test]
fn shared_bytes_reach_a_task_that_starts_a_program_which_inherits_none() {
    leaving_no_memfds("shared bytes and a program", 1, |pool, data| {
        assert_eq!(pool.apply(count_with_a_program, data.clone()).unwrap(), (1 << 20, false));
    });
}

#[test]
fn shared_bytes_are_read_by_a_copy_the_task_forked() {
    leaving_no_memfds("shared bytes in a fork", 2, |pool, data| {
        let want = (sum(data) % 256) as i32;
        assert_eq!(pool.apply(read_in_a_fork, data.clone()).unwrap(), want);
        let queue = Queue::<u64>::new().unwrap();
        assert!(pool.apply(report_from_a_fork, (data.clone(), queue.producer().unwrap())).unwrap());
        assert_eq!(queue.get().unwrap(), sum(data));
    });
}

#[test]
fn shared_bytes_survive_a_task_that_closes_descriptors_it_did_not_open() {
    leaving_no_memfds("shared bytes and closed descriptors", 4, |pool, data| {
        assert_eq!(pool.apply(close_then_read, data.clone()).unwrap(), sum(data));
        // The parent still holds the bytes: they come back as its own.
        let back = pool.apply(close_then_echo, data.clone()).unwrap();
        assert_eq!(&back, data);
        drop(back);
        // New bytes made after the descriptors were closed cross as any others.
        let fresh = pool.apply(close_then_make, 4096).unwrap();
        assert_eq!(fresh, made(4096, 3));
        drop(fresh);
        // Nobody but the worker holds them, and it closed their descriptors: a copy crosses.
        let moved = made(4096, 5);
        assert_eq!(pool.apply(close_then_echo, moved).unwrap(), made(4096, 5));
        assert_eq!(pool.apply(square, 5).unwrap(), 25, "the pool goes on");
    });
}

/// The bytes waiting in the worker's result pipe (descriptor 4), unread by its parent.
fn unread_results() -> libc::c_int {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes the bytes waiting in the pipe into `queued`.
    let ok = unsafe { libc::ioctl(4, libc::FIONREAD, &mut queued) } == 0;
    if ok { queued } else { 0 }
}

/// Makes bytes and returns them; then a thread of the process kills it as soon as the result
/// is in the result pipe (after the worker's greeting): the parent has not read it yet.
fn make_then_die(len: u64) -> SharedBytes {
    let greeting = unread_results();
    std::thread::spawn(move || {
        loop {
            if unread_results() > greeting {
                // SAFETY: kills this process, the event under test.
                unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    made(len as usize, 8)
}

#[test]
fn shared_bytes_from_a_process_killed_before_its_parent_read_them_fail_typed() {
    let _serial = serial();
    within("shared bytes from a killed process", || {
        let before = memfds();
        let child = spawn(make_then_die, 1 << 20).unwrap();
        wait_gone(child.id() as u32); // the event: it died with its result unread
        match child.join() {
            Err(TaskError::Serialization { side: Side::Result, direction, message: reason }) => {
                assert_eq!(direction, Direction::Decode);
                assert!(reason.contains("shared bytes"), "{reason}");
            }
            other => panic!("expected a decode error of the result, got {other:?}"),
        }
        assert_eq!(memfds(), before, "nothing of the dead process is left open");
    });
}

/// Gets jobs, each a place to answer and the bytes to sum, until every producer is gone.
fn serve_jobs(jobs: Consumer<(Producer<u64>, SharedBytes)>) -> u64 {
    let mut served = 0;
    while let Ok((answer, data)) = jobs.get() {
        answer.put(sum(&data)).unwrap();
        served += 1;
    }
    served
}

#[test]
fn queue_ends_and_shared_bytes_travel_inside_queue_messages() {
    let _serial = serial();
    within("handles inside queue messages", || {
        let before = memfds();
        let jobs = Queue::<(Producer<u64>, SharedBytes)>::new().unwrap();
        let server = spawn(serve_jobs, jobs.consumer().unwrap()).unwrap();
        let answers = Queue::<u64>::new().unwrap();
        let mut want = Vec::new();
        for seed in 0..3 {
            let data = made(256 << 10, seed);
            want.push(sum(&data));
            jobs.put((answers.producer().unwrap(), data)).unwrap();
        }
        drop(jobs); // the server's get ends once it took every job
        let results = answers.consumer().unwrap();
        drop(answers);
        assert_eq!(drain(&results), want, "every answer, then disconnected");
        assert_eq!(server.join().unwrap(), 3);
        drop(made(1, 0)); // a use of shared bytes: lets go of those that arrived
        assert_eq!(memfds(), before, "the parent let go of the bytes");
    });
}

// ---- one pool, every kind of job, back to back -------------------------------------------

fn noop(x: u64) -> u64 {
    x
}

fn echo_buf(buf: ByteBuf) -> ByteBuf {
    buf
}

fn shared_sum(data: SharedBytes) -> u64 {
    sum(&data)
}

fn put_range((queue, n): (Producer<u64>, u64)) -> u64 {
    (0..n).for_each(|i| queue.put(i).unwrap());
    n
}

/// A result larger than the ring: `len` bytes, each its index plus `seed`.
fn large(seed: u64) -> ByteBuf {
    let len = (300 << 10) + seed as usize;
    ByteBuf::from((0..len).map(|i| (i as u64).wrapping_add(seed) as u8).collect::<Vec<u8>>())
}

#[test]
fn one_pool_runs_every_kind_of_job_back_to_back_with_every_value_right() {
    let _serial = serial();
    within("every kind of job on one pool", || {
        let config = ProcessConfig::new(Config::new().workers(2));
        let pool = ProcessPool::with_config(config).unwrap();
        for round in 0..2u64 {
            let n = 20_000;
            assert_eq!(pool.map(noop, 0..n).unwrap(), (0..n).collect::<Vec<_>>());

            let mib: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8 ^ round as u8).collect();
            let echoed = pool.apply(echo_buf, ByteBuf::from(mib.clone())).unwrap();
            assert!(echoed.as_slice() == mib.as_slice(), "the 1 MiB echo is whole");

            let data = made(1 << 20, round as u8);
            assert_eq!(pool.apply(shared_sum, data.clone()).unwrap(), sum(&data));

            let queue = Queue::<u64>::new().unwrap();
            let consumer = queue.consumer().unwrap();
            let put = pool.submit(put_range, (queue.producer().unwrap(), 1000));
            drop(queue);
            assert_eq!(drain(&consumer), (0..1000).collect::<Vec<_>>());
            assert_eq!(put.join().unwrap(), 1000);

            let seeds = (0..6).map(|k| k + round * 10);
            for (seed, got) in seeds.clone().zip(pool.imap(large, seeds)) {
                let got = got.unwrap();
                assert!(got.len() > 256 << 10);
                assert!(got == large(seed), "the large result of seed {seed} is whole");
            }

            assert_eq!(pool.map(noop, 0..n).unwrap(), (0..n).collect::<Vec<_>>());
        }
    });
}
