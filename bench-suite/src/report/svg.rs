//! The report's charts as standalone SVG documents, written by hand: the pieces both charts
//! share (the document, escaping, scales, ticks, colours). The charts themselves are in
//! `svg/scaling.rs` and `svg/overhead.rs`.
//!
//! Each column keeps one colour in both charts (Okabe–Ito, readable by colour-blind readers):
//! blues and green for thread pools, oranges and purple for process pools, taskpool's own in
//! the strongest tone and drawn thicker. Every text from the report is XML-escaped, and odd
//! numbers (not a number, infinite, zero on a log axis) are left out rather than drawn.

mod overhead;
mod scaling;
#[cfg(test)]
mod well_formed;

pub use overhead::overhead_chart;
pub use scaling::scaling_chart;

use super::{Column, Report};

/// The width of both charts; their height follows their content, from [`MIN_HEIGHT`].
const WIDTH: f64 = 900.0;

/// The smallest height of a chart.
const MIN_HEIGHT: f64 = 500.0;

/// The top of a chart's plot, under its title and subtitle.
const PLOT_TOP: f64 = 84.0;

/// The fonts of every text.
const FONT: &str = "Helvetica, Arial, sans-serif";

/// The average width of a character relative to the font size, to lay out text (generous,
/// so that text laid out with it fits).
const CHAR_WIDTH: f64 = 0.6;

/// An SVG document being written, element by element.
struct Svg {
    out: String,
}

impl Svg {
    /// A document of `width` × `height` pixels with a white background and a `<title>`.
    fn new(width: f64, height: f64, title: &str) -> Svg {
        let (w, h) = (number(width), number(height));
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
             viewBox=\"0 0 {w} {h}\" font-family=\"{FONT}\" font-size=\"13\">\n"
        );
        out.push_str(&format!("<title>{}</title>\n", escape(title)));
        out.push_str(&format!("<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n"));
        Svg { out }
    }

    /// Appends a finished element.
    fn push(&mut self, element: &str) {
        self.out.push_str(element);
        self.out.push('\n');
    }

    /// A line from (`x1`, `y1`) to (`x2`, `y2`) with extra attributes `attrs`.
    fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, attrs: &str) {
        self.push(&format!(
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" {attrs}/>",
            number(x1),
            number(y1),
            number(x2),
            number(y2)
        ));
    }

    /// `content`, escaped, at (`x`, `y`) with extra attributes `attrs`.
    fn text(&mut self, x: f64, y: f64, attrs: &str, content: &str) {
        self.push(&format!(
            "<text x=\"{}\" y=\"{}\" {attrs}>{}</text>",
            number(x),
            number(y),
            escape(content)
        ));
    }

    /// The chart's title and, under it, a subtitle.
    fn heading(&mut self, title: &str, subtitle: &str) {
        self.text(20.0, 32.0, "font-size=\"20\" font-weight=\"bold\"", title);
        self.text(20.0, 54.0, "font-size=\"13\" fill=\"#555\"", subtitle);
    }

    /// The finished document.
    fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

/// A standalone chart that says there is nothing to draw.
fn no_data(title: &str) -> String {
    let mut svg = Svg::new(WIDTH, MIN_HEIGHT, title);
    svg.text(20.0, 32.0, "font-size=\"20\" font-weight=\"bold\"", title);
    let attrs = "text-anchor=\"middle\" font-size=\"24\" fill=\"#888\"";
    svg.text(WIDTH / 2.0, MIN_HEIGHT / 2.0, attrs, "no data");
    svg.finish()
}

/// "2 CPUs (model)", or without the model if unknown, for the subtitles.
fn machine_cpus(report: &Report) -> String {
    let cpus = report.machine.cpus;
    let model = report.machine.cpu_model.trim();
    let plural = if cpus == 1 { "" } else { "s" };
    if model.is_empty() {
        format!("{cpus} CPU{plural}")
    } else {
        format!("{cpus} CPU{plural} ({model})")
    }
}

/// A rectangle of the chart, in pixels.
struct Area {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

/// Maps values to pixels, linearly or by their logarithm.
struct Scale {
    lo: f64,
    hi: f64,
    from: f64,
    to: f64,
    log: bool,
}

impl Scale {
    /// `lo..hi` onto pixels `from..to`.
    fn linear(lo: f64, hi: f64, from: f64, to: f64) -> Scale {
        Scale { lo, hi, from, to, log: false }
    }

    /// Decades `10^lo..10^hi` onto pixels `from..to`.
    fn log(lo: i32, hi: i32, from: f64, to: f64) -> Scale {
        Scale { lo: f64::from(lo), hi: f64::from(hi), from, to, log: true }
    }

