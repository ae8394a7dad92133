//! Values that cannot travel fail their task alone, with a typed error that says which value
//! failed, whether encoding or decoding it did, where, and keeps the implementation's own text.

mod common;

use common::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use taskpool_process::{
    Config, Direction, Pool, ProcessConfig, ProcessPool, Side, Task, TaskError, spawn,
};

/// A value whose serialization always fails, with its own message.
#[derive(Debug)]
pub struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this value refuses to be serialized"))
    }
}

impl<'de> Deserialize<'de> for Unserializable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Unserializable)
    }
}

/// A number that serializes but never deserializes, with its own message.
#[derive(Debug, Serialize)]
pub struct Undeserializable(u64);

impl<'de> Deserialize<'de> for Undeserializable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        Err(serde::de::Error::custom(format!("{n} cannot be read back")))
    }
}

fn make_unserializable(_: u64) -> Unserializable {
    Unserializable
}

fn make_undeserializable(n: u64) -> Undeserializable {
    Undeserializable(n)
}

fn take_unserializable(_: Unserializable) -> u64 {
    0
}

fn take_undeserializable(_: Undeserializable) -> u64 {
    0
}

/// A struct task whose state cannot be serialized or deserialized.
#[derive(Serialize, Deserialize)]
struct BadState<S> {
    state: S,
}

impl<S: Serialize + for<'de> Deserialize<'de> + Send + Sync + 'static> Task for BadState<S> {
    type Input = u64;
    type Output = u64;

    fn run(&self, x: u64) -> u64 {
        x
    }
}

/// Asserts that `outcome` is a serialization error of `side` and `direction` whose message is
/// `message`, and that its text says so.
#[track_caller]
fn assert_fails<T: std::fmt::Debug>(
    outcome: Result<T, TaskError>,
    side: Side,
    direction: Direction,
    message: &str,
    text: &str,
) {
    match outcome {
        Err(e @ TaskError::Serialization { .. }) => {
            let TaskError::Serialization { side: s, direction: d, message: m } = &e else {
                unreachable!()
            };
            assert_eq!((*s, *d, m.as_str()), (side, direction, message));
            assert_eq!(e.to_string(), format!("{text}: {message}"));
        }
        other => panic!("expected a {direction} error of the {side}, got {other:?}"),
    }
}

#[test]
fn each_value_fails_alone_saying_where_and_why() {
    let pool = ProcessPool::new(1).unwrap();
    let refused = "this value refuses to be serialized";
    assert_fails(
        pool.apply(take_unserializable, Unserializable),
        Side::Argument,
        Direction::Encode,
        refused,
        "could not encode the argument in the caller",
    );
    assert_fails(
        pool.apply(take_undeserializable, Undeserializable(5)),
        Side::Argument,
        Direction::Decode,
        "5 cannot be read back",
        "could not decode the argument in the worker",
    );
    assert_fails(
        pool.apply(make_unserializable, 0),
        Side::Result,
        Direction::Encode,
        refused,
        "could not encode the result in the worker",
    );
    assert_fails(
        pool.apply(make_undeserializable, 6),
        Side::Result,
        Direction::Decode,
        "6 cannot be read back",
        "could not decode the result in the caller",
    );
    assert_fails(
        pool.apply(BadState { state: Unserializable }, 1),
        Side::Task,
        Direction::Encode,
        refused,
        "could not encode the task state in the caller",
    );
    assert_fails(
        pool.apply(BadState { state: Undeserializable(7) }, 1),
        Side::Task,
        Direction::Decode,
        "7 cannot be read back",
        "could not decode the task state in the worker",
    );
    // In a batch, only the failing items fail.
    let outcomes = pool.map_results(make_undeserializable, [1, 2]);
    assert!(outcomes.iter().all(|o| matches!(o, Err(TaskError::Serialization { .. }))));
    assert_eq!(pool.map(square, [1, 2, 3]).unwrap(), [1, 4, 9]);
}

