//! The report as one self-contained HTML page: the tables, the charts (inline SVG), how each
//! column was run, the idioms compared, the notes and how to read them. No script, no file
//! or font from elsewhere: the page opens from disk, mailed or archived.
//!
//! The page is written as XHTML that HTML parsers read as well (polyglot markup: every
//! element closed, every attribute quoted, text escaped), so that an XML parser can check it
//! in the tests. The cells read exactly as in the Markdown table.

use super::markdown::{
    HOW_TO_READ, Shown, best_column, busy_reason, compared_idioms, comparison, machine_description,
    row_label, run_time, shown,
};
use super::svg::escape;
use super::{Column, Fact, Homework, Report, Section, overhead_chart, scaling_chart};

/// The page's title.
const TITLE: &str = "taskpool: multiprocessing vs multithreading";

/// The page's style sheet.
const STYLE: &str = "\
body{font-family:Helvetica,Arial,sans-serif;margin:2em auto;max-width:1400px;padding:0 1em;\
color:#222;line-height:1.4}\
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}\
th,td{border:1px solid #ccc;padding:0.3em 0.5em;vertical-align:top;text-align:left}\
thead th{background:#f3f3f3}\
tbody th{font-weight:normal;max-width:22em}\
td.best{font-weight:bold;background:#eef7ee}\
td.skipped{color:#777;font-style:italic}\
td.comparison{max-width:24em}\
.unit{color:#666}\
.warning{background:#fff4e0;border-left:4px solid #e69f00;padding:0.5em 1em}\
figure{margin:1em 0}\
svg{max-width:100%;height:auto}\
code{background:#f3f3f3;padding:0 0.2em}";

/// Renders `report` as a self-contained HTML page. Never panics; any text from the report is
/// escaped.
pub fn html(report: &Report) -> String {
    let mut out = String::from("<!DOCTYPE html>\n");
    out.push_str("<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n");
    out.push_str("<meta charset=\"utf-8\"/>\n");
    out.push_str(&format!("<title>{TITLE}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"));
    out.push_str(&format!("<h1>{TITLE}</h1>\n"));
    out.push_str(&run_line(report));
    if !report.homework.rows.is_empty() {
        out.push_str(&homework_table(&report.homework));
    }
    if report.sections.is_empty() {
        out.push_str("<p><em>This report has no measurements.</em></p>\n");
    }
    for section in &report.sections {
        out.push_str(&section_table(section));
    }
    out.push_str("<h2>Charts</h2>\n");
    for chart in [overhead_chart(report), scaling_chart(report)] {
        out.push_str(&format!("<figure>\n{}</figure>\n", chart.trim_end()));
    }
    out.push_str(&methods(report));
    out.push_str(&idioms(report));
    if !report.notes.is_empty() {
        out.push_str("<h2>Notes</h2>\n<ul>\n");
        for note in &report.notes {
            out.push_str(&format!("<li>{}</li>\n", code(&escape(note))));
        }
        out.push_str("</ul>\n");
    }
    let (heading, text) = HOW_TO_READ.split_once("\n\n").unwrap_or(("", HOW_TO_READ));
    let heading = heading.trim_start_matches('#').trim();
    out.push_str(&format!("<h2>{}</h2>\n<p>{}</p>\n", escape(heading), escape(text.trim())));
    out.push_str("</body>\n</html>\n");
    out
}

/// The paragraph under the title: machine, mode, run time, Python, load; and a warning when
/// the machine was busy.
fn run_line(report: &Report) -> String {
    let machine = &report.machine;
    let mut parts = vec![
        format!("<strong>Machine:</strong> {}", escape(&machine_description(machine))),
        format!("<strong>mode:</strong> {}", escape(&report.mode)),
        format!("<strong>run time:</strong> {}", run_time(report.elapsed_s)),
    ];
    if let Some(python) = &machine.python {
        parts.push(format!("<strong>Python:</strong> {}", escape(python)));
    }
    parts.push(format!(
        "<strong>load average:</strong> {:.2} before, {:.2} after",
        machine.load_before, machine.load_after
    ));
    if let Some(busy) = machine.busy_before {
        parts.push(format!("<strong>CPUs busy before:</strong> {busy:.2}"));
    }
    let mut out = format!("<p>{}</p>\n", parts.join(" · "));
    if let Some(reason) = busy_reason(machine) {
        out.push_str(&format!(
            "<p class=\"warning\">⚠️ <strong>The machine was busy</strong> ({}): other work \
             competed with the benchmarks, so the results may be noisy.</p>\n",
            escape(&reason)
        ));
    }
    out
}

