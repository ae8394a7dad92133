//! The shared conformance suite, run against the thread backend.

taskpool_core::conformance_suite!(
    |config| taskpool_thread::ThreadPool::with_config(config).unwrap(),
    spawn: taskpool_thread::spawn
);
