//! How far a run of the report has got: steps (one per scenario), each with how much of it
//! is done, and a progress bar that shows them.
//!
//! A run says where it is with [`Progress`]: on stderr as one line per step, or, when a
//! supervising process draws the bar, as [`Event`] lines on stdout that the supervisor reads
//! back (the report binary measures in a child process, so that whatever the workers and
//! probes print can be kept out of the terminal). [`Bar`] draws the events: one line
//! redrawn in place on a terminal, one line per step otherwise.

use std::cell::{Cell, RefCell};
use std::fmt::Display;
use std::io::Write;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// The prefix of an event line.
const EVENT_PREFIX: &str = "taskpool-bench progress: ";

/// Reports the progress of a run.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    /// Whether it writes [`Event`] lines on stdout (else plain lines on stderr).
    events: bool,
    /// The steps of the run, if known.
    total: Cell<usize>,
    /// The steps begun so far.
    begun: Cell<usize>,
    /// How long each step takes next to a usual one, by step from 1 (1 when not given).
    weights: RefCell<Vec<f64>>,
}

impl Progress {
    /// Progress as lines on stderr, with the time since the start: one per step.
    pub fn new() -> Progress {
        Progress {
            started: Instant::now(),
            events: false,
            total: Cell::new(0),
            begun: Cell::new(0),
            weights: RefCell::new(Vec::new()),
        }
    }

    /// Progress as [`Event`] lines on stdout, for a supervising process to draw.
    pub fn events() -> Progress {
        Progress { events: true, ..Progress::new() }
    }

    /// Announces how many steps the run has.
    pub fn plan(&self, steps: usize) {
        self.total.set(steps);
    }

    /// Step `step` (from 1) takes about `weight` times as long as a usual step, so that the
    /// share of the run done, and the time left, count it so.
    pub fn weigh(&self, step: usize, weight: f64) {
        if step == 0 || !weight.is_finite() || weight <= 0.0 {
            return;
        }
        let mut weights = self.weights.borrow_mut();
        if weights.len() < step {
            weights.resize(step, 1.0);
        }
        weights[step - 1] = weight;
    }

    /// A step begins.
    pub fn step(&self, what: impl Display) {
        self.begun.set(self.begun.get() + 1);
        self.emit(0.0, &what.to_string());
    }

    /// The current step is `fraction` done (0 to 1), doing `what`.
    pub fn part(&self, fraction: f64, what: impl Display) {
        let fraction = if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { 0.0 };
        self.emit(fraction, &what.to_string());
    }

