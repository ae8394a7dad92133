//! The overhead chart: what a pool costs per start-up, round trip and spawn, as horizontal
//! bars on a log time axis (the values span microseconds to many milliseconds), one group per
//! row and one bar per column, with min–max whiskers, value labels and the row's references
//! (such as the blocking and the spinning floor) as dashed lines.

use super::{
    Area, CHAR_WIDTH, MIN_HEIGHT, PLOT_TOP, Scale, Svg, WIDTH, color, escape, machine_cpus,
    no_data, number, truncate,
};
use crate::report::format::{is_time, quantity, to_micros};
use crate::report::{Cell, Column, Report, Row, Unit};

/// The chart's title.
const TITLE: &str = "Overhead: start-up, round trip, spawn (log scale; shorter is better)";

/// Row keys of the chart; a key that starts with one of them and `_` counts too.
const KEYS: [&str; 3] = ["round_trip", "startup", "spawn"];

/// The most decades the axis spans; smaller values are drawn at its start.
const MAX_DECADES: i32 = 12;

/// The height of a bar.
const BAR: f64 = 18.0;

/// The distance from one bar to the next.
const PITCH: f64 = 24.0;

/// The height of a group's heading, above its bars.
const GROUP_HEADING: f64 = 30.0;

/// The height of a reference's label line, under the bars.
const REFERENCE_LABEL: f64 = 18.0;

/// The space after a group.
const GROUP_GAP: f64 = 14.0;

/// The overhead chart: time per start-up, round trip or spawn for each column, as horizontal
/// bars on a log scale, one group per row keyed `round_trip`, `startup` or `spawn` (or,
/// without such rows, per row measured in time), with min–max whiskers and the row's
/// references as dashed lines. Values that are not positive and finite cannot sit on a log
/// axis and are left out; with none left the chart says "no data".
pub fn overhead_chart(report: &Report) -> String {
    let groups = groups(report);
    if groups.is_empty() {
        return no_data(TITLE);
    }
    let axis_y = PLOT_TOP + groups.iter().map(Group::height).sum::<f64>();
    let height = MIN_HEIGHT.max(axis_y + 60.0);
    let plot = Area { left: 170.0, right: WIDTH - 90.0, top: PLOT_TOP, bottom: axis_y };
    let mut svg = Svg::new(WIDTH, height, TITLE);
    let subtitle = format!(
        "{} · bar: median · whisker: min to max over repeats · dashed: references",
        machine_cpus(report)
    );
    svg.heading(TITLE, &subtitle);
    let x = log_axis(&mut svg, &groups, &plot);
    let heading_room = ((WIDTH - 40.0) / (14.0 * CHAR_WIDTH)) as usize;
    let mut top = PLOT_TOP;
    for group in &groups {
        let label = truncate(&group.label, heading_room);
        svg.text(20.0, top + 18.0, "font-size=\"14\" font-weight=\"bold\"", &label);
        group.draw(&mut svg, &x, plot.left, top + GROUP_HEADING);
        top += group.height();
    }
    svg.finish()
}

/// One group of the chart: a row's bars, in microseconds.
struct Group {
    label: String,
    bars: Vec<Bar>,
    /// The references' names and values.
    references: Vec<(String, f64)>,
}

/// One bar: a column's median, min and max, in microseconds.
struct Bar {
    column: Column,
    median: f64,
    min: f64,
    max: f64,
}

/// The chart's groups: the rows keyed for it if any has a bar, else every row in time.
fn groups(report: &Report) -> Vec<Group> {
    let timed = || report.sections.iter().flat_map(|s| &s.rows).filter(|r| is_time(r.unit));
    let keyed: Vec<Group> = timed().filter(|r| is_overhead(&r.key)).filter_map(Group::of).collect();
    if keyed.is_empty() { timed().filter_map(Group::of).collect() } else { keyed }
}

/// Whether `key` names an overhead row.
fn is_overhead(key: &str) -> bool {
    let keyed = |k: &&str| key.strip_prefix(k).is_some_and(|r| r.is_empty() || r.starts_with('_'));
    KEYS.iter().any(keyed)
}