#[test]
fn a_one_off_process_reports_the_same_errors() {
    assert_fails(
        spawn(take_unserializable, Unserializable).map(|_| ()),
        Side::Argument,
        Direction::Encode,
        "this value refuses to be serialized",
        "could not encode the argument in the caller",
    );
    assert_fails(
        spawn(make_undeserializable, 8).unwrap().join(),
        Side::Result,
        Direction::Decode,
        "8 cannot be read back",
        "could not decode the result in the caller",
    );
    assert_fails(
        spawn(take_undeserializable, Undeserializable(9)).unwrap().join(),
        Side::Argument,
        Direction::Decode,
        "9 cannot be read back",
        "could not decode the argument in the worker",
    );
}

fn bytes_of_len(n: u64) -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from(vec![7; usize::try_from(n).unwrap()])
}

fn echo(bytes: serde_bytes::ByteBuf) -> serde_bytes::ByteBuf {
    bytes
}

#[test]
fn an_argument_over_the_limit_fails_before_sending() {
    let pool = ProcessPool::with_config(
        ProcessConfig::new(Config::new().workers(1)).max_frame_bytes(1024),
    )
    .unwrap();
    match pool.apply(echo, serde_bytes::ByteBuf::from(vec![0; 4096])) {
        Err(TaskError::TooLarge { side: Side::Argument, size, limit: 1024 }) => {
            assert!(size > 4096)
        }
        other => panic!("expected an oversized argument error, got {other:?}"),
    }
    assert_eq!(pool.apply(echo, serde_bytes::ByteBuf::from(vec![1; 100])).unwrap().len(), 100);
}

#[test]
fn a_result_over_the_limit_fails_alone() {
    let pool = ProcessPool::with_config(
        ProcessConfig::new(Config::new().workers(1)).max_frame_bytes(1024),
    )
    .unwrap();
    let outcomes = pool.map_results(bytes_of_len, [10, 5000, 20]);
    assert_eq!(outcomes[0].as_ref().unwrap().len(), 10);
    match &outcomes[1] {
        Err(TaskError::TooLarge { side: Side::Result, size, limit: 1024 }) => assert!(*size > 5000),
        other => panic!("expected an oversized result error, got {other:?}"),
    }
    assert_eq!(outcomes[2].as_ref().unwrap().len(), 20);
}

/// `len` bytes, each `len % 251`.
fn sized(len: u64) -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from(vec![(len % 251) as u8; usize::try_from(len).unwrap()])
}

/// Results over the large-value size (written from their own buffer, after the frames
/// before them) and small ones, in one batch: each comes back whole, in order.
#[test]
fn large_and_small_results_of_one_batch_keep_their_order() {
    let pool = ProcessPool::with_config(Config::new().workers(1).chunk_size(6)).unwrap();
    let lens = [10, 5 << 20, 20, 6 << 20, 0, 30];
    let back = pool.map(sized, lens).unwrap();
    assert_eq!(back.len(), lens.len());
    for (len, buf) in lens.into_iter().zip(back) {
        assert_eq!(buf.len() as u64, len);
        assert!(buf.iter().all(|&b| u64::from(b) == len % 251), "the result of {len} bytes");
    }
}

#[test]
fn large_payloads_round_trip() {
    let pool = ProcessPool::new(2).unwrap();
    for len in [0, 1 << 10, 1 << 16, 1 << 20, 16 << 20] {
        let back = pool.apply(echo, serde_bytes::ByteBuf::from(vec![3; len])).unwrap();
        assert_eq!(back.len(), len);
        assert!(back.iter().all(|&b| b == 3));
    }
}

