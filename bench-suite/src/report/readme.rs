//! The README's "What the numbers say", generated from a report: its tables, and sentences
//! whose every figure and ratio is computed from the report, so that a sentence cannot drift
//! from the run it cites. The README keeps the section between two markers; a test of this
//! crate regenerates it from the committed JSON (`bench-suite/results/report.json`) and fails
//! when the two differ, and checks every stated ratio against the JSON on its own.

use super::format::quantity;
use super::markdown::{homework_table, machine_description, ratio, section_table};
use super::{Better, Cell, Column, Report, Row, Unit};
use crate::backends::python::NEVER_REPORTED;

/// The line that opens the generated section in the README.
pub const README_BEGIN: &str =
    "<!-- numbers: generated from bench-suite/results/report.json; do not edit by hand -->";

/// The line that closes it.
pub const README_END: &str = "<!-- numbers: end -->";

/// Ratios closer to 1 than this read "on par", as in the report's tables.
const ON_PAR: f64 = 0.05;

/// A quantity a sentence cites: a column's cell or a reference of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The median of a column's cell.
    Column(Column),
    /// The median of the row's reference of that name.
    Reference(String),
}

/// A ratio a sentence states: `of` over `to` in the row keyed `row`, as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Cited {
    /// The row's key.
    pub row: String,
    /// The numerator.
    pub of: Source,
    /// The denominator.
    pub to: Source,
    /// The ratio as the sentence writes it, such as `2.7×`.
    pub shown: String,
}

/// One bullet of "How to read it": its text and the ratios it states.
#[derive(Debug, Clone, PartialEq)]
pub struct Sentence {
    /// The bullet's text (Markdown).
    pub text: String,
    /// Every ratio the text states.
    pub cited: Vec<Cited>,
}

/// The section between [`README_BEGIN`] and [`README_END`] (both excluded) for `report`.
pub fn readme_numbers(report: &Report) -> String {
    let mut out = intro(report);
    if !report.homework.rows.is_empty() {
        out.push_str(&homework_table(&report.homework).replacen("## ", "### ", 1));
    }
    for section in &report.sections {
        let table = section_table(section).replacen("## ", "### ", 1);
        match (section_intro(&section.title), table.split_once("\n\n")) {
            (Some(intro), Some((heading, rest))) => {
                out.push_str(&format!("{heading}\n\n{intro}\n\n{rest}"));
            }
            _ => out.push_str(&table),
        }
    }
    let claims = sentences(report);
    if !claims.is_empty() {
        out.push_str("How to read it:\n\n");
        for claim in &claims {
            out.push_str(&format!("- {}\n", claim.text));
        }
    }
    out
}

/// What a section's table measures, where its rows need more than their labels say.
fn section_intro(title: &str) -> Option<&'static str> {
    match title {
        "I/O-bound work" => Some(
            "Tasks that mostly wait: each sleeps 10 ms, or blocks reading the answer that a \
             server thread of the report sends over a local Unix socket after 10 ms. W workers \
             serve at most W ÷ 10 ms tasks per second, the row's ideal.",
        ),
        _ => None,
    }
}

/// The paragraph above the tables: where and when the run was made.
fn intro(report: &Report) -> String {
    let machine = &report.machine;
    let python = machine.python.as_deref().map(|p| format!(", Python {p}")).unwrap_or_default();
    format!(
        "One {} run of `cargo run --release -p taskpool-bench`, kept as \
         [`bench-suite/results/report.json`](bench-suite/results/report.json): {}{python}; load \
         average {:.2} before the run and {:.2} after it (which counts the run's own work). This \
         section is generated from that file, and a test fails when the two disagree. Absolute \
         times drift by tens of percent between runs on a shared machine; the ratios within one \
         run are what to read.\n\n",
        report.mode,
        machine_description(machine),
        machine.load_before,
        machine.load_after,
    )
}

