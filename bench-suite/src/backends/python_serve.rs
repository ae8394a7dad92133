//! Python's `Pool.map` and `Pool.imap` on request: `python3 peers.py --serve N` keeps one warm
//! `multiprocessing.Pool(N)` and takes one sample per request, so that the report's `map` and
//! `imap` rows sample it in the same rounds as their own columns (drift of a shared machine
//! then hits both alike; the script's own run comes minutes later).
//!
//! The protocol is one JSON object per line each way (the script's docstring, "Serving mode"):
//! the server's first line says it is ready; each [`Request`] gets one answer,
//! `{"items_per_s": X}` or `{"error": "..."}`; the end of its input or a `quit` closes its pool
//! and ends it. Every wait for a line is bounded: a server that stalls, dies or answers
//! nonsense fails the request and is killed with its workers (its process group, whose id is
//! its pid) and reaped, so a failed server never outlives the request that saw it fail.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};
use serde::{Deserialize, Serialize};

use super::python::script_path;

/// A request to the server, one JSON line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    /// One sample of `Pool.map(identity, items)` over this many integers, default chunks.
    MapNoop {
        /// The items mapped.
        items: u64,
    },
    /// One sample of `Pool.imap(identity, items)` over this many integers, its default
    /// `chunksize=1`, each result taken as it comes.
    ImapNoop {
        /// The items mapped.
        items: u64,
    },
    /// Close the pool and exit (no answer).
    Quit,
}

impl Request {
    /// The request as the line the server reads (with its newline).
    pub(crate) fn line(&self) -> String {
        // A tagged enum of integers always serialises.
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }
}

/// What the server says once its pool is warm (it says more, for people: its start method
/// and its interpreter's version).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Ready {
    /// Always `true`.
    ready: bool,
    /// The pool's workers.
    pub(crate) workers: usize,
}

/// Why the server could not give a sample.
#[derive(Debug)]
pub(crate) enum ServeError {
    /// There is no `python3` to run.
    NoPython,
    /// The server could not be started (or the script written out for it).
    Start(String),
    /// No line came from the server within the limit.
    Stalled {
        /// What was awaited, such as "an answer".
        awaited: &'static str,
        /// How long it was awaited.
        after: Duration,
    },
    /// The server closed its output (it exited) before the awaited line.
    Closed {
        /// What was awaited.
        awaited: &'static str,
        /// How it exited, if it was reaped.
        status: Option<ExitStatus>,
    },
    /// The server did not exit within the limit once its input ended (it was killed).
    Lingered(Duration),
    /// The server exited with a failure once its input ended.
    Exited(ExitStatus),
    /// The request could not be written: the server no longer reads.
    Send(String),
    /// A line that is not what the protocol says.
    Unreadable(String),
    /// The server could not do what was asked, in its words.
    Failed(String),
    /// The server was stopped after an earlier failure.
    Stopped,
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::NoPython => f.write_str("python3 not found"),
            ServeError::Start(why) => write!(f, "the Python server did not start: {why}"),
            ServeError::Stalled { awaited, after } => {
                write!(f, "the Python server gave no {awaited} within {:.1} s", after.as_secs_f64())
            }
            ServeError::Closed { awaited, status: Some(status) } => {
                write!(f, "the Python server exited ({status}) before its {awaited}")
            }
            ServeError::Closed { awaited, status: None } => {
                write!(f, "the Python server closed its output before its {awaited}")
            }
            ServeError::Lingered(after) => write!(
                f,
                "the Python server did not exit within {:.1} s of the end of its input",
                after.as_secs_f64()
            ),
            ServeError::Exited(status) => write!(f, "the Python server exited with {status}"),
            ServeError::Send(why) => write!(f, "the Python server took no request: {why}"),
            ServeError::Unreadable(line) => {
                write!(f, "the Python server answered {:?}", shorten(line))
            }
            ServeError::Failed(why) => write!(f, "the Python server failed: {why}"),
            ServeError::Stopped => f.write_str("the Python server was stopped after a failure"),
        }
    }
}

impl std::error::Error for ServeError {}

/// At most 200 characters of `line`, for an error message.
fn shorten(line: &str) -> String {
    match line.char_indices().nth(200) {
        Some((end, _)) => format!("{}…", &line[..end]),
        None => line.to_owned(),
    }
}

