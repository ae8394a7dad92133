//! The common traits the public types promise, checked when the tests are built: a pool
//! shared in an `Arc` across threads, a handle moved to the thread that joins it, and
//! errors that are `std::error::Error + Send + Sync + 'static`.

use std::error::Error;
use std::fmt::Debug;
use std::sync::Arc;

use taskpool_thread::{Config, Pool, Spawned, TaskError, TaskHandle, ThreadPool, TryError};

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>() {}
fn error<T: Error + Send + Sync + 'static>() {}
fn value<T: Debug + Clone + Send + Sync + 'static>() {}

#[test]
fn pools_and_handles_cross_threads() {
    send_sync::<ThreadPool>();
    send_sync::<Arc<ThreadPool>>();
    send_sync::<TaskHandle<u64>>();
    send::<Spawned<u64>>();
    fn debug<T: Debug>() {}
    debug::<ThreadPool>();
}

fn square(x: u64) -> u64 {
    x * x
}

/// The lazy maps' iterators move to the thread that drains them (checked, never called).
#[allow(dead_code)]
fn lazy_maps_cross_threads(pool: &ThreadPool) {
    fn sent<T: Send>(_: T) {}
    sent(pool.imap(square, 1..=3));
    sent(pool.imap_unordered(square, 1..=3));
    sent(pool.imap_stream(square, 1..=3));
    sent(pool.imap_unordered_stream(square, 1..=3));
}

#[test]
fn errors_are_std_errors_that_cross_threads() {
    error::<TaskError>();
    error::<TryError<std::io::Error>>();
    value::<TaskError>();
    value::<Config>();
}
