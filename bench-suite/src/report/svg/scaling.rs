//! The scaling chart: speed-up over sequential against workers, one line per kernel and
//! column (colour by column, dash pattern and marker by kernel), the ideal diagonal, and a
//! legend right of the plot.

use super::{
    Area, CHAR_WIDTH, MIN_HEIGHT, PLOT_TOP, Scale, Svg, WIDTH, color, escape, machine_cpus,
    nice_ticks, no_data, number, wrap,
};
use crate::report::{Column, Curve, Report};

/// The chart's title.
const TITLE: &str = "CPU-bound scaling: speed-up over sequential by workers";

/// The width of the legend, right of the plot.
const LEGEND_WIDTH: f64 = 270.0;

/// The height of one legend entry.
const ENTRY: f64 = 21.0;

/// The height of each further line of a wrapped legend entry.
const WRAPPED: f64 = 15.0;

/// The ideal line's style, in the plot and in the legend.
const IDEAL_STYLE: &str = "stroke=\"#888\" stroke-width=\"1.5\" stroke-dasharray=\"6 5\"";

/// The scaling chart: speed-up over sequential against workers, one line per kernel and
/// column, with the ideal diagonal (speed-up = workers). Curves without a finite point are
/// left out; with none left the chart says "no data".
pub fn scaling_chart(report: &Report) -> String {
    let mut lines: Vec<Line<'_>> = report.scaling.iter().filter_map(Line::of).collect();
    if lines.is_empty() {
        return no_data(TITLE);
    }
    let legend = Legend::of(&lines);
    // Peers first, so that taskpool's lines are drawn on top.
    lines.sort_by_key(|l| l.column.is_ours());

    let height = MIN_HEIGHT.max(PLOT_TOP + legend.height() + 24.0);
    let plot = Area {
        left: 72.0,
        right: WIDTH - LEGEND_WIDTH - 40.0,
        top: PLOT_TOP,
        bottom: height - 64.0,
    };
    let mut svg = Svg::new(WIDTH, height, TITLE);
    let subtitle = format!(
        "{} · higher is better · one colour per pool, one dash pattern per kernel",
        machine_cpus(report)
    );
    svg.heading(TITLE, &subtitle);
    let (x, y) = axes(&mut svg, &lines, &plot);
    ideal(&mut svg, &x, &y);
    for line in &lines {
        curve(&mut svg, line, legend.kernel_index(line.kernel), &x, &y);
    }
    legend.draw(&mut svg, WIDTH - LEGEND_WIDTH, PLOT_TOP + 4.0);
    svg.finish()
}

/// One line of the chart: a curve's finite points, as (workers, speed-up).
struct Line<'a> {
    kernel: &'a str,
    column: Column,
    points: Vec<(f64, f64)>,
}

impl<'a> Line<'a> {
    /// The plottable part of `curve`, if any.
    fn of(curve: &'a Curve) -> Option<Line<'a>> {
        let finite = curve.points.iter().filter(|(_, speed_up)| speed_up.is_finite());
        let points: Vec<(f64, f64)> = finite.map(|&(w, s)| (w as f64, s)).collect();
        (!points.is_empty()).then_some(Line { kernel: &curve.kernel, column: curve.column, points })
    }
}

/// Draws the grid, the axes and their labels for `lines` in `plot`; returns the x and y
/// scales. The x ticks are the measured worker counts (round numbers if there are many), the
/// y axis starts at 0 (or below, for a negative value) and ends on a round number.
fn axes(svg: &mut Svg, lines: &[Line<'_>], plot: &Area) -> (Scale, Scale) {
    let points = lines.iter().flat_map(|l| l.points.iter().copied());
    let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (f64::MAX, f64::MIN, 0.0_f64, 1.0_f64);
    for (x, y) in points {
        (x_lo, x_hi, y_lo, y_hi) = (x_lo.min(x), x_hi.max(x), y_lo.min(y), y_hi.max(y));
    }
    let mut workers: Vec<f64> = lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)).collect();
    workers.sort_by(f64::total_cmp);
    workers.dedup();
    let x_ticks = if workers.len() <= 12 { workers } else { nice_ticks(x_lo, x_hi, 8) };
    let x_ticks: Vec<f64> = x_ticks.into_iter().filter(|t| *t >= x_lo && *t <= x_hi).collect();
    if x_hi - x_lo < 1.0 {
        (x_lo, x_hi) = (x_lo - 1.0, x_hi + 1.0);
    }
    // A little room so that the first and last markers clear the plot's edges.
    let pad = (x_hi - x_lo) * 0.03;
    let x = Scale::linear(x_lo - pad, x_hi + pad, plot.left, plot.right);
    let y_ticks = nice_ticks(y_lo, y_hi * 1.08, 6);
    let y_lo = y_ticks.first().copied().unwrap_or(y_lo);
    let y_hi = y_ticks.last().copied().unwrap_or(y_hi);
    let y = Scale::linear(y_lo, y_hi, plot.bottom, plot.top);