/// The server's first line: ready, or why not.
pub(crate) fn parse_ready(line: &str) -> Result<Ready, ServeError> {
    let ready: Ready = parse(line)?;
    if ready.ready { Ok(ready) } else { Err(ServeError::Unreadable(line.to_owned())) }
}

/// An answer to [`Request::MapNoop`] or [`Request::ImapNoop`]: items per second (finite and positive), or why not.
pub(crate) fn parse_rate(line: &str) -> Result<f64, ServeError> {
    #[derive(Deserialize)]
    struct Rate {
        items_per_s: f64,
    }
    let rate: Rate = parse(line)?;
    let valid = rate.items_per_s.is_finite() && rate.items_per_s > 0.0;
    if valid { Ok(rate.items_per_s) } else { Err(ServeError::Unreadable(line.to_owned())) }
}

/// `line`, a JSON object, as a `T`, or the server's `{"error": ...}`, or why it is neither.
fn parse<T: for<'de> Deserialize<'de>>(line: &str) -> Result<T, ServeError> {
    let unreadable = || ServeError::Unreadable(line.to_owned());
    let value: serde_json::Value = serde_json::from_str(line).map_err(|_| unreadable())?;
    if !value.is_object() {
        return Err(unreadable());
    }
    if let Some(error) = value.get("error").and_then(serde_json::Value::as_str) {
        return Err(ServeError::Failed(error.to_owned()));
    }
    T::deserialize(value).map_err(|_| unreadable())
}

/// How long the server may take for each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// From its start to its first line (the interpreter starts, the pool starts and warms).
    pub(crate) ready: Duration,
    /// For any answer, plus [`Limits::per_item`] for each item mapped.
    pub(crate) answer: Duration,
    /// For each item mapped (Python maps no-ops at millions per second: this is a hundred
    /// times slower).
    pub(crate) per_item: Duration,
    /// For each item of an `imap` (Python's `Pool.imap` sends one item per message by default:
    /// tens of thousands a second; this is a hundred times slower).
    pub(crate) per_streamed_item: Duration,
    /// From the end of its input to its exit, its pool closed (the script gives its pool
    /// 10 s to close before it kills it).
    pub(crate) exit: Duration,
}

impl Limits {
    /// The report's limits: generous, but a bound.
    pub(crate) const REPORT: Limits = Limits {
        ready: Duration::from_secs(30),
        answer: Duration::from_secs(10),
        per_item: Duration::from_micros(10),
        per_streamed_item: Duration::from_millis(1),
        exit: Duration::from_secs(15),
    };

    /// How long an answer to `request` may take: [`Limits::answer`], plus the time its items
    /// are allowed.
    fn for_request(&self, request: Request) -> Duration {
        let (per_item, items) = match request {
            Request::MapNoop { items } => (self.per_item, items),
            Request::ImapNoop { items } => (self.per_streamed_item, items),
            Request::Quit => (Duration::ZERO, 0),
        };
        let per_item = per_item.saturating_mul(u32::try_from(items).unwrap_or(u32::MAX));
        self.answer.saturating_add(per_item)
    }
}

/// A running server, ready for requests; stopped on drop.
#[derive(Debug)]
pub(crate) struct Server {
    /// The server, until it is reaped.
    child: Option<Child>,
    /// Its input, until it is closed.
    input: Option<ChildStdin>,
    /// Its output's lines, read on a thread of their own so that every wait is bounded.
    lines: Receiver<String>,
    /// Its time limits.
    limits: Limits,
}

impl Server {
    /// Starts `python3 peers.py --serve workers` and waits for its pool of `workers` to be
    /// warm.
    ///
    /// # Errors
    ///
    /// No `python3`, or the server did not start or get ready in time (it is then killed).
    pub(crate) fn start(workers: usize) -> Result<Server, ServeError> {
        let script = script_path().map_err(ServeError::Start)?;
        let mut command = Command::new("python3");
        command.arg(script).arg("--serve").arg(workers.to_string());
        let (mut server, ready) = Server::spawn(command, Limits::REPORT)?;
        if ready.workers != workers {
            let why = format!("it has {} workers, not {workers}", ready.workers);
            return Err(server.failed(ServeError::Start(why)));
        }
        Ok(server)
    }

