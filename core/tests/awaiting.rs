//! Task handles awaited on two async runtimes, tokio and `futures`' executor, with the thread
//! backend (the conformance suite awaits handles on every backend).

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use taskpool_core::{Pool, TaskError};
use taskpool_thread::ThreadPool;

fn square(x: u64) -> u64 {
    x * x
}

fn fail(_: u64) -> u64 {
    panic!("deliberate")
}

/// Opened by the async side; [`wait_for_gate`] blocks until then.
static GATE: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

fn wait_for_gate(x: u64) -> u64 {
    let (open, changed) = &GATE;
    let mut open = open.lock().unwrap();
    while !*open {
        open = changed.wait(open).unwrap();
    }
    x
}

fn open_gate() {
    *GATE.0.lock().unwrap() = true;
    GATE.1.notify_all();
}

/// How long any await may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(60);

/// A tokio runtime of two threads, with timers.
fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap()
}

#[test]
fn tokio_awaits_many_handles_at_once() {
    let pool = ThreadPool::new(2).unwrap();
    let runtime = multi_thread_runtime();
    let handles: Vec<_> = (0..500).map(|i| pool.submit(square, i)).collect();
    let sum = runtime.block_on(async {
        let tasks: Vec<_> = handles.into_iter().map(tokio::spawn).collect();
        let mut sum = 0;
        for task in tasks {
            sum += tokio::time::timeout(HANG, task).await.unwrap().unwrap().unwrap();
        }
        sum
    });
    assert_eq!(sum, (0..500).map(square).sum::<u64>());
}

#[test]
fn awaiting_does_not_block_the_runtime_thread() {
    // One runtime thread: if awaiting the handle blocked it, the task that opens the gate
    // could never run, and the handle would never finish.
    // The runtime runs on a thread of its own: blocked, it could not time itself out, and
    // the test fails here instead of hanging.
    let (tx, awaited) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let pool = ThreadPool::new(1).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let value = runtime.block_on(async {
            let handle = pool.submit(wait_for_gate, 7);
            let opener = tokio::spawn(async { open_gate() });
            let value = handle.await;
            opener.await.unwrap();
            value
        });
        let _ = tx.send(value);
    });
    let value = awaited.recv_timeout(HANG).unwrap_or_else(|_| {
        open_gate();
        panic!("awaiting the handle blocked the runtime's only thread");
    });
    assert_eq!(value.unwrap(), 7);
}

#[test]
fn futures_executor_awaits_values_and_failures() {
    let pool = ThreadPool::new(2).unwrap();
    let ok = pool.submit(square, 9);
    let failed = pool.submit(fail, 0);
    let (ok, failed) = futures_executor::block_on(async { (ok.await, failed.await) });
    assert_eq!(ok.unwrap(), 81);
    match failed {
        Err(TaskError::Panicked(report)) => assert_eq!(report.message, "deliberate"),
        other => panic!("expected a panic, got {other:?}"),
    }
}

#[test]
fn streams_of_handles_are_imap_in_async_code() {
    use futures_util::{StreamExt, stream};

    let pool = ThreadPool::new(2).unwrap();
    let runtime = multi_thread_runtime();
    let (ordered, mut unordered) = runtime.block_on(async {
        let ordered = stream::iter(0..1000).map(|x| pool.submit(square, x)).buffered(8);
        let unordered = stream::iter(0..1000).map(|x| pool.submit(square, x)).buffer_unordered(8);
        let both =
            async { (ordered.collect::<Vec<_>>().await, unordered.collect::<Vec<_>>().await) };
        tokio::time::timeout(HANG, both).await.expect("a stream hung")
    });
    let expected: Vec<u64> = (0..1000).map(square).collect();
    assert_eq!(ordered.into_iter().map(Result::unwrap).collect::<Vec<_>>(), expected);
    unordered.sort_by_key(|r| *r.as_ref().unwrap());
    assert_eq!(unordered.into_iter().map(Result::unwrap).collect::<Vec<_>>(), expected);
}
