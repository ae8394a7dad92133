//! One run of the report: every section measured on every column, and the notes that say
//! how.

use std::cell::RefCell;

use super::overhead::{self, in_report};
use super::throughput::{self, kernels};
use super::{MESSAGES, OVERHEAD, Plan, Progress, RowId, faults, idle, io, memory, served};
use crate::backends::python::{Script, interpreter, script_repeats};
use crate::backends::{Pools, Runs};
use crate::columns::{BACKENDS, Backend, Column, Op, Shows};
use crate::report::{Curve, Homework, Method, Row, Section, homework};
use crate::versions;

/// What one run measured.
#[derive(Debug)]
pub struct Measured {
    /// The homework's table, with this run's facts.
    pub homework: Homework,
    /// The table, section by section.
    pub sections: Vec<Section>,
    /// The scaling curves of the CPU-bound kernels.
    pub scaling: Vec<Curve>,
    /// How each column and reference was run.
    pub methods: Vec<Method>,
    /// Remarks for under the table.
    pub notes: Vec<String>,
    /// The Python peers' interpreter, if they ran.
    pub python: Option<String>,
}

/// Measures every section for `plan`, saying what it does on `progress`: the overhead,
/// throughput and I/O-bound sections, then the Python peers (which fill their columns of every
/// row but two cells: the `map` and `imap` rows' Python processes cells, whose `Pool.map` and
/// `Pool.imap` a Python server samples in those rows' own rounds), then memory and failures; and the homework's table from
/// all of them. Each backend's pool of N is started once and kept from the first overhead row
/// to the last throughput row, as a program keeps its pool; start-up, spawn, memory and failure
/// rows start their own.
pub fn run(plan: &Plan, progress: &Progress) -> Measured {
    let scenarios = OVERHEAD.iter().filter(|s| in_report(s)).chain(&MESSAGES);
    let kernel_count = 2 * plan.task_sizes.len();
    let steps = 1 + scenarios.clone().count() + kernel_count + io::steps() + 1 + 1 + 1;
    progress.plan(steps + faults::steps());
    // The Python peers measure most rows again for two columns, one variant after another:
    // about as long as all the other steps together.
    if interpreter().is_ok() {
        let python_step = 1 + scenarios.clone().count() + kernel_count + io::steps() + 1;
        progress.weigh(python_step, (steps + faults::steps() - 1) as f64);
    }
    progress.step(format!(
        "calibrating the kernels ({} mode, {} workers)",
        plan.mode.name(),
        plan.workers
    ));
    let kernels = kernels(plan);
    let pools = RefCell::new(Pools::default());
    let mut overhead = Vec::new();
    // The operations whose Python processes cell the Python server sampled.
    let mut served_ops = Vec::new();
    for scenario in scenarios {
        progress.step(format!("overhead: {}", scenario.name.replace('_', " ")));
        if served::served_call(scenario.op).is_some() {
            let (id, row) = served::served_row(scenario, plan, &pools);
            if served::sampled(&row) {
                served_ops.push(scenario.op);
            }
            overhead.push((id, row));
        } else {
            overhead.push(scenario.row(plan, &pools));
        }
    }
    let throughput = throughput::run(plan, progress, &kernels, &pools);
    drop(pools);
    let io = io::rows(plan, progress);
    progress.step("Python peers");
    let script = Script::run(plan, &kernels, &served_ops, |fraction, what| {
        progress.part(fraction, format_args!("Python peers: {what}"));
    });
    let memory = memory::rows(plan, progress);
    overhead.extend(idle::rows(plan, progress));
    let faults = faults::rows(plan, progress);
    #[cfg(feature = "cluster")]
    crate::backends::cluster::stop();

    let mut notes = vec![
        "Every quantity was measured for all columns in the same run, variants interleaved (each round starting one variant further along), and each cell is the median over the repeats; in the overhead rows a first round, a warm-up, is not kept. The Python columns are the exception: the Python script runs after the Rust rows, its variants interleaved among themselves, so its cells were measured minutes after the Rust ones of the same row (but for the map and imap rows' Python processes cells, which a Python server samples in the Rust columns' rounds).".to_owned(),
        "The one-off spawn row's rayon column is std::thread::scope with one spawned thread, joined (rayon has no one-off spawn with a handle).".to_owned(),
        "Pools are kept as a program keeps its pool: each column's pool of N serves every overhead row after start-up and the throughput rows at N workers (the other worker counts have pools of their own, kept across kernels); start-up, spawn, memory and failure rows start fresh ones.".to_owned(),
        "Two floors, measured in the same run: the blocking pipe floor is a raw 8-byte ping-pong over two pipes between two processes, each asleep in read(2) until the other writes (two wake-ups per round trip, so it moves with the machine's wake-up latency); the spinning shared-memory floor is a ping-pong through one shared page that both processes spin on (no system call and no wake-up: the cost of moving cache lines between CPUs). A round trip between processes costs at least the spinning floor, and about the blocking one when both sides sleep.".to_owned(),
        "Every column maps the same no-op: it takes an integer and returns it (taskpool and rayon map `fn noop(x: u64) -> u64 { x }`, Python maps `def identity(x): return x`), so an integer goes each way.".to_owned(),
        "Both process pools move the 1 MiB payload as serde_bytes::ByteBuf; a plain Vec<u8> goes through serde byte by byte and costs several times more.".to_owned(),
        "The payload rows have a third floor, the copy floor: the copies a round trip of an owned buffer cannot avoid, made one after another in this program (no second process, no wake-up): the argument into warm memory (the request side's, kept between round trips), from there into a new vector (the worker's argument), into warm memory again (the result side's) and into a new vector (the result); a new vector of 32 MiB or more asks for huge pages first, as the process backend's do.".to_owned(),
        format!("Each sample of the 64 MiB rows is the median of {} round trips, one after another. The first follows the other columns' samples and finds memory freed seconds before, which on a virtual machine that hands free memory back to its host costs several times a copy to fault in again (the process backend's 64 MiB round trip on a 2-core VM: 160–390 ms after 1.5 s of rest, 40–55 ms right after another), whichever column meets it; the median is the round trip of a program that moves large values one after another.", overhead::LARGE_ROUND_TRIPS),
        "The SharedBytes rows send the same bytes as taskpool_process::SharedBytes, a new value for every round trip, written into a sealed memfd before the clock: the worker maps the sender's pages, reads the last byte in place and returns the value, so no byte is copied; their floor is the raw echo of as many bytes over pipes, measured as in the payload rows: what a copy costs. Python's cell passes a new multiprocessing.shared_memory block by name to Pool.apply the same way (attach, read the last byte, close, return the name).".to_owned(),
        "Failure rows: taskpool processes and procspawn run the fault on a pool of one worker (the worst case: the only worker is hit); the time is from submitting the faulty task to the next task's result; in the Rust columns the median of up to 5 faults on one pool (a first panic in a new process costs more than the next: the unwinder loads its tables, and with RUST_BACKTRACE set a default panic hook resolves a backtrace). Thread pools run in a child copy of this program, so a crash there is observed, not suffered.".to_owned(),
        "Python processes is multiprocessing.Pool; ProcessPoolExecutor behaves differently on crashes (it breaks for good), see below.".to_owned(),
        "I/O-bound rows: every task waits 10 ms (a sleep, or a blocking read of the answer a server thread of this program sends over a local Unix socket after 10 ms), so W workers serve at most W ÷ 10 ms tasks per second: the row's ideal. rayon runs them as any batch, a par_iter on a pool of W threads: it is built for CPU-bound work on one thread per CPU, and its threads block like any other. Memory there is the growth of the proportional set size of the program and every process it started (a page shared by k processes counts 1/k), the same measure for threads and processes.".to_owned(),
        "Start-up rows: Python's ThreadPoolExecutor starts its threads on demand, so its first result needs one thread, not 2 or 64, where taskpool's and rayon's thread pools start all of theirs in `new`: its start-up cells, and a ratio against them, compare the start of one thread with that of the whole pool.".to_owned(),
    ];
    notes.push(samples_note(plan));
    notes.extend(one_cpu_note(plan));
    if served_ops.contains(&Op::Map) {
        notes.push(format!(
            "The map row's Python processes cell is `{}` with its default chunks on a kept multiprocessing.Pool({}) that a Python server (peers.py --serve) maps on request: one sample in each round of the Rust columns, its input list made before the clock, so that drift of the machine hits both alike. It is the value the row compares with, even where another Python idiom maps faster: Python's other maps (ProcessPoolExecutor's, and the Python threads column's) ran in the Python peers' own run, after the Rust rows, and are listed with the idioms compared.",
            served::SERVED_CALL,
            plan.workers
        ));
    }
    if served_ops.contains(&Op::Imap) {
        notes.push(format!(
            "The imap row maps {} no-ops with one lazy call and takes each result as it comes, in order, as a program consumes a stream; its items are fewer than the map row's, since Python's `{}` sends one item per message by default (chunksize=1). Its Python processes cell is that call on a kept multiprocessing.Pool({}) that a Python server maps on request, one sample in each round of the Rust columns, as in the map row; its Python threads cell is multiprocessing.pool.ThreadPool.imap(f, items), also with chunksize=1, from the Python peers' own run, which also times `Pool.imap` with the large chunks Python's docs advise for long iterables (Pool.map's default ones), listed with the idioms compared. rayon has no such call: `par_bridge()` keeps no order, and a parallel iterator returns only once the whole batch is done.",
            plan.imap_items,
            served::SERVED_IMAP_CALL,
            plan.workers
        ));
    }
    notes.extend(script.method_notes(plan, &kernels));
    notes.extend(script.notes());
    if let Ok(service) = crate::slow_service::shared() {
        notes.push(format!(
            "The slow local service answered {} requests in this run (I/O-bound socket rows, Python's included).",
            service.answered()
        ));
    }
    let mut scaling = throughput.curves;
    if let Some(note) = busy_cpus(&scaling, plan.workers) {
        notes.insert(0, note);
    }
    notes.extend(kernels.iter().map(|k| k.describe()));
    scaling.extend(script.curves(&kernels));

    if let Script::Absent(why) = &script {
        notes.push(format!("The Python columns are empty: {why}."));
    }
    let section = |title: &str, rows: Vec<(RowId, Row)>| Section {
        title: title.into(),
        rows: rows.into_iter().map(|(id, row)| script.fill(id, row)).collect(),
    };
    let sections = vec![
        section("Overhead", overhead),
        section("Memory", memory),
        section("CPU-bound throughput", throughput.rows),
        section("I/O-bound work", io.rows),
        section("Failure impact", faults),
    ];
    Measured {
        homework: homework(&sections, &io.shares, plan.workers),
        methods: methods(&script.versions()),
        sections,
        scaling,
        notes,
        python: script.version(),
    }
}