    for &tick in &y_ticks {
        let ty = y.at(tick);
        svg.line(plot.left, ty, plot.right, ty, "stroke=\"#e3e3e3\"");
        let label = format!("{}×", number(tick));
        svg.text(plot.left - 8.0, ty + 4.0, "text-anchor=\"end\" fill=\"#333\"", &label);
    }
    // Labels closer than this overlap: drop some, but always show the last.
    const LABEL_GAP: f64 = 26.0;
    let last_tick = x_ticks.last().map_or(f64::MAX, |&t| x.at(t));
    let mut last_label = f64::MIN;
    for (i, &tick) in x_ticks.iter().enumerate() {
        let tx = x.at(tick);
        svg.line(tx, plot.top, tx, plot.bottom, "stroke=\"#f0f0f0\"");
        svg.line(tx, plot.bottom, tx, plot.bottom + 5.0, "stroke=\"#333\"");
        let is_last = i + 1 == x_ticks.len();
        if is_last || (tx - last_label >= LABEL_GAP && last_tick - tx >= LABEL_GAP) {
            svg.text(tx, plot.bottom + 20.0, "text-anchor=\"middle\" fill=\"#333\"", &number(tick));
            last_label = tx;
        }
    }
    svg.line(plot.left, plot.bottom, plot.right, plot.bottom, "stroke=\"#333\"");
    svg.line(plot.left, plot.top, plot.left, plot.bottom, "stroke=\"#333\"");
    let axis_title = "text-anchor=\"middle\" font-size=\"14\"";
    svg.text((plot.left + plot.right) / 2.0, plot.bottom + 44.0, axis_title, "workers");
    let mid = number((plot.top + plot.bottom) / 2.0);
    let rotated = format!("{axis_title} transform=\"rotate(-90 24 {mid})\"");
    svg.text(24.0, (plot.top + plot.bottom) / 2.0, &rotated, "speed-up over sequential");
    (x, y)
}

/// Draws the ideal, speed-up = workers, clipped to the plot, with a label along it.
fn ideal(svg: &mut Svg, x: &Scale, y: &Scale) {
    let (start, end) = (x.lo.max(y.lo), x.hi.min(y.hi));
    if end <= start {
        return;
    }
    let (x1, y1, x2, y2) = (x.at(start), y.at(start), x.at(end), y.at(end));
    svg.line(x1, y1, x2, y2, &format!("class=\"ideal\" {IDEAL_STYLE}"));
    let (lx, ly) = (x1 + (x2 - x1) * 0.8, y1 + (y2 - y1) * 0.8 - 6.0);
    let angle = (y2 - y1).atan2(x2 - x1).to_degrees();
    let attrs = format!(
        "text-anchor=\"middle\" font-size=\"12\" fill=\"#777\" transform=\"rotate({} {} {})\"",
        number(angle),
        number(lx),
        number(ly)
    );
    svg.text(lx, ly, &attrs, "ideal");
}

/// Draws `line` as a polyline with a marker (and tooltip) at each point.
fn curve(svg: &mut Svg, line: &Line<'_>, kernel: usize, x: &Scale, y: &Scale) {
    let color = color(line.column);
    let coords: Vec<String> = line
        .points
        .iter()
        .map(|&(w, s)| format!("{},{}", number(x.at(w)), number(y.at(s))))
        .collect();
    svg.push(&format!(
        "<polyline class=\"curve\" points=\"{}\" fill=\"none\" stroke=\"{color}\" \
         stroke-width=\"{}\" stroke-linejoin=\"round\"{}/>",
        coords.join(" "),
        stroke_width(line.column),
        dash(kernel)
    ));
    for &(w, s) in &line.points {
        let tip = format!(
            "{}, {}: {} workers, {}× speed-up",
            line.column.label(),
            line.kernel,
            number(w),
            number(s)
        );
        svg.push(&marker(kernel, x.at(w), y.at(s), color, &tip));
    }
}

/// The legend: colours for pools, dash patterns and markers for kernels, and the ideal.
struct Legend<'a> {
    columns: Vec<Column>,
    /// Kernels in the order they first appear, with their names wrapped to fit.
    kernels: Vec<(&'a str, Vec<String>)>,
}