    /// The pixel of `value`, kept within the scale's pixels.
    fn at(&self, value: f64) -> f64 {
        let value = if self.log { value.log10() } else { value };
        let fraction = (value - self.lo) / (self.hi - self.lo);
        // Infinities clamp to the ends; what is not a number sits at the start.
        let fraction = if fraction.is_nan() { 0.0 } else { fraction.clamp(0.0, 1.0) };
        self.from + (self.to - self.from) * fraction
    }
}

/// Round ticks (1, 2 or 5 times a power of ten apart) covering `lo..hi`, about `count`.
fn nice_ticks(lo: f64, hi: f64, count: usize) -> Vec<f64> {
    if !lo.is_finite() || !hi.is_finite() || hi <= lo || count == 0 {
        return vec![0.0, 1.0];
    }
    let rough = (hi - lo) / count as f64;
    let power = 10f64.powf(rough.log10().floor());
    let steps = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power);
    let step = steps.into_iter().find(|s| *s >= rough).unwrap_or(10.0 * power);
    // Saturating casts, and at most a few dozen ticks, whatever the input.
    let first = (lo / step).floor() as i64;
    let last = (hi / step).ceil() as i64;
    (first..=last.min(first.saturating_add(50))).map(|i| i as f64 * step).collect()
}

/// A number for SVG, with at most two decimals and no trailing zeros (in exponent form when
/// huge); "0" if not finite.
fn number(value: f64) -> String {
    if !value.is_finite() {
        return "0".to_owned();
    }
    if value.abs() >= 1e9 {
        return format!("{value:.2e}");
    }
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" { "0".to_owned() } else { text.to_owned() }
}

/// `text` broken at spaces into lines of at most `room` characters (longer words are cut),
/// at most `lines` of them; the last ends with an ellipsis if text was left over.
fn wrap(text: &str, room: usize, lines: usize) -> Vec<String> {
    let room = room.max(2);
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let used = current.chars().count();
            let gap = usize::from(used > 0);
            if used + gap + word.len() <= room {
                if gap == 1 {
                    current.push(' ');
                }
                current.extend(word.drain(..));
                break;
            }
            if used > 0 {
                out.push(std::mem::take(&mut current));
            } else {
                out.push(word.drain(..room).collect());
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    if out.len() > lines.max(1) {
        out.truncate(lines.max(1));
        if let Some(last) = out.last_mut() {
            *last = truncate(&format!("{last} …"), room);
        }
    }
    out
}

/// `text` cut to `room` characters, with an ellipsis if it was longer.
fn truncate(text: &str, room: usize) -> String {
    if text.chars().count() <= room {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(room.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The colour of `column`'s lines and bars.
fn color(column: Column) -> &'static str {
    column.colour()
}

/// `text` escaped for XML text and attribute values (the HTML page's too).
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0 at all.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::well_formed::{assert_valid, texts};
    use super::*;
    use crate::report::fixture;

    #[test]
    fn empty_reports_give_valid_charts_that_say_no_data() {
        let mut report = fixture::report();
        report.sections.clear();
        report.scaling.clear();
        for svg in [scaling_chart(&report), overhead_chart(&report)] {
            assert_valid(&svg);
            assert!(texts(&svg).contains(&"no data"));
        }
    }

    #[test]
    fn text_from_the_report_is_escaped() {
        let mut report = fixture::report();
        report.scaling[0].kernel = "a < b & \"c\"".into();
        report.sections[0].rows[0].label = "<start> & 'up'".into();
        report.machine.cpu_model = "R&D <prototype>\u{7}".into();
        for svg in [scaling_chart(&report), overhead_chart(&report)] {
            assert_valid(&svg);
            assert!(svg.contains("(R&amp;D &lt;prototype&gt; )"));
        }
        assert!(scaling_chart(&report).contains(">a &lt; b &amp; &quot;c&quot;<"));
        assert!(overhead_chart(&report).contains(">&lt;start&gt; &amp; &apos;up&apos;<"));
    }

    #[test]
    fn numbers_are_short_and_always_numbers() {
        assert_eq!(number(12.0), "12");
        assert_eq!(number(12.345), "12.35");
        assert_eq!(number(-0.001), "0");
        assert_eq!(number(f64::NAN), "0");
        assert_eq!(number(3e12), "3.00e12");
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(nice_ticks(0.0, 2.13, 6), [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
        assert_eq!(nice_ticks(0.0, 70.0, 6), [0.0, 20.0, 40.0, 60.0, 80.0]);
        assert_eq!(nice_ticks(1.0, 1.0, 6), [0.0, 1.0]);
        assert!(nice_ticks(0.0, 1e300, 6).len() <= 52);
        assert!(nice_ticks(-1e300, 1e300, 1).len() <= 52);
    }

    #[test]
    fn wrap_breaks_at_spaces_cuts_long_words_and_stops() {
        assert_eq!(wrap("ab cd ef", 5, 3), ["ab cd", "ef"]);
        assert_eq!(wrap("abcdefgh", 3, 3), ["abc", "def", "gh"]);
        assert_eq!(wrap("ab cd ef gh", 5, 1), ["ab c…"]);
        assert!(wrap("", 5, 2).is_empty());
    }
}
