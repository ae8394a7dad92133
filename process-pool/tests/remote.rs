//! The door the cluster backend uses (`taskpool_process::remote`): a cancelled run of many
//! encoded items runs none of the items not yet sent to a worker, and every item without an
//! outcome ends cancelled; a stopped one also kills the worker running its item; a large
//! byte string, argument and result, travels encoded whole; a value whose `Serialize` panics
//! fails to encode as in a pool.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use taskpool_process::remote::{self, EncodedJob, Outcomes, RemoteRun};
use taskpool_process::{Direction, IntoTask, ProcessPool, Side, TaskError};

/// Creates the file at `path`, then takes 20 ms.
fn touch(path: String) -> u64 {
    std::fs::write(&path, "").expect("the task's file");
    std::thread::sleep(Duration::from_millis(20));
    0
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("taskpool-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `job` over `paths` (encoded) as one remote run on `pool`; the outcomes come on the
/// receiver once every item has one.
fn run_over(
    pool: &ProcessPool,
    job: &EncodedJob,
    paths: &[String],
) -> (RemoteRun, mpsc::Receiver<Outcomes>) {
    let (mut inputs, mut ends) = (Vec::new(), Vec::new());
    for path in paths {
        remote::encode_into(path, &mut inputs, Side::Argument).unwrap();
        ends.push(inputs.len());
    }
    let (tx, rx) = mpsc::channel::<Outcomes>();
    let run = remote::run_encoded(pool, job, &inputs, &ends, None, move |o| {
        let _ = tx.send(o);
    });
    (run, rx)
}

#[test]
fn a_cancelled_batch_runs_none_of_its_items_not_yet_sent() {
    let pool = ProcessPool::new(1).unwrap();
    let dir = scratch("remote");
    let paths: Vec<String> =
        (0..100).map(|i| dir.join(i.to_string()).to_string_lossy().into_owned()).collect();
    let job = EncodedJob::of(&touch_and_hold.into_job()).unwrap();
    let (run, rx) = run_over(&pool, &job, &paths);
    // Once the first item runs, the others wait in the pool (but for the few its worker holds),
    // and none can start before the cancel: the first holds the only worker until `go`.
    while !Path::new(&paths[0]).exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
    run.cancel();
    std::fs::write(dir.join("go"), "").unwrap();
    // Called once every item has its outcome: nothing of the run is still running.
    let outcomes = rx.recv_timeout(Duration::from_secs(60)).expect("the run ends");
    let ran: Vec<bool> = paths.iter().map(|p| Path::new(p).exists()).collect();
    let ran_count = ran.iter().filter(|&&r| r).count();
    assert!(ran_count < 10, "{ran_count} of 100 items ran after the cancel");
    assert_eq!(outcomes.len(), 100);
    for (i, ran) in ran.into_iter().enumerate() {
        match outcomes.get(i) {
            Ok(_) => assert!(ran, "item {i} has a value but never ran"),
            Err(TaskError::Cancelled) => {}
            Err(e) => panic!("item {i}: {e}"),
        }
    }
    // The pool serves on.
    let job = EncodedJob::of(&touch.into_job()).unwrap();
    let (_run, rx) = run_over(&pool, &job, &[dir.join("again").to_string_lossy().into_owned()]);
    assert!(rx.recv_timeout(Duration::from_secs(60)).unwrap().get(0).is_ok());
    std::fs::remove_dir_all(dir).unwrap();
}

/// `bytes` reversed.
fn reversed(bytes: serde_bytes::ByteBuf) -> serde_bytes::ByteBuf {
    bytes.iter().rev().copied().collect::<Vec<u8>>().into()
}

/// A large byte string argument and result (which cross between the pool and its worker in
/// bulk frames) come in and go out as whole encodings.
#[test]
fn a_large_byte_string_travels_encoded_whole() {
    let pool = ProcessPool::new(1).unwrap();
    let job = EncodedJob::of(&reversed.into_job()).unwrap();
    let sent: Vec<u8> = (0..6 << 20).map(|i| (i % 251) as u8).collect();
    let mut input = Vec::new();
    remote::encode_into(&serde_bytes::ByteBuf::from(sent.clone()), &mut input, Side::Argument)
        .unwrap();
    let (tx, rx) = mpsc::channel::<Outcomes>();
    let _ = remote::run_encoded(&pool, &job, &input, &[input.len()], None, move |o| {
        let _ = tx.send(o);
    });
    let outcomes = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    let back: serde_bytes::ByteBuf =
        remote::decode(outcomes.get(0).unwrap(), Side::Result).unwrap();
    assert!(back.iter().eq(sent.iter().rev()), "the result differs");
}

/// Creates the file at `path`, then waits until the file `go` beside it exists.
fn touch_and_hold(path: String) -> u64 {
    std::fs::write(&path, "").expect("the task's file");
    let go = Path::new(&path).with_file_name("go");
    while !go.exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
    0
}

/// A stopped run of many items does not wait for the item its worker runs: the worker is
/// killed (and replaced), the item fails as cancelled, and no other item of the run starts.
#[test]
fn a_stopped_batch_kills_the_worker_running_its_item() {
    let pool = ProcessPool::new(1).unwrap();
    let dir = scratch("remote-stop");
    let paths: Vec<String> =
        (0..4).map(|i| dir.join(i.to_string()).to_string_lossy().into_owned()).collect();
    let job = EncodedJob::of(&touch_and_hold.into_job()).unwrap();
    let (run, rx) = run_over(&pool, &job, &paths);
    while !Path::new(&paths[0]).exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
    run.stop();
    let outcomes = rx.recv_timeout(Duration::from_secs(60)).expect("the run ends");
    assert_eq!(outcomes.len(), 4);
    for i in 0..4 {
        assert!(matches!(outcomes.get(i), Err(TaskError::Cancelled)), "item {i}");
    }
    for path in &paths[1..] {
        assert!(!Path::new(path).exists(), "{path} started after the stop");
    }
    // The pool serves on, with a new worker.
    std::fs::write(dir.join("go"), "").unwrap();
    let (_run, rx) = run_over(&pool, &job, &[dir.join("again").to_string_lossy().into_owned()]);
    assert!(rx.recv_timeout(Duration::from_secs(60)).unwrap().get(0).is_ok());
    assert_eq!(pool.stats().workers_started, 2, "the worker was replaced");
    std::fs::remove_dir_all(dir).unwrap();
}

/// A value whose `Serialize` panics.
struct PanicsAsEncoded;

impl serde::Serialize for PanicsAsEncoded {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("this value cannot be encoded")
    }
}

#[test]
fn a_value_whose_serialize_panics_fails_to_encode_as_in_a_pool() {
    // Before, the panic unwound out of `encode_into` into the cluster pool's call.
    let mut out = b"kept".to_vec();
    match remote::encode_into(&PanicsAsEncoded, &mut out, Side::Argument) {
        Err(TaskError::Serialization {
            side: Side::Argument,
            direction: Direction::Encode,
            message,
        }) => {
            assert_eq!(message, "its Serialize panicked: this value cannot be encoded");
        }
        other => panic!("expected an encode error of the argument, got {other:?}"),
    }
    assert_eq!(out, b"kept");
}
