//! The comparison report: what threads and processes cost on this machine.
//!
//! `cargo run --release -p taskpool-bench` measures taskpool's thread, process and cluster
//! pools side by side with rayon, procspawn and Python's pools (when `python3` is installed),
//! prints the "multiprocessing vs multithreading" tables, and writes Markdown, JSON, HTML and
//! SVG charts under `target/taskpool-report/`. Run with `--help` for the options.
//!
//! The measuring runs in a child copy of this program, whose output this one reads: progress
//! events become one progress bar on stderr, and everything else the child, its workers and
//! its probes print (deliberate panics, crashes and out-of-memory messages among them) goes
//! to `run.log` next to the report instead of the terminal.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use taskpool_bench::report::{self, Machine, Report};
use taskpool_bench::{Bar, Event, Mode, Plan, Progress};

const HELP: &str = "\
taskpool-bench: threads or processes, and what each costs, measured on this machine

usage: taskpool-bench [--quick | --full] [--json] [--out DIR]

  (no option)  the default run: about two to three minutes on two cores
  --quick      fewer repeats and smaller batches: about a minute
  --full       more repeats, longer batches and 100 ms tasks: several minutes
  --json       print the report as JSON instead of Markdown
  --out DIR    write the files there instead of target/taskpool-report/ (an earlier
               run's report there is removed as the run starts)
  --help       this text

Columns: taskpool threads, taskpool processes, taskpool cluster (a nats-server and two
agents on this machine), rayon, procspawn, Python threads (ThreadPoolExecutor) and Python
processes (multiprocessing.Pool). The cluster column needs nats-server, the Python columns
python3; without them they say so. A progress bar goes to stderr while the run lasts, the
tables to stdout at the end; what the workers print (deliberate crashes among it) goes to
run.log next to the report.";

/// The environment variable that makes this program the measuring child; its value is the
/// folder to write the report to.
const MEASURE_VAR: &str = "TASKPOOL_BENCH_MEASURE_INTO";

/// Set for the measuring child: the process id of the process that supervises it.
const SUPERVISOR_VAR: &str = "TASKPOOL_BENCH_SUPERVISOR";

/// How often the measuring child looks whether its supervisor is still there.
const SUPERVISOR_CHECK: std::time::Duration = std::time::Duration::from_millis(250);

/// The files of a report, as the measuring child writes them.
const FILES: [&str; 5] = ["report.md", "report.json", "report.html", "scaling.svg", "overhead.svg"];

/// What the captured output is kept in.
const LOG: &str = "run.log";

#[derive(Debug)]
struct Options {
    mode: Mode,
    json: bool,
    out: Option<PathBuf>,
}

fn parse(args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options { mode: Mode::Default, json: false, out: None };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (name, value) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value.to_owned())),
            _ => (arg.as_str(), None),
        };
        if value.is_some() && ["--quick", "--full", "--json", "--help"].contains(&name) {
            return Err(format!("{name} takes no value; see --help"));
        }
        match name {
            "--quick" | "--full" => {
                let chosen = if name == "--quick" { Mode::Quick } else { Mode::Full };
                if options.mode != Mode::Default && options.mode != chosen {
                    return Err("--quick and --full cannot be used together".to_owned());
                }
                options.mode = chosen;
            }
            "--json" => options.json = true,
            "--out" => {
                let dir = match value {
                    Some(dir) => dir,
                    None => {
                        let dir = args.next().ok_or("--out needs a directory")?;
                        // `--out --quick` forgot the directory: the option is not one.
                        if dir.starts_with('-') {
                            return Err(format!(
                                "--out needs a directory, not the option {dir:?} (write \
                                 --out=./{dir} for a directory of that name)"
                            ));
                        }
                        dir
                    }
                };
                if dir.is_empty() {
                    return Err("--out needs a directory, not an empty name".to_owned());
                }
                options.out = Some(dir.into());
            }
            "--help" | "-h" => return Ok(None),
            other => return Err(format!("unknown option {other:?}; see --help")),
        }
    }
    Ok(Some(options))
}

