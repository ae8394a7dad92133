//! Queues and shared bytes that nobody can use any more give their memory back: dropped
//! unread, refused by a full queue, or sent to a one-off killed before it read them. Each test
//! counts the memory files the process holds, so they run one at a time, in a binary of their
//! own (another test making queues or shared bytes meanwhile would change the counts).

mod common;

use common::NeverDecoded;

use std::sync::{Mutex, MutexGuard, PoisonError};

use taskpool_process::{GetError, Pipe, Producer, PutError, Queue, SharedBytes, TaskError, spawn};

/// Held by each test while it counts.
static COUNTING: Mutex<()> = Mutex::new(());

/// Runs the calling test alone among this binary's.
fn alone() -> MutexGuard<'static, ()> {
    COUNTING.lock().unwrap_or_else(PoisonError::into_inner)
}

fn never_opens(_: (NeverDecoded, SharedBytes)) {}

/// Shared bytes refused by a full queue and dropped give their memory back (at the next use
/// of shared bytes): before, each kept two descriptors and its pages until the process ended.
#[test]
fn shared_bytes_that_were_not_put_give_their_memory_back_once_dropped() {
    let _alone = alone();
    let queue = Queue::<SharedBytes>::bounded(1).unwrap();
    queue.put(SharedBytes::copy_from_slice(b"first").unwrap()).unwrap();
    let before = common::memfds();
    for _ in 0..50 {
        let frame = SharedBytes::copy_from_slice(&[7; 4096]).unwrap();
        match queue.try_put(frame) {
            Err(PutError::Full(frame)) => drop(frame),
            other => panic!("expected Full, got {other:?}"),
        }
    }
    drop(SharedBytes::copy_from_slice(b"a next use").unwrap());
    let after = common::memfds();
    assert!(after <= before + 2, "{before} memfds of shared bytes before, {after} after");
    assert_eq!(&*queue.get().unwrap(), b"first");
}

/// Shared bytes in a one-off's argument are kept by the spawner until the child has ended,
/// not until the spawner exits: a child killed before it read its argument leaves nothing.
#[test]
fn shared_bytes_sent_to_a_one_off_killed_before_it_read_them_are_let_go() {
    let _alone = alone();
    common::within("shared bytes sent to a one-off that was killed", || {
        let before = common::memfds();
        let bytes = SharedBytes::copy_from_slice(&[7; 4096]).unwrap();
        let mut child = spawn(never_opens, (NeverDecoded, bytes)).unwrap();
        child.kill().unwrap();
        assert!(matches!(child.join(), Err(TaskError::Cancelled)));
        assert_eq!(common::memfds(), before, "the bytes' memory is closed");
    });
}

/// The memfds of queues this process has open.
fn queue_memfds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("/memfd:taskpool-queue"))
        .count()
}

/// Shared bytes put in a queue or sent through a pipe that is then dropped unread give their
/// memory back: nobody can ever get them. Before, their sender kept each value's two
/// descriptors and its pages until it exited, as if a receiver were still to come.
#[test]
fn shared_bytes_left_in_a_queue_or_pipe_dropped_unread_give_their_memory_back() {
    let _alone = alone();
    let before = common::memfds();
    for _ in 0..50 {
        let queue = Queue::<SharedBytes>::new().unwrap();
        queue.put(SharedBytes::copy_from_slice(&[7; 4096]).unwrap()).unwrap();
        drop(queue);
        let (a, b) = Pipe::new::<SharedBytes>().unwrap();
        a.send(SharedBytes::copy_from_slice(&[8; 4096]).unwrap()).unwrap();
        drop((b, a));
    }
    drop(SharedBytes::copy_from_slice(b"a next use").unwrap());
    let after = common::memfds();
    assert!(after <= before + 4, "{before} memfds of shared bytes before, {after} after");
}

/// A handle put in a queue that is then dropped unread stops counting: its queue's getter
/// sees `Disconnected`, and the queue's memory is closed. Before, the handle counted as on
/// its way to a receiver for as long as its sender lived.
#[test]
fn a_handle_left_in_a_queue_dropped_unread_stops_counting() {
    let _alone = alone();
    let inner = Queue::<u64>::new().unwrap();
    let consumer = inner.consumer().unwrap();
    let before = queue_memfds();
    for _ in 0..20 {
        let outer = Queue::<Producer<u64>>::new().unwrap();
        outer.put(inner.producer().unwrap()).unwrap();
        drop(outer);
    }
    drop(inner);
    assert_eq!(consumer.try_get(), Err(GetError::Disconnected));
    assert!(
        queue_memfds() <= before + 2,
        "{before} memfds of queues before, {} after",
        queue_memfds()
    );
}
