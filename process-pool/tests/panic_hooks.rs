//! A task that replaces the panic hook of its worker (`std::panic::set_hook`, as some
//! libraries do on first use): later panics still fail only their task, with their message,
//! and once the worker sees a panic its hook missed, it puts its hook back in front of the
//! task's, so that the panics after that report their location again.

use taskpool_process::{Config, PanicReport, Pool, ProcessConfig, ProcessPool, TaskError};

fn one_worker() -> ProcessPool {
    ProcessPool::with_config(ProcessConfig::new(Config::new().workers(1))).unwrap()
}

/// Replaces the worker's panic hook with one that does nothing.
fn replace_the_hook(_: u64) -> u64 {
    std::panic::set_hook(Box::new(|_| {}));
    0
}

fn fail(x: u64) -> u64 {
    panic!("failure {x}")
}

/// Resumes an unwind, which no panic hook sees.
fn resume(x: u64) -> u64 {
    std::panic::resume_unwind(Box::new(format!("resumed {x}")))
}

fn report(outcome: Result<u64, TaskError>) -> PanicReport {
    match outcome {
        Err(TaskError::Panicked(report)) => *report,
        other => panic!("expected a panic, got {other:?}"),
    }
}

/// Checks that `report` is item `x`'s failure, with where it happened.
fn located(report: &PanicReport, x: u64) {
    assert_eq!(report.message, format!("failure {x}"));
    let location = report.location.as_deref().unwrap_or_default();
    assert!(location.contains("panic_hooks.rs:"), "{report:?}");
}

#[test]
fn panics_after_a_task_replaced_the_hook_report_their_location_again() {
    let pool = one_worker();
    let before = pool.pids();
    pool.apply(replace_the_hook, 0).unwrap();
    // The task's hook saw this one; only the message is known.
    assert_eq!(report(pool.apply(fail, 1)).message, "failure 1");
    for x in 2..5 {
        located(&report(pool.apply(fail, x)), x);
    }
    for (x, outcome) in (0..).zip(pool.map_results(fail, 0..200)) {
        located(&report(outcome), x);
    }
    assert_eq!(pool.pids(), before, "the same worker served every task");
}

#[test]
fn an_unwind_resumed_by_a_task_leaves_the_hook_in_place() {
    let pool = one_worker();
    for x in 0..3 {
        let resumed = report(pool.apply(resume, x));
        assert_eq!((resumed.message, resumed.location), (format!("resumed {x}"), None));
        located(&report(pool.apply(fail, x)), x);
    }
}

/// Installs a panic hook, as an initializer that sets up a logger does.
fn install_a_logger() {
    std::panic::set_hook(Box::new(|info| eprintln!("logged: {info}")));
}

#[test]
fn a_hook_the_initializer_installs_does_not_hide_the_first_panics_location() {
    let config = Config::new().workers(1).initializer(install_a_logger);
    let pool = ProcessPool::with_config(ProcessConfig::new(config)).unwrap();
    for x in 0..3 {
        located(&report(pool.apply(fail, x)), x);
    }
}