/// On one CPU, what the speed-up rows can and cannot show.
fn one_cpu_note(plan: &Plan) -> Option<String> {
    (plan.workers == 1).then(|| {
        "This run had one CPU (a machine of one, or a run pinned to one with taskset or a container's CPU limit): the speed-up and efficiency rows compare one worker with the sequential loop, so they show what a pool costs, not what parallel work gains (1× at best; 2× on two CPUs is the ideal the homework's claims speak of), and the spinning floor's two processes take turns on the CPU, each spinning out its time slice while the other waits, so it is no floor there. Run on two or more CPUs to compare threads and processes on CPU-bound work.".to_owned()
    })
}

/// How many samples the cells' medians are of: the `map` and `imap` rows', the other rows' in the Rust
/// and in the Python columns, and the rows measured in fresh processes.
fn samples_note(plan: &Plan) -> String {
    format!(
        "The map and imap rows take {} samples per column, Python's included: a sample of these rows lasts only tens or hundreds of milliseconds, so that one phase of a busy machine can take a whole sample. The other rows take {} in the Rust columns and {} in the Python columns (each run of the Python script lasts longer), the memory rows {} and the idle row {} (a fresh process each), and the memory per worker of the I/O-bound section 1; a Python speed-up is the script's ratio of median times. report.json lists every cell's samples.",
        plan.map_repeats,
        plan.repeats,
        script_repeats(plan),
        memory::PROBES,
        idle::PROBES
    )
}

