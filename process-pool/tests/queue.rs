//! `Queue` and `Pipe` between processes: values cross between the parent, pool workers and
//! one-off processes; a producer or consumer killed in the middle of its work never corrupts
//! the queue nor wedges the others, who get `Disconnected` once nobody is left on the other
//! side (from a put with room and from a poll too); a value larger than the queue fails at
//! once; a consumer and its producer submitted to a new pool run side by side.

mod common;

use common::NeverDecoded;

use std::time::Duration;

use taskpool_process::{
    Consumer, End, GetError, Pipe, Pool, ProcessPool, Producer, PutError, Queue, TaskError, spawn,
};

/// Puts `count` values from `start`; returns how many it put.
fn produce((queue, start, count): (Producer<u64>, u64, u64)) -> u64 {
    for i in start..start + count {
        queue.put(i).unwrap();
    }
    count
}

/// Sums what it gets until every producer is gone.
fn consume(queue: Consumer<u64>) -> u64 {
    let mut sum = 0;
    loop {
        match queue.get() {
            Ok(v) => sum += v,
            Err(GetError::Disconnected) => return sum,
            Err(e) => panic!("consumer: {e}"),
        }
    }
}

#[test]
fn values_cross_between_the_parent_pool_workers_and_spawned_processes() {
    let queue = Queue::<u64>::bounded(64).unwrap();
    let consumers: Vec<_> =
        (0..2).map(|_| spawn(consume, queue.consumer().unwrap()).unwrap()).collect();
    let pool = ProcessPool::new(2).unwrap();
    let producers: Vec<_> =
        (0..2).map(|k| pool.submit(produce, (queue.producer().unwrap(), k * 5000, 5000))).collect();
    for i in 10_000..10_100 {
        queue.put(i).unwrap();
    }
    drop(queue); // the parent puts no more
    for producer in producers {
        assert_eq!(producer.join().unwrap(), 5000);
    }
    let total: u64 = consumers.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(total, (0..10_100).sum::<u64>());
}

#[test]
fn a_consumer_submitted_before_its_producer_runs_beside_it_on_a_new_pool_of_two() {
    // The first worker to say hello must not take both while the second is starting: the
    // consumer would wait for ever for a producer queued behind it.
    common::within("a consumer, then its producer, on new pools", || {
        for round in 0..8 {
            let pool = ProcessPool::new(2).unwrap();
            let queue = Queue::<u64>::bounded(4).unwrap();
            let consumer = pool.submit(consume, queue.consumer().unwrap());
            let producer = pool.submit(produce, (queue.producer().unwrap(), 0, 100));
            drop(queue);
            assert_eq!(producer.join().unwrap(), 100, "round {round}");
            assert_eq!(consumer.join().unwrap(), (0..100).sum::<u64>(), "round {round}");
        }
    });
}

/// The value a flooding producer puts: its tag, then a filler that says the tag again.
fn tagged(tag: u64) -> String {
    let filler = char::from(b'a' + (tag % 26) as u8).to_string().repeat(64 * 1024);
    format!("{tag:020}:{filler}")
}

/// The tag of a value, if the value is whole.
fn tag_of(value: &str) -> Option<u64> {
    let (tag, filler) = value.split_once(':')?;
    let tag: u64 = tag.parse().ok()?;
    let whole = filler.len() == 64 * 1024 && filler == &tagged(tag)[21..];
    whole.then_some(tag)
}

/// Puts values tagged `round` until killed (copies of one value: most of the producer's
/// time goes to copying it into the queue, under the queue's lock, and to encoding it).
fn flood((queue, round): (Producer<String>, u64)) {
    let value = tagged(round);
    loop {
        queue.put(value.clone()).unwrap();
    }
}

/// Checks that every value it gets is whole; returns how many it got once producers are gone.
fn check_whole(queue: Consumer<String>) -> u64 {
    let mut count = 0;
    loop {
        match queue.get() {
            Ok(v) => {
                assert!(tag_of(&v).is_some(), "a torn value");
                count += 1;
            }
            Err(GetError::Disconnected) => return count,
            Err(e) => panic!("checker: {e}"),
        }
    }
}

