//! A made-up but plausible report for the writers' tests: several sections, every kind of
//! cell, a reference value, scaling curves for two kernels, and the homework's table built
//! from them.

use std::collections::BTreeMap;

use super::{
    Better, Cell, Column, Curve, Idiom, Machine, Method, Reference, Report, Row, Section, Unit,
};
use crate::scenarios::Shares;
use crate::stats::Summary;

/// A value with samples spread by `spread` around `median` (min = median − spread / 2).
fn value(median: f64, spread: f64) -> Cell {
    let low = median * (1.0 - spread / 2.0);
    let high = median * (1.0 + spread / 2.0);
    Cell::Value(Summary { median, min: low, max: high, samples: vec![low, median, high] })
}

/// A row with `cells`.
fn row(key: &str, label: &str, unit: Unit, better: Better, cells: Vec<(Column, Cell)>) -> Row {
    Row {
        cells: cells.into_iter().collect::<BTreeMap<_, _>>(),
        ..Row::new(key, label, unit, better)
    }
}

/// The fixture report.
pub(super) fn report() -> Report {
    let mut round_trip = row(
        "round_trip",
        "Round trip, empty task",
        Unit::Micros,
        Better::Lower,
        vec![
            (Column::TASKPOOL_THREADS, value(3.1, 0.04)),
            (Column::TASKPOOL_PROCESSES, value(19.5, 0.36)),
            (Column::RAYON, value(4.3, 0.05)),
            (Column::PROCSPAWN, value(61.0, 0.08)),
            (Column::PYTHON_THREADS, Cell::Skipped("python3 not found".into())),
        ],
    );
    round_trip.idioms = vec![
        Idiom {
            column: Column::RAYON,
            how: "`spawn` + crossbeam channel".into(),
            value: Summary::single(4.3),
            shown: true,
        },
        Idiom {
            column: Column::RAYON,
            how: "`install`".into(),
            value: Summary::single(8.3),
            shown: false,
        },
    ];
    round_trip.references = vec![
        Reference::new("pipe floor", Summary::single(12.2)),
        Reference::new("spin floor", Summary::single(0.5)),
    ];
    let overhead = Section {
        title: "Overhead per task".into(),
        rows: vec![
            row(
                "startup",
                "Pool start-up, 2 workers",
                Unit::Millis,
                Better::Lower,
                vec![
                    (Column::TASKPOOL_THREADS, value(0.21, 0.1)),
                    (Column::TASKPOOL_PROCESSES, value(3.4, 0.1)),
                    (Column::RAYON, value(0.15, 0.1)),
                    (Column::PROCSPAWN, value(12.8, 0.1)),
                    (Column::PYTHON_THREADS, value(0.9, 0.1)),
                    (Column::PYTHON_PROCESSES, value(48.0, 0.3)),
                ],
            ),
            round_trip,
            row(
                "spawn",
                "One-off spawn and join",
                Unit::Micros,
                Better::Lower,
                vec![
                    (Column::TASKPOOL_THREADS, value(28.0, 0.1)),
                    (Column::TASKPOOL_PROCESSES, value(1450.0, 0.1)),
                    (Column::RAYON, value(22.0, 0.1)),
                    (Column::PROCSPAWN, value(3900.0, 0.1)),
                ],
            ),
        ],
    };
    let throughput = Section {
        title: "Throughput".into(),
        rows: vec![
            row(
                "tasks_per_s",
                "Empty tasks, 1000 in flight",
                Unit::PerSecond,
                Better::Higher,
                vec![
                    (Column::TASKPOOL_THREADS, value(1_520_000.0, 0.05)),
                    (Column::TASKPOOL_PROCESSES, value(15_200.0, 0.05)),
                    (Column::RAYON, value(2_400_000.0, 0.05)),
                    (Column::PROCSPAWN, value(9_800.0, 0.05)),
                    (Column::PYTHON_THREADS, value(48_000.0, 0.05)),
                    (Column::PYTHON_PROCESSES, value(21_000.0, 0.05)),
                ],
            ),
            row(
                "payload_round_trip",
                "Round trip, 1 MiB payload",
                Unit::Millis,
                Better::Lower,
                vec![
                    (Column::TASKPOOL_PROCESSES, value(1.8, 0.05)),
                    (Column::PROCSPAWN, value(4.9, 0.05)),
                    (Column::PYTHON_PROCESSES, value(3.2, 0.05)),
                ],
            ),
        ],
    };
    let memory = Section {
        title: "Memory".into(),
        rows: vec![row(
            "rss",
            "Resident memory, idle pool of 2",
            Unit::KiB,
            Better::Lower,
            vec![
                (Column::TASKPOOL_THREADS, value(2304.0, 0.0)),
                (Column::TASKPOOL_PROCESSES, value(14_848.0, 0.0)),
                (Column::RAYON, value(2100.0, 0.0)),
                (Column::PROCSPAWN, value(21_000.0, 0.0)),
                (Column::PYTHON_THREADS, value(900.0, 0.0)),
                (Column::PYTHON_PROCESSES, value(64_000.0, 0.0)),
            ],
        )],
    };
    let speed_up = Section {
        title: "CPU-bound speed-up".into(),
        rows: vec![row(
            "speedup_primes_1ms",
            "Primes, 1 ms tasks, 2 workers",
            Unit::Factor,
            Better::Higher,
            vec![
                (Column::TASKPOOL_THREADS, value(1.874, 0.02)),
                (Column::TASKPOOL_PROCESSES, value(1.79, 0.02)),
                (Column::RAYON, value(1.9, 0.02)),
                (Column::PROCSPAWN, value(1.6, 0.02)),
                (Column::PYTHON_THREADS, value(0.98, 0.02)),
                (Column::PYTHON_PROCESSES, value(1.7, 0.02)),
            ],
        )],
    };
    let faults = Section {
        title: "A segfault in one task".into(),
        rows: vec![row(
            "fault_segfault",
            "Task calls a null pointer",
            Unit::Millis,
            Better::Lower,
            vec![
                (
                    Column::TASKPOOL_THREADS,
                    Cell::Outcome {
                        text: "the whole program died (SIGSEGV)".into(),
                        next_after_ms: None,
                        survived: false,
                    },
                ),
                (
                    Column::TASKPOOL_PROCESSES,
                    Cell::Outcome {
                        text: "task failed: Crashed(SIGSEGV)".into(),
                        next_after_ms: Some(Summary::single(38.0)),
                        survived: true,
                    },
                ),
                (
                    Column::PROCSPAWN,
                    Cell::Outcome {
                        text: "IPC error | worker gone".into(),
                        next_after_ms: Some(Summary::single(0.85)),
                        survived: true,
                    },
                ),
                (Column::PYTHON_PROCESSES, Cell::Skipped("python3 not found".into())),
            ],
        )],
    };
    let io = Section {
        title: "I/O-bound work".into(),
        rows: vec![
            row(
                "io_socket_64",
                "256 tasks reading a slow server's answer, pool of 64",
                Unit::PerSecond,
                Better::Higher,
                vec![
                    (Column::TASKPOOL_THREADS, value(6_200.0, 0.02)),
                    (Column::TASKPOOL_PROCESSES, value(5_900.0, 0.02)),
                    (Column::RAYON, value(6_300.0, 0.02)),
                    (Column::PROCSPAWN, value(2_900.0, 0.02)),
                    (Column::PYTHON_THREADS, value(5_800.0, 0.02)),
                    (Column::PYTHON_PROCESSES, value(4_500.0, 0.02)),
                ],
            ),
            row(
                "io_startup_64",
                "Pool start-up, 64 workers",
                Unit::Micros,
                Better::Lower,
                vec![
                    (Column::TASKPOOL_THREADS, value(1_900.0, 0.1)),
                    (Column::TASKPOOL_PROCESSES, value(95_000.0, 0.1)),
                    (Column::PYTHON_THREADS, Cell::Skipped("python3 not found".into())),
                ],
            ),
        ],
    };
    let curve = |kernel: &str, column, points: &[f64]| Curve {
        kernel: kernel.into(),
        column,
        points: [1, 2, 4, 8].into_iter().zip(points.iter().copied()).collect(),
    };
    let primes = "primes, 1 ms tasks";
    let mandel = "mandelbrot rows, 10 ms tasks";
    let sections = vec![overhead, throughput, memory, speed_up, io, faults];
    Report {
        machine: Machine {
            cpus: 2,
            machine_cpus: None,
            cpu_model: "Intel(R) Xeon(R) CPU @ 2.20GHz".into(),
            kernel: "6.1.0-18-amd64".into(),
            load_before: 0.4,
            load_after: 1.6,
            busy_before: Some(0.1),
            date: "2025-06-01T12:00:00Z".into(),
            python: Some("CPython 3.11.2".into()),
        },
        mode: "default".into(),
        elapsed_s: 187.4,
        homework: super::homework(&sections, &shares(), 2),
        sections,
        scaling: vec![
            curve(primes, Column::TASKPOOL_THREADS, &[1.0, 1.87, 1.9, 1.88]),
            curve(primes, Column::TASKPOOL_PROCESSES, &[0.97, 1.79, 1.82, 1.8]),
            curve(primes, Column::RAYON, &[1.0, 1.9, 1.93, 1.9]),
            curve(primes, Column::PROCSPAWN, &[0.8, 1.5, 1.6, 1.55]),
            curve(primes, Column::PYTHON_PROCESSES, &[0.9, 1.7, 1.74, 1.7]),
            curve(primes, Column::PYTHON_THREADS, &[0.98, 0.99, 0.97, 0.96]),
            curve(mandel, Column::TASKPOOL_THREADS, &[1.0, 1.95, 1.97, 1.96]),
            curve(mandel, Column::TASKPOOL_PROCESSES, &[0.99, 1.93, 1.95, 1.95]),
        ],
        methods: vec![
            Method {
                name: "rayon".into(),
                column: Some(Column::RAYON),
                versions: vec!["rayon 1.12.0".into()],
                how: vec!["round trip: `ThreadPool::spawn` + a channel".into()],
            },
            Method {
                name: "pipe floor".into(),
                column: None,
                versions: Vec::new(),
                how: vec!["round trip: 8 bytes over two pipes".into()],
            },
        ],
        notes: vec![
            "The rayon column's one-off spawn is `std::thread::spawn`.".into(),
            "Python peers ran with CPython 3.11.2; without python3 their cells say so.".into(),
        ],
    }
}