/// Every bullet of "How to read it" whose figures the report has.
pub fn sentences(report: &Report) -> Vec<Sentence> {
    let found = Found { report };
    [
        per_task(&found),
        throughput(&found),
        streaming(&found),
        payloads(&found),
        shared_bytes(&found),
        messages(&found),
        startup(&found),
        memory(&found),
        idle(&found),
        cpu_bound(&found),
        after_burst(&found),
        waits(&found),
        failures(&found),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Looks figures up in a report.
struct Found<'a> {
    report: &'a Report,
}

impl Found<'_> {
    fn row(&self, key: &str) -> Option<&Row> {
        self.report.sections.iter().flat_map(|s| &s.rows).find(|r| r.key == key)
    }

    /// The median of `source` in the row `key`.
    fn median(&self, key: &str, source: &Source) -> Option<f64> {
        let row = self.row(key)?;
        let value = match source {
            Source::Column(column) => match row.cells.get(column)? {
                Cell::Value(summary) => summary.median,
                _ => return None,
            },
            Source::Reference(name) => {
                row.references.iter().find(|r| &r.name == name)?.value.median
            }
        };
        (value.is_finite() && value > 0.0).then_some(value)
    }

    /// The cell of `column` in the row `key`, in its unit.
    fn value(&self, key: &str, column: Column) -> Option<String> {
        let unit = self.row(key)?.unit;
        Some(quantity(self.median(key, &Source::Column(column))?, unit))
    }

    /// The cell of `column` in the row `key`, in its unit, followed by the range of its
    /// samples when the largest is more than twice the smallest: a median of samples that far
    /// apart says little alone (a peer that is fast in some rounds and slow in others).
    fn value_and_range(&self, key: &str, column: Column) -> Option<String> {
        let value = self.value(key, column)?;
        let unit = self.row(key)?.unit;
        let Some(Cell::Value(summary)) = self.row(key)?.cells.get(&column) else {
            return Some(value);
        };
        Some(if summary.min > 0.0 && summary.max > 2.0 * summary.min {
            let (min, max) = (quantity(summary.min, unit), quantity(summary.max, unit));
            format!("{value}; its samples ranged from {min} to {max}")
        } else {
            value
        })
    }

    /// The name of the row's reference whose name starts with `prefix`.
    fn reference(&self, key: &str, prefix: &str) -> Option<String> {
        let row = self.row(key)?;
        row.references.iter().find(|r| r.name.starts_with(prefix)).map(|r| r.name.clone())
    }

    /// `of` against `to` in the row `key`, as a sentence says it ("2.3× faster than",
    /// "on par (1.0×) with"), with the ratio it states.
    fn compare(&self, key: &str, of: Source, to: Source) -> Option<(String, Cited)> {
        let row = self.row(key)?;
        let (a, b) = (self.median(key, &of)?, self.median(key, &to)?);
        let better = match row.better {
            Better::Lower => a < b,
            Better::Higher => a > b,
        };
        let (word_better, word_worse) = match row.unit {
            Unit::Micros | Unit::Millis | Unit::PerSecond => ("faster than", "slower than"),
            Unit::KiB => ("less than", "more than"),
            Unit::Factor => ("higher than", "lower than"),
        };
        // The ratio is stated above 1: the larger over the smaller.
        let (of, to, times) = if a >= b { (of, to, a / b) } else { (to, of, b / a) };
        let shown = ratio(times);
        let cited = Cited { row: key.to_owned(), of, to, shown: shown.clone() };
        let text = if (times - 1.0).abs() < ON_PAR {
            format!("on par ({shown}) with")
        } else if better {
            format!("{shown} {word_better}")
        } else {
            format!("{shown} {word_worse}")
        };
        Some((text, cited))
    }

    /// `of` over `to` in the row `key`, as `2.7×`, with the ratio it states.
    fn times(&self, key: &str, of: Source, to: Source) -> Option<(String, Cited)> {
        let shown = ratio(self.median(key, &of)? / self.median(key, &to)?);
        Some((shown.clone(), Cited { row: key.to_owned(), of, to, shown }))
    }

    fn workers(&self) -> usize {
        self.report.machine.cpus
    }
}

use Source::Column as C;

/// A claim from text and the ratios it states.
fn sentence(text: String, cited: Vec<Cited>) -> Sentence {
    Sentence { text, cited }
}

