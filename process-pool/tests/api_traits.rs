//! The common traits the public types promise, checked when the tests are built: a pool
//! shared in an `Arc` across threads, a handle moved to the thread that joins it, a queue's
//! or a pipe's end moved into a thread, errors that are `std::error::Error + Send + Sync +
//! 'static`, and the values users keep that clone and compare.

use std::error::Error;
use std::fmt::Debug;
use std::rc::Rc;
use std::sync::Arc;

use taskpool_process::{
    Config, Consumer, End, GetError, Pool, PoolStats, ProcessConfig, ProcessPool, Producer,
    PutError, Queue, SharedBytes, Spawned, TaskError, TaskHandle, Usage,
};

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>() {}
fn error<T: Error + Send + Sync + 'static>() {}
fn value<T: Debug + Clone + Send + Sync + 'static>() {}
fn eq<T: Eq>() {}

#[test]
fn pools_and_handles_cross_threads() {
    send_sync::<ProcessPool>();
    send_sync::<Arc<ProcessPool>>();
    send_sync::<TaskHandle<u64>>();
    send::<Spawned<u64>>();
}

#[test]
fn queue_and_pipe_ends_cross_threads() {
    // Values travel encoded, so an end moves to another thread whatever its type holds.
    send_sync::<Queue<u64>>();
    send_sync::<Producer<u64>>();
    send_sync::<Consumer<u64>>();
    send_sync::<End<u64>>();
    send_sync::<Queue<Rc<u64>>>();
    send_sync::<SharedBytes>();
    value::<Queue<u64>>();
    value::<Producer<u64>>();
    value::<Consumer<u64>>();
    value::<SharedBytes>();
    eq::<SharedBytes>();
    let blob = |bytes: &[u8]| SharedBytes::copy_from_slice(bytes).expect("shared memory");
    let distinct: std::collections::HashSet<SharedBytes> =
        [blob(b"one"), blob(b"two"), blob(b"one")].into_iter().collect();
    assert_eq!(distinct.len(), 2);
}

fn square(x: u64) -> u64 {
    x * x
}

/// The lazy maps' iterators move to the thread that drains them (checked, never called).
#[allow(dead_code)]
fn lazy_maps_cross_threads(pool: &ProcessPool) {
    fn sent<T: Send>(_: T) {}
    sent(pool.imap(square, 1..=3));
    sent(pool.imap_unordered(square, 1..=3));
    sent(pool.imap_stream(square, 1..=3));
    sent(pool.imap_unordered_stream(square, 1..=3));
}

#[test]
fn errors_are_std_errors_that_cross_threads() {
    error::<TaskError>();
    error::<GetError>();
    error::<PutError<u64>>();
    value::<GetError>();
    value::<PutError<String>>();
    eq::<GetError>();
    eq::<PutError<String>>();
    let boxed: Box<dyn Error + Send + Sync> = GetError::Empty.into();
    assert_eq!(boxed.to_string(), "the queue (or pipe) is empty");
    let boxed: Box<dyn Error + Send + Sync> = PutError::Full(1_u64).into();
    assert_eq!(boxed.to_string(), "the queue (or pipe) is full");
}

#[test]
fn values_users_keep_clone_and_compare() {
    value::<Config>();
    value::<ProcessConfig>();
    let _: ProcessConfig = ProcessConfig::default();
    let _: ProcessConfig = Config::new().into();
    value::<PoolStats>();
    value::<Usage>();
    eq::<PoolStats>();
    eq::<Usage>();
    let _: PoolStats = PoolStats::default();
    let _: Usage = Usage::default();
}
