//! Queue handles and shared bytes in task arguments that never reach a worker (the task
//! cancelled while queued or skipped, its `imap` dropped with inputs unsent, the argument
//! refused as too large, a one-off's argument that fails to encode) are given back: a
//! consumer whose only producer was in such an argument gets `Disconnected`, and this process
//! lets go of such shared bytes. Shared bytes a task took are let go when the task ends, not
//! at this process's next use of them.

mod common;

use std::time::Duration;

use common::{made, memfds, within};
use taskpool_process::{
    Config, Consumer, GetError, Pool, ProcessConfig, ProcessPool, Producer, Queue, SharedBytes,
    TaskError, spawn,
};

/// Holds the producer, puts nothing; waits for `gate` first if it has one.
fn hold((producer, gate): (Producer<u64>, Option<Consumer<u8>>)) -> u64 {
    if let Some(gate) = gate {
        gate.get().unwrap();
    }
    drop(producer);
    1
}

/// The bytes' length; waits for `gate` first if it has one.
fn length((data, gate): (SharedBytes, Option<Consumer<u8>>)) -> usize {
    if let Some(gate) = gate {
        gate.get().unwrap();
    }
    data.len()
}

/// Never returns: a worker that runs it never becomes ready, so tasks stay queued.
fn never_ready() {
    loop {
        std::thread::park();
    }
}

/// One worker that never becomes ready: every task waits in the pool's queue.
fn stuck_pool() -> ProcessPool {
    let config =
        Config::new().workers(1).initializer(never_ready).shutdown_grace(Duration::from_millis(10));
    ProcessPool::with_config(config).unwrap()
}

/// A queue of which the caller keeps only a consumer, and one producer to give away.
fn consumer_and_producer() -> (Consumer<u64>, Producer<u64>) {
    let queue = Queue::<u64>::new().unwrap();
    (queue.consumer().unwrap(), queue.producer().unwrap())
}

/// A gate a task waits at: its consumer for the task, its producer to open it.
fn gate() -> (Consumer<u8>, Producer<u8>) {
    let queue = Queue::<u8>::new().unwrap();
    (queue.consumer().unwrap(), queue.producer().unwrap())
}

/// Held by the tests that count this process's memfds of shared bytes, one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_producer_in_a_task_cancelled_while_queued_is_given_back() {
    within("a cancelled task's producer", || {
        let pool = stuck_pool();
        let (consumer, producer) = consumer_and_producer();
        let task = pool.submit(hold, (producer, None));
        assert!(task.cancel(), "the task was still queued");
        assert_eq!(consumer.get_timeout(Duration::ZERO), Err(GetError::Disconnected));
    });
}

#[test]
fn a_producer_in_a_task_cancelled_behind_a_running_one_is_given_back() {
    within("a producer cancelled behind a running task", || {
        let pool = ProcessPool::new(1).unwrap();
        let (wait, open) = gate();
        let (consumer, producer) = consumer_and_producer();
        let (first_consumer, first_producer) = consumer_and_producer();
        let running = pool.submit(hold, (first_producer, Some(wait)));
        // Queued or already sent to the worker (which skips it): given back either way.
        let cancelled = pool.submit(hold, (producer, None));
        assert!(cancelled.cancel());
        open.put(1).unwrap();
        assert_eq!(running.join().unwrap(), 1);
        assert_eq!(first_consumer.get(), Err(GetError::Disconnected), "the one that ran");
        assert_eq!(consumer.get(), Err(GetError::Disconnected), "the one cancelled");
    });
}

/// The argument of [`hold_signalled`]: a producer to hold, a queue to say it started on and
/// a gate to wait for, each if any.
type Signalled = (Option<Producer<u64>>, Option<Producer<u8>>, Option<Consumer<u8>>);

/// Holds the producer, if any, and puts nothing; says it started on `started` and waits for
/// `gate`, if it has them.
fn hold_signalled((producer, started, gate): Signalled) -> u64 {
    if let Some(started) = started {
        started.put(1).unwrap();
    }
    if let Some(gate) = gate {
        gate.get().unwrap();
    }
    drop(producer);
    1
}