fn per_task(f: &Found<'_>) -> Option<Sentence> {
    let key = "round_trip";
    let (t, p) = (Column::TASKPOOL_THREADS, Column::TASKPOOL_PROCESSES);
    let (vs_rayon, c1) = f.compare(key, C(t), C(Column::RAYON))?;
    let blocking = f.reference(key, "blocking")?;
    let spinning = f.reference(key, "spinning")?;
    let (over_blocking, c2) = f.times(key, C(p), Source::Reference(blocking.clone()))?;
    let (over_spinning, c3) = f.times(key, C(p), Source::Reference(spinning.clone()))?;
    let (vs_procspawn, c4) = f.compare(key, C(p), C(Column::PROCSPAWN))?;
    let (vs_python, c5) = f.compare(key, C(p), C(Column::PYTHON_PROCESSES))?;
    let floor =
        |name: &str| Some(quantity(f.median(key, &Source::Reference(name.into()))?, Unit::Micros));
    let text = format!(
        "**Per-task cost.** A no-op round trip costs {} on taskpool's threads, {vs_rayon} rayon \
         as its users write it (`spawn` answering on a crossbeam channel, {}). In a worker \
         process it costs {}: {over_blocking} the blocking pipe floor ({}: two processes asleep \
         in `read`, each woken in turn) and {over_spinning} the spinning shared-memory floor \
         ({}: both processes spinning, nobody woken). That is {vs_procspawn} procspawn ({}) and \
         {vs_python} Python's `Pool.apply` ({}).",
        f.value(key, t)?,
        f.value_and_range(key, Column::RAYON)?,
        f.value(key, p)?,
        floor(&blocking)?,
        floor(&spinning)?,
        f.value(key, Column::PROCSPAWN)?,
        f.value(key, Column::PYTHON_PROCESSES)?,
    );
    Some(sentence(text, vec![c1, c2, c3, c4, c5]))
}

fn throughput(f: &Found<'_>) -> Option<Sentence> {
    let (t, p) = (Column::TASKPOOL_THREADS, Column::TASKPOOL_PROCESSES);
    let (in_flight_vs_rayon, c1) = f.compare("in_flight", C(t), C(Column::RAYON))?;
    let (map_vs_python, c2) = f.compare("map", C(p), C(Column::PYTHON_PROCESSES))?;
    let (map_vs_rayon, c3) = f.compare("map", C(t), C(Column::RAYON))?;
    let python_map = f
        .row("map")?
        .idioms
        .iter()
        .find(|i| i.shown && i.column == Column::PYTHON_PROCESSES)
        .map(|i| format!(" with `{}`", i.how))
        .unwrap_or_default();
    let text = format!(
        "**Throughput.** With 1000 tasks in flight, each burst the first after the pool sat \
         idle, processes move {} and threads {} ({in_flight_vs_rayon} rayon's `scope`); in \
         such bursts back to back, on a pool kept busy, {} and {} (a first burst pays for \
         waking idle CPUs: see `process-pool/README.md`, \"Waking an idle machine\"). A `map` of no-ops runs at {} on processes, \
         {map_vs_python} Python's map ({}{python_map}), and at {} on threads, \
         {map_vs_rayon} rayon's `par_iter` ({}).",
        f.value("in_flight", p)?,
        f.value("in_flight", t)?,
        f.value("in_flight_kept", p)?,
        f.value("in_flight_kept", t)?,
        f.value("map", p)?,
        f.value("map", Column::PYTHON_PROCESSES)?,
        f.value("map", t)?,
        f.value("map", Column::RAYON)?,
    );
    Some(sentence(text, vec![c1, c2, c3]))
}

/// The `imap` row, in a run that has it (runs before it had none).
fn streaming(f: &Found<'_>) -> Option<Sentence> {
    let key = "imap";
    let (t, p) = (Column::TASKPOOL_THREADS, Column::TASKPOOL_PROCESSES);
    let (vs_python, c1) = f.compare(key, C(p), C(Column::PYTHON_PROCESSES))?;
    let (threads_vs_python, c2) = f.compare(key, C(t), C(Column::PYTHON_THREADS))?;
    let items = f.row(key)?.label.split_whitespace().nth(2)?.to_owned();
    // Runs since the script measured it name `Pool.imap` with the chunks its docs advise.
    let chunked = f
        .row(key)?
        .idioms
        .iter()
        .find(|i| i.column == Column::PYTHON_PROCESSES && i.how.contains("chunksize="))
        .map(|i| {
            format!(
                "; `{}`, the large chunks its docs advise for long inputs, ran at {}",
                i.how,
                quantity(i.value.median, Unit::PerSecond)
            )
        })
        .unwrap_or_default();
    let text = format!(
        "**Streaming.** An `imap` of {items} no-ops, each result taken as it comes, runs at {} \
         on processes, {vs_python} Python's `Pool.imap` ({}, one item per message by \
         default{chunked}), and at {} on threads, {threads_vs_python} Python's \
         `ThreadPool.imap` ({}).",
        f.value(key, p)?,
        f.value(key, Column::PYTHON_PROCESSES)?,
        f.value(key, t)?,
        f.value(key, Column::PYTHON_THREADS)?,
    );
    Some(sentence(text, vec![c1, c2]))
}