impl Group {
    /// `row` as a group of bars, if it has a value that fits a log axis.
    fn of(row: &Row) -> Option<Group> {
        let micros = |v: f64| Some(to_micros(v, row.unit)).filter(|v| v.is_finite() && *v > 0.0);
        let bars: Vec<Bar> = Column::ALL
            .iter()
            .copied()
            .filter_map(|column| match row.cells.get(&column) {
                Some(Cell::Value(s)) => Some(Bar {
                    column,
                    median: micros(s.median)?,
                    min: to_micros(s.min, row.unit),
                    max: to_micros(s.max, row.unit),
                }),
                _ => None,
            })
            .collect();
        if bars.is_empty() {
            return None;
        }
        let references = row
            .references
            .iter()
            .filter_map(|r| Some((r.name.clone(), micros(r.value.median)?)))
            .collect();
        Some(Group { label: row.label.clone(), bars, references })
    }

    /// The group's height in pixels, heading and gap included.
    fn height(&self) -> f64 {
        let references = REFERENCE_LABEL * self.references.len() as f64;
        GROUP_HEADING + PITCH * self.bars.len() as f64 + references + GROUP_GAP
    }

    /// Draws the bars from `top`, starting at `left`: column labels, bars, whiskers, the
    /// reference lines, then the value labels, last so that nothing is drawn over them.
    fn draw(&self, svg: &mut Svg, x: &Scale, left: f64, top: f64) {
        let mut labels = Vec::new();
        for (index, bar) in self.bars.iter().enumerate() {
            let bar_top = top + PITCH * index as f64;
            let mid = bar_top + BAR / 2.0;
            let weight = if bar.column.is_ours() { " font-weight=\"bold\"" } else { "" };
            let attrs = format!("text-anchor=\"end\" font-size=\"12\"{weight}");
            svg.text(left - 8.0, mid + 4.5, &attrs, bar.column.label());
            let end = x.at(bar.median).max(left + 2.0);
            let shown = quantity(bar.median, Unit::Micros);
            let tip = format!("{}, {}: {shown}", self.label, bar.column.label());
            svg.push(&format!(
                "<rect class=\"bar\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{BAR}\" \
                 fill=\"{}\"><title>{}</title></rect>",
                number(left),
                number(bar_top),
                number(end - left),
                color(bar.column),
                escape(&tip)
            ));
            let mut label_x = end;
            if bar.min > 0.0 && bar.max.is_finite() && bar.max > bar.min {
                let (low, high) = (x.at(bar.min), x.at(bar.max));
                let style = "stroke=\"#222\" stroke-width=\"1.2\"";
                svg.line(low, mid, high, mid, style);
                svg.line(low, mid - 4.0, low, mid + 4.0, style);
                svg.line(high, mid - 4.0, high, mid + 4.0, style);
                label_x = label_x.max(high);
            }
            labels.push((label_x + 6.0, mid + 4.5, shown));
        }
        for (index, (name, value)) in self.references.iter().enumerate() {
            let rx = x.at(*value);
            let label_y = top + PITCH * self.bars.len() as f64 - (PITCH - BAR)
                + 16.0
                + REFERENCE_LABEL * index as f64;
            let dashes = ["4 3", "1 3", "8 3 2 3"][index % 3];
            let style =
                format!("stroke=\"#222\" stroke-width=\"1.5\" stroke-dasharray=\"{dashes}\"");
            svg.line(rx, top - 4.0, rx, label_y - 10.0, &format!("class=\"reference\" {style}"));
            let text = format!("{name}: {}", quantity(*value, Unit::Micros));
            let width = text.chars().count() as f64 * 12.0 * CHAR_WIDTH;
            let fits_right = rx + 4.0 + width < WIDTH - 10.0;
            let (anchor, tx) = if fits_right { ("start", rx + 4.0) } else { ("end", rx - 4.0) };
            let attrs = format!("text-anchor=\"{anchor}\" font-size=\"12\" font-style=\"italic\"");
            svg.text(tx, label_y, &attrs, &text);
        }
        // A white backing keeps the values readable over grid and reference lines.
        for (lx, ly, text) in labels {
            let width = text.chars().count() as f64 * 12.0 * CHAR_WIDTH;
            svg.push(&format!(
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"15\" fill=\"white\" \
                 fill-opacity=\"0.85\"/>",
                number(lx - 2.0),
                number(ly - 11.5),
                number(width + 2.0)
            ));
            svg.text(lx, ly, "font-size=\"12\" fill=\"#222\"", &text);
        }
    }
}