impl<'a> Legend<'a> {
    /// The legend of `lines`.
    fn of(lines: &[Line<'a>]) -> Legend<'a> {
        let columns = Column::ALL.iter().copied().filter(|&c| lines.iter().any(|l| l.column == c));
        let room = ((LEGEND_WIDTH - 52.0) / (12.0 * CHAR_WIDTH)) as usize;
        let mut kernels: Vec<(&'a str, Vec<String>)> = Vec::new();
        for line in lines {
            if !kernels.iter().any(|(k, _)| *k == line.kernel) {
                kernels.push((line.kernel, wrap(line.kernel, room, 3)));
            }
        }
        Legend { columns: columns.collect(), kernels }
    }

    /// The position of `kernel` in the legend, which picks its dash pattern and marker.
    fn kernel_index(&self, kernel: &str) -> usize {
        self.kernels.iter().position(|(k, _)| *k == kernel).unwrap_or(0)
    }

    /// The legend's height in pixels.
    fn height(&self) -> f64 {
        let entries = self.columns.len() + self.kernels.len() + 1;
        let wrapped: usize = self.kernels.iter().map(|(_, l)| l.len().saturating_sub(1)).sum();
        2.0 * 26.0 + ENTRY * entries as f64 + WRAPPED * wrapped as f64 + 8.0
    }

    /// Draws the legend with its top left corner at (`left`, `top`).
    fn draw(&self, svg: &mut Svg, left: f64, top: f64) {
        let swatch = |svg: &mut Svg, y: f64, style: &str| {
            svg.line(left, y - 4.0, left + 34.0, y - 4.0, style);
        };
        let mut y = top;
        svg.text(left, y, "font-weight=\"bold\"", "Pools");
        y += 8.0;
        for &column in &self.columns {
            y += ENTRY;
            let style =
                format!("stroke=\"{}\" stroke-width=\"{}\"", color(column), stroke_width(column));
            swatch(svg, y, &style);
            svg.push(&marker(0, left + 17.0, y - 4.0, color(column), column.label()));
            let weight = if column.is_ours() { " font-weight=\"bold\"" } else { "" };
            svg.text(left + 44.0, y, &format!("font-size=\"12\"{weight}"), column.label());
        }
        y += 34.0;
        svg.text(left, y, "font-weight=\"bold\"", "Kernels");
        y += 8.0;
        for (index, (kernel, label)) in self.kernels.iter().enumerate() {
            y += ENTRY;
            swatch(svg, y, &format!("stroke=\"#444\" stroke-width=\"2\"{}", dash(index)));
            svg.push(&marker(index, left + 17.0, y - 4.0, "#444", kernel));
            for (i, part) in label.iter().enumerate() {
                svg.text(left + 44.0, y + WRAPPED * i as f64, "font-size=\"12\"", part);
            }
            y += WRAPPED * label.len().saturating_sub(1) as f64;
        }
        y += ENTRY;
        swatch(svg, y, IDEAL_STYLE);
        svg.text(left + 44.0, y, "font-size=\"12\"", "ideal (speed-up = workers)");
    }
}

/// Taskpool's own lines are drawn thicker.
fn stroke_width(column: Column) -> &'static str {
    if column.is_ours() { "3" } else { "2" }
}

/// The dash pattern of the `kernel`th kernel, as an attribute (solid for the first).
fn dash(kernel: usize) -> &'static str {
    const PATTERNS: [&str; 5] = [
        "",
        " stroke-dasharray=\"9 5\"",
        " stroke-dasharray=\"2 4\"",
        " stroke-dasharray=\"12 4 2 4\"",
        " stroke-dasharray=\"5 3 5 9\"",
    ];
    PATTERNS[kernel % PATTERNS.len()]
}

/// A point marker at (`x`, `y`), shaped by the kernel's index (circle, square, diamond,
/// triangle), with a tooltip.
fn marker(kernel: usize, x: f64, y: f64, fill: &str, tip: &str) -> String {
    let (cx, cy) = (number(x), number(y));
    let (element, geometry) = match kernel % 4 {
        0 => ("circle", format!("cx=\"{cx}\" cy=\"{cy}\" r=\"4.5\"")),
        1 => {
            let (left, top) = (number(x - 4.0), number(y - 4.0));
            ("rect", format!("x=\"{left}\" y=\"{top}\" width=\"8\" height=\"8\""))
        }
        2 => {
            let (top, right, bottom, left) =
                (number(y - 5.5), number(x + 5.5), number(y + 5.5), number(x - 5.5));
            ("polygon", format!("points=\"{cx},{top} {right},{cy} {cx},{bottom} {left},{cy}\""))
        }
        _ => {
            let (top, right, bottom, left) =
                (number(y - 5.5), number(x + 5.0), number(y + 4.0), number(x - 5.0));
            ("polygon", format!("points=\"{cx},{top} {right},{bottom} {left},{bottom}\""))
        }
    };
    format!(
        "<{element} class=\"marker\" {geometry} fill=\"{fill}\" stroke=\"white\" \
         stroke-width=\"1.2\"><title>{}</title></{element}>",
        escape(tip)
    )
}

#[cfg(test)]
mod tests {
    use super::super::well_formed::{assert_valid, texts};
    use super::*;
    use crate::report::fixture;

