//! The report as a Markdown document: the multiprocessing-vs-multithreading table that a user
//! reads first.
//!
//! The document has a title, one line about the machine and the run, the homework's table
//! (its six claims, threads against processes, with this run's facts), one table per section
//! (a row label, one column per [`Column::ALL`], and how taskpool compares with the best
//! peer), the notes, and a paragraph on how to read the numbers.

use super::format::quantity;
use super::{Better, Cell, Column, Fact, Homework, Machine, Report, Row, Section, Unit};

/// Load per CPU above which the machine's other work makes the results suspect.
pub(super) const BUSY_LOAD_PER_CPU: f64 = 0.5;

/// Why the machine counts as busy, if it does: the CPUs busy with other work in the second
/// before the run or, where that is unknown, the load average before it.
pub(super) fn busy_reason(machine: &Machine) -> Option<String> {
    // Both measures count every CPU of the machine, not only those the run had.
    let all = machine.machine_cpus.unwrap_or(machine.cpus).max(machine.cpus);
    let cpus = all.max(1) as f64;
    let machine_s = if all > machine.cpus { " the machine's" } else { "" };
    let on = format!("on{machine_s} {all} CPU{}, above {BUSY_LOAD_PER_CPU} per CPU", plural(all));
    match machine.busy_before {
        Some(busy) => (busy > BUSY_LOAD_PER_CPU * cpus)
            .then(|| format!("{busy:.2} CPUs busy in the second before the run {on}")),
        // Only the load before: the one after counts the run's own work.
        None => (machine.load_before > BUSY_LOAD_PER_CPU * cpus)
            .then(|| format!("load {:.2} {on}", machine.load_before)),
    }
}

/// Half the relative spread of a value's samples above which its cell shows it.
const NOTABLE_SPREAD: f64 = 0.10;

/// Advantages closer to 1 than this read "on par": repeats on a shared machine vary more.
const ON_PAR: f64 = 0.05;

/// Renders `report` as Markdown: the machine, one table per section, the notes, and how to
/// read them. Never panics; any text from the report is escaped for a table cell.
pub fn markdown(report: &Report) -> String {
    let mut out = String::from("# taskpool: multiprocessing vs multithreading\n\n");
    out.push_str(&run_line(report));
    out.push_str("\n\n");
    if !report.homework.rows.is_empty() {
        out.push_str(&homework_table(&report.homework));
    }
    if report.sections.is_empty() {
        out.push_str("*This report has no measurements.*\n\n");
    }
    for section in &report.sections {
        out.push_str(&section_table(section));
    }
    out.push_str(&methods(report));
    out.push_str(&idioms(report));
    if !report.notes.is_empty() {
        out.push_str("## Notes\n\n");
        for note in &report.notes {
            out.push_str(&format!("- {}\n", escape(note)));
        }
        out.push('\n');
    }
    out.push_str(HOW_TO_READ);
    out
}

/// "How each column was run": per column and reference, its versions and its calls.
fn methods(report: &Report) -> String {
    if report.methods.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "## How each column was run

",
    );
    for method in &report.methods {
        out.push_str(&format!("- **{}**", escape(&method.name)));
        if !method.versions.is_empty() {
            out.push_str(&format!(" ({})", escape(&method.versions.join(", "))));
        }
        out.push('\n');
        for how in &method.how {
            out.push_str(&format!("  - {}\n", escape(how)));
        }
    }
    out.push('\n');
    out
}

/// "Idioms compared": where a column ran a row's operation several ways, each way and what
/// it measured; the cell shows the one marked, the best unless the notes say otherwise.
fn idioms(report: &Report) -> String {
    let mut out = String::new();
    for (row, column, ways) in compared_idioms(report) {
        let ways: Vec<String> = ways
            .iter()
            .map(|(how, value, shown)| {
                let shown = if *shown { " (shown)" } else { "" };
                format!("`{}` {value}{shown}", escape(how))
            })
            .collect();
        out.push_str(&format!(
            "- {}, {}: {}\n",
            escape(&row.label),
            column.label(),
            ways.join("; ")
        ));
    }
    if out.is_empty() {
        return out;
    }
    format!(
        "## Idioms compared\n\nWhere a column ran an operation in several ways, its cell shows the one marked (shown): the best, unless the notes say otherwise:\n\n{out}\n"
    )
}