#[test]
fn arguments_over_the_limit_fail_alone_in_a_batch_and_the_rest_keep_their_places() {
    let pool = ProcessPool::with_config(
        ProcessConfig::new(Config::new().workers(2)).max_frame_bytes(1024),
    )
    .unwrap();
    let sizes = [10usize, 4096, 20, 30, 5000, 40];
    let inputs = || sizes.iter().map(|&n| serde_bytes::ByteBuf::from(vec![n as u8; n]));
    let outcomes = pool.map_results(echo, inputs());
    assert_eq!(outcomes.len(), sizes.len());
    for (outcome, &n) in outcomes.iter().zip(&sizes) {
        match outcome {
            Ok(bytes) => assert_eq!(bytes.as_ref(), vec![n as u8; n], "item of {n} bytes"),
            Err(TaskError::TooLarge { side: Side::Argument, limit: 1024, .. }) => {
                assert!(n > 1024, "only the large ones fail, not {n}");
            }
            other => panic!("item of {n} bytes: {other:?}"),
        }
    }
    assert!(matches!(
        pool.map(echo, inputs()),
        Err(TaskError::TooLarge { side: Side::Argument, .. })
    ));
    let streamed: Vec<_> = pool.imap(echo, inputs()).map(|o| o.map(|b| b.len())).collect();
    assert_eq!(streamed.len(), sizes.len());
    for (outcome, &n) in streamed.iter().zip(&sizes) {
        match outcome {
            Ok(len) => assert_eq!(*len, n, "item of {n} bytes"),
            Err(TaskError::TooLarge { side: Side::Argument, limit: 1024, .. }) => {
                assert!(n > 1024, "only the large ones fail, not {n}");
            }
            other => panic!("item of {n} bytes: {other:?}"),
        }
    }
    assert_eq!(streamed.iter().filter(|o| o.is_err()).count(), 2);
}

/// The length of the `i`th input of a long `map`: over the 1 KiB frame limit at and around the
/// places where a long `map` is cut into runs (the first run takes 4,096 items, the next
/// 8,192), small elsewhere.
fn long_map_len(i: usize) -> usize {
    if [0, 4095, 4096, 4097, 12_287, 12_288, 19_999].contains(&i) { 2000 } else { i % 7 }
}

#[test]
fn a_long_map_keeps_every_item_in_place_across_its_runs() {
    let pool = ProcessPool::with_config(
        ProcessConfig::new(Config::new().workers(2)).max_frame_bytes(1024),
    )
    .unwrap();
    let n = 20_000;
    let inputs = || (0..n).map(|i| serde_bytes::ByteBuf::from(vec![i as u8; long_map_len(i)]));
    let outcomes = pool.map_results(echo, inputs());
    assert_eq!(outcomes.len(), n);
    for (i, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Ok(bytes) => assert_eq!(bytes.as_ref(), vec![i as u8; long_map_len(i)], "item {i}"),
            Err(TaskError::TooLarge { side: Side::Argument, limit: 1024, .. }) => {
                assert_eq!(long_map_len(i), 2000, "only the large ones fail, not item {i}");
            }
            other => panic!("item {i}: {other:?}"),
        }
    }
    assert_eq!(outcomes.iter().filter(|o| o.is_err()).count(), 7);
    // Without the large ones, `map` gives every value in order.
    let small = || (0..n).map(|i| serde_bytes::ByteBuf::from(vec![i as u8; i % 7]));
    let values = pool.map(echo, small()).unwrap();
    assert!(values.iter().enumerate().all(|(i, v)| v.as_ref() == vec![i as u8; i % 7]));
    let stats = pool.stats();
    assert_eq!((stats.completed, stats.failed), (2 * n as u64 - 7, 7), "{stats:?}");
}