fn main() -> ExitCode {
    taskpool_bench::init();
    let options = match parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            // A reader that stops early (`| head`) is not an error.
            let _ = writeln!(std::io::stdout(), "{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("taskpool-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let done = match std::env::var_os(MEASURE_VAR) {
        Some(dir) => measure(options.mode, Path::new(&dir)),
        None => supervise(&options),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("taskpool-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the measuring child, draws its progress, keeps what else it prints in `run.log`,
/// then prints the report (Markdown, or JSON with `--json`).
fn supervise(options: &Options) -> Result<(), String> {
    let dir = options.out.clone().unwrap_or_else(default_out_dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // A folder this program cannot write to fails now, not after minutes of measuring.
    let log_path = dir.join(LOG);
    std::fs::write(&log_path, "")
        .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
    // An earlier run's report would pass for this run's should this one fail.
    for file in FILES {
        let path = dir.join(file);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("cannot remove the earlier {}: {e}", path.display()));
            }
            _ => {}
        }
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mode = match options.mode {
        Mode::Quick => Some("--quick"),
        Mode::Default => None,
        Mode::Full => Some("--full"),
    };
    let mut child = Command::new(exe)
        .args(mode)
        .env(MEASURE_VAR, &dir)
        .env(SUPERVISOR_VAR, std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the measuring process: {e}"))?;
    let stderr = child.stderr.take();
    let captured_err = std::thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut stderr) = stderr {
            let _ = stderr.read_to_end(&mut text);
        }
        text
    });
    let mut bar = Bar::new(std::io::stderr(), std::io::stderr().is_terminal());
    let mut captured = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            match Event::parse(&line) {
                Some(event) => bar.show(&event),
                None => captured.push(line),
            }
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    bar.finish();
    let mut log = captured.join("\n");
    log.push_str(&String::from_utf8_lossy(&captured_err.join().unwrap_or_default()));
    std::fs::write(&log_path, &log)
        .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
    if !status.success() {
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "the measuring process failed ({status}); the end of {}:\n{}",
            log_path.display(),
            tail.join("\n")
        ));
    }
    let shown = if options.json { "report.json" } else { "report.md" };
    let text = std::fs::read_to_string(dir.join(shown))
        .map_err(|e| format!("cannot read {}: {e}", dir.join(shown).display()))?;
    let _ = writeln!(std::io::stdout(), "{}", text.trim_end());
    let kept = match summarise(&log) {
        Some(summary) => format!("; {LOG} keeps what the workers and probes printed: {summary}"),
        None => String::new(),
    };
    eprintln!("wrote {} in {}{kept}", FILES.join(", "), dir.display());
    Ok(())
}

/// What the captured output holds, in a few words: how many lines, and the panics, crashes
/// and tracebacks among them (the deliberate faults print them); `None` if it is empty.
fn summarise(log: &str) -> Option<String> {
    let lines = log.lines().filter(|l| !l.trim().is_empty()).count();
    if lines == 0 {
        return None;
    }
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    let kinds = [
        (count("panicked at"), "panic message"),
        (count("memory allocation of"), "out-of-memory report"),
        (count("stack backtrace:"), "backtrace"),
        (count("Traceback (most recent call last)"), "Python traceback"),
    ];
    let found: Vec<String> = kinds
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}{}", if *n == 1 { "" } else { "s" }))
        .collect();
    let plural = if lines == 1 { "" } else { "s" };
    Some(if found.is_empty() {
        format!("{lines} line{plural}")
    } else {
        format!("{lines} line{plural}, with {}", found.join(", "))
    })
}