#[test]
fn a_producer_in_a_task_cancelled_in_the_frame_of_a_running_one_is_given_back() {
    within("a producer cancelled in a running task's frame", || {
        let pool = ProcessPool::new(1).unwrap();
        // Measured fast, the function's single tasks that queue while the worker is busy
        // travel together, in one frame, once it is free.
        for _ in 0..20 {
            assert_eq!(pool.apply(hold_signalled, (None, None, None)).unwrap(), 1);
        }
        let (busy_wait, busy_open) = gate();
        let (_busy_consumer, busy_producer) = consumer_and_producer();
        let busy = pool.submit(hold, (busy_producer, Some(busy_wait)));
        let (started, started_producer) = gate();
        let (wait, open) = gate();
        let (first_consumer, first_producer) = consumer_and_producer();
        let (consumer, producer) = consumer_and_producer();
        let running =
            pool.submit(hold_signalled, (Some(first_producer), Some(started_producer), Some(wait)));
        let cancelled = pool.submit(hold_signalled, (Some(producer), None, None));
        busy_open.put(1).unwrap();
        assert_eq!(busy.join().unwrap(), 1);
        // Started: the task behind it was sent by then (with it, or in a frame of its own
        // right after it), so the worker is the one that skips it.
        started.get().unwrap();
        assert!(cancelled.cancel(), "it had not started");
        open.put(1).unwrap();
        assert_eq!(running.join().unwrap(), 1);
        assert!(matches!(cancelled.join(), Err(TaskError::Cancelled)));
        assert_eq!(first_consumer.get(), Err(GetError::Disconnected), "the one that ran");
        assert_eq!(consumer.get(), Err(GetError::Disconnected), "the one cancelled");
    });
}

#[test]
fn producers_in_the_unsent_inputs_of_a_dropped_imap_are_given_back() {
    within("a dropped imap's producers", || {
        let pool =
            ProcessPool::with_config(ProcessConfig::new(Config::new().workers(1)).in_flight(1))
                .unwrap();
        let (wait, open) = gate();
        let (consumer, producer) = consumer_and_producer();
        let items = (0..10_000u64).map(move |i| (producer.clone(), (i == 1).then(|| wait.clone())));
        let mut results = pool.imap(hold, items);
        assert_eq!(results.next().unwrap().unwrap(), 1);
        // Item 1 waits at the gate; many more were pulled and not sent.
        drop(results);
        open.put(1).unwrap();
        assert_eq!(consumer.get(), Err(GetError::Disconnected));
    });
}

#[test]
fn a_producer_in_an_argument_too_large_to_send_is_given_back() {
    let config = ProcessConfig::new(Config::new().workers(1)).max_frame_bytes(1024);
    let pool = ProcessPool::with_config(config).unwrap();
    let (consumer, producer) = consumer_and_producer();
    let err = pool.apply(hold_with_ballast, (producer, vec![0u8; 4096])).unwrap_err();
    assert!(matches!(err, TaskError::TooLarge { .. }), "{err}");
    assert_eq!(consumer.get_timeout(Duration::ZERO), Err(GetError::Disconnected));
}

/// A value that refuses to be serialized (and would read back as itself).
#[derive(serde::Deserialize)]
struct Refuses;

impl serde::Serialize for Refuses {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this value refuses to be serialized"))
    }
}

/// Holds the producer, and a value that never gets here.
fn hold_refused((producer, _): (Producer<u64>, Refuses)) -> u64 {
    drop(producer);
    1
}

#[test]
fn a_producer_in_a_one_off_argument_that_fails_to_encode_is_given_back() {
    let (consumer, producer) = consumer_and_producer();
    let err = spawn(hold_refused, (producer, Refuses)).map(drop).unwrap_err();
    assert!(matches!(err, TaskError::Serialization { .. }), "{err}");
    assert_eq!(consumer.get_timeout(Duration::ZERO), Err(GetError::Disconnected));
}