/// One idiom a column ran: its call, its value in the row's unit, and whether the cell shows
/// it.
pub(super) type Way<'a> = (&'a str, String, bool);

/// Every row and column that ran several idioms, with each idiom.
pub(super) fn compared_idioms(report: &Report) -> Vec<(&Row, Column, Vec<Way<'_>>)> {
    let mut found = Vec::new();
    for row in report.sections.iter().flat_map(|s| &s.rows) {
        for column in Column::ALL.iter().copied() {
            let ways: Vec<Way<'_>> = row
                .idioms
                .iter()
                .filter(|i| i.column == column)
                .map(|i| (i.how.as_str(), quantity(i.value.median, row.unit), i.shown))
                .collect();
            if !ways.is_empty() {
                found.push((row, column, ways));
            }
        }
    }
    found
}

/// What the reader needs to trust (or doubt) the numbers.
pub(super) const HOW_TO_READ: &str = "\
## How to read this

Every value is the median over repeated runs, and the variants of a row ran interleaved \
(A, B, C, A, B, C, …) so that drift of a shared machine hits them all alike; the Python \
columns ran later in the same run, interleaved among themselves (but for the map and imap \
rows' `Pool.map` and `Pool.imap`, sampled in the Rust columns' rounds), so a ratio against \
them spans a few minutes of the machine's drift. A value with \
\"±12%\" after it had samples spread that far around the median (half of (max − min) / median), \
shown when above 10%: read it as noisy. The best value of a row is in bold. The last column \
compares each taskpool backend with the best peer measured in that row: a ratio above 1 means \
taskpool is better, whichever way the row counts (shorter times, higher throughput), and below \
1 means it is worse; within 5% of 1 reads \"on par\". After the peers come the process \
backends against the row's references (floors, ideals), as a multiple of the reference's \
quantity: \"2.0× the time of the pipe floor\" took twice as long as the floor, \"0.90× the \
rate of the ideal\" reached 90% of it. In the fault rows, ✅ means the program \
and the pool survived and 💥 means they did not; \"—\" means not measured.
";

/// The line under the title: machine, mode, run time, Python, and the machine's other load.
fn run_line(report: &Report) -> String {
    let machine = &report.machine;
    let mut parts = vec![format!("**Machine:** {}", escape(&machine_description(machine)))];
    parts.push(format!("**mode:** {}", escape(&report.mode)));
    parts.push(format!("**run time:** {}", run_time(report.elapsed_s)));
    if let Some(python) = &machine.python {
        parts.push(format!("**Python:** {}", escape(python)));
    }
    parts.push(format!(
        "**load average:** {:.2} before, {:.2} after",
        machine.load_before, machine.load_after
    ));
    if let Some(busy) = machine.busy_before {
        parts.push(format!("**CPUs busy before:** {busy:.2}"));
    }
    let mut line = parts.join(" · ");
    if let Some(reason) = busy_reason(machine) {
        line.push_str(&format!(
            "\n\n> ⚠️ **The machine was busy** ({reason}): other work competed with the \
             benchmarks, so the results may be noisy."
        ));
    }
    line
}