fn payloads(f: &Found<'_>) -> Option<Sentence> {
    let (small, large) = ("payload_1mib", "payload_64mib");
    let p = Column::TASKPOOL_PROCESSES;
    let floor = f.reference(small, "blocking")?;
    let large_floor = f.reference(large, "blocking")?;
    let (over_floor, c1) = f.times(small, C(p), Source::Reference(floor.clone()))?;
    let (large_over_floor, c2) = f.times(large, C(p), Source::Reference(large_floor.clone()))?;
    let (vs_python, c3) = f.compare(small, C(p), C(Column::PYTHON_PROCESSES))?;
    let floor_value = |key: &str, name: &str| {
        Some(quantity(f.median(key, &Source::Reference(name.into()))?, Unit::Micros))
    };
    let mut cited = vec![c1, c2, c3];
    // The copy floor joined the rows later: a report without it says the rest.
    let copies = f.reference(large, "copy").and_then(|name| {
        let (times, c) = f.times(large, C(p), Source::Reference(name.clone()))?;
        cited.push(c);
        Some(format!(
            " and {times} the copies a round trip of an owned buffer cannot avoid, made in one \
             process ({}: two into new memory, two into warm)",
            floor_value(large, &name)?
        ))
    });
    let text = format!(
        "**Payloads.** A 1 MiB argument that comes back as the result takes {} through a worker \
         process, {over_floor} the raw 1 MiB echo over two pipes ({}), {vs_python} Python's \
         `Pool.apply` ({}); 64 MiB takes {}, {large_over_floor} the raw 64 MiB pipe echo \
         ({}){}. Threads pass the buffer without a copy: {} and {}.",
        f.value(small, p)?,
        floor_value(small, &floor)?,
        f.value(small, Column::PYTHON_PROCESSES)?,
        f.value(large, p)?,
        floor_value(large, &large_floor)?,
        copies.unwrap_or_default(),
        f.value(small, Column::TASKPOOL_THREADS)?,
        f.value(large, Column::TASKPOOL_THREADS)?,
    );
    Some(sentence(text, cited))
}

fn shared_bytes(f: &Found<'_>) -> Option<Sentence> {
    let (small, large) = ("shared_bytes_1mib", "shared_bytes_64mib");
    let p = Column::TASKPOOL_PROCESSES;
    let floor = Source::Reference(f.reference(small, "blocking")?);
    let large_floor = Source::Reference(f.reference(large, "blocking")?);
    let (vs_floor, c1) = f.compare(small, C(p), floor.clone())?;
    let (large_vs_floor, c2) = f.compare(large, C(p), large_floor.clone())?;
    let (vs_python, c3) = f.compare(small, C(p), C(Column::PYTHON_PROCESSES))?;
    let (large_vs_python, c4) = f.compare(large, C(p), C(Column::PYTHON_PROCESSES))?;
    let floor_value = |key: &str, name: &Source| Some(quantity(f.median(key, name)?, Unit::Micros));
    // The plain round trips of the payload rows, so that the figures say what a program gains
    // by switching: the pipe echo of this row was measured apart from theirs and differs.
    let text = format!(
        "**Bytes in shared memory.** As `SharedBytes` (written once, read in place by the \
         worker; a new value each time) the same round trips take {} for 1 MiB, where a plain \
         `ByteBuf` took {}, and {} for 64 MiB, where it took {}. The raw pipe echo measured in \
         the same rounds as them took {} and {}: `SharedBytes` is {vs_floor} it at 1 MiB and \
         {large_vs_floor} it at 64 MiB. Python's nearest, a `multiprocessing.shared_memory` \
         block passed by name to `Pool.apply`, takes {} and {}: `SharedBytes` is {vs_python} it \
         at 1 MiB and {large_vs_python} it at 64 MiB. On threads it is passed as is ({}).",
        f.value(small, p)?,
        f.value("payload_1mib", p)?,
        f.value(large, p)?,
        f.value("payload_64mib", p)?,
        floor_value(small, &floor)?,
        floor_value(large, &large_floor)?,
        f.value(small, Column::PYTHON_PROCESSES)?,
        f.value(large, Column::PYTHON_PROCESSES)?,
        f.value(small, Column::TASKPOOL_THREADS)?,
    );
    Some(sentence(text, vec![c1, c2, c3, c4]))
}