/// Draws the log time axis under `plot` in whole decades covering every value of `groups`
/// (at most [`MAX_DECADES`]), with grid lines, and returns its scale.
fn log_axis(svg: &mut Svg, groups: &[Group], plot: &Area) -> Scale {
    let values = groups.iter().flat_map(|g| {
        let bars = g.bars.iter().flat_map(|b| [b.median, b.min, b.max]);
        bars.chain(g.references.iter().map(|r| r.1))
    });
    let (mut lo, mut hi) = (f64::MAX, f64::MIN_POSITIVE);
    for value in values.filter(|v| v.is_finite() && *v > 0.0) {
        (lo, hi) = (lo.min(value), hi.max(value));
    }
    // Saturating casts of clamped logarithms: no input makes these panic or loop for long.
    let top = hi.log10().ceil().clamp(-300.0, 300.0) as i32;
    let bottom = (lo.log10().floor().clamp(-300.0, 300.0) as i32).clamp(top - MAX_DECADES, top - 1);
    let x = Scale::log(bottom, top, plot.left, plot.right);

    // Minor lines at 2× and 5× while there is room; labels on every other decade if many.
    let decades = top - bottom;
    for decade in bottom..=top {
        let tx = x.at(10f64.powi(decade));
        svg.line(tx, plot.top, tx, plot.bottom, "stroke=\"#dcdcdc\"");
        svg.line(tx, plot.bottom, tx, plot.bottom + 5.0, "stroke=\"#333\"");
        if decades <= 8 || (decade - bottom) % 2 == 0 {
            let label = decade_label(decade);
            svg.text(tx, plot.bottom + 20.0, "text-anchor=\"middle\" fill=\"#333\"", &label);
        }
        if decades <= 6 && decade < top {
            for minor in [2.0, 5.0] {
                let mx = x.at(minor * 10f64.powi(decade));
                svg.line(mx, plot.top, mx, plot.bottom, "stroke=\"#f0f0f0\"");
            }
        }
    }
    svg.line(plot.left, plot.bottom, plot.right, plot.bottom, "stroke=\"#333\"");
    let middle = (plot.left + plot.right) / 2.0;
    let attrs = "text-anchor=\"middle\" font-size=\"14\"";
    svg.text(middle, plot.bottom + 44.0, attrs, "time (log scale)");
    x
}

/// A tick label of the log axis: `10^decade` microseconds in ns, µs, ms or s.
fn decade_label(decade: i32) -> String {
    let (shift, unit) = match decade {
        ..0 => (-3, "ns"),
        0..3 => (0, "µs"),
        3..6 => (3, "ms"),
        _ => (6, "s"),
    };
    format!("{} {unit}", number(10f64.powi(decade - shift)))
}

#[cfg(test)]
mod tests {
    use super::super::well_formed::{assert_valid, texts};
    use super::*;
    use crate::report::{Better, Reference, Section, fixture};
    use crate::stats::Summary;

    #[test]
    fn the_chart_is_well_formed() {
        assert_valid(&overhead_chart(&fixture::report()));
    }