/// "2 CPUs (model), kernel 6.1.0, 2025-06-01T12:00:00Z", leaving out what is unknown.
pub(super) fn machine_description(machine: &Machine) -> String {
    let mut text = format!("{} CPU{}", machine.cpus, plural(machine.cpus));
    if let Some(all) = machine.machine_cpus.filter(|&all| all > machine.cpus) {
        text.push_str(&format!(" for the run, of the machine's {all}"));
    }
    let model = machine.cpu_model.trim();
    if !model.is_empty() {
        text.push_str(&format!(" ({model})"));
    }
    for (prefix, value) in [("kernel ", &machine.kernel), ("", &machine.date)] {
        if !value.trim().is_empty() {
            text.push_str(&format!(", {prefix}{}", value.trim()));
        }
    }
    text
}

/// "s" unless there is exactly one.
pub(super) fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}

/// A run time in seconds as "42.0 s", "3 min 7 s" or "1 h 2 min".
pub(super) fn run_time(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "n/a".to_owned();
    }
    if seconds < 59.95 {
        return format!("{seconds:.1} s");
    }
    // Saturating cast: absurd run times print as a very long time rather than panic.
    let whole = seconds.round() as u64;
    if whole < 3600 {
        format!("{} min {} s", whole / 60, whole % 60)
    } else {
        format!("{} h {} min", whole / 3600, whole % 3600 / 60)
    }
}

/// The homework's table, measured: a heading, a sentence on how to read it, and the table.
pub(super) fn homework_table(homework: &Homework) -> String {
    let heading = |column: Option<Column>, name: &str| match column {
        Some(c) => format!("{name} ({})", c.label()),
        None => name.to_owned(),
    };
    let mut out = String::from("## The homework's table, measured\n\n");
    out.push_str(
        "The answer this project grew from compares multiprocessing with multithreading in six \
         claims. Each cell keeps the claim (in italics) and says what this run measured of it; \
         the figures are the ones in the tables below.\n\n",
    );
    out.push_str(&format!(
        "| Feature | {} | {} |\n| --- | --- | --- |\n",
        heading(homework.threads, "Multithreading"),
        heading(homework.processes, "Multiprocessing")
    ));
    for claim in &homework.rows {
        let cell = |fact: &Fact| format!("*{}.* {}", escape(&fact.claim), escape(&fact.measured));
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            escape(&claim.feature),
            cell(&claim.threads),
            cell(&claim.processes)
        ));
    }
    out.push('\n');
    out
}

/// A section's heading and table.
pub(super) fn section_table(section: &Section) -> String {
    let mut out = format!("## {}\n\n", escape(&section.title));
    if section.rows.is_empty() {
        out.push_str("*No rows.*\n\n");
        return out;
    }
    let mut header = vec!["Measure".to_owned()];
    header.extend(Column::ALL.iter().map(|c| c.label().to_owned()));
    header.push("taskpool vs best peer".to_owned());
    out.push_str(&table_line(&header));
    out.push_str(&table_line(&vec!["---".to_owned(); header.len()]));
    for row in &section.rows {
        let best = best_column(row);
        let mut cells = vec![row_label(row, escape)];
        cells.extend(Column::ALL.iter().map(|&c| {
            let text = cell(row, c);
            if Some(c) == best { format!("**{text}**") } else { text }
        }));
        cells.push(comparison(row, escape));
        out.push_str(&table_line(&cells));
    }
    out.push('\n');
    out
}

/// One line of a table from already escaped cells.
fn table_line(cells: &[String]) -> String {
    format!("| {} |\n", cells.join(" | "))
}

/// The label with what its values measure and which way is better (if it has values), and
/// the references if any: "Round trip (time, lower is better; pipe floor: 12.2 µs)"; texts
/// from the report made safe by `esc`.
pub(super) fn row_label(row: &Row, esc: fn(&str) -> String) -> String {
    let dimension = match row.unit {
        Unit::Micros | Unit::Millis => "time",
        Unit::PerSecond => "per second",
        Unit::KiB => "memory",
        Unit::Factor => "×",
    };
    let direction = match row.better {
        Better::Lower => "lower is better",
        Better::Higher => "higher is better",
    };
    let mut notes = Vec::new();
    // A row of outcomes only has no values to read a unit off.
    if row.cells.values().any(|c| matches!(c, Cell::Value(_))) {
        notes.push(format!("{dimension}, {direction}"));
    }
    for reference in &row.references {
        let value = quantity(reference.value.median, row.unit);
        notes.push(format!("{}: {value}", esc(&reference.name)));
    }
    let label = esc(&row.label);
    if notes.is_empty() { label } else { format!("{label} ({})", notes.join("; ")) }
}