fn messages(f: &Found<'_>) -> Option<Sentence> {
    let (queue, pipe) = ("messages_queue", "messages_pipe");
    let (p, py) = (Column::TASKPOOL_PROCESSES, Column::PYTHON_PROCESSES);
    let (queue_vs_python, c1) = f.compare(queue, C(p), C(py))?;
    let (pipe_vs_python, c2) = f.compare(pipe, C(p), C(py))?;
    let text = format!(
        "**Messages between processes.** Small messages (`Option<i64>`) from a child process \
         to its parent move at {} through a `Queue`, {queue_vs_python} \
         `multiprocessing.Queue` ({}), and at {} through a `Pipe`, {pipe_vs_python} \
         `multiprocessing.Pipe()` ({}).",
        f.value(queue, p)?,
        f.value(queue, py)?,
        f.value(pipe, p)?,
        f.value(pipe, py)?,
    );
    Some(sentence(text, vec![c1, c2]))
}

fn startup(f: &Found<'_>) -> Option<Sentence> {
    let key = "startup";
    let p = Column::TASKPOOL_PROCESSES;
    let (vs_procspawn, c1) = f.compare(key, C(p), C(Column::PROCSPAWN))?;
    let (vs_python, c2) = f.compare(key, C(p), C(Column::PYTHON_PROCESSES))?;
    let text = format!(
        "**Start-up.** A pool of {} worker processes serves its first task {} after `new` \
         ({vs_procspawn} procspawn, {vs_python} `multiprocessing.Pool`): workers are this \
         program itself, started again (`clone3` sharing the parent's memory until `exec`, \
         as `posix_spawn` does), never forked. A pool of threads takes {}.",
        f.workers(),
        f.value(key, p)?,
        f.value(key, Column::TASKPOOL_THREADS)?,
    );
    Some(sentence(text, vec![c1, c2]))
}

fn memory(f: &Found<'_>) -> Option<Sentence> {
    let key = "memory";
    let (t, p) = (Column::TASKPOOL_THREADS, Column::TASKPOOL_PROCESSES);
    let (vs_procspawn, c1) = f.compare(key, C(p), C(Column::PROCSPAWN))?;
    let (vs_python, c2) = f.compare(key, C(p), C(Column::PYTHON_PROCESSES))?;
    let text = format!(
        "**Memory.** Measured alike for every column (the growth of the program's PSS, all its \
         processes, when a pool of {} starts): worker processes add {} ({vs_procspawn} \
         procspawn's {}, {vs_python} `multiprocessing.Pool`'s {}); threads add {} (rayon {}, \
         Python's `ThreadPoolExecutor` {}).",
        f.workers(),
        f.value(key, p)?,
        f.value(key, Column::PROCSPAWN)?,
        f.value(key, Column::PYTHON_PROCESSES)?,
        f.value(key, t)?,
        f.value(key, Column::RAYON)?,
        f.value(key, Column::PYTHON_THREADS)?,
    );
    Some(sentence(text, vec![c1, c2]))
}

fn idle(f: &Found<'_>) -> Option<Sentence> {
    let key = "idle_cpu";
    let row = f.row(key)?;
    // A pool whose threads all sleep measures 0, which is a figure here, not a gap.
    let cpu = |column: Column| match row.cells.get(&column)? {
        Cell::Value(summary) if summary.median.is_finite() => {
            Some(quantity(summary.median, row.unit))
        }
        _ => None,
    };
    let text = format!(
        "**Idle.** A pool of 2 that ran one task and was then left alone used {} of CPU time \
         over the next second on processes (its threads and its workers), {} on threads (rayon \
         {}, procspawn {}).",
        cpu(Column::TASKPOOL_PROCESSES)?,
        cpu(Column::TASKPOOL_THREADS)?,
        cpu(Column::RAYON)?,
        cpu(Column::PROCSPAWN)?,
    );
    Some(sentence(text, Vec::new()))
}