    /// A step begins (the same as [`Progress::step`]).
    pub fn say(&self, what: impl Display) {
        self.step(what);
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Where the run is: the current step, `fraction` of it done, doing `what`.
    fn event(&self, fraction: f64, what: &str) -> Event {
        let (step, steps) = (self.begun.get(), self.total.get().max(self.begun.get()));
        let weights = self.weights.borrow();
        let weight = |s: usize| weights.get(s - 1).copied().unwrap_or(1.0);
        let share = (steps > 0 && !weights.is_empty()).then(|| {
            let before: f64 = (1..step).map(weight).sum();
            let current = if step > 0 { weight(step) * fraction } else { 0.0 };
            (before + current) / (1..=steps).map(weight).sum::<f64>()
        });
        Event { step, steps, fraction, what: what.to_owned(), elapsed_s: self.elapsed(), share }
    }

    fn emit(&self, fraction: f64, what: &str) {
        let event = self.event(fraction, what);
        if self.events {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", event.line());
            let _ = out.flush();
        } else if fraction == 0.0 {
            eprintln!("[{:>5.1}s] {what}", event.elapsed_s);
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

/// Where a run is: step `step` of `steps`, `fraction` of it done, doing `what`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The current step, from 1 (0 before the first).
    pub step: usize,
    /// The steps of the run.
    pub steps: usize,
    /// How much of the current step is done, from 0 to 1.
    pub fraction: f64,
    /// What the step does.
    pub what: String,
    /// Seconds since the run started.
    pub elapsed_s: f64,
    /// How much of the whole run is done, from 0 to 1, where some steps take longer than
    /// others ([`Progress::weigh`]); `None` counts the steps alike.
    #[serde(default)]
    pub share: Option<f64>,
}

impl Event {
    /// The event as one line of text.
    pub fn line(&self) -> String {
        format!("{EVENT_PREFIX}{}", serde_json::to_string(self).unwrap_or_default())
    }

    /// The event on `line`, if it is one.
    ///
    /// # Examples
    ///
    /// ```
    /// use taskpool_bench::Event;
    ///
    /// let event =
    ///     Event { step: 2, steps: 9, fraction: 0.5, what: "map".into(), elapsed_s: 3.0, share: None };
    /// assert_eq!(Event::parse(&event.line()), Some(event));
    /// assert_eq!(Event::parse("thread 'main' panicked"), None);
    /// ```
    pub fn parse(line: &str) -> Option<Event> {
        serde_json::from_str(line.strip_prefix(EVENT_PREFIX)?).ok()
    }

    /// How much of the whole run is done, from 0 to 1.
    pub fn done(&self) -> f64 {
        if let Some(share) = self.share.filter(|s| s.is_finite()) {
            return share.clamp(0.0, 1.0);
        }
        if self.steps == 0 {
            return 0.0;
        }
        let before = self.step.saturating_sub(1) as f64;
        let fraction = if self.fraction.is_finite() { self.fraction.clamp(0.0, 1.0) } else { 0.0 };
        ((before + fraction) / self.steps as f64).clamp(0.0, 1.0)
    }
}

/// Draws [`Event`]s: on a terminal, one line redrawn in place (a bar, the step and what it
/// does, the time so far); elsewhere, one line per step.
#[derive(Debug)]
pub struct Bar<W: Write> {
    out: W,
    terminal: bool,
    /// The step of the last line printed (when not on a terminal).
    printed: usize,
    /// Whether a bar is on the screen (when on a terminal).
    drawn: bool,
}

/// The width of the bar itself, in characters.
const BAR_WIDTH: usize = 24;

/// The most characters of an event's text that a line shows.
const TEXT_WIDTH: usize = 48;

impl<W: Write> Bar<W> {
    /// A bar drawn on `out`, redrawn in place if `terminal`.
    pub fn new(out: W, terminal: bool) -> Bar<W> {
        Bar { out, terminal, printed: 0, drawn: false }
    }

    /// Draws `event`.
    pub fn show(&mut self, event: &Event) {
        if self.terminal {
            let _ = write!(self.out, "\r{}\x1b[K", Bar::<W>::render(event));
            self.drawn = true;
        } else if event.step > self.printed {
            self.printed = event.step;
            let _ = writeln!(
                self.out,
                "[{}/{}] {} ({})",
                event.step,
                event.steps,
                shorten(&event.what),
                times(event)
            );
        }
        let _ = self.out.flush();
    }

    /// Clears the bar from the terminal, so that what follows starts on a clean line.
    pub fn finish(&mut self) {
        if self.drawn {
            let _ = write!(self.out, "\r\x1b[K");
            let _ = self.out.flush();
            self.drawn = false;
        }
    }

    /// One line of the bar:
    /// `[#########...............]  38%  step 5/17  map (0:41, about 1:07 left)`.
    pub fn render(event: &Event) -> String {
        let done = event.done();
        let filled = ((done * BAR_WIDTH as f64).round() as usize).min(BAR_WIDTH);
        format!(
            "[{}{}] {:>3.0}%  step {}/{}  {} ({})",
            "#".repeat(filled),
            ".".repeat(BAR_WIDTH - filled),
            done * 100.0,
            event.step,
            event.steps,
            shorten(&event.what),
            times(event)
        )
    }
}

/// `text` on one line, cut to [`TEXT_WIDTH`] characters.
fn shorten(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= TEXT_WIDTH {
        return line;
    }
    let mut cut: String = line.chars().take(TEXT_WIDTH - 1).collect();
    cut.push('…');
    cut
}

/// The time so far, and the time left as the share done so far predicts it, once enough is
/// done to tell: `1:15` or `1:15, about 0:45 left`.
fn times(event: &Event) -> String {
    let (done, elapsed) = (event.done(), event.elapsed_s);
    let enough =
        (MIN_SHARE..1.0).contains(&done) && elapsed.is_finite() && elapsed >= MIN_ELAPSED_S;
    if !enough {
        return minutes(elapsed);
    }
    let left = (elapsed * (1.0 - done) / done).round();
    format!("{}, about {} left", minutes(elapsed), minutes(left))
}

/// The share of the run done before the time left is estimated.
const MIN_SHARE: f64 = 0.05;

/// The seconds run before the time left is estimated.
const MIN_ELAPSED_S: f64 = 5.0;

/// Seconds as `m:ss`.
fn minutes(seconds: f64) -> String {
    let whole = if seconds.is_finite() && seconds > 0.0 { seconds as u64 } else { 0 };
    format!("{}:{:02}", whole / 60, whole % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(step: usize, steps: usize, fraction: f64) -> Event {
        Event { step, steps, fraction, what: "overhead: map".into(), elapsed_s: 75.4, share: None }
    }

    #[test]
    fn the_bar_fills_with_the_steps_done() {
        assert_eq!(event(1, 4, 0.0).done(), 0.0);
        assert_eq!(event(3, 4, 0.5).done(), 0.625);
        assert_eq!(event(0, 0, 0.5).done(), 0.0);
        assert_eq!(
            Bar::<Vec<u8>>::render(&event(3, 4, 0.5)),
            "[###############.........]  62%  step 3/4  overhead: map (1:15, about 0:45 left)"
        );
    }

    #[test]
    fn off_a_terminal_each_step_is_one_line() {
        let mut bar = Bar::new(Vec::new(), false);
        for e in [event(1, 2, 0.0), event(1, 2, 0.5), event(2, 2, 0.0), event(2, 2, 0.9)] {
            bar.show(&e);
        }
        bar.finish();
        let text = String::from_utf8(bar.out).unwrap();
        assert_eq!(
            text,
            "[1/2] overhead: map (1:15)\n[2/2] overhead: map (1:15, about 1:15 left)\n"
        );
    }

    #[test]
    fn on_a_terminal_the_line_is_redrawn_and_cleared() {
        let mut bar = Bar::new(Vec::new(), true);
        bar.show(&event(1, 2, 0.0));
        bar.show(&event(2, 2, 0.0));
        bar.finish();
        let text = String::from_utf8(bar.out).unwrap();
        assert_eq!(text.matches('\r').count(), 3);
        assert!(text.ends_with("\r\x1b[K"));
        assert!(!text.contains('\n'));
    }

    /// A step that takes as long as all the others fills half the bar, and the time left is
    /// estimated from the share done, not from the steps counted.
    #[test]
    fn a_long_step_fills_its_share_of_the_bar() {
        let progress = Progress::new();
        progress.plan(4);
        progress.weigh(3, 3.0);
        for _ in 0..3 {
            progress.step("x");
        }
        let mut event = progress.event(0.5, "Python peers");
        assert_eq!((event.step, event.steps), (3, 4));
        assert_eq!(event.share, Some((2.0 + 1.5) / 6.0));
        event.elapsed_s = 70.0;
        let line = Bar::<Vec<u8>>::render(&event);
        assert!(line.contains(" 58%  step 3/4  Python peers (1:10, about 0:50 left)"), "{line}");
        let line = event.line();
        assert_eq!(Event::parse(&line).unwrap().share, event.share);
        let plain = progress_without_weights(3, 4, 0.5);
        assert_eq!(plain.share, None);
        assert_eq!(plain.done(), 0.625);
    }

    fn progress_without_weights(steps_begun: usize, steps: usize, fraction: f64) -> Event {
        let progress = Progress::new();
        progress.plan(steps);
        for _ in 0..steps_begun {
            progress.step("x");
        }
        progress.event(fraction, "x")
    }

    #[test]
    fn long_texts_are_cut_and_odd_events_do_not_panic() {
        let mut long = event(1, 1, f64::NAN);
        long.what = "x ".repeat(100);
        long.elapsed_s = f64::INFINITY;
        let line = Bar::<Vec<u8>>::render(&long);
        assert!(line.ends_with("… (0:00)"), "{line}");
        assert_eq!(Event::parse("taskpool-bench progress: {"), None);
    }
}