/// The column with the best measured value, if at least two columns have one.
pub(super) fn best_column(row: &Row) -> Option<Column> {
    let values = row.cells.iter().filter_map(|(c, cell)| match cell {
        Cell::Value(s) if s.median.is_finite() => Some((*c, s.median)),
        _ => None,
    });
    let values: Vec<(Column, f64)> = values.collect();
    if values.len() < 2 {
        return None;
    }
    let best = match row.better {
        Better::Lower => values.iter().min_by(|a, b| a.1.total_cmp(&b.1)),
        Better::Higher => values.iter().max_by(|a, b| a.1.total_cmp(&b.1)),
    };
    best.map(|(c, _)| *c)
}

/// What `column` shows in `row`, escaped for Markdown.
fn cell(row: &Row, column: Column) -> String {
    match shown(row, column, escape) {
        Shown::Missing => "—".to_owned(),
        Shown::Value(text) | Shown::Outcome(text) => text,
        Shown::Skipped(reason) => {
            let reason = reason.replace('*', "\\*");
            if reason.is_empty() { "*skipped*".to_owned() } else { format!("*skipped: {reason}*") }
        }
    }
}

/// What a column shows in a row, by kind, its texts made safe by the writer's escaper.
pub(super) enum Shown {
    /// Not measured and no reason given.
    Missing,
    /// A value in its unit, with its spread when notable.
    Value(String),
    /// An outcome in words.
    Outcome(String),
    /// Why it was not measured (may be empty).
    Skipped(String),
}

/// What `column` shows in `row`, texts from the report made safe by `esc`.
pub(super) fn shown(row: &Row, column: Column, esc: fn(&str) -> String) -> Shown {
    match row.cells.get(&column) {
        None => Shown::Missing,
        Some(Cell::Value(summary)) => {
            let mut text = quantity(summary.median, row.unit);
            let half_spread = summary.spread() / 2.0;
            if half_spread.is_finite() && half_spread > NOTABLE_SPREAD {
                text.push_str(&format!(" ±{:.0}%", half_spread * 100.0));
            }
            Shown::Value(text)
        }
        Some(Cell::Outcome { text, next_after_ms, survived }) => {
            let marker = if *survived { "✅" } else { "💥" };
            let mut shown = format!("{marker} {}", esc(text));
            if let Some(next) = next_after_ms {
                shown.push_str(&format!(
                    "; next task after {}",
                    quantity(next.median, Unit::Millis)
                ));
            }
            Shown::Outcome(shown)
        }
        Some(Cell::Skipped(reason)) => Shown::Skipped(esc(reason.trim())),
    }
}