/// How each column and reference was run, from the table of backends: every backend that
/// shows there, its crates' versions (the script's for the Python columns) and its calls.
fn methods(python: &[String]) -> Vec<Method> {
    let shown = |backend: &Backend| match backend.shows() {
        Shows::Column(column) => (column.label().to_owned(), Some(column)),
        Shows::Reference(name) => (name.to_owned(), None),
    };
    let mut methods: Vec<Method> = Vec::new();
    for backend in BACKENDS {
        let (name, column) = shown(backend);
        let index = match methods.iter().position(|m| m.name == name) {
            Some(index) => index,
            None => {
                methods.push(Method { name, column, versions: Vec::new(), how: Vec::new() });
                methods.len() - 1
            }
        };
        let method = &mut methods[index];
        method.versions.extend(backend.crates().iter().filter_map(|c| versions::of(c)));
        if let Runs::Script(_) = backend.runs() {
            method.versions.extend(python.iter().cloned());
        }
        if !backend.enabled() {
            method.how.push(crate::columns::DISABLED.to_owned());
            continue;
        }
        for (ops, how) in backend.how() {
            let ops: Vec<&str> =
                ops.iter().filter(|op| backend.has(**op)).map(|op| op.label()).collect();
            if !ops.is_empty() {
                method.how.push(format!("{}: {how}", ops.join(", ")));
            }
        }
    }
    methods
}

