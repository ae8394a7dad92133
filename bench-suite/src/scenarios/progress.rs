//! Progress lines on stderr while the report runs.

use std::fmt::Display;
use std::time::Instant;

/// Prints progress lines on stderr with the time since the run started.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
}

impl Progress {
    /// Starts the clock.
    pub fn new() -> Progress {
        Progress { started: Instant::now() }
    }

    /// Prints one progress line.
    pub fn say(&self, what: impl Display) {
        eprintln!("[{:>5.1}s] {what}", self.started.elapsed().as_secs_f64());
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}