#[test]
fn producers_killed_mid_put_never_corrupt_the_queue_and_consumers_end_disconnected() {
    const ROUNDS: u64 = 48;
    // Room for many values, so that a producer is rarely waiting when it is killed but
    // copying a value in.
    let queue = Queue::<String>::with_limits(8 << 20, None).unwrap();
    let checker = spawn(check_whole, queue.consumer().unwrap()).unwrap();
    let here = queue.consumer().unwrap();
    let producer = queue.producer().unwrap();
    drop(queue);
    let mut mine = 0u64;
    for round in 0..ROUNDS {
        let mut child = spawn(flood, (producer.clone(), round)).unwrap();
        // The event: a value from this round's producer, so it is in its put loop.
        loop {
            let tag = tag_of(&here.get().unwrap()).expect("a torn value");
            mine += 1;
            if tag == round {
                break;
            }
        }
        child.kill().unwrap();
        assert!(matches!(child.join(), Err(TaskError::Cancelled)));
        // Start the next round empty, so that its producer is copying when it is killed
        // rather than waiting for room.
        while let Ok(v) = here.try_get() {
            assert!(tag_of(&v).is_some(), "a torn value");
            mine += 1;
        }
    }
    drop(producer); // the last live producer handle anywhere
    let end = loop {
        match here.get() {
            Ok(v) => {
                assert!(tag_of(&v).is_some(), "a torn value");
                mine += 1;
            }
            Err(e) => break e,
        }
    };
    assert_eq!(end, GetError::Disconnected);
    let theirs = checker.join().unwrap();
    assert!(mine >= ROUNDS, "{mine} values here, {theirs} in the checker");
}

/// Gets values and acknowledges each on `acks`, until killed.
fn take_and_ack((queue, acks): (Consumer<u32>, Producer<u32>)) {
    loop {
        let v = queue.get().unwrap();
        acks.put(v).unwrap();
    }
}

#[test]
fn consumers_killed_mid_get_leave_producers_working_then_disconnected() {
    let queue = Queue::<u32>::bounded(4).unwrap();
    let acks = Queue::<u32>::new().unwrap();
    let producer = queue.producer().unwrap();
    let consumer = queue.consumer().unwrap();
    let (ack_in, ack_out) = (acks.consumer().unwrap(), acks.producer().unwrap());
    drop((queue, acks));
    for round in 0..8 {
        let mut child = spawn(take_and_ack, (consumer.clone(), ack_out.clone())).unwrap();
        producer.put(round).unwrap();
        assert_eq!(ack_in.get(), Ok(round), "the event: this round's consumer took a value");
        // Keep it busy, so that the kill is likely to land inside a get.
        for _ in 0..3 {
            producer.put(u32::MAX).unwrap();
        }
        child.kill().unwrap();
        assert!(matches!(child.join(), Err(TaskError::Cancelled)));
        // What the killed consumer left: the next round starts from an empty queue.
        while consumer.try_get().is_ok() {}
        while ack_in.try_get().is_ok() {}
    }
    drop(consumer); // the last handle that can get
    let err = loop {
        if let Err(e) = producer.put(7) {
            break e;
        }
    };
    assert_eq!(err, PutError::Disconnected(7));
}

