//! The common traits the public types promise, checked when the tests are built: a pool's
//! handles and errors cross threads, errors are `std::error::Error + Send + Sync + 'static`,
//! and the values users keep (settings, errors, their parts) clone, compare and hash where
//! that means something.

use std::error::Error;
use std::fmt::Debug;
use std::hash::Hash;

use taskpool_core::{
    Config, Direction, Exit, PanicReport, Resource, Side, Spawned, TaskError, TaskHandle, TryError,
};

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>() {}
fn error<T: Error + Send + Sync + 'static>() {}
fn value<T: Debug + Clone + Send + Sync + 'static>() {}
fn key<T: Debug + Copy + Eq + Hash + Send + Sync + 'static>() {}

#[test]
fn handles_cross_threads() {
    // A handle moved to another thread to be joined there, or shared to be polled.
    send_sync::<TaskHandle<u64>>();
    send_sync::<TaskHandle<String>>();
    // A one-off's handle moved to another thread (its methods take `&mut self`).
    send::<Spawned<u64>>();
}

#[test]
fn errors_are_std_errors_that_cross_threads() {
    error::<TaskError>();
    error::<TryError<std::io::Error>>();
    value::<TaskError>();
    value::<TryError<String>>();
    // `?` into the boxed errors of an application.
    let boxed: Box<dyn Error + Send + Sync> = TaskError::Cancelled.into();
    assert_eq!(boxed.to_string(), "task cancelled");
}

#[test]
fn values_users_keep_clone_and_compare() {
    value::<Config>();
    let _: Config = Config::default();
    value::<PanicReport>();
    fn eq<T: Eq>() {}
    eq::<PanicReport>();
    key::<Side>();
    key::<Direction>();
    key::<Exit>();
    key::<Resource>();
}