    #[test]
    fn the_chart_is_well_formed() {
        assert_valid(&scaling_chart(&fixture::report()));
    }

    #[test]
    fn there_is_one_polyline_per_curve_with_its_points() {
        let report = fixture::report();
        let svg = scaling_chart(&report);
        let polylines: Vec<&str> = svg.split("<polyline").skip(1).collect();
        assert_eq!(polylines.len(), report.scaling.len());
        let mut counts: Vec<usize> = polylines
            .iter()
            .map(|p| p.split("points=\"").nth(1).unwrap().split('"').next().unwrap())
            .map(|points| points.split(' ').count())
            .collect();
        let mut expected: Vec<usize> = report.scaling.iter().map(|c| c.points.len()).collect();
        counts.sort();
        expected.sort();
        assert_eq!(counts, expected);
        // Each point has a marker; the legend has one per pool and per kernel.
        let legend = 6 + 2;
        assert_eq!(
            svg.matches("class=\"marker\"").count(),
            expected.iter().sum::<usize>() + legend
        );
    }

    #[test]
    fn colours_follow_columns_and_dashes_follow_kernels() {
        let report = fixture::report();
        let svg = scaling_chart(&report);
        let polyline = |curve: &Curve| {
            let tip = format!("<title>{}, {}: ", curve.column.label(), curve.kernel);
            let before = &svg[..svg.find(&tip).unwrap()];
            before.rsplit("<polyline").next().unwrap().split("/>").next().unwrap().to_owned()
        };
        for curve in &report.scaling {
            let line = polyline(curve);
            assert!(line.contains(&format!("stroke=\"{}\"", color(curve.column))), "{line}");
            let dashed = line.contains("stroke-dasharray");
            assert_eq!(dashed, curve.kernel.starts_with("mandelbrot"), "{line}");
        }
    }

    #[test]
    fn there_are_an_ideal_axes_a_title_and_a_legend() {
        let report = fixture::report();
        let svg = scaling_chart(&report);
        assert_eq!(svg.matches("class=\"ideal\"").count(), 1);
        let texts = texts(&svg);
        assert_eq!(texts[0], TITLE);
        for expected in ["workers", "speed-up over sequential", "ideal (speed-up = workers)"] {
            assert!(texts.contains(&expected), "no {expected:?} in {texts:?}");
        }
        for curve in &report.scaling {
            assert!(texts.contains(&curve.column.label()), "{:?} not in the legend", curve.column);
            assert!(texts.contains(&curve.kernel.as_str()), "{} not in the legend", curve.kernel);
        }
        // Worker counts label the x axis, speed-ups the y axis.
        for tick in ["1", "2", "4", "8", "0×", "1×", "2×"] {
            assert!(texts.contains(&tick), "no tick {tick:?} in {texts:?}");
        }
    }

    #[test]
    fn long_kernel_names_wrap_in_the_legend() {
        let mut report = fixture::report();
        let long = "mandelbrot rows of a 4096 × 4096 image, 10 ms tasks, chunked by eight";
        report.scaling[0].kernel = long.into();
        let svg = scaling_chart(&report);
        assert_valid(&svg);
        let texts = texts(&svg);
        let start = texts.iter().position(|t| long.starts_with(t)).unwrap();
        let parts = &texts[start..start + 3];
        assert_eq!(parts.join(" "), long, "{parts:?}");
        assert!(parts.iter().all(|p| p.chars().count() <= 30), "{parts:?}");
    }

    #[test]
    fn odd_numbers_do_not_break_the_chart() {
        let mut report = fixture::report();
        report.scaling = vec![
            Curve { kernel: "k".into(), column: Column::RAYON, points: vec![(usize::MAX, 1e300)] },
            Curve {
                kernel: "nan".into(),
                column: Column::PROCSPAWN,
                points: vec![(0, f64::NAN), (3, -2.0), (4, f64::INFINITY)],
            },
            Curve { kernel: "none".into(), column: Column::PYTHON_THREADS, points: Vec::new() },
        ];
        let svg = scaling_chart(&report);
        assert_valid(&svg);
        // The curve without points is left out; the NaN and infinite points too.
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        assert!(!texts(&svg).contains(&"no data"));
    }
}