/// Ends the measuring child soon after its supervisor is gone (killed, say, with `SIGKILL`,
/// which it cannot pass on): nobody would read what it measures. The process exits from a
/// thread of its own; what it started goes with it (pools' workers and the cluster's server
/// and agents die with their parent, the Python peers at their next write).
fn end_without_supervisor() {
    let Some(supervisor) = std::env::var(SUPERVISOR_VAR).ok().and_then(|v| v.parse::<u32>().ok())
    else {
        return;
    };
    let watch = move || {
        while std::os::unix::process::parent_id() == supervisor {
            std::thread::sleep(SUPERVISOR_CHECK);
        }
        let _ =
            writeln!(std::io::stderr(), "taskpool-bench: the report's process is gone; stopping");
        std::process::exit(1);
    };
    // Without the thread the run goes on as before.
    let _ = std::thread::Builder::new().name("supervisor-watch".into()).spawn(watch);
}

/// The measuring child: runs the plan of `mode`, reporting progress as events on stdout, and
/// writes the report's files into `dir`.
fn measure(mode: Mode, dir: &Path) -> Result<(), String> {
    end_without_supervisor();
    let progress = Progress::events();
    let plan = Plan::new(mode);
    let date = utc_now();
    let busy_before = busy_cpus(BUSY_WINDOW);
    let load_before = load_average();
    let measured = taskpool_bench::run(&plan, &progress);
    let report = Report {
        machine: Machine {
            cpus: plan.workers,
            machine_cpus: cpu_times().map(|t| t.cpus).filter(|&all| all > plan.workers),
            cpu_model: cpu_model(),
            kernel: kernel_release(),
            load_before,
            load_after: load_average(),
            busy_before,
            date,
            python: measured.python,
        },
        mode: plan.mode.name().to_owned(),
        elapsed_s: progress.elapsed(),
        homework: measured.homework,
        sections: measured.sections,
        scaling: measured.scaling,
        methods: measured.methods,
        notes: measured.notes,
    };
    write_files(&report, dir)
}