fn cpu_bound(f: &Found<'_>) -> Option<Sentence> {
    let (t, p) = (Column::TASKPOOL_THREADS, Column::TASKPOOL_PROCESSES);
    let primes = "speedup_primes_1ms";
    let mandel = "speedup_mandel_1ms";
    let rayon = f.median(primes, &C(Column::RAYON))?;
    let busy = if rayon < 0.7 * f.workers() as f64 {
        format!(
            " Even rayon reached only {}: other work held the CPUs, so read these as what the \
             machine gave.",
            f.value(primes, Column::RAYON)?
        )
    } else {
        String::new()
    };
    let text = format!(
        "**CPU-bound work.** At 1 ms tasks on {} CPUs, the primes batch's speed-up over \
         running it sequentially is {} on threads and {} on processes (rayon {}, procspawn {}, \
         Python threads {}, Python processes {}); on Mandelbrot rows {} and {} (rayon {}).{busy}",
        f.workers(),
        f.value(primes, t)?,
        f.value(primes, p)?,
        f.value(primes, Column::RAYON)?,
        f.value(primes, Column::PROCSPAWN)?,
        f.value(primes, Column::PYTHON_THREADS)?,
        f.value(primes, Column::PYTHON_PROCESSES)?,
        f.value(mandel, t)?,
        f.value(mandel, p)?,
        f.value(mandel, Column::RAYON)?,
    );
    Some(sentence(text, Vec::new()))
}

fn after_burst(f: &Found<'_>) -> Option<Sentence> {
    let key = "speedup_after_burst_primes_1ms";
    let fresh = "speedup_primes_1ms";
    let (t, p) = (Column::TASKPOOL_THREADS, Column::TASKPOOL_PROCESSES);
    let (processes_vs_threads, c1) = f.compare(key, C(p), C(t))?;
    let text = format!(
        "**A pool that just ran many tiny tasks.** Right after a `map` of no-ops on the same \
         pool, the primes batch's speed-up is {} on threads and {} on processes (processes \
         {processes_vs_threads} threads; rayon {}, Python processes {}), against {} and {} in \
         the row before it.",
        f.value(key, t)?,
        f.value(key, p)?,
        f.value(key, Column::RAYON)?,
        f.value(key, Column::PYTHON_PROCESSES)?,
        f.value(fresh, t)?,
        f.value(fresh, p)?,
    );
    Some(sentence(text, vec![c1]))
}

fn waits(f: &Found<'_>) -> Option<Sentence> {
    let workers = 64;
    let key = format!("io_socket_{workers}");
    let ideal = f.reference(&key, "ideal")?;
    let columns = [
        Column::TASKPOOL_THREADS,
        Column::TASKPOOL_PROCESSES,
        Column::RAYON,
        Column::PROCSPAWN,
        Column::PYTHON_THREADS,
        Column::PYTHON_PROCESSES,
    ];
    let mut cited = Vec::new();
    let mut reached = Vec::new();
    for column in columns {
        let (times, c) = f.times(&key, C(column), Source::Reference(ideal.clone()))?;
        reached.push(format!("{} {times}", column.label()));
        cited.push(c);
    }
    let memory = format!("io_memory_{workers}");
    let startup = format!("io_startup_{workers}");
    let text = format!(
        "**Waiting tasks.** With {workers} workers each blocked reading a slow local service, \
         the pools reach this share of the ideal rate: {}. A blocked thread holds no GIL. What \
         {workers} waits at once cost is the pool's size: per worker, a thread adds {} (rayon \
         {}, Python {}), a taskpool worker process {}, procspawn's {}, a Python worker process \
         {}; and {workers} processes take {} to start where {workers} threads take {}.",
        reached.join(", "),
        f.value(&memory, Column::TASKPOOL_THREADS)?,
        f.value(&memory, Column::RAYON)?,
        f.value(&memory, Column::PYTHON_THREADS)?,
        f.value(&memory, Column::TASKPOOL_PROCESSES)?,
        f.value(&memory, Column::PROCSPAWN)?,
        f.value(&memory, Column::PYTHON_PROCESSES)?,
        f.value(&startup, Column::TASKPOOL_PROCESSES)?,
        f.value(&startup, Column::TASKPOOL_THREADS)?,
    );
    Some(sentence(text, cited))
}