/// The last column: each of our backends against the best peer of its kind (threads against
/// thread pools, processes against process pools), and our process backends against the
/// row's references (floors between processes); texts from the report made safe by `esc`.
pub(super) fn comparison(row: &Row, esc: fn(&str) -> String) -> String {
    let mut parts = Vec::new();
    for column in Column::ALL.iter().copied().filter(|c| c.is_ours()) {
        let who = column.short();
        if let Some((peer, _)) = row.best_peer(column) {
            let Some(advantage) = row.advantage(column).filter(|a| a.is_finite()) else {
                continue;
            };
            let peer = peer.label();
            let times = ratio(advantage);
            parts.push(if (advantage - 1.0).abs() < ON_PAR {
                format!("{who} on par with {peer} ({times})")
            } else if advantage > 1.0 {
                format!("{who} {times} better than {peer}")
            } else {
                format!("{who} {times} ({} worse than {peer})", ratio(1.0 / advantage))
            });
        }
    }
    // A multiple of a reference is of the row's quantity, so that its direction is the row's:
    // "1.6× the time of the pipe floor" is slower than the floor, "0.97× the rate of the
    // ideal" short of it.
    let quantity = match row.unit {
        Unit::Micros | Unit::Millis => "time",
        Unit::PerSecond => "rate",
        Unit::KiB => "memory",
        Unit::Factor => "value",
    };
    for column in Column::ALL.iter().copied().filter(|c| c.is_ours() && c.is_processes()) {
        let Some(Cell::Value(ours)) = row.cells.get(&column) else { continue };
        let floors: Vec<String> = row
            .references
            .iter()
            .filter(|r| r.value.median > 0.0)
            .filter_map(|r| {
                let times = ours.median / r.value.median;
                (times.is_finite() && times > 0.0)
                    .then(|| format!("{} the {quantity} of the {}", ratio(times), esc(&r.name)))
            })
            .collect();
        if !floors.is_empty() {
            parts.push(format!("{} {}", column.short(), floors.join(", ")));
        }
    }
    if parts.is_empty() { "—".to_owned() } else { parts.join("; ") }
}

/// A ratio with two significant digits (but no decimals from 10 up): "31×", "1.4×", "0.22×",
/// "0.0063×".
pub(super) fn ratio(value: f64) -> String {
    if value >= 9.95 {
        format!("{value:.0}×")
    } else if value >= 0.995 {
        format!("{value:.1}×")
    } else if value > 0.0 {
        // Saturating cast; tiny ratios get more decimals, up to a limit.
        let decimals = (1.0 - value.log10().floor()).clamp(2.0, 12.0) as usize;
        format!("{value:.decimals$}×")
    } else {
        format!("{value}×")
    }
}