/// A record in the shapes users' types take: internally tagged, with a flattened part, a
/// field skipped when empty, and free-form JSON.
#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
#[serde(tag = "kind")]
enum Record {
    Reading {
        #[serde(flatten)]
        at: Place,
        #[serde(skip_serializing_if = "Option::is_none", default)]
        note: Option<String>,
        extra: serde_json::Value,
    },
    Gap {
        from: u64,
        to: u64,
    },
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Place {
    sensor: String,
    index: u64,
}

fn record(i: u64) -> Record {
    if i % 5 == 4 {
        return Record::Gap { from: i, to: i + 1 };
    }
    Record::Reading {
        at: Place { sensor: format!("s{}", i % 3), index: i },
        note: i.is_multiple_of(2).then(|| format!("even {i}")),
        extra: serde_json::json!({ "i": i, "tags": ["a", i.to_string()], "ok": i.is_multiple_of(3) }),
    }
}

/// Moves a record one index on, keeping its shape.
fn next_record(record: Record) -> Record {
    match record {
        Record::Reading { at, note, extra } => {
            Record::Reading { at: Place { index: at.index + 1, ..at }, note, extra }
        }
        Record::Gap { from, to } => Record::Gap { from: from + 1, to: to + 1 },
    }
}

fn moved(i: u64) -> Record {
    next_record(record(i))
}

#[test]
fn a_long_map_of_tagged_flattened_json_records_comes_back_whole_and_in_order() {
    // Over 4,096 items: several runs, many result frames, each value naming its own fields.
    let pool = ProcessPool::new(2).unwrap();
    let n = 10_000;
    let values = pool.map(next_record, (0..n).map(record)).unwrap();
    assert_eq!(values.len(), n as usize);
    for (i, value) in (0..n).zip(&values) {
        assert_eq!(value, &moved(i), "item {i}");
    }
    // The same pool, the records as plain JSON values now.
    let json = pool
        .map(|v: serde_json::Value| v, (0..n).map(|i| serde_json::to_value(record(i)).unwrap()));
    let json = json.unwrap();
    assert!((0..n).zip(&json).all(|(i, v)| v == &serde_json::to_value(record(i)).unwrap()));
}

/// A number whose `Deserialize` panics for 2.
#[derive(Debug, Serialize)]
pub struct PanicsOnTwo(u64);

impl<'de> Deserialize<'de> for PanicsOnTwo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        assert_ne!(n, 2, "two cannot be read back");
        Ok(PanicsOnTwo(n))
    }
}

/// A value whose `Drop` panics once it has been decoded (in the worker), not in the caller.
#[derive(Debug, Serialize)]
pub struct PanicsOnDropThere {
    #[serde(skip)]
    decoded: bool,
}

impl<'de> Deserialize<'de> for PanicsOnDropThere {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| PanicsOnDropThere { decoded: true })
    }
}

impl Drop for PanicsOnDropThere {
    fn drop(&mut self) {
        if self.decoded && !std::thread::panicking() {
            panic!("dropped in the worker");
        }
    }
}

#[test]
fn a_task_state_that_panics_as_it_is_decoded_or_dropped_leaves_its_worker_serving() {
    let pool = ProcessPool::new(1).unwrap();
    let worker = pool.apply(worker_pid, 0).unwrap();
    // Its items fail as an argument that panics as it is decoded fails: `Panicked`, with the
    // message and where. Before, the panic could not unwind: every worker that decoded the
    // state aborted, and the pool gave up starting them.
    let outcomes = pool.map_results(BadState { state: PanicsOnTwo(2) }, 0..10);
    assert_eq!(outcomes.len(), 10);
    for outcome in outcomes {
        match outcome {
            Err(TaskError::Panicked(report)) => {
                assert_eq!(
                    report.message,
                    "assertion `left != right` failed: two cannot be read back\n  left: 2\n right: 2"
                );
                assert!(report.location.unwrap().contains("serialization.rs"));
            }
            other => panic!("expected Panicked, got {other:?}"),
        }
    }
    assert_eq!(pool.map(BadState { state: PanicsOnTwo(3) }, [1, 2]).unwrap(), [1, 2]);
    // The state's `Drop` runs once its batch's items are settled: the panic is printed there.
    let dropped = pool.map(BadState { state: PanicsOnDropThere { decoded: false } }, 0..6);
    assert_eq!(dropped.unwrap(), [0, 1, 2, 3, 4, 5]);
    assert_eq!(pool.apply(worker_pid, 0).unwrap(), worker, "the same worker served it all");
    let stats = pool.stats();
    assert_eq!((stats.crashes, stats.requeued, stats.workers_started), (0, 0, 1));
}

/// A value whose `Drop` panics in the caller (where it was made), not once decoded.
#[derive(Debug, Serialize)]
pub struct PanicsOnDropHere {
    #[serde(skip)]
    decoded: bool,
}