    #[test]
    fn there_is_one_bar_per_measured_value_with_its_label() {
        let report = fixture::report();
        let svg = overhead_chart(&report);
        let rows = report.sections.iter().flat_map(|s| &s.rows);
        let keyed: Vec<&Row> =
            rows.filter(|r| ["round_trip", "startup", "spawn"].contains(&r.key.as_str())).collect();
        assert_eq!(keyed.len(), 3);
        let values: Vec<String> = keyed
            .iter()
            .flat_map(|r| r.cells.values().map(move |c| (r, c)))
            .filter_map(|(r, c)| match c {
                Cell::Value(s) => Some(quantity(s.median, r.unit)),
                _ => None,
            })
            .collect();
        assert_eq!(svg.matches("class=\"bar\"").count(), values.len());
        let texts = texts(&svg);
        for value in &values {
            assert!(texts.contains(&value.as_str()), "no label {value:?} in {texts:?}");
        }
        // Only the keyed rows: the 1 MiB payload row is measured in time but is not overhead.
        assert!(!texts.contains(&"Round trip, 1 MiB payload"));
        assert!(texts.contains(&"Pool start-up, 2 workers"));
        assert_eq!(texts[0], TITLE);
    }

    #[test]
    fn each_reference_is_a_line_with_a_label_on_a_log_axis() {
        let svg = overhead_chart(&fixture::report());
        assert_eq!(svg.matches("class=\"reference\"").count(), 2);
        let texts = texts(&svg);
        assert!(texts.contains(&"pipe floor: 12.2 µs"), "{texts:?}");
        assert!(texts.contains(&"spin floor: 500 ns"), "{texts:?}");
        for decade in ["100 ns", "1 µs", "10 µs", "100 µs", "1 ms", "10 ms", "100 ms"] {
            assert!(texts.contains(&decade), "no decade {decade:?} in {texts:?}");
        }
        assert!(texts.contains(&"time (log scale)"));
    }

    #[test]
    fn without_overhead_rows_any_time_row_is_charted() {
        let mut report = fixture::report();
        report.sections.retain(|s| s.title == "Throughput");
        let svg = overhead_chart(&report);
        assert_valid(&svg);
        // The 1 MiB round trip: three values, in milliseconds.
        assert_eq!(svg.matches("class=\"bar\"").count(), 3);
        assert!(texts(&svg).contains(&"1.80 ms"));
    }

    #[test]
    fn rows_without_a_value_for_a_log_axis_are_no_data() {
        let mut row = Row::new("round_trip", "Round trip", Unit::Micros, Better::Lower);
        row.cells.insert(Column::RAYON, Cell::Value(Summary::single(0.0)));
        row.cells.insert(Column::PROCSPAWN, Cell::Skipped("absent".into()));
        let mut report = fixture::report();
        report.sections = vec![Section { title: "Overhead".into(), rows: vec![row] }];
        let svg = overhead_chart(&report);
        assert_valid(&svg);
        assert!(texts(&svg).contains(&"no data"));
    }

    #[test]
    fn odd_numbers_do_not_break_the_chart() {
        let mut row = Row::new("spawn", "Spawn", Unit::Millis, Better::Lower);
        let odd = Summary { median: 5e-300, min: -1.0, max: f64::INFINITY, samples: Vec::new() };
        row.cells.insert(Column::RAYON, Cell::Value(odd));
        row.cells.insert(Column::PROCSPAWN, Cell::Value(Summary::single(1e300)));
        row.cells.insert(Column::PYTHON_THREADS, Cell::Value(Summary::single(f64::NAN)));
        row.cells.insert(Column::PROCSPAWN, Cell::Value(Summary::single(1e307)));
        row.references = vec![Reference::new("floor", Summary::single(-3.0))];
        let mut report = fixture::report();
        report.sections = vec![Section { title: "odd".into(), rows: vec![row] }];
        let svg = overhead_chart(&report);
        assert_valid(&svg);
        // 1e307 ms overflows to infinite µs and is left out, with the NaN.
        assert_eq!(svg.matches("class=\"bar\"").count(), 1);
        assert_eq!(svg.matches("class=\"reference\"").count(), 0);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn decades_read_in_the_right_unit() {
        let labels: Vec<String> = (-1..=7).map(decade_label).collect();
        assert_eq!(
            labels,
            ["100 ns", "1 µs", "10 µs", "100 µs", "1 ms", "10 ms", "100 ms", "1 s", "10 s"]
        );
    }
}