#[test]
fn a_value_larger_than_the_queue_fails_at_once_and_comes_back() {
    let queue = Queue::<String>::with_limits(1024, None).unwrap();
    let big = "x".repeat(4096);
    match queue.put(big.clone()) {
        Err(PutError::TooLarge { value, size, limit }) => {
            assert_eq!(value, big);
            assert!(size > 4096 && limit == 1020, "{size} {limit}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    queue.put("small".into()).unwrap();
    assert_eq!(queue.get().as_deref(), Ok("small"));

    let (a, b) = Pipe::with_bytes::<String>(1024).unwrap();
    assert!(matches!(a.send(big), Err(PutError::TooLarge { .. })));
    a.send("fits".into()).unwrap();
    assert_eq!(b.recv().as_deref(), Ok("fits"));
}

/// Answers each number with its double, until the other end is gone.
fn doubler(end: End<u64>) -> u64 {
    let mut n = 0;
    while let Ok(x) = end.recv() {
        end.send(2 * x).unwrap();
        n += 1;
    }
    n
}

#[test]
fn pipe_ends_talk_both_ways_across_processes_and_see_the_other_go() {
    let (here, there) = Pipe::new::<u64>().unwrap();
    let child = spawn(doubler, there).unwrap();
    for x in 0..1000 {
        here.send(x).unwrap();
        assert_eq!(here.recv(), Ok(2 * x));
    }
    drop(here);
    assert_eq!(child.join().unwrap(), 1000);

    // In a pool worker, and the parent sees the worker's end go when its task returns.
    let (here, there) = Pipe::new::<u64>().unwrap();
    let pool = ProcessPool::new(1).unwrap();
    let task = pool.submit(doubler, there);
    here.send(21).unwrap();
    assert_eq!(here.recv(), Ok(42));
    drop(here);
    assert_eq!(task.join().unwrap(), 1);

    let (here, there) = Pipe::new::<u64>().unwrap();
    let mut child = spawn(doubler, there).unwrap();
    here.send(1).unwrap();
    assert_eq!(here.recv(), Ok(2));
    child.kill().unwrap();
    let _ = child.join();
    assert_eq!(here.recv(), Err(GetError::Disconnected), "the other end's process died");
}

#[test]
fn the_same_queue_works_between_threads_of_the_thread_backend() {
    use taskpool_thread::ThreadPool;
    let queue = Queue::<u64>::new().unwrap();
    let pool = ThreadPool::new(2).unwrap();
    let consumer = pool.submit(consume, queue.consumer().unwrap());
    let producer = taskpool_thread::spawn(produce, (queue.producer().unwrap(), 0, 1000)).unwrap();
    drop(queue);
    assert_eq!(producer.join().unwrap(), 1000);
    assert_eq!(consumer.join().unwrap(), (0..1000).sum::<u64>());
}

#[test]
fn put_fails_with_disconnected_once_every_consumer_is_gone_even_with_room() {
    let queue = Queue::<u32>::bounded(8).unwrap();
    let producer = queue.producer().unwrap();
    let consumer = queue.consumer().unwrap();
    let other = consumer.clone();
    drop(queue);
    producer.put(1).unwrap();
    drop(consumer);
    producer.put(2).unwrap(); // a clone still gets
    drop(other); // the last handle that can get
    assert_eq!(producer.put(3), Err(PutError::Disconnected(3)));
    assert_eq!(producer.try_put(4), Err(PutError::Disconnected(4)));
    let timed = producer.put_timeout(5, Duration::from_secs(60));
    assert_eq!(timed, Err(PutError::Disconnected(5)), "at once, not after the timeout");
}

#[test]
fn try_put_says_disconnected_not_full_once_every_consumer_is_gone() {
    let queue = Queue::<u32>::bounded(1).unwrap();
    let producer = queue.producer().unwrap();
    queue.put(1).unwrap();
    assert_eq!(producer.try_put(2), Err(PutError::Full(2)), "a getter is left");
    drop(queue);
    assert_eq!(producer.try_put(3), Err(PutError::Disconnected(3)));
}

/// Gets one value and returns it, dropping its consumer.
fn take_one(queue: Consumer<u32>) -> u32 {
    queue.get().unwrap()
}

#[test]
fn put_fails_with_disconnected_once_the_consumer_process_or_task_has_ended() {
    common::within("puts after the consumer ended", || {
        let queue = Queue::<u32>::bounded(8).unwrap();
        let producer = queue.producer().unwrap();
        let child = spawn(take_one, queue.consumer().unwrap()).unwrap();
        drop(queue);
        producer.put(1).unwrap();
        assert_eq!(child.join().unwrap(), 1);
        assert_eq!(producer.put(2), Err(PutError::Disconnected(2)));

        let pool = ProcessPool::new(1).unwrap();
        let queue = Queue::<u32>::bounded(8).unwrap();
        let producer = queue.producer().unwrap();
        let task = pool.submit(take_one, queue.consumer().unwrap());
        drop(queue);
        producer.put(3).unwrap();
        assert_eq!(task.join().unwrap(), 3);
        assert_eq!(producer.try_put(4), Err(PutError::Disconnected(4)));
        assert_eq!(pool.apply(common::square, 3).unwrap(), 9, "the worker lives on");
        assert_eq!(producer.put(5), Err(PutError::Disconnected(5)));
    });
}

/// Gets values until killed.
fn take_forever(queue: Consumer<u32>) {
    loop {
        queue.get().unwrap();
    }
}

#[test]
fn try_put_on_a_full_queue_says_disconnected_once_its_consumer_process_was_killed() {
    common::within("polling a full queue after its consumer was killed", || {
        let queue = Queue::<u32>::bounded(1).unwrap();
        let producer = queue.producer().unwrap();
        let mut child = spawn(take_forever, queue.consumer().unwrap()).unwrap();
        drop(queue);
        // The event: the second put found room, so the child took the first value and
        // holds its consumer.
        producer.put(0).unwrap();
        producer.put(1).unwrap();
        child.kill().unwrap();
        let _ = child.join();
        // Its handle was never dropped: it counts until a poll of the full queue asks the
        // kernel. The child may have taken the second value too: a put may find room first.
        let err = loop {
            match producer.try_put(2) {
                Ok(()) | Err(PutError::Full(_)) => std::thread::yield_now(),
                Err(e) => break e,
            }
        };
        assert_eq!(err, PutError::Disconnected(2));
    });
}

#[test]
fn try_get_says_disconnected_once_empty_and_every_producer_is_gone() {
    let queue = Queue::<u32>::new().unwrap();
    let consumer = queue.consumer().unwrap();
    let producer = queue.producer().unwrap();
    drop(queue);
    producer.put(1).unwrap();
    assert_eq!(consumer.try_get(), Ok(1));
    assert_eq!(consumer.try_get(), Err(GetError::Empty), "a producer is left");
    producer.put(2).unwrap();
    drop(producer);
    assert_eq!(consumer.try_get(), Ok(2), "what is left is still taken");
    assert_eq!(consumer.try_get(), Err(GetError::Disconnected));
    assert_eq!(consumer.try_get(), Err(GetError::Disconnected));
}

#[test]
fn polling_try_get_ends_disconnected_once_the_producer_process_has_ended() {
    common::within("polling a queue whose producer ended", || {
        let queue = Queue::<u64>::bounded(4).unwrap();
        let consumer = queue.consumer().unwrap();
        let child = spawn(produce, (queue.producer().unwrap(), 0, 100)).unwrap();
        drop(queue);
        let mut sum = 0;
        loop {
            match consumer.try_get() {
                Ok(v) => sum += v,
                Err(GetError::Empty) => std::thread::yield_now(),
                Err(GetError::Disconnected) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(sum, (0..100).sum::<u64>());
        assert_eq!(child.join().unwrap(), 100);
    });
}

/// Puts one value, then waits until killed.
fn put_one_then_wait(queue: Producer<u32>) {
    queue.put(1).unwrap();
    loop {
        std::thread::park();
    }
}

#[test]
fn try_get_says_disconnected_once_its_producer_process_was_killed() {
    common::within("polling a queue whose producer was killed", || {
        let queue = Queue::<u32>::new().unwrap();
        let consumer = queue.consumer().unwrap();
        let mut child = spawn(put_one_then_wait, queue.producer().unwrap()).unwrap();
        drop(queue);
        assert_eq!(consumer.get(), Ok(1), "the event: the child holds its producer");
        child.kill().unwrap();
        let _ = child.join();
        let end = loop {
            match consumer.try_get() {
                Err(GetError::Empty) => std::thread::yield_now(),
                other => break other,
            }
        };
        assert_eq!(end, Err(GetError::Disconnected));
    });
}

#[test]
fn send_fails_with_disconnected_once_the_other_end_is_gone_even_with_room() {
    let (a, b) = Pipe::new::<u32>().unwrap();
    a.send(1).unwrap();
    drop(b);
    assert_eq!(a.send(2), Err(PutError::Disconnected(2)));
    assert_eq!(a.try_send(3), Err(PutError::Disconnected(3)));
}

/// Receives one value and returns it, dropping its end.
fn recv_one(end: End<u32>) -> u32 {
    end.recv().unwrap()
}

#[test]
fn send_fails_with_disconnected_once_the_other_ends_process_has_ended() {
    common::within("sends after the other end's process ended", || {
        let (here, there) = Pipe::new::<u32>().unwrap();
        let child = spawn(recv_one, there).unwrap();
        here.send(7).unwrap();
        assert_eq!(child.join().unwrap(), 7);
        assert_eq!(here.send(8), Err(PutError::Disconnected(8)));
        assert_eq!(here.try_send(9), Err(PutError::Disconnected(9)));
    });
}

/// Sends one value, then waits to be killed (its end is never dropped).
fn send_then_wait(end: End<u32>) {
    end.send(1).unwrap();
    loop {
        std::thread::park();
    }
}

#[test]
fn a_receive_that_finds_the_other_ends_process_killed_fails_the_sends_too() {
    common::within("sends after a receive saw the other end killed", || {
        let (here, there) = Pipe::new::<u32>().unwrap();
        let mut child = spawn(send_then_wait, there).unwrap();
        assert_eq!(here.recv(), Ok(1), "the event: the child runs");
        child.kill().unwrap();
        assert!(matches!(child.join(), Err(TaskError::Cancelled)));
        // The receive waits, looks, and finds the other end's process dead.
        assert_eq!(here.recv(), Err(GetError::Disconnected));
        // Its sending direction never looked, and has room: the send must not succeed.
        assert_eq!(here.send(2), Err(PutError::Disconnected(2)));
        assert_eq!(here.try_send(3), Err(PutError::Disconnected(3)));
    });
}

#[test]
fn try_recv_says_disconnected_once_empty_and_the_other_end_is_gone() {
    let (a, b) = Pipe::new::<u32>().unwrap();
    assert_eq!(a.try_recv(), Err(GetError::Empty));
    b.send(5).unwrap();
    drop(b);
    assert_eq!(a.try_recv(), Ok(5));
    assert_eq!(a.try_recv(), Err(GetError::Disconnected));
}

/// Sends `0..n` and returns, dropping its end.
fn send_count((end, n): (End<u32>, u32)) -> u32 {
    for i in 0..n {
        end.send(i).unwrap();
    }
    n
}

#[test]
fn polling_try_recv_ends_disconnected_once_the_other_ends_process_has_ended() {
    common::within("polling a pipe whose other end ended", || {
        let (here, there) = Pipe::with_bytes::<u32>(64).unwrap();
        let child = spawn(send_count, (there, 50)).unwrap();
        let mut got = Vec::new();
        loop {
            match here.try_recv() {
                Ok(v) => got.push(v),
                Err(GetError::Empty) => std::thread::yield_now(),
                Err(GetError::Disconnected) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, (0..50).collect::<Vec<_>>());
        assert_eq!(child.join().unwrap(), 50);
    });
}

/// A producer that comes back from a put that failed (as the error's value) and is dropped
/// stops counting, so its queue's getter sees `Disconnected`. Before, the encoding counted it
/// as on its way to a receiver for ever: the getter waited for ever.
#[test]
fn a_handle_in_a_value_that_was_not_put_stops_counting_once_dropped() {
    common::within("a getter after failed puts of its queue's producers", || {
        let inner = Queue::<u64>::new().unwrap();
        let consumer = inner.consumer().unwrap();
        // Full.
        let outer = Queue::<Producer<u64>>::bounded(1).unwrap();
        outer.put(inner.producer().unwrap()).unwrap();
        match outer.try_put(inner.producer().unwrap()) {
            Err(PutError::Full(producer)) => drop(producer),
            other => panic!("expected Full, got {other:?}"),
        }
        // Timeout.
        match outer.put_timeout(inner.producer().unwrap(), Duration::ZERO) {
            Err(PutError::Timeout(producer)) => drop(producer),
            other => panic!("expected Timeout, got {other:?}"),
        }
        drop(outer.get().unwrap());
        // Too large.
        let small = Queue::<(Producer<u64>, Vec<u8>)>::with_limits(4096, None).unwrap();
        match small.put((inner.producer().unwrap(), vec![0; 8192])) {
            Err(PutError::TooLarge { value, .. }) => drop(value),
            other => panic!("expected TooLarge, got {other:?}"),
        }
        // Disconnected: no getter.
        let orphan = Queue::<Producer<u64>>::new().unwrap().producer().unwrap();
        match orphan.put(inner.producer().unwrap()) {
            Err(PutError::Disconnected(producer)) => drop(producer),
            other => panic!("expected Disconnected, got {other:?}"),
        }
        drop((outer, small, orphan, inner));
        assert_eq!(consumer.get(), Err(GetError::Disconnected));
    });
}

/// Returns the producer it was given beside 2 MiB: a result over a 1 MiB frame limit.
fn back_too_large(producer: Producer<u64>) -> (Producer<u64>, Vec<u8>) {
    (producer, vec![0; 2 << 20])
}

/// A result refused as too large never reaches anyone: what it handed off as it was encoded
/// stops counting. Before, the worker counted the producer as on its way for as long as it
/// lived, and the getter never saw `Disconnected`.
#[test]
fn a_handle_in_a_result_refused_as_too_large_stops_counting() {
    common::within("a getter after its producer came back too large", || {
        let config =
            taskpool_process::ProcessConfig::new(taskpool_process::Config::new().workers(1));
        let pool = ProcessPool::with_config(config.max_frame_bytes(1 << 20)).unwrap();
        let queue = Queue::<u64>::new().unwrap();
        let consumer = queue.consumer().unwrap();
        let outcome = pool.apply(back_too_large, queue.producer().unwrap());
        assert!(matches!(outcome, Err(TaskError::TooLarge { .. })), "{outcome:?}");
        drop(queue);
        assert_eq!(consumer.get(), Err(GetError::Disconnected));
    });
}

/// Serializes by panicking.
#[derive(Debug)]
struct PanicsAsItIsEncoded;

impl serde::Serialize for PanicsAsItIsEncoded {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("this value panics as it is encoded");
    }
}

impl<'de> serde::Deserialize<'de> for PanicsAsItIsEncoded {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| PanicsAsItIsEncoded)
    }
}

/// A put whose value panics as it is encoded, after a producer in it was encoded: the panic
/// reaches the caller, and the producer, dropped as the panic unwinds, stops counting.
#[test]
fn a_handle_in_a_value_whose_encoding_panics_stops_counting() {
    common::within("a getter after a put that panicked", || {
        let inner = Queue::<u64>::new().unwrap();
        let consumer = inner.consumer().unwrap();
        let outer = Queue::<(Producer<u64>, PanicsAsItIsEncoded)>::new().unwrap();
        let value = (inner.producer().unwrap(), PanicsAsItIsEncoded);
        let put = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| outer.put(value)));
        assert!(put.is_err(), "the encoding's panic reaches the caller");
        drop((outer, inner));
        assert_eq!(consumer.get(), Err(GetError::Disconnected));
    });
}

fn never_runs(_: (NeverDecoded, Producer<u64>)) {}

/// The producer in a one-off's argument counts as the child's: once the child has read it,
/// for as long as the child holds it (its consumer gets `Disconnected` when the child ends,
/// before anyone joins it); and if the child is killed before it read its argument, not at
/// all (before, it counted for the spawner until the spawner exited).
#[test]
fn a_producer_sent_to_a_one_off_counts_as_the_childs_even_if_it_never_reads_it() {
    common::within("getters of producers sent to one-offs", || {
        let queue = Queue::<u64>::new().unwrap();
        let consumer = queue.consumer().unwrap();
        let child = spawn(produce, (queue.producer().unwrap(), 0, 100)).unwrap();
        drop(queue);
        assert_eq!(consume(consumer), (0..100).sum::<u64>(), "disconnected once it ended");
        assert_eq!(child.join().unwrap(), 100);

        let queue = Queue::<u64>::new().unwrap();
        let consumer = queue.consumer().unwrap();
        let mut child = spawn(never_runs, (NeverDecoded, queue.producer().unwrap())).unwrap();
        drop(queue);
        child.kill().unwrap();
        assert!(matches!(child.join(), Err(TaskError::Cancelled)));
        assert_eq!(consumer.get(), Err(GetError::Disconnected));
    });
}

#[test]
fn a_handle_written_by_another_serializer_fails_instead_of_keeping_its_role_forever() {
    let queue = Queue::<u64>::new().unwrap();
    let consumer = queue.consumer().unwrap();
    let producer = queue.producer().unwrap();
    drop(queue);
    // A copy written as JSON (to log it, say) is never received: were it counted as on its
    // way, the producer would count forever and the consumer never see `Disconnected`.
    let err = serde_json::to_string(&producer).unwrap_err();
    assert!(err.to_string().contains("taskpool"), "{err}");
    producer.put(1).unwrap();
    drop(producer);
    assert_eq!(consumer.try_get(), Ok(1));
    assert_eq!(consumer.try_get(), Err(GetError::Disconnected));

    let (here, there) = Pipe::new::<u64>().unwrap();
    assert!(serde_json::to_string(&there).is_err());
    drop(there);
    assert_eq!(here.try_recv(), Err(GetError::Disconnected));
}

/// Makes a queue holding 42 and puts a handle to it on `out`, then ends.
fn send_a_new_queue(out: Producer<Queue<u64>>) {
    let queue = Queue::<u64>::new().unwrap();
    queue.put(42).unwrap();
    out.put(queue).unwrap();
}

/// A one-off that put a handle to a queue only it held waits at its end until the handle is
/// got (as for shared bytes): before, it ended at once, and the getter found nobody to open
/// the queue from (`Decode`), the queue and its values lost.
#[test]
fn a_one_off_that_put_a_handle_waits_at_its_end_until_it_is_got() {
    let handles = Queue::<Queue<u64>>::new().unwrap();
    let mut child = spawn(send_a_new_queue, handles.producer().unwrap()).unwrap();
    // Well within the 10 s the child waits for its receivers, and ages for it to end if it
    // did not wait.
    let waited = child.join_timeout(Duration::from_secs(5));
    assert!(matches!(waited, Err(TaskError::TimedOut { still_running: true, .. })), "{waited:?}");
    let queue = handles.get().unwrap();
    assert_eq!(queue.try_get(), Ok(42));
    child.join().unwrap();
}

/// A task that reports each input on its queue.
#[derive(serde::Serialize, serde::Deserialize)]
struct Report {
    out: Producer<u64>,
}

impl taskpool_process::Task for Report {
    type Input = u64;
    type Output = u64;
    fn run(&self, input: u64) -> u64 {
        self.out.put(input).unwrap();
        input
    }
}

/// A handle in a task's own state that never reaches a worker (a `map` of nothing) is let go
/// with the job: before, it counted as on its way for as long as the program lived, and the
/// queue's getters never saw `Disconnected`. (The worker that ran the second `map` drops its
/// copy of the state just after the batch's last result went out, so the last get waits for
/// that, as a getter waits for any putter that is about to drop its handle.)
#[test]
fn a_handle_in_the_state_of_a_task_never_sent_stops_counting() {
    let pool = ProcessPool::new(1).unwrap();
    let queue = Queue::<u64>::new().unwrap();
    let consumer = queue.consumer().unwrap();
    let none = pool.map(Report { out: queue.producer().unwrap() }, Vec::<u64>::new()).unwrap();
    assert!(none.is_empty());
    assert_eq!(pool.map(Report { out: queue.producer().unwrap() }, [1, 2]).unwrap(), [1, 2]);
    drop(queue);
    assert_eq!(consumer.try_get(), Ok(1));
    assert_eq!(consumer.try_get(), Ok(2));
    assert_eq!(consumer.get_timeout(Duration::from_secs(60)), Err(GetError::Disconnected));
}

#[test]
fn sizes_a_queue_cannot_have_are_invalid_input() {
    let kind = |made: std::io::Result<()>| made.expect_err("an impossible size").kind();
    let invalid = std::io::ErrorKind::InvalidInput;
    assert_eq!(kind(Queue::<u32>::bounded(0).map(drop)), invalid);
    assert_eq!(kind(Queue::<u32>::with_limits(63, None).map(drop)), invalid);
    assert_eq!(kind(Queue::<u32>::with_limits(5 << 30, None).map(drop)), invalid);
    assert_eq!(kind(Queue::<u32>::with_limits(4096, Some(0)).map(drop)), invalid);
    assert_eq!(kind(Pipe::with_bytes::<u32>(63).map(drop)), invalid);
    assert!(Queue::<u32>::with_limits(64, Some(1)).is_ok());
}
