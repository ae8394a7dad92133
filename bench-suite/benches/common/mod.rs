//! Hands the library's scenario groups to criterion: one benchmark group per scenario, one
//! benchmark per case (`BenchmarkId::new(backend, parameter)`), each prepared on its first
//! run, so that a filter that leaves a case out starts nothing for it. What a case runs is
//! defined in the library, where the report runs the same definitions.

mod filter;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use taskpool_bench::{Count, Group, Iteration, Plan, RunMode, Samples, Suite};

/// criterion's default number of samples.
const DEFAULT_SAMPLES: usize = 100;

/// The `main` of a bench that runs one section of the suite (`section`), with half a second of
/// warm-up and two seconds of measurement per case; `banner`, when given, is printed first
/// when the run measures.
#[allow(dead_code)] // each bench is its own crate, and not every one runs a single section
pub(crate) fn run_section(
    section: for<'s> fn(&'s Suite) -> Vec<Group<'s>>,
    banner: Option<fn(&Suite) -> String>,
) {
    taskpool_bench::init();
    let mode = RunMode::current();
    let suite = Suite::new(Plan::for_criterion(mode));
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    if let (RunMode::Bench, Some(banner)) = (mode, banner) {
        println!("{}", banner(&suite));
    }
    run(&mut c, section(&suite), &Samples::default(), mode);
    c.final_summary();
}

/// Runs every case of `groups`, recording each sample in `samples` under
/// `group/variant/parameter`. Cases a backend cannot run are named, with the reason, when
/// `run` measures and the command line's filter selects them.
pub(crate) fn run(c: &mut Criterion, groups: Vec<Group<'_>>, samples: &Samples, run: RunMode) {
    let filter = filter::Filter::current();
    for group in groups {
        let mut criterion_group = c.benchmark_group(&group.name);
        let settings = group.settings;
        if let Some(warm_up) = settings.warm_up {
            criterion_group.warm_up_time(warm_up);
        }
        if let Some(measurement) = settings.measurement {
            criterion_group.measurement_time(measurement);
        }
        if settings.flat {
            criterion_group.sampling_mode(SamplingMode::Flat);
        }
        for case in &group.cases {
            let id = format!("{}/{}/{}", group.name, case.variant, case.parameter);
            if let Some(why) = &case.skipped {
                if run == RunMode::Bench && filter.matches(&id) {
                    eprintln!("{id} skipped: {why}");
                }
                continue;
            }
            criterion_group
                .sample_size(case.sample_size.or(settings.sample_size).unwrap_or(DEFAULT_SAMPLES));
            match case.count {
                Some((Count::Elements, n)) => criterion_group.throughput(Throughput::Elements(n)),
                Some((Count::Bytes, n)) => criterion_group.throughput(Throughput::Bytes(n)),
                _ => &mut criterion_group,
            };
            let mut iteration: Option<Iteration> = None;
            let benchmark = BenchmarkId::new(&case.variant, &case.parameter);
            criterion_group.bench_function(benchmark, |b| {
                let iteration = iteration.get_or_insert_with(|| {
                    case.prepare().unwrap_or_else(|e| panic!("{id}: cannot start: {e}"))
                });
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += iteration().unwrap_or_else(|e| panic!("{id}: {e}"));
                    }
                    samples.record(&id, iters, total)
                });
            });
        }
        criterion_group.finish();
    }
}