/// A warning when even rayon could not use the CPUs: at `workers` workers its best speed-up
/// on any kernel stayed under 70% of ideal, so other work held CPUs during the run and the
/// scaling rows describe that machine, not an idle one.
fn busy_cpus(curves: &[Curve], workers: usize) -> Option<String> {
    if workers < 2 {
        return None;
    }
    let best = curves
        .iter()
        .filter(|c| c.column == Column::RAYON)
        .filter_map(|c| c.points.iter().find(|(w, _)| *w == workers).map(|(_, s)| *s))
        .fold(f64::NAN, f64::max);
    (best < 0.7 * workers as f64).then(|| {
        format!(
            "Warning: even rayon reached only {best:.2}× on {workers} workers, so fewer than \
             {workers} CPUs were free during the throughput measurements (other programs were \
             running). Read the speed-ups as what this machine gave, not what the pools can do."
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::Mode;

    /// The note gives each column's count of samples, the Python columns' included, which
    /// are fewer than the Rust columns'.
    #[test]
    fn the_note_on_samples_gives_the_python_columns_their_own_count() {
        let plan = Plan::new(Mode::Default);
        let note = samples_note(&plan);
        assert_eq!(script_repeats(&plan), 3);
        assert!(note.contains("The map and imap rows take 11 samples per column"), "{note}");
        assert!(note.contains("5 in the Rust columns and 3 in the Python columns"), "{note}");
        let quick = samples_note(&Plan::new(Mode::Quick));
        assert!(quick.contains("3 in the Rust columns and 2 in the Python columns"), "{quick}");
    }

    #[test]
    fn a_run_on_one_cpu_says_what_its_speed_up_rows_cannot_show() {
        let one = Plan { workers: 1, ..Plan::new(Mode::Quick) };
        let note = one_cpu_note(&one).expect("a note on one CPU");
        assert!(note.starts_with("This run had one CPU"), "{note}");
        assert!(one_cpu_note(&Plan { workers: 2, ..Plan::new(Mode::Quick) }).is_none());
    }
}
