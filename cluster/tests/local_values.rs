//! What lives in one machine's memory (a queue or pipe handle, shared bytes) cannot cross to
//! or from an agent: an argument, a task's state or a result holding one fails at once with
//! `Serialization` saying why, where it is encoded, and a refused handle is not counted as on
//! its way (its queue still closes when the program drops its ends).

mod common;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use taskpool_cluster::{ClusterConfig, Direction, Pool, Side, Task, TaskError};
use taskpool_process::{End, GetError, Pipe, Producer, Queue, SharedBytes};

fn len_of(bytes: SharedBytes) -> usize {
    bytes.len()
}

fn shared_of(len: usize) -> SharedBytes {
    SharedBytes::new(len, |out| out.fill(7)).unwrap()
}

fn new_producer(_: u8) -> Producer<u64> {
    Queue::new().unwrap().producer().unwrap()
}

fn put_one(producer: Producer<u64>) -> u64 {
    producer.put(1).map(|()| 1).unwrap_or(0)
}

fn send_one(end: End<u64>) -> u64 {
    end.send(1).map(|()| 1).unwrap_or(0)
}

#[derive(Serialize, Deserialize)]
struct Named {
    name: String,
    data: SharedBytes,
}

fn named_len(named: Named) -> usize {
    named.data.len()
}

#[derive(Serialize, Deserialize)]
struct Report {
    to: Producer<u64>,
}

impl Task for Report {
    type Input = u64;
    type Output = u64;
    fn run(&self, x: u64) -> u64 {
        self.to.put(x).map(|()| x).unwrap_or(0)
    }
}

/// Asserts that `outcome` is a refusal to cross machines, on `side` in `direction`.
fn assert_refused<T: std::fmt::Debug>(
    outcome: Result<T, TaskError>,
    side: Side,
    direction: Direction,
) {
    match outcome {
        Err(TaskError::Serialization { side: s, direction: d, message })
            if s == side && d == direction =>
        {
            assert!(message.contains("cannot cross to another"), "{message}");
        }
        other => panic!("expected a refusal ({side:?}, {direction:?}), got {other:?}"),
    }
}

#[test]
fn values_of_one_machine_are_refused_and_not_counted_as_sent() {
    let Some(server) = common::server("local_values") else { return };
    let config = ClusterConfig::new(server.url());
    let (_agent, pool) = common::pool_on(&server.url(), config, 1, 1, &[]);

    let bytes = SharedBytes::copy_from_slice(&[1; 100]).unwrap();
    assert_refused(pool.apply(len_of, bytes.clone()), Side::Argument, Direction::Encode);
    let named = Named { name: "x".into(), data: bytes.clone() };
    assert_refused(pool.submit(named_len, named).join(), Side::Argument, Direction::Encode);
    assert_refused(pool.map(len_of, [bytes]), Side::Argument, Direction::Encode);
    // A result is refused where it is encoded, in the agent's worker, which lets go of it.
    assert_refused(pool.apply(shared_of, 10), Side::Result, Direction::Encode);
    assert_refused(pool.apply(new_producer, 0), Side::Result, Direction::Encode);

    let queue = Queue::<u64>::new().unwrap();
    let consumer = queue.consumer().unwrap();
    let producer = queue.producer().unwrap();
    assert_refused(pool.apply(put_one, producer.clone()), Side::Argument, Direction::Encode);
    let report = Report { to: producer.clone() };
    assert_refused(pool.map(report, [1, 2]), Side::Task, Direction::Encode);
    drop((queue, producer));
    // No copy of a producer is on its way: the queue closes.
    assert_eq!(consumer.get_timeout(Duration::from_secs(10)), Err(GetError::Disconnected));

    let (here, there) = Pipe::new::<u64>().unwrap();
    assert_refused(pool.apply(send_one, there), Side::Argument, Direction::Encode);
    assert_eq!(here.recv_timeout(Duration::from_secs(10)), Err(GetError::Disconnected));

    assert_eq!(pool.apply(|x: u64| x + 1, 1).unwrap(), 2, "the pool serves on");
}
