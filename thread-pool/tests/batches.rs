//! The thread backend's batch paths: `map` fails fast on the earliest failure it sees, and
//! `map_results` runs every item.

use std::sync::atomic::{AtomicUsize, Ordering};

use taskpool_thread::{Pool, TaskError, ThreadPool};

static RAN: AtomicUsize = AtomicUsize::new(0);

fn count_and_fail_on_multiples_of_1000(x: u64) -> u64 {
    RAN.fetch_add(1, Ordering::Relaxed);
    assert!(x % 1000 != 999, "item {x} fails");
    x
}

#[test]
fn map_reports_the_earliest_failure_it_saw_and_map_results_runs_everything() {
    let pool = ThreadPool::new(2).unwrap();
    match pool.map(count_and_fail_on_multiples_of_1000, 0..100_000) {
        Err(TaskError::Panicked(report)) => {
            let item: u64 = report
                .message
                .trim_start_matches("item ")
                .trim_end_matches(" fails")
                .parse()
                .unwrap();
            assert_eq!(item % 1000, 999, "{}", report.message);
        }
        other => panic!("expected a panic, got {:?}", other.map(|v| v.len())),
    }
    RAN.store(0, Ordering::Relaxed);
    let outcomes = pool.map_results(count_and_fail_on_multiples_of_1000, 0..100_000);
    assert_eq!(RAN.load(Ordering::Relaxed), 100_000, "map_results runs every item");
    assert_eq!(outcomes.len(), 100_000);
    for (x, outcome) in (0..).zip(&outcomes) {
        match outcome {
            Ok(v) => assert!(*v == x && x % 1000 != 999, "item {x} gave {v}"),
            Err(TaskError::Panicked(report)) => {
                assert_eq!(report.message, format!("item {x} fails"))
            }
            Err(e) => panic!("item {x}: unexpected {e:?}"),
        }
    }
    let failed = outcomes.iter().filter(|o| o.is_err()).count();
    assert_eq!(failed, 100);
    assert_eq!(pool.map(count_and_fail_on_multiples_of_1000, 0..999).unwrap().len(), 999);
}

fn failing_initializer() {
    panic!("no licence server");
}

fn double(x: u64) -> u64 {
    2 * x
}

#[test]
fn a_failing_initializer_fails_every_batch_path_with_worker_start() {
    let config = taskpool_thread::Config::new().workers(2).initializer(failing_initializer);
    let pool = ThreadPool::with_config(config).unwrap();
    let is_start_failure = |e: &TaskError| matches!(e, TaskError::WorkerStart { .. });
    let err = pool.map(double, 0..10_000).unwrap_err();
    assert!(is_start_failure(&err), "{err:?}");
    let outcomes = pool.map_results(double, 0..100);
    assert!(outcomes.iter().all(|o| o.as_ref().is_err_and(is_start_failure)), "{outcomes:?}");
    let err = pool.apply(double, 1).unwrap_err();
    assert!(is_start_failure(&err), "{err:?}");
}