/// The homework's table, measured: each cell the claim (in italics) and what the run measured.
fn homework_table(homework: &Homework) -> String {
    let heading = |column: Option<Column>, name: &str| match column {
        Some(c) => format!("{name} ({})", escape(c.label())),
        None => name.to_owned(),
    };
    let mut out = String::from("<h2>The homework&#39;s table, measured</h2>\n<table>\n");
    out.push_str(&format!(
        "<thead><tr><th>Feature</th><th>{}</th><th>{}</th></tr></thead>\n<tbody>\n",
        heading(homework.threads, "Multithreading"),
        heading(homework.processes, "Multiprocessing")
    ));
    for claim in &homework.rows {
        let cell =
            |fact: &Fact| format!("<em>{}.</em> {}", escape(&fact.claim), escape(&fact.measured));
        out.push_str(&format!(
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td></tr>\n",
            escape(&claim.feature),
            cell(&claim.threads),
            cell(&claim.processes)
        ));
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// A section's heading and table.
fn section_table(section: &Section) -> String {
    let mut out = format!("<h2>{}</h2>\n", escape(&section.title));
    if section.rows.is_empty() {
        out.push_str("<p><em>No rows.</em></p>\n");
        return out;
    }
    out.push_str("<table>\n<thead><tr><th>Measure</th>");
    for column in Column::ALL {
        out.push_str(&format!("<th>{}</th>", escape(column.label())));
    }
    out.push_str("<th>taskpool vs best peer</th></tr></thead>\n<tbody>\n");
    for row in &section.rows {
        let best = best_column(row);
        let label = row_label(row, escape);
        // The unit and the references follow the label in parentheses: set them apart.
        let label = match label.strip_prefix(&escape(&row.label)) {
            Some(rest) if !rest.is_empty() => {
                format!("{}<span class=\"unit\">{rest}</span>", escape(&row.label))
            }
            _ => label,
        };
        out.push_str(&format!("<tr><th scope=\"row\">{label}</th>"));
        for &column in Column::ALL {
            let (class, text) = match shown(row, column, escape) {
                Shown::Missing => ("", "—".to_owned()),
                Shown::Value(text) if Some(column) == best => (" class=\"best\"", text),
                Shown::Value(text) | Shown::Outcome(text) => ("", text),
                Shown::Skipped(reason) if reason.is_empty() => {
                    (" class=\"skipped\"", "skipped".to_owned())
                }
                Shown::Skipped(reason) => (" class=\"skipped\"", format!("skipped: {reason}")),
            };
            out.push_str(&format!("<td{class}>{text}</td>"));
        }
        out.push_str(&format!("<td class=\"comparison\">{}</td></tr>\n", comparison(row, escape)));
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// "How each column was run": per column and reference, its versions and its calls.
fn methods(report: &Report) -> String {
    if report.methods.is_empty() {
        return String::new();
    }
    let mut out = String::from("<h2>How each column was run</h2>\n<ul>\n");
    for method in &report.methods {
        out.push_str(&format!("<li><strong>{}</strong>", escape(&method.name)));
        if !method.versions.is_empty() {
            out.push_str(&format!(" ({})", escape(&method.versions.join(", "))));
        }
        if !method.how.is_empty() {
            out.push_str("\n<ul>\n");
            for how in &method.how {
                out.push_str(&format!("<li>{}</li>\n", code(&escape(how))));
            }
            out.push_str("</ul>\n");
        }
        out.push_str("</li>\n");
    }
    out.push_str("</ul>\n");
    out
}

/// "Idioms compared": where a column ran a row's operation several ways.
fn idioms(report: &Report) -> String {
    let mut items = String::new();
    for (row, column, ways) in compared_idioms(report) {
        let ways: Vec<String> = ways
            .iter()
            .map(|(how, value, shown)| {
                let shown = if *shown { " (shown)" } else { "" };
                format!("<code>{}</code> {value}{shown}", escape(how))
            })
            .collect();
        items.push_str(&format!(
            "<li>{}, {}: {}</li>\n",
            escape(&row.label),
            escape(column.label()),
            ways.join("; ")
        ));
    }
    if items.is_empty() {
        return items;
    }
    format!(
        "<h2>Idioms compared</h2>\n<p>Where a column ran an operation in several ways, its cell \
         shows the one marked (shown): the best, unless the notes say otherwise:</p>\n<ul>\n{items}</ul>\n"
    )
}

/// Escaped `text` with its `` `code` `` spans (as the notes write calls) set as code.
fn code(escaped: &str) -> String {
    let mut out = String::with_capacity(escaped.len());
    let mut parts = escaped.split('`');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    let rest: Vec<&str> = parts.collect();
    // An odd number of backticks leaves the last one as it is.
    let pairs = rest.len() / 2 * 2;
    for (i, part) in rest.iter().enumerate() {
        match (i < pairs, i % 2) {
            (true, 0) => out.push_str(&format!("<code>{part}</code>")),
            (true, _) => out.push_str(part),
            (false, _) => {
                out.push('`');
                out.push_str(part);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;

    /// Parses `page` as XML: well-formed, or the parser's complaint.
    fn parsed(page: &str) -> roxmltree::Document<'_> {
        let options = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
        roxmltree::Document::parse_with_options(page, options)
            .unwrap_or_else(|e| panic!("not well-formed: {e}\n{page}"))
    }

    /// The elements named `name` (in any namespace).
    fn elements<'a>(
        doc: &'a roxmltree::Document<'a>,
        name: &'a str,
    ) -> impl Iterator<Item = roxmltree::Node<'a, 'a>> {
        doc.descendants().filter(move |n| n.is_element() && n.tag_name().name() == name)
    }

    #[test]
    fn the_page_is_well_formed_xhtml_with_a_table_per_section_and_both_charts() {
        let report = fixture::report();
        let page = html(&report);
        assert!(page.starts_with("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\""));
        let doc = parsed(&page);
        assert_eq!(doc.root_element().tag_name().name(), "html");
        let homework = usize::from(!report.homework.rows.is_empty());
        assert_eq!(elements(&doc, "table").count(), report.sections.len() + homework);
        assert_eq!(elements(&doc, "svg").count(), 2);
        let rows: usize = report.sections.iter().map(|s| s.rows.len()).sum::<usize>()
            + report.homework.rows.len();
        assert_eq!(
            elements(&doc, "tbody").flat_map(|b| b.children()).filter(|n| n.is_element()).count(),
            rows
        );
        let tables: Vec<_> = elements(&doc, "table").collect();
        for (index, table) in tables.iter().enumerate() {
            // The homework's table has a column each for threads and processes.
            let width = if index < homework { 3 } else { Column::ALL.len() + 2 };
            for tr in table.descendants().filter(|n| n.tag_name().name() == "tr") {
                assert_eq!(tr.children().filter(|n| n.is_element()).count(), width);
            }
        }
        assert!(elements(&doc, "script").next().is_none());
        let text: String =
            doc.descendants().filter(|n| n.is_text()).filter_map(|n| n.text()).collect();
        assert!(text.contains("How each column was run"));
    }

    #[test]
    fn cells_read_as_in_the_markdown_table() {
        let page = html(&fixture::report());
        let doc = parsed(&page);
        let row = elements(&doc, "tr")
            .find(|tr| tr.descendants().any(|n| n.text() == Some("Round trip, empty task")))
            .unwrap();
        let cells: Vec<String> = row
            .children()
            .filter(|n| n.is_element())
            .map(|n| n.descendants().filter(|d| d.is_text()).filter_map(|d| d.text()).collect())
            .collect();
        let at =
            |column: Column| &cells[1 + Column::ALL.iter().position(|&c| c == column).unwrap()];
        assert_eq!(at(Column::TASKPOOL_THREADS), "3.10 µs");
        assert_eq!(at(Column::TASKPOOL_PROCESSES), "19.5 µs ±18%");
        assert_eq!(at(Column::PYTHON_THREADS), "skipped: python3 not found");
        assert!(
            cells.last().unwrap().contains("processes 1.6× the time of the pipe floor"),
            "{cells:?}"
        );
        let best = row.children().find(|n| n.attribute("class") == Some("best")).unwrap();
        assert_eq!(best.text(), Some("3.10 µs"));
    }

    #[test]
    fn text_from_the_report_is_escaped() {
        let mut report = fixture::report();
        report.sections[0].title = "<script>alert('x')</script> & co".into();
        report.sections[0].rows[0].label = "a < b & \"c\"\u{7}".into();
        report.notes.push("`unclosed <b>".into());
        report.machine.cpu_model = "R&D <proto>".into();
        let page = html(&report);
        let doc = parsed(&page);
        assert!(elements(&doc, "script").next().is_none());
        let text: String =
            doc.descendants().filter(|n| n.is_text()).filter_map(|n| n.text()).collect();
        assert!(text.contains("<script>alert('x')</script> & co"));
        assert!(text.contains("a < b & \"c\" "));
        assert!(text.contains("`unclosed <b>"));
    }

    #[test]
    fn code_spans_become_code_elements() {
        assert_eq!(code("a `b` c `d`"), "a <code>b</code> c <code>d</code>");
        assert_eq!(code("odd `one"), "odd `one");
        assert_eq!(code("`a` `b"), "<code>a</code> `b");
    }

    #[test]
    fn an_empty_report_is_a_page_that_says_so() {
        let mut report = fixture::report();
        report.sections.clear();
        report.notes.clear();
        report.methods.clear();
        report.homework.rows.clear();
        let doc_text = html(&report);
        let doc = parsed(&doc_text);
        assert_eq!(elements(&doc, "table").count(), 0);
        assert!(doc_text.contains("This report has no measurements."));
    }
}