#[test]
fn a_producer_a_one_off_took_is_still_handed_over() {
    let (consumer, producer) = consumer_and_producer();
    let child = spawn(hold_and_put, producer).unwrap();
    assert_eq!(consumer.get().unwrap(), 7);
    assert_eq!(child.join().unwrap(), 1);
    assert_eq!(consumer.get(), Err(GetError::Disconnected));
}

/// Puts 7, then lets go of the producer.
fn hold_and_put(producer: Producer<u64>) -> u64 {
    producer.put(7).unwrap();
    1
}

/// Holds the producer and some ballast.
fn hold_with_ballast((producer, ballast): (Producer<u64>, Vec<u8>)) -> usize {
    drop(producer);
    ballast.len()
}

/// Holds the bytes and some ballast.
fn bytes_with_ballast((data, ballast): (SharedBytes, Vec<u8>)) -> usize {
    data.len() + ballast.len()
}

#[test]
fn shared_bytes_in_arguments_that_never_reach_a_worker_are_let_go() {
    let _serial = serial();
    within("shared bytes never sent", || {
        let before = memfds();
        // Too large to send.
        let config = ProcessConfig::new(Config::new().workers(1)).max_frame_bytes(1024);
        let pool = ProcessPool::with_config(config).unwrap();
        let err = pool.apply(bytes_with_ballast, (made(4096, 1), vec![0u8; 4096])).unwrap_err();
        assert!(matches!(err, TaskError::TooLarge { .. }), "{err}");
        assert_eq!(memfds(), before, "let go of the bytes too large to send");
        drop(pool);

        // Cancelled while queued.
        let pool = stuck_pool();
        let task = pool.submit(length, (made(4096, 2), None));
        assert!(memfds() > before, "the queued task holds its bytes");
        assert!(task.cancel());
        assert_eq!(memfds(), before, "let go of the cancelled task's bytes");
        drop(pool);

        // Pulled by an imap, never sent, and the imap dropped.
        let pool =
            ProcessPool::with_config(ProcessConfig::new(Config::new().workers(1)).in_flight(1))
                .unwrap();
        let (wait, open) = gate();
        let data = made(4096, 3);
        let items = (0..1000u64).map(move |i| (data.clone(), (i == 1).then(|| wait.clone())));
        let mut results = pool.imap(length, items);
        assert_eq!(results.next().unwrap().unwrap(), 4096);
        drop(results);
        open.put(1).unwrap();
        pool.shutdown(); // every item sent has been answered
        assert_eq!(memfds(), before, "let go of the dropped imap's bytes");
    });
}

#[test]
fn shared_bytes_a_task_took_are_let_go_when_it_ends() {
    let _serial = serial();
    within("shared bytes moved into a task", || {
        let pool = ProcessPool::new(1).unwrap();
        let before = memfds();
        assert_eq!(pool.apply(length, (made(1 << 20, 4), None)).unwrap(), 1 << 20);
        let task = pool.submit(length, (made(1 << 20, 5), None));
        assert_eq!(task.join().unwrap(), 1 << 20);
        pool.shutdown(); // every outcome was delivered
        assert_eq!(memfds(), before, "let go once the tasks ended, with no other use");
    });
}

/// One item of a `map`: puts values, or takes them until every producer is gone.
#[derive(serde::Serialize, serde::Deserialize)]
enum Role {
    Put(Producer<u64>, u64),
    Drain(Consumer<u64>),
}

/// Plays its role; returns how many values it put or took.
fn play(role: Role) -> u64 {
    match role {
        Role::Put(producer, n) => {
            (0..n).for_each(|i| producer.put(i).unwrap());
            n
        }
        Role::Drain(consumer) => common::drain(&consumer).len() as u64,
    }
}

#[test]
fn a_later_item_of_the_same_batch_sees_an_earlier_items_producer_go() {
    within("a producer and its consumer in one batch", || {
        let config = Config::new().workers(1).chunk_size(2);
        let pool = ProcessPool::with_config(config).unwrap();
        let queue = Queue::<u64>::new().unwrap();
        let roles =
            [Role::Put(queue.producer().unwrap(), 5), Role::Drain(queue.consumer().unwrap())];
        drop(queue);
        assert_eq!(pool.map(play, roles).unwrap(), [5, 5]);
    });
}