impl<'de> Deserialize<'de> for PanicsOnDropHere {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| PanicsOnDropHere { decoded: true })
    }
}

impl Drop for PanicsOnDropHere {
    fn drop(&mut self) {
        if !self.decoded && !std::thread::panicking() {
            panic!("dropped in the caller");
        }
    }
}

fn take_it(_: PanicsOnDropHere) -> u64 {
    7
}

#[test]
fn arguments_whose_drop_panics_in_the_caller_cost_no_outcome() {
    // The caller's copy of each argument is dropped once encoded: its panic is printed and
    // goes no further, as on a thread pool's thread. Before, it unwound out of `map` and the
    // whole call's outcomes were lost.
    let pool = ProcessPool::new(2).unwrap();
    let here = || (0..5).map(|_| PanicsOnDropHere { decoded: false });
    assert_eq!(pool.map(take_it, here()).unwrap(), [7; 5]);
    assert!(pool.map_results(take_it, here()).iter().all(|o| matches!(o, Ok(7))));
    assert_eq!(pool.imap(take_it, here()).collect::<Result<Vec<_>, _>>().unwrap(), [7; 5]);
    assert_eq!(pool.submit(take_it, PanicsOnDropHere { decoded: false }).join().unwrap(), 7);
    assert_eq!(pool.apply(take_it, PanicsOnDropHere { decoded: false }).unwrap(), 7);
}

/// A struct with a field serde leaves out: it arrives as its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Cached {
    key: u8,
    #[serde(skip)]
    cache: Vec<u8>,
}

/// An untagged enum with a 128-bit variant: serde replays untagged values from a buffer that
/// has no 128-bit integers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Wide {
    Big(u128),
    Text(String),
}

fn echo_path(path: std::path::PathBuf) -> std::path::PathBuf {
    path
}

fn echo_cached(value: Cached) -> Cached {
    value
}

fn echo_wide(value: Wide) -> Wide {
    value
}

/// What serde refuses or leaves out shows on processes only: threads hand values over as they
/// are, without serde. A path that is not UTF-8 fails to encode, a 128-bit integer inside an
/// untagged enum fails to decode, and a `#[serde(skip)]` field arrives as its default.
#[test]
fn what_serde_refuses_or_leaves_out_fails_or_changes_on_processes_only() {
    use std::os::unix::ffi::OsStrExt;

    let path = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(b"/data/\xff"));
    let cached = Cached { key: 1, cache: vec![1, 2, 3] };
    let wide = Wide::Big(5);

    let threads = taskpool_thread::ThreadPool::new(1).unwrap();
    assert_eq!(threads.apply(echo_path, path.clone()).unwrap(), path);
    assert_eq!(threads.apply(echo_cached, cached.clone()).unwrap(), cached);
    assert_eq!(threads.apply(echo_wide, wide.clone()).unwrap(), wide);

    let pool = ProcessPool::new(1).unwrap();
    assert_fails(
        pool.apply(echo_path, path),
        Side::Argument,
        Direction::Encode,
        "path contains invalid UTF-8 characters",
        "could not encode the argument in the caller",
    );
    assert_eq!(pool.apply(echo_cached, cached).unwrap(), Cached { key: 1, cache: Vec::new() });
    assert!(
        matches!(
            pool.apply(echo_wide, wide),
            Err(TaskError::Serialization {
                side: Side::Argument,
                direction: Direction::Decode,
                ..
            })
        ),
        "a u128 in an untagged enum"
    );
    assert_eq!(pool.apply(echo_wide, Wide::Text("t".into())).unwrap(), Wide::Text("t".into()));
}

/// A chain whose `Deserialize` takes 48 KiB of stack per link, as a struct of large fields may
/// in a debug build.
#[derive(Debug, Serialize)]
pub struct Heavy(Option<Box<Heavy>>);

impl<'de> Deserialize<'de> for Heavy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut frame = [0u8; 48 << 10];
        std::hint::black_box(&mut frame);
        let next = Option::<Box<Heavy>>::deserialize(d)?;
        std::hint::black_box(&mut frame);
        Ok(Heavy(next))
    }
}