fn failures(f: &Found<'_>) -> Option<Sentence> {
    let rows: Vec<&Row> = f
        .report
        .sections
        .iter()
        .flat_map(|s| &s.rows)
        .filter(|r| r.key.starts_with("fault_"))
        .collect();
    if rows.is_empty() {
        return None;
    }
    let survived = |column: Column| {
        let outcomes = rows.iter().filter_map(|r| match r.cells.get(&column) {
            Some(Cell::Outcome { survived, text, .. }) => {
                Some((*survived, *survived && text.ends_with(NEVER_REPORTED)))
            }
            _ => None,
        });
        let (kept, silent, of) = outcomes.fold((0, 0, 0), |(k, q, n), (s, silent)| {
            (k + usize::from(s), q + usize::from(silent), n + 1)
        });
        let silent = match silent {
            0 => String::new(),
            n => format!(
                " ({n} of them only as the caller gave up waiting: the task's result never came)"
            ),
        };
        (of > 0).then(|| format!("{} {kept} of {of}{silent}", column.label()))
    };
    let counts: Vec<String> = Column::ALL.iter().filter_map(|&c| survived(c)).collect();
    let next = match f.row("fault_segfault")?.cells.get(&Column::TASKPOOL_PROCESSES)? {
        Cell::Outcome { next_after_ms: Some(next), survived: true, .. } => {
            format!(
                " A segfault in a worker process costs that task, and the next task is served \
                 {} later (a new worker).",
                quantity(next.median, Unit::Millis)
            )
        }
        _ => String::new(),
    };
    let died: Vec<&str> = Column::ALL
        .iter()
        .filter(|c| {
            let cell = f.row("fault_segfault").and_then(|r| r.cells.get(c));
            matches!(cell, Some(Cell::Outcome { survived: false, .. }))
        })
        .map(|c| c.label())
        .collect();
    let died = if died.is_empty() {
        String::new()
    } else {
        format!(" A segfault in one task ended the whole program on {}.", died.join(", "))
    };
    let text = format!(
        "**Failures.** This is what processes buy. Faults a program survived, with its pool \
         still serving: {}.{next}{died}",
        counts.join(", ")
    );
    Some(sentence(text, Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;
    use crate::stats::Summary;

    #[test]
    fn comparisons_state_the_larger_over_the_smaller_with_the_right_word() {
        let report = fixture::report();
        let found = Found { report: &report };
        let (text, cited) = found
            .compare("round_trip", C(Column::TASKPOOL_PROCESSES), C(Column::PROCSPAWN))
            .unwrap();
        assert_eq!(text, "3.1× faster than");
        assert_eq!((cited.of, cited.to), (C(Column::PROCSPAWN), C(Column::TASKPOOL_PROCESSES)));
        let (text, _) = found
            .compare("round_trip", C(Column::TASKPOOL_PROCESSES), C(Column::TASKPOOL_THREADS))
            .unwrap();
        assert_eq!(text, "6.3× slower than");
        let (text, _) =
            found.compare("tasks_per_s", C(Column::TASKPOOL_THREADS), C(Column::RAYON)).unwrap();
        assert_eq!(text, "1.6× slower than");
        assert!(
            found.compare("round_trip", C(Column::PYTHON_PROCESSES), C(Column::RAYON)).is_none()
        );
    }

    #[test]
    fn a_median_of_samples_far_apart_comes_with_their_range() {
        let mut report = fixture::report();
        let row = report.sections.iter_mut().flat_map(|s| &mut s.rows);
        let row = row.into_iter().find(|r| r.key == "round_trip").unwrap();
        let bimodal = Summary::of(vec![7.55, 0.88, 0.63, 7.55, 7.56]).unwrap();
        row.cells.insert(Column::RAYON, Cell::Value(bimodal));
        let found = Found { report: &report };
        assert_eq!(
            found.value_and_range("round_trip", Column::RAYON).unwrap(),
            "7.55 µs; its samples ranged from 630 ns to 7.56 µs"
        );
        let steady = found.value_and_range("round_trip", Column::PROCSPAWN).unwrap();
        assert!(!steady.contains("ranged"), "{steady}");
    }

    /// A fault whose task the pool never settled counts as survived (the pool serves on),
    /// and the sentence says how many of a column's were only that.
    #[test]
    fn failures_say_which_survivals_only_gave_up_on_a_task_never_reported() {
        let mut report = fixture::report();
        let row = report.sections.iter_mut().flat_map(|s| &mut s.rows);
        let row = row.into_iter().find(|r| r.key == "fault_segfault").unwrap();
        let never = Cell::Outcome {
            text: format!("task hung: no result after 1.0 s {NEVER_REPORTED}"),
            next_after_ms: Some(Summary::single(1.0)),
            survived: true,
        };
        row.cells.insert(Column::PYTHON_PROCESSES, never);
        let text = failures(&Found { report: &report }).unwrap().text;
        assert!(
            text.contains("Python processes 1 of 1 (1 of them only as the caller gave up waiting"),
            "{text}"
        );
        assert!(text.contains("taskpool processes 1 of 1,"), "{text}");
    }

    /// A run with the `imap` row states it against Python's, cited from the row; a run
    /// without it (as runs before the row were) leaves the sentence out.
    #[test]
    fn the_imap_row_has_its_sentence_when_the_run_has_it() {
        let mut report = fixture::report();
        let streaming = |report: &Report| {
            sentences(report).into_iter().find(|s| s.text.starts_with("**Streaming.**"))
        };
        assert!(streaming(&report).is_none());
        let mut row = Row::new(
            "imap",
            "imap of 10000 no-ops, consumed as they come (items/s)",
            Unit::PerSecond,
            Better::Higher,
        );
        for (column, median) in [
            (Column::TASKPOOL_THREADS, 2.0e6),
            (Column::TASKPOOL_PROCESSES, 1.2e6),
            (Column::PYTHON_THREADS, 4.0e5),
            (Column::PYTHON_PROCESSES, 4.0e4),
        ] {
            row.cells.insert(column, Cell::Value(Summary::of(vec![median]).unwrap()));
        }
        report.sections[0].rows.push(row);
        let claim = streaming(&report).expect("a sentence on the imap row");
        assert_eq!(
            claim.text,
            "**Streaming.** An `imap` of 10000 no-ops, each result taken as it comes, runs at \
             1.20 M/s on processes, 30× faster than Python's `Pool.imap` (40.0 k/s, one item \
             per message by default), and at 2.00 M/s on threads, 5.0× faster than Python's \
             `ThreadPool.imap` (400 k/s)."
        );
        let cited: Vec<(&str, &str)> =
            claim.cited.iter().map(|c| (c.row.as_str(), c.shown.as_str())).collect();
        assert_eq!(cited, [("imap", "30×"), ("imap", "5.0×")]);
        // A run that measured `Pool.imap` with the chunks Python's docs advise says so.
        let row = report.sections[0].rows.last_mut().unwrap();
        row.idioms.push(crate::report::Idiom {
            column: Column::PYTHON_PROCESSES,
            how: "Pool.imap(f, items, chunksize=1250)".into(),
            value: Summary::of(vec![3.0e6]).unwrap(),
            shown: false,
        });
        let claim = streaming(&report).expect("a sentence on the imap row");
        assert!(
            claim.text.contains(
                "(40.0 k/s, one item per message by default; `Pool.imap(f, items, \
                 chunksize=1250)`, the large chunks its docs advise for long inputs, ran at \
                 3.00 M/s)"
            ),
            "{}",
            claim.text
        );
    }

    #[test]
    fn the_section_has_every_table_and_no_claim_without_its_figures() {
        let report = fixture::report();
        let text = readme_numbers(&report);
        for section in &report.sections {
            let heading = format!("### {}\n\n", section.title);
            let intro = section_intro(&section.title).map(|i| format!("{i}\n\n"));
            let table = format!("{heading}{}| Measure |", intro.unwrap_or_default());
            assert!(text.contains(&table), "{text}");
        }
        assert!(text.contains("### The homework's table, measured\n\n"));
        // The fixture has no floors named "blocking"/"spinning": no per-task claim.
        assert!(!text.contains("**Per-task cost.**"));
        assert!(text.starts_with("One default run of `cargo run --release -p taskpool-bench`"));
    }
}
