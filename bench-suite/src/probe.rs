//! Child-process probes: measurements that could take the measuring program down (a segfault
//! on a thread) or that need a clean process (memory per worker) run in a fresh copy of the
//! running binary, and the parent observes how it ended.
//!
//! The parent runs the binary again with [`PROBE_VAR`] set to a probe's kind and its
//! arguments (`fault threads segfault`); `init` (called from `crate::init`) sees it, runs
//! the probe and exits. A probe that survives prints one line
//! starting with [`RESULT_PREFIX`] followed by JSON; one that dies is described by its exit
//! status.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The environment variable that names the probe a child runs.
pub(crate) const PROBE_VAR: &str = "TASKPOOL_BENCH_PROBE";
/// The prefix of a surviving probe's result line.
pub(crate) const RESULT_PREFIX: &str = "probe-result: ";

/// What a surviving probe reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ProbeResult {
    /// What happened, in words.
    pub(crate) outcome: String,
    /// Milliseconds from each failure to the next task's result, one per repeat that served
    /// one (empty if none did).
    pub(crate) next_after_ms: Vec<f64>,
    /// Measured numbers, by name (for memory probes: kB).
    pub(crate) values: Vec<(String, f64)>,
}

/// How a probe child ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ProbeEnd {
    /// It ran to the end and reported.
    Survived(ProbeResult),
    /// It died: killed by this signal, or exited with this code, without reporting.
    Died {
        /// The signal that killed it.
        signal: Option<i32>,
        /// Its exit code.
        code: Option<i32>,
    },
    /// It ran past the limit and was killed.
    Hung(Duration),
    /// It could not be started.
    Failed(String),
}

/// A probe: its kind and what it runs, given its arguments.
pub(crate) type Probe = (&'static str, fn(&str) -> ProbeResult);

/// The probes this binary can run, by name.
fn registry() -> Vec<Probe> {
    crate::scenarios::probes()
}

/// If this process was started as a probe, runs it and exits. Otherwise returns.
pub(crate) fn init() {
    let Ok(request) = std::env::var(PROBE_VAR) else { return };
    let (kind, args) = request.split_once(' ').unwrap_or((request.as_str(), ""));
    let Some((_, probe)) = registry().into_iter().find(|(k, _)| *k == kind) else {
        eprintln!("unknown probe {kind}");
        std::process::exit(2);
    };
    let result = probe(args);
    let json = serde_json::to_string(&result).unwrap_or_default();
    println!("{RESULT_PREFIX}{json}");
    std::process::exit(0);
}

/// Runs the probe `kind` with `args` in a child copy of this binary, waiting at most `limit`.
/// `wrapper`, if given, is a command (and its arguments) to run the binary under, such as
/// `prlimit --as=...`.
pub(crate) fn run(kind: &str, args: &str, limit: Duration, wrapper: &[String]) -> ProbeEnd {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return ProbeEnd::Failed(e.to_string()),
    };
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    command
        .env(PROBE_VAR, format!("{kind} {args}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return ProbeEnd::Failed(format!("cannot start the probe: {e}")),
    };
    let started = Instant::now();
    let status: ExitStatus = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() >= limit => {
                let _ = child.kill();
                let _ = child.wait();
                return ProbeEnd::Hung(limit);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return ProbeEnd::Failed(e.to_string()),
        }
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    let reported = out.lines().find_map(|l| l.strip_prefix(RESULT_PREFIX));
    match (status.success(), reported) {
        (true, Some(json)) => match serde_json::from_str(json) {
            Ok(result) => ProbeEnd::Survived(result),
            Err(e) => ProbeEnd::Failed(format!("unreadable probe result: {e}")),
        },
        _ => ProbeEnd::Died { signal: status.signal(), code: status.code() },
    }
}

/// The conventional name of a signal number, for the report.
pub(crate) fn signal_name(signal: i32) -> String {
    taskpool_core::Exit::Signal(signal)
        .signal_name()
        .map_or_else(|| format!("signal {signal}"), str::to_owned)
}