impl Heavy {
    fn links(&self) -> u64 {
        let (mut n, mut at) = (0, self);
        while let Some(next) = &at.0 {
            (n, at) = (n + 1, next);
        }
        n
    }
}

fn heavy(links: u64) -> Heavy {
    (0..links).fold(Heavy(None), |chain, _| Heavy(Some(Box::new(chain))))
}

fn count_links(chain: Heavy) -> u64 {
    chain.links()
}

/// Asserts that `outcome` is a decoding error of `side` because the value nests too deep.
#[track_caller]
fn assert_too_deep<T: std::fmt::Debug>(outcome: Result<T, TaskError>, side: Side) {
    match outcome {
        Err(TaskError::Serialization { side: s, direction: Direction::Decode, message })
            if s == side =>
        {
            assert!(message.starts_with("the value nests too deep"), "{message}");
        }
        other => panic!("expected a decode error of the {side}, got {other:?}"),
    }
}

#[test]
fn a_value_within_the_stack_budget_decodes_on_any_thread_of_the_default_size() {
    // About 1.2 MiB of stack to decode, within the 1.5 MiB a pool's result may take: on a
    // supervisor, and on this test's thread (2 MiB) when it reads results itself, alike.
    let pool = ProcessPool::new(1).unwrap();
    for _ in 0..20 {
        assert_eq!(pool.apply(heavy, 24).unwrap().links(), 24);
    }
    let chains = pool.map(heavy, [24, 1, 24]).unwrap();
    assert_eq!(chains.iter().map(Heavy::links).collect::<Vec<_>>(), [24, 1, 24]);
    assert_eq!(spawn(heavy, 24).unwrap().join().unwrap().links(), 24);
    // An argument decodes on the worker's main thread, with a main thread's stack (8 MiB by
    // default): about 3 MiB is within it, as in the program's `main`.
    assert_eq!(pool.apply(count_links, heavy(64)).unwrap(), 64);
}

#[test]
fn a_thread_with_a_small_stack_fails_a_value_too_deep_for_it_without_a_crash() {
    // A one-off's result decodes on the thread that joins it: here, one of 512 KiB.
    let small = std::thread::Builder::new().stack_size(512 << 10);
    let joined = small.spawn(|| spawn(heavy, 24).unwrap().join().map(|h| h.links())).unwrap();
    match joined.join().unwrap() {
        Err(TaskError::Serialization {
            side: Side::Result,
            direction: Direction::Decode,
            message,
        }) => {
            assert!(
                message.starts_with("the value nests too deep for the 512 KiB stack"),
                "{message}"
            );
        }
        other => panic!("expected a decode error of the result, got {other:?}"),
    }
}

#[test]
fn a_value_too_deep_for_the_stack_fails_alone_without_a_crash() {
    // About 10 MiB of stack to decode: more than a result may take, and than a worker's main
    // thread has.
    let pool = ProcessPool::new(1).unwrap();
    assert_too_deep(pool.apply(heavy, 200), Side::Result);
    // A worker's main thread has a main thread's stack: within a limit, the argument fails
    // there before it would overflow it (the worker would die of SIGSEGV).
    let limit = rustix::process::getrlimit(rustix::process::Resource::Stack).current;
    if limit.is_some_and(|bytes| bytes <= 8 << 20) {
        assert_too_deep(pool.apply(count_links, heavy(200)), Side::Argument);
    }
    let outcomes = pool.map_results(heavy, [1, 200, 2]);
    assert_eq!(outcomes[0].as_ref().unwrap().links(), 1);
    assert_too_deep(outcomes.into_iter().nth(1).unwrap(), Side::Result);
    assert_eq!(pool.map(square, [1, 2, 3]).unwrap(), [1, 4, 9]);
    assert_eq!(pool.stats().crashes, 0);
}

/// A result whose `Drop` panics wherever it runs.
#[derive(Debug, Serialize, Deserialize)]
pub struct PanicsOnDrop(u64);

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("a result dropped");
        }
    }
}