/// `text` made safe inside a table cell or a list item: `|` escaped, line breaks joined, and
/// `<` written as an entity so that it is never taken for HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\r' | '\n' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;

    /// The table line of the row whose label starts with `label`.
    fn line_of(doc: &str, label: &str) -> String {
        let starts = |l: &&str, end| l.starts_with(&format!("| {label}{end}"));
        let found = doc.lines().find(|l| starts(l, " (") || starts(l, " |"));
        found.unwrap_or_else(|| panic!("no row {label:?} in\n{doc}")).to_owned()
    }

    /// The cells of a table line, split on unescaped `|`.
    fn cells_of(line: &str) -> Vec<String> {
        let mut cells = vec![String::new()];
        let mut escaped = false;
        for c in line.chars() {
            match c {
                '|' if !escaped => cells.push(String::new()),
                _ => cells.last_mut().unwrap().push(c),
            }
            escaped = c == '\\' && !escaped;
        }
        // The leading and trailing pipes open and close the line.
        assert_eq!(cells.first().map(|c| c.trim().is_empty()), Some(true), "{line}");
        assert_eq!(cells.last().map(|c| c.trim().is_empty()), Some(true), "{line}");
        cells[1..cells.len() - 1].iter().map(|c| c.trim().to_owned()).collect()
    }

    /// The cell of `column` in the row whose label starts with `label`.
    fn cell_of(doc: &str, label: &str, column: Column) -> String {
        let index = Column::ALL.iter().position(|&c| c == column).unwrap() + 1;
        cells_of(&line_of(doc, label))[index].clone()
    }

    #[test]
    fn values_show_the_median_in_a_human_unit() {
        let doc = markdown(&fixture::report());
        let startup = "Pool start-up, 2 workers";
        assert_eq!(cell_of(&doc, startup, Column::TASKPOOL_THREADS), "210 µs");
        assert_eq!(cell_of(&doc, startup, Column::TASKPOOL_PROCESSES), "3.40 ms");
        assert_eq!(cell_of(&doc, "One-off spawn and join", Column::PROCSPAWN), "3.90 ms");
        let tasks = "Empty tasks, 1000 in flight";
        assert_eq!(cell_of(&doc, tasks, Column::TASKPOOL_THREADS), "1.52 M/s");
        assert_eq!(cell_of(&doc, tasks, Column::TASKPOOL_PROCESSES), "15.2 k/s");
        let rss = "Resident memory, idle pool of 2";
        assert_eq!(cell_of(&doc, rss, Column::TASKPOOL_THREADS), "2.25 MiB");
        assert_eq!(cell_of(&doc, rss, Column::PYTHON_THREADS), "**900 KiB**");
        assert_eq!(cell_of(&doc, "Primes, 1 ms tasks, 2 workers", Column::PROCSPAWN), "1.60×");
    }

    #[test]
    fn notable_spread_is_shown_and_small_spread_is_not() {
        let doc = markdown(&fixture::report());
        let round_trip = "Round trip, empty task";
        // Samples 16.0..23.0 around 19.5: half the spread is 18%.
        assert_eq!(cell_of(&doc, round_trip, Column::TASKPOOL_PROCESSES), "19.5 µs ±18%");
        // 8% spread (4% each way) stays quiet.
        assert_eq!(cell_of(&doc, round_trip, Column::PROCSPAWN), "61.0 µs");
    }

    #[test]
    fn a_run_pinned_to_one_cpu_says_so_and_weighs_the_machine_s_load_over_all_its_cpus() {
        let mut report = fixture::report();
        report.machine.cpus = 1;
        report.machine.machine_cpus = Some(2);
        // One CPU's worth of other work on a machine of two: half of it, not twice the run's.
        report.machine.busy_before = Some(1.0);
        let doc = markdown(&report);
        let line = doc.lines().find(|l| l.starts_with("**Machine:**")).unwrap();
        assert!(line.contains("1 CPU for the run, of the machine's 2 ("), "{line}");
        assert!(!doc.contains("The machine was busy"), "{doc}");
        report.machine.busy_before = Some(1.5);
        let doc = markdown(&report);
        assert!(
            doc.contains("1.50 CPUs busy in the second before the run on the machine's 2 CPUs"),
            "{doc}"
        );
    }

    #[test]
    fn the_best_value_of_a_row_is_bold() {
        let doc = markdown(&fixture::report());
        let round_trip = "Round trip, empty task";
        assert_eq!(cell_of(&doc, round_trip, Column::TASKPOOL_THREADS), "**3.10 µs**");
        let tasks = "Empty tasks, 1000 in flight";
        assert_eq!(cell_of(&doc, tasks, Column::RAYON), "**2.40 M/s**");
        assert_eq!(line_of(&doc, tasks).matches("**").count(), 2);
    }

    #[test]
    fn the_last_column_states_the_advantage_over_the_best_peer() {
        let doc = markdown(&fixture::report());
        let last = |label| cells_of(&line_of(&doc, label)).last().cloned().unwrap();
        // Each backend against the best peer of its kind: threads 4.3 / 3.1 = 1.39 against
        // rayon, processes against procspawn, the best process pool.
        assert_eq!(
            last("Round trip, empty task"),
            "threads 1.4× better than rayon; processes 3.1× better than procspawn; \
             processes 1.6× the time of the pipe floor, 39× the time of the spin floor"
        );
        // Higher is better: 1.874 / 1.9 = 0.986 is on par.
        assert!(
            last("Primes, 1 ms tasks, 2 workers").starts_with("threads on par with rayon (0.99×)"),
            "{}",
            last("Primes, 1 ms tasks, 2 workers")
        );
        // Only processes measured, against procspawn and Python's processes: 3.2 / 1.8.
        assert_eq!(
            last("Round trip, 1 MiB payload"),
            "processes 1.8× better than Python processes"
        );
        // Tiny ratios keep two significant digits: 15.2 k/s against 2.40 M/s.
        let in_flight = last("Empty tasks, 1000 in flight");
        assert!(
            in_flight.starts_with("threads ") && in_flight.contains("processes "),
            "{in_flight}"
        );
        // Outcomes are not compared.
        assert_eq!(last("Task calls a null pointer"), "—");
    }

    #[test]
    fn the_label_shows_unit_direction_and_references() {
        let doc = markdown(&fixture::report());
        let label = cells_of(&line_of(&doc, "Round trip, empty task"))[0].clone();
        assert_eq!(
            label,
            "Round trip, empty task (time, lower is better; pipe floor: 12.2 µs; \
             spin floor: 500 ns)"
        );
        let label = cells_of(&line_of(&doc, "Empty tasks, 1000 in flight"))[0].clone();
        assert_eq!(label, "Empty tasks, 1000 in flight (per second, higher is better)");
        // A row of outcomes has no unit to show.
        let label = cells_of(&line_of(&doc, "Task calls a null pointer"))[0].clone();
        assert_eq!(label, "Task calls a null pointer");
    }

    #[test]
    fn outcomes_skips_and_missing_columns() {
        let doc = markdown(&fixture::report());
        let fault = "Task calls a null pointer";
        assert_eq!(
            cell_of(&doc, fault, Column::TASKPOOL_THREADS),
            "💥 the whole program died (SIGSEGV)"
        );
        assert_eq!(
            cell_of(&doc, fault, Column::TASKPOOL_PROCESSES),
            "✅ task failed: Crashed(SIGSEGV); next task after 38.0 ms"
        );
        assert_eq!(
            cell_of(&doc, fault, Column::PROCSPAWN),
            "✅ IPC error \\| worker gone; next task after 850 µs"
        );
        assert_eq!(cell_of(&doc, fault, Column::PYTHON_PROCESSES), "*skipped: python3 not found*");
        assert_eq!(cell_of(&doc, fault, Column::RAYON), "—");
        let round_trip = "Round trip, empty task";
        assert_eq!(
            cell_of(&doc, round_trip, Column::PYTHON_THREADS),
            "*skipped: python3 not found*"
        );
        assert_eq!(cell_of(&doc, round_trip, Column::PYTHON_PROCESSES), "—");
    }

    #[test]
    fn every_section_has_a_heading_and_a_table_of_full_width() {
        let doc = markdown(&fixture::report());
        let report = fixture::report();
        for section in &report.sections {
            assert!(doc.contains(&format!("\n## {}\n\n| Measure |", section.title)), "{doc}");
        }
        let table_lines: Vec<&str> = doc.lines().filter(|l| l.starts_with('|')).collect();
        let rows: usize = report.sections.iter().map(|s| s.rows.len() + 2).sum();
        // The homework's table comes first, with a column each for threads and processes.
        let homework = report.homework.rows.len() + 2;
        assert_eq!(table_lines.len(), homework + rows);
        let (homework, table_lines) = table_lines.split_at(homework);
        assert!(homework.iter().all(|line| cells_of(line).len() == 3), "{homework:?}");
        for &line in table_lines {
            assert_eq!(cells_of(line).len(), Column::ALL.len() + 2, "{line}");
        }
        let header = doc.lines().find(|l| l.starts_with("| Measure |")).unwrap();
        assert_eq!(
            header,
            "| Measure | taskpool threads | taskpool processes | taskpool cluster | rayon | \
             procspawn | Python threads | Python processes | taskpool vs best peer |"
        );
    }

    #[test]
    fn the_homeworks_table_opens_the_report() {
        let doc = markdown(&fixture::report());
        let homework = doc.find("\n## The homework's table, measured\n").unwrap();
        assert!(homework < doc.find("\n## Overhead per task\n").unwrap());
        assert!(doc.contains(
            "| Feature | Multithreading (taskpool threads) | Multiprocessing (taskpool \
             processes) |\n| --- | --- | --- |\n| Mechanism | *Uses multiple threads.* 256 \
             tasks on a pool of 64 ran all in the caller's process;"
        ));
        let line = doc.lines().find(|l| l.starts_with("| Failure impact |")).unwrap();
        assert_eq!(
            cells_of(line)[2],
            "*Isolated; other processes run fine.* a segfault in one task failed only that \
             task: task failed: Crashed(SIGSEGV); the next task was served 38.0 ms later"
        );
    }

    #[test]
    fn the_run_line_names_machine_mode_time_python_and_flags_load() {
        let mut report = fixture::report();
        let doc = markdown(&report);
        assert!(doc.starts_with("# taskpool: multiprocessing vs multithreading\n\n"));
        let line = doc.lines().nth(2).unwrap();
        assert_eq!(
            line,
            "**Machine:** 2 CPUs (Intel(R) Xeon(R) CPU @ 2.20GHz), kernel 6.1.0-18-amd64, \
             2025-06-01T12:00:00Z · **mode:** default · **run time:** 3 min 7 s · \
             **Python:** CPython 3.11.2 · **load average:** 0.40 before, 1.60 after · \
             **CPUs busy before:** 0.10"
        );
        // The load after the run counts its own work: 1.6 after is no sign of other work.
        assert!(!doc.contains("The machine was busy"), "{doc}");
        // Right after a build the load average is high, but the CPUs are idle: no warning.
        report.machine.load_before = 1.6;
        assert!(!markdown(&report).contains("The machine was busy"));
        // 1.6 CPUs busy on 2 before the run is above 0.5 per CPU.
        report.machine.busy_before = Some(1.6);
        report.machine.python = None;
        let busy = markdown(&report);
        let reason = "(1.60 CPUs busy in the second before the run on 2 CPUs, above 0.5 per CPU)";
        assert!(busy.contains(&format!("**The machine was busy** {reason}")), "{busy}");
        assert!(busy.contains("results may be noisy"));
        assert!(!busy.contains("Python:**"));
        // Without the CPUs' times, the load average decides.
        report.machine.busy_before = None;
        let busy = markdown(&report);
        assert!(busy.contains("**The machine was busy** (load 1.60 on 2 CPUs"), "{busy}");
        assert!(!busy.contains("CPUs busy before"));
    }

    #[test]
    fn notes_are_bullets_followed_by_how_to_read() {
        let doc = markdown(&fixture::report());
        let notes = doc.find("## Notes\n\n- The rayon column's one-off spawn").unwrap();
        let python = doc.find("\n- Python peers ran with CPython 3.11.2").unwrap();
        let how = doc.find("## How to read this\n\nEvery value is the median").unwrap();
        assert!(notes < python && python < how);
        assert!(doc.contains("a ratio above 1 means taskpool is better"));
    }

    #[test]
    fn text_is_escaped_and_odd_input_does_not_panic() {
        let mut report = fixture::report();
        report.sections[0].title = "pipes | and\nnew lines".into();
        report.sections[0].rows[0].label = "a|b <script>".into();
        report.machine.cpus = 0;
        report.machine.load_before = f64::NAN;
        report.elapsed_s = f64::INFINITY;
        report.notes.push("multi\r\nline | note".into());
        let doc = markdown(&report);
        assert!(doc.contains("## pipes \\| and new lines\n"), "{doc}");
        let line = doc.lines().find(|l| l.starts_with("| a\\|b &lt;script>")).unwrap();
        assert_eq!(cells_of(line).len(), Column::ALL.len() + 2);
        assert!(doc.contains("- multi line \\| note\n"));
        assert!(doc.contains("**run time:** n/a"));

        let empty = Report { sections: Vec::new(), notes: Vec::new(), ..report };
        let doc = markdown(&empty);
        assert!(doc.contains("*This report has no measurements.*"));
    }
}
