//! The shared conformance suite, run against the process backend.

taskpool_core::conformance_suite!(
    |config| taskpool_process::ProcessPool::with_config(config).unwrap(),
    spawn: taskpool_process::spawn
);