fn make_panics_on_drop(n: u64) -> PanicsOnDrop {
    PanicsOnDrop(n)
}

/// Takes the number out of a result without running its `Drop` in the caller.
fn number(value: PanicsOnDrop) -> u64 {
    let value = std::mem::ManuallyDrop::new(value);
    value.0
}

#[test]
fn a_result_whose_drop_panics_in_the_worker_still_arrives() {
    // The worker drops its copy once encoded: the panic is printed and goes no further, as
    // on a thread pool, where the caller's copy is the only one.
    let pool = ProcessPool::new(1).unwrap();
    let worker = pool.apply(worker_pid, 0).unwrap();
    assert_eq!(pool.apply(make_panics_on_drop, 4).map(number).unwrap(), 4);
    let values = pool.map(make_panics_on_drop, [1, 2, 3]).unwrap();
    assert_eq!(values.into_iter().map(number).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(spawn(make_panics_on_drop, 5).unwrap().join().map(number).unwrap(), 5);
    assert_eq!(pool.apply(worker_pid, 0).unwrap(), worker, "the same worker served it all");
}

/// A number whose `Deserialize` panics.
#[derive(Debug, Serialize)]
pub struct PanicsAsDecoded(u64);

impl<'de> Deserialize<'de> for PanicsAsDecoded {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        panic!("{n} cannot be decoded")
    }
}

fn make_panics_as_decoded(n: u64) -> PanicsAsDecoded {
    PanicsAsDecoded(n)
}

#[test]
fn a_one_off_result_whose_deserialize_panics_fails_as_in_a_pool() {
    let pool = ProcessPool::new(1).unwrap();
    let text = "could not decode the result in the caller";
    let message = "its Deserialize panicked: 6 cannot be decoded";
    assert_fails(
        pool.apply(make_panics_as_decoded, 6),
        Side::Result,
        Direction::Decode,
        message,
        text,
    );
    // Before, the panic unwound out of `join` into the caller.
    let joined = spawn(make_panics_as_decoded, 6).unwrap().join();
    assert_fails(joined, Side::Result, Direction::Decode, message, text);
}

/// A value whose `Serialize` panics.
#[derive(Debug, Deserialize)]
pub struct PanicsAsEncoded(u64);

impl Serialize for PanicsAsEncoded {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("{} cannot be encoded", self.0)
    }
}

fn take_panics_as_encoded(value: PanicsAsEncoded) -> u64 {
    value.0
}

#[test]
fn an_argument_whose_serialize_panics_in_the_caller_fails_alone() {
    // As a result whose `Deserialize` panics: before, the panic unwound out of the pool's call
    // and a batch lost the outcomes of its other items.
    let pool = ProcessPool::new(1).unwrap();
    let text = "could not encode the argument in the caller";
    let message = |n: u64| format!("its Serialize panicked: {n} cannot be encoded");
    let outcome = pool.apply(take_panics_as_encoded, PanicsAsEncoded(1));
    assert_fails(outcome, Side::Argument, Direction::Encode, &message(1), text);
    let joined = pool.submit(take_panics_as_encoded, PanicsAsEncoded(2)).join();
    assert_fails(joined, Side::Argument, Direction::Encode, &message(2), text);
    let joined = spawn(take_panics_as_encoded, PanicsAsEncoded(3)).map(|_| ());
    assert_fails(joined, Side::Argument, Direction::Encode, &message(3), text);
    let state = pool.apply(BadState { state: PanicsAsEncoded(4) }, 1);
    assert_fails(
        state,
        Side::Task,
        Direction::Encode,
        &message(4),
        "could not encode the task state in the caller",
    );
    let mut outcomes = pool.map_results(take_panics_as_encoded, [PanicsAsEncoded(5)]).into_iter();
    let outcome = outcomes.next().unwrap();
    assert_fails(outcome, Side::Argument, Direction::Encode, &message(5), text);
    assert_eq!(pool.map(square, [1, 2, 3]).unwrap(), [1, 4, 9]);
}