    /// Starts `command` as a server with `limits` and waits for its first line, which it
    /// returns. The server runs in a process group of its own, so that a kill reaches its
    /// workers too; its stderr is this program's.
    ///
    /// # Errors
    ///
    /// As [`Server::start`].
    pub(crate) fn spawn(
        mut command: Command,
        limits: Limits,
    ) -> Result<(Server, Ready), ServeError> {
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        command.process_group(0);
        let mut child = command.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ServeError::NoPython,
            _ => ServeError::Start(e.to_string()),
        })?;
        let input = child.stdin.take();
        let (sender, lines) = mpsc::channel();
        let output = child.stdout.take().map(|stdout| {
            std::thread::Builder::new().name("python-serve".into()).spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            })
        });
        let reading = match output {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(ServeError::Start(format!("cannot read its output: {e}"))),
            None => Err(ServeError::Start("no output to read".to_owned())),
        };
        let mut server = Server { child: Some(child), input, lines, limits };
        if let Err(e) = reading {
            return Err(server.failed(e));
        }
        let line = server.next_line("ready line", limits.ready)?;
        match parse_ready(&line) {
            Ok(ready) => Ok((server, ready)),
            Err(e) => Err(server.failed(e)),
        }
    }

    /// The server's process id, while it has not been reaped.
    #[cfg(test)]
    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// One sample of Python's `Pool.map` over `items` no-ops: items per second.
    ///
    /// # Errors
    ///
    /// The server stalled, died or failed the map: it is then killed and reaped, and every
    /// later request fails with [`ServeError::Stopped`].
    pub(crate) fn map_noop(&mut self, items: u64) -> Result<f64, ServeError> {
        self.sample(Request::MapNoop { items })
    }

    /// One sample of Python's `Pool.imap` over `items` no-ops, each result taken as it comes:
    /// items per second.
    ///
    /// # Errors
    ///
    /// As [`Server::map_noop`].
    pub(crate) fn imap_noop(&mut self, items: u64) -> Result<f64, ServeError> {
        self.sample(Request::ImapNoop { items })
    }

    /// Sends `request` and reads its answer, a rate, within its limit.
    fn sample(&mut self, request: Request) -> Result<f64, ServeError> {
        self.send(request)?;
        let line = self.next_line("answer", self.limits.for_request(request))?;
        parse_rate(&line).map_err(|e| self.failed(e))
    }

    /// Ends the server: asks it to quit and closes its input (it closes its pool and exits),
    /// waits for its exit within the limit, and kills it if it is late. Idempotent.
    ///
    /// # Errors
    ///
    /// It was killed, or exited with a failure.
    pub(crate) fn stop(&mut self) -> Result<(), ServeError> {
        if self.child.is_none() {
            return Ok(());
        }
        if let Some(mut input) = self.input.take() {
            // A server that no longer reads ends at the end of its input all the same.
            let _ = input.write_all(Request::Quit.line().as_bytes());
        }
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let deadline = Instant::now() + self.limits.exit;
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(ServeError::Exited(status)),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(None) | Err(_) => break,
            }
        }
        self.child = Some(child);
        self.kill();
        Err(ServeError::Lingered(self.limits.exit))
    }

    /// Writes `request`; if it cannot, the server is killed.
    fn send(&mut self, request: Request) -> Result<(), ServeError> {
        let Some(input) = self.input.as_mut() else { return Err(ServeError::Stopped) };
        let sent = input.write_all(request.line().as_bytes()).and_then(|()| input.flush());
        sent.map_err(|e| self.failed(ServeError::Send(e.to_string())))
    }

    /// The next line of the server's output, awaited as `awaited` for at most `limit`; if
    /// none comes, the server is killed.
    fn next_line(&mut self, awaited: &'static str, limit: Duration) -> Result<String, ServeError> {
        if self.child.is_none() {
            return Err(ServeError::Stopped);
        }
        match self.lines.recv_timeout(limit) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => {
                Err(self.failed(ServeError::Stalled { awaited, after: limit }))
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.kill();
                Err(ServeError::Closed { awaited, status })
            }
        }
    }

    /// Kills the server after `error`, and returns `error`.
    fn failed(&mut self, error: ServeError) -> ServeError {
        self.kill();
        error
    }

    /// Kills the server's process group (it and its workers: not yet reaped, its id is still
    /// the group's) and reaps it; how it exited, if it was running.
    fn kill(&mut self) -> Option<ExitStatus> {
        drop(self.input.take());
        let mut child = self.child.take()?;
        // An error means the group is gone already; the server is reaped below either way.
        let _ = kill_process_group(Pid::from_child(&child), Signal::KILL);
        child.wait().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Dropped without `stop`: the same ending, its outcome unreported.
        let _ = self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake server: a shell script (no Python needed), with short limits.
    fn fake(script: &str, limits: Limits) -> Result<Server, ServeError> {
        let mut command = Command::new("sh");
        command.arg("-c").arg(script);
        Server::spawn(command, limits).map(|(server, _)| server)
    }

    const SHORT: Limits = Limits {
        ready: Duration::from_secs(5),
        answer: Duration::from_millis(300),
        per_item: Duration::ZERO,
        per_streamed_item: Duration::ZERO,
        exit: Duration::from_secs(5),
    };

    const READY: &str = r#"echo '{"ready": true, "workers": 2}'"#;

    /// Whether `pid` names a live process (not one that died and awaits its reaping).
    fn alive(pid: u32) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
        // The state follows the command's closing parenthesis.
        let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
        !matches!(state, None | Some('Z' | 'X'))
    }

    /// Whether `pid` is gone: dead and reaped.
    fn reaped(pid: u32) -> bool {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn requests_are_one_json_line_each() {
        assert_eq!(
            Request::MapNoop { items: 1000 }.line(),
            "{\"op\":\"map_noop\",\"items\":1000}\n"
        );
        assert_eq!(Request::ImapNoop { items: 10 }.line(), "{\"op\":\"imap_noop\",\"items\":10}\n");
        assert_eq!(Request::Quit.line(), "{\"op\":\"quit\"}\n");
    }

    #[test]
    fn answers_are_rates_or_the_servers_errors() {
        assert_eq!(parse_rate(r#"{"items_per_s": 2160260.0}"#).unwrap(), 2_160_260.0);
        assert_eq!(parse_rate(r#"{"items_per_s": 5}"#).unwrap(), 5.0);
        let failed = parse_rate(r#"{"error": "Hung"}"#).unwrap_err();
        assert_eq!(failed.to_string(), "the Python server failed: Hung");
        for bad in ["", "nonsense", "{}", "[1]", r#"{"items_per_s": -1}"#, r#"{"items_per_s": 0}"#]
        {
            let e = parse_rate(bad).unwrap_err();
            assert!(matches!(e, ServeError::Unreadable(_)), "{bad:?}: {e}");
        }
        let long = format!("{{\"x\": \"{}\"}}", "a".repeat(500));
        assert!(parse_rate(&long).unwrap_err().to_string().len() < 300);
    }

    #[test]
    fn the_ready_line_says_how_many_workers() {
        let line =
            r#"{"ready": true, "workers": 2, "mp_start_method": "fork", "python": "3.11.7"}"#;
        assert_eq!(parse_ready(line).unwrap().workers, 2);
        assert!(matches!(
            parse_ready(r#"{"ready": false, "workers": 2}"#),
            Err(ServeError::Unreadable(_))
        ));
        let failed = parse_ready(r#"{"error": "the pool did not start: Hung"}"#).unwrap_err();
        assert_eq!(failed.to_string(), "the Python server failed: the pool did not start: Hung");
    }

    #[test]
    fn a_stalled_server_fails_the_request_and_is_killed_and_reaped() {
        let mut server = fake(&format!("{READY}; exec sleep 60"), SHORT).unwrap();
        let pid = server.pid().unwrap();
        let start = Instant::now();
        let e = server.map_noop(10).unwrap_err();
        assert!(matches!(e, ServeError::Stalled { awaited: "answer", .. }), "{e}");
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(reaped(pid), "the server is still there");
        assert!(matches!(server.map_noop(10), Err(ServeError::Stopped)));
        assert!(server.stop().is_ok());
    }

    #[test]
    fn a_server_that_dies_fails_the_request_with_its_exit() {
        let mut server = fake(&format!("{READY}; read line; exit 3"), SHORT).unwrap();
        let pid = server.pid().unwrap();
        let e = server.map_noop(10).unwrap_err();
        let ServeError::Closed { status: Some(status), .. } = &e else { panic!("{e}") };
        assert_eq!(status.code(), Some(3));
        assert!(reaped(pid));
    }

    #[test]
    fn a_server_that_never_gets_ready_is_killed() {
        let limits = Limits { ready: Duration::from_millis(300), ..SHORT };
        let e = fake("exec sleep 60", limits).unwrap_err();
        assert!(matches!(e, ServeError::Stalled { awaited: "ready line", .. }), "{e}");
        let e = fake("echo oops; exec sleep 60", SHORT).unwrap_err();
        assert_eq!(e.to_string(), "the Python server answered \"oops\"");
    }

    #[test]
    fn a_server_that_will_not_exit_is_killed_with_its_children() {
        let limits = Limits { exit: Duration::from_millis(300), ..SHORT };
        // The shell ignores the end of its input; its child would outlive it alone.
        let mut server = fake(&format!("{READY}; sleep 60 & echo $!; wait"), limits).unwrap();
        let child = server.lines.recv_timeout(Duration::from_secs(5)).unwrap();
        let child: u32 = child.trim().parse().unwrap();
        let pid = server.pid().unwrap();
        assert!(alive(child));
        assert!(matches!(server.stop(), Err(ServeError::Lingered(_))));
        assert!(reaped(pid));
        // The signal may take a moment to land.
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(child) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!alive(child), "the server's child is still alive");
    }

    #[test]
    fn without_python_the_reason_is_the_scripts() {
        let e = Server::spawn(Command::new("taskpool-no-such-program"), SHORT).unwrap_err();
        assert_eq!(e.to_string(), "python3 not found");
    }

    /// Whether `pid` leaves SIGINT to its default action, from the caught and ignored signal
    /// masks in `/proc/PID/status` (SIGINT is bit 1).
    fn sigint_is_default(pid: u32) -> bool {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let mask = |name: &str| {
            let line = status.lines().find_map(|l| l.strip_prefix(name)).unwrap();
            u64::from_str_radix(line.trim(), 16).unwrap()
        };
        (mask("SigCgt:") | mask("SigIgn:")) & (1 << (2 - 1)) == 0
    }

    /// Ctrl-C reaches the script and its pool's workers with the report's processes: they end
    /// at once, as those do, instead of raising KeyboardInterrupt (a pool can then hang in its
    /// shutdown and outlive the report).
    #[test]
    fn the_python_script_and_its_workers_end_at_ctrl_c() {
        let mut server = match Server::start(2) {
            Ok(server) => server,
            Err(ServeError::NoPython) => {
                eprintln!("skipped: python3 not found");
                return;
            }
            Err(e) => panic!("the server did not start: {e}"),
        };
        let pid = server.pid().unwrap();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"));
        let workers: Vec<u32> =
            children.unwrap().split_whitespace().map(|w| w.parse().unwrap()).collect();
        assert_eq!(workers.len(), 2, "{workers:?}");
        for process in std::iter::once(pid).chain(workers) {
            assert!(sigint_is_default(process), "process {process} catches or ignores SIGINT");
        }
        server.stop().unwrap();
    }

    /// The real server, when `python3` is there: a small map and a small imap give positive
    /// rates.
    #[test]
    fn the_python_server_maps_on_request() {
        let mut server = match Server::start(2) {
            Ok(server) => server,
            Err(ServeError::NoPython) => {
                eprintln!("skipped: python3 not found, so the served map cannot run here");
                return;
            }
            Err(e) => panic!("the server did not start: {e}"),
        };
        for _ in 0..2 {
            let rate = server.map_noop(1000).unwrap();
            assert!(rate > 0.0 && rate.is_finite(), "{rate}");
            let rate = server.imap_noop(200).unwrap();
            assert!(rate > 0.0 && rate.is_finite(), "{rate}");
        }
        let pid = server.pid().unwrap();
        server.stop().unwrap();
        assert!(reaped(pid));
    }
}