/// Writes the Markdown, JSON, HTML and SVG files.
fn write_files(report: &Report, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    let files = [
        ("report.md", report::markdown(report)),
        ("report.json", json),
        ("report.html", report::html(report)),
        ("scaling.svg", report::scaling_chart(report)),
        ("overhead.svg", report::overhead_chart(report)),
    ];
    debug_assert!(files.iter().map(|f| f.0).eq(FILES));
    for (name, content) in files {
        let path = dir.join(name);
        std::fs::write(&path, content)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// `target/taskpool-report`, next to the binary's profile directory.
fn default_out_dir() -> PathBuf {
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("taskpool-report")
}

/// How long [`busy_cpus`] watches the machine before the run.
const BUSY_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

/// How many CPUs' worth of work the whole machine did over the next `window`, from the CPU
/// times in `/proc/stat` (this process sleeps meanwhile); `None` where they are unreadable.
fn busy_cpus(window: std::time::Duration) -> Option<f64> {
    let before = cpu_times()?;
    std::thread::sleep(window);
    let after = cpu_times()?;
    let busy = after.busy.checked_sub(before.busy)?;
    let total = after.total.checked_sub(before.total)?;
    (total > 0).then(|| busy as f64 / total as f64 * after.cpus as f64)
}

/// The machine's CPU time so far, in clock ticks: busy (user, nice, system, interrupts and
/// time stolen by a hypervisor) and in all; and how many CPUs it counts.
struct CpuTimes {
    busy: u64,
    total: u64,
    cpus: usize,
}

fn cpu_times() -> Option<CpuTimes> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let mut lines = stat.lines();
    let all = lines.next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = all.split_whitespace().map_while(|t| t.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is counted in user).
    let [user, nice, system, idle, iowait, irq, softirq, steal] = *ticks.get(..8)? else {
        return None;
    };
    let busy = user + nice + system + irq + softirq + steal;
    let cpus = lines.filter(|l| l.starts_with("cpu")).count();
    Some(CpuTimes { busy, total: busy + idle + iowait, cpus })
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))?
                .split_once(':')
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_default()
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This thread's CPU time so far, in nanoseconds, from `/proc/thread-self/schedstat`.
    fn thread_cpu_ns() -> u64 {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
        stat.split_whitespace().next().unwrap().parse().unwrap()
    }

    #[test]
    fn the_machine_s_busy_time_counts_this_thread_s_work() {
        let before = cpu_times().expect("/proc/stat");
        let start = thread_cpu_ns();
        let mut x = 0u64;
        while thread_cpu_ns() - start < 200_000_000 {
            for i in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
        let after = cpu_times().unwrap();
        assert!(after.cpus >= 1);
        // 200 ms of this thread's CPU time is 20 ticks of 10 ms, give or take the sampling.
        let busy = after.busy - before.busy;
        assert!(busy >= 10, "{busy} ticks");
        assert!(after.total - before.total >= busy);
        let cpus = busy_cpus(std::time::Duration::from_millis(100)).unwrap();
        assert!((0.0..=after.cpus as f64 + 0.01).contains(&cpus), "{cpus}");
    }

    #[test]
    fn captured_output_is_summarised_by_kind() {
        assert_eq!(summarise(""), None);
        assert_eq!(summarise("\n  \n"), None);
        let log = "thread 'main' panicked at src/tasks.rs:49:5:\nthis task panics on purpose\n\
                   memory allocation of 67108864 bytes failed\nstack backtrace:\n   0: x\n";
        assert_eq!(
            summarise(log).unwrap(),
            "5 lines, with 1 panic message, 1 out-of-memory report, 1 backtrace"
        );
        assert_eq!(summarise("hello\n").unwrap(), "1 line");
    }

    #[test]
    fn options_are_parsed_and_bad_ones_refused() {
        let args = |a: &[&str]| parse(a.iter().map(|s| s.to_string()));
        let options = args(&["--quick", "--json", "--out", "x"]).unwrap().unwrap();
        assert_eq!((options.mode, options.json), (Mode::Quick, true));
        assert_eq!(options.out, Some(PathBuf::from("x")));
        assert!(args(&["--help"]).unwrap().is_none());
        assert!(args(&["--out"]).is_err());
        assert!(args(&["--fast"]).unwrap_err().contains("--fast"));
    }

    #[test]
    fn out_takes_its_directory_after_an_equals_sign_and_never_an_empty_one() {
        let args = |a: &[&str]| parse(a.iter().map(|s| s.to_string()));
        let options = args(&["--out=some/dir"]).unwrap().unwrap();
        assert_eq!(options.out, Some(PathBuf::from("some/dir")));
        assert!(args(&["--out", ""]).unwrap_err().contains("empty"));
        assert!(args(&["--out="]).unwrap_err().contains("empty"));
        assert!(args(&["--quick=yes"]).unwrap_err().contains("--quick takes no value"));
        assert!(args(&["--fast=yes"]).unwrap_err().contains("unknown option \"--fast\""));
    }

    #[test]
    fn out_followed_by_an_option_is_refused_rather_than_taken_for_a_directory() {
        let args = |a: &[&str]| parse(a.iter().map(|s| s.to_string()));
        let e = args(&["--out", "--quick"]).unwrap_err();
        assert!(e.contains("--out needs a directory") && e.contains("--quick"), "{e}");
        assert!(args(&["--out", "-h"]).is_err());
        let options = args(&["--out=--quick"]).unwrap().unwrap();
        assert_eq!((options.out, options.mode), (Some(PathBuf::from("--quick")), Mode::Default));
    }

    #[test]
    fn quick_and_full_together_are_refused() {
        let args = |a: &[&str]| parse(a.iter().map(|s| s.to_string()));
        let e = args(&["--quick", "--full"]).unwrap_err();
        assert!(e.contains("--quick") && e.contains("--full"), "{e}");
        assert!(args(&["--full", "--quick"]).is_err());
        assert_eq!(args(&["--quick", "--quick"]).unwrap().unwrap().mode, Mode::Quick);
    }
}