/// What the fixture's memory probes found a task shares with its caller: threads that share
/// everything, processes that share nothing.
pub(super) fn shares() -> BTreeMap<Column, Shares> {
    let threads = Shares {
        workers: 64,
        threads_added: 64,
        processes_added: 0,
        tasks: 256,
        task_pids: 1,
        tasks_in_caller: 256,
        writes: 64,
        writes_seen: 64,
        kib_per_worker: 40.0,
    };
    let processes = Shares {
        threads_added: 2,
        processes_added: 64,
        task_pids: 64,
        tasks_in_caller: 0,
        writes_seen: 0,
        kib_per_worker: 2_900.0,
        ..threads.clone()
    };
    [(Column::TASKPOOL_THREADS, threads), (Column::TASKPOOL_PROCESSES, processes)].into()
}

/// Writes the fixture's Markdown and charts to `$TASKPOOL_RENDER_SAMPLES` (or a folder in the
/// temporary directory) to look at them: `cargo test -p taskpool-bench write_samples --
/// --ignored`.
#[test]
#[ignore = "writes sample files to look at, checks nothing"]
fn write_samples() {
    let dir = std::env::var_os("TASKPOOL_RENDER_SAMPLES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("taskpool-render-samples"));
    std::fs::create_dir_all(&dir).unwrap();
    let report = report();
    std::fs::write(dir.join("report.md"), super::markdown(&report)).unwrap();
    std::fs::write(dir.join("scaling.svg"), super::scaling_chart(&report)).unwrap();
    std::fs::write(dir.join("overhead.svg"), super::overhead_chart(&report)).unwrap();
    eprintln!("wrote {}", dir.display());
}
