//! Runs every example of this crate and checks its key output lines, for each backend the
//! examples cover that this build enables (the features are read from the library's table of
//! backends; the examples label their lines with the backend's id, `[processes]` or
//! `[threads]`).
//!
//! Cargo builds the examples before it runs the tests; they sit in `examples/` next to this
//! test binary's `deps/` folder. An example that is missing (a build that skipped examples)
//! is reported and skipped, not failed.

use std::path::PathBuf;
use std::process::Command;

use taskpool_bench::{BACKENDS, Backend};

/// The backends the examples run on (each example has a block per backend).
const COVERED: [&str; 2] = ["processes", "threads"];

/// The backends the examples cover that this build enables.
fn backends() -> impl Iterator<Item = &'static Backend> {
    BACKENDS.iter().filter(|b| b.enabled() && COVERED.contains(&b.id()))
}

/// Whether `backend` runs tasks in other processes.
fn in_processes(backend: &Backend) -> bool {
    backend.column().is_some_and(|c| c.is_processes())
}

/// Runs example `name` and returns its stdout, or `None` if it was not built.
fn run(name: &str) -> Option<String> {
    let exe = std::env::current_exe().expect("the test binary's path");
    let path: PathBuf = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("examples").join(name))
        .expect("the target folder");
    if !path.is_file() {
        eprintln!("skipping example {name}: {} was not built", path.display());
        return None;
    }
    let output = Command::new(&path).output().expect("running the example");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "example {name} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Some(stdout)
}

/// The lines of `out` that start with `[backend]`.
fn lines<'a>(out: &'a str, backend: &str) -> Vec<&'a str> {
    let tag = format!("[{backend}] ");
    out.lines().filter(|l| l.starts_with(&tag)).collect()
}

/// The number that follows `key` in `line` (`"pid 1234, ..."` with key `"pid "`).
fn number_after(line: &str, key: &str) -> u32 {
    let at = line.find(key).unwrap_or_else(|| panic!("no {key:?} in {line:?}")) + key.len();
    let digits: String = line[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| panic!("no number after {key:?} in {line:?}"))
}

/// Checks `process_hello` for one backend: whether the greeting came from another process.
fn check_hello(out: &str, backend: &str, other_process: bool) {
    let lines = lines(out, backend);
    let hello = lines.iter().find(|l| l.contains("hello from pid")).expect("a greeting");
    let (pid, parent) =
        (number_after(hello, "hello from pid "), number_after(hello, "parent pid "));
    assert_eq!(pid != parent, other_process, "{hello}");
    assert!(lines.iter().any(|l| l.contains("joined")), "{out}");
}

#[test]
fn process_hello_greets_from_a_worker() {
    let Some(out) = run("process_hello") else { return };
    for backend in backends() {
        check_hello(&out, backend.id(), in_processes(backend));
    }
}

/// Checks `four_processes` for one backend: four distinct numbers, and four distinct pids
/// other than the parent's (processes) or the parent's pid four times (threads).
fn check_four(out: &str, backend: &str, who: &str, other_processes: bool) {
    let lines = lines(out, backend);
    let mut numbers = Vec::new();
    let mut pids = Vec::new();
    for line in lines.iter().filter(|l| l.contains(&format!("] {who} "))) {
        let n = number_after(line, &format!("{who} "));
        assert!(line.contains(&format!("{who} {n}: {n} (pid ")), "{line}");
        numbers.push(n);
        pids.push(number_after(line, "(pid "));
    }
    numbers.sort_unstable();
    assert_eq!(numbers, [0, 1, 2, 3], "{out}");
    let joined = lines.iter().find(|l| l.contains("joined all 4")).expect("the join line");
    let parent = number_after(joined, "parent pid ");
    pids.sort_unstable();
    pids.dedup();
    if other_processes {
        assert_eq!(pids.len(), 4, "four processes, four pids: {out}");
        assert!(!pids.contains(&parent), "{out}");
    } else {
        assert_eq!(pids, [parent], "threads share the parent's pid: {out}");
    }
}

#[test]
fn four_processes_print_four_numbers() {
    let Some(out) = run("four_processes") else { return };
    for backend in backends() {
        let processes = in_processes(backend);
        check_four(&out, backend.id(), if processes { "Process" } else { "Thread" }, processes);
    }
}

#[test]
fn pool_map_squares_in_order() {
    let Some(out) = run("pool_map") else { return };
    for backend in backends() {
        assert!(out.contains(&format!("[{}] [1, 4, 9, 16, 25]", backend.id())), "{out}");
    }
}

#[test]
fn crash_isolation_by_backend() {
    let Some(out) = run("crash") else { return };
    for backend in backends() {
        let lines = lines(&out, backend.id());
        if in_processes(backend) {
            let failed = lines.iter().find(|l| l.contains("segfaulting task failed")).expect(&out);
            assert!(
                failed.contains("SIGSEGV") && failed.contains("Crashed(Signal(11))"),
                "{failed}"
            );
            assert!(lines.iter().any(|l| l.contains("square(7) = 49")), "{out}");
        } else {
            assert!(lines.iter().any(|l| l.contains("whole program died: SIGSEGV")), "{out}");
            assert!(!lines.iter().any(|l| l.contains("survived")), "{out}");
        }
    }
}

#[test]
fn progress_counts_up_to_every_item() {
    let Some(out) = run("progress") else { return };
    for backend in backends().map(Backend::id) {
        let line = lines(&out, backend)
            .into_iter()
            .find(|l| l.contains("400/400 items"))
            .unwrap_or_else(|| panic!("no final line for {backend}: {out}"));
        // The first report (nothing done yet) and the last (everything done) at least.
        assert!(number_after(line, "primes, ") >= 2, "{line}");
    }
}

/// The numbers in the text that follows `key` in `line`, up to the closing bracket
/// (`"pids: [12, 13]"` with key `"pids: ["`).
fn numbers_after(line: &str, key: &str) -> Vec<u32> {
    let at = line.find(key).unwrap_or_else(|| panic!("no {key:?} in {line:?}")) + key.len();
    let list = &line[at..line[at..].find(']').map_or(line.len(), |end| at + end)];
    list.split(',').filter_map(|n| n.trim().parse().ok()).collect()
}

#[test]
fn io_sleep_runs_on_threads_in_the_caller_and_on_processes_outside_it() {
    let Some(out) = run("io_sleep") else { return };
    for backend in backends() {
        let lines = lines(&out, backend.id());
        let summary =
            lines.iter().find(|l| l.contains("256 tasks that each sleep 10 ms on 64 workers"));
        let summary = summary.unwrap_or_else(|| panic!("no summary for {}: {out}", backend.id()));
        let caller = number_after(summary, "the caller is pid ");
        let pids = lines.iter().find(|l| l.contains("pids: [")).expect("the pids line");
        let pids = numbers_after(pids, "pids: [");
        assert_eq!(pids.len() as u32, number_after(summary, "they ran in "), "{out}");
        if in_processes(backend) {
            assert!(!pids.contains(&caller), "{out}");
        } else {
            assert_eq!(pids, [caller], "{out}");
        }
    }
}

#[test]
fn io_socket_tasks_are_all_answered() {
    let Some(out) = run("io_socket") else { return };
    for backend in backends() {
        let lines = lines(&out, backend.id());
        let summary = lines.iter().find(|l| l.contains("each read an answer sent after 10 ms"));
        let summary = summary.unwrap_or_else(|| panic!("no summary for {}: {out}", backend.id()));
        assert_eq!(number_after(summary, "the service answered "), 256, "{summary}");
    }
}

#[test]
fn pool_of_64_counts_its_worker_processes() {
    let Some(out) = run("pool_of_64") else { return };
    for backend in backends() {
        let lines = lines(&out, backend.id());
        let line = lines.iter().find(|l| l.contains("pool of 64: start-up ")).expect(&out);
        let processes = number_after(line, "per worker; ");
        assert_eq!(processes, if in_processes(backend) { 64 } else { 0 }, "{line}");
        assert!(line.contains(" KiB per worker"), "{line}");
    }
}

#[test]
fn shared_write_is_seen_by_the_caller_only_on_threads() {
    let Some(out) = run("shared_write") else { return };
    for backend in backends() {
        let lines = lines(&out, backend.id());
        let line = lines.iter().find(|l| l.contains("the caller's counter: ")).expect(&out);
        let caller = number_after(line, "the caller's counter: ");
        let seen = numbers_after(line, "counter at [");
        assert_eq!(seen.len(), 4, "{line}");
        if in_processes(backend) {
            assert_eq!(caller, 0, "{line}");
            assert!(line.ends_with("(separate memory)"), "{line}");
        } else {
            assert_eq!(caller, 4, "{line}");
            assert!(line.ends_with("(shared memory)"), "{line}");
        }
    }
}

#[test]
fn cpu_bound_counts_as_the_sequential_run_does() {
    let Some(out) = run("cpu_bound") else { return };
    let sequential = lines(&out, "sequential");
    let count = number_after(sequential.first().expect(&out), "[sequential] ");
    for backend in backends() {
        let lines = lines(&out, backend.id());
        let line = lines.iter().find(|l| l.contains(" primes on ")).expect(&out);
        assert_eq!(number_after(line, &format!("[{}] ", backend.id())), count, "{line}");
        assert!(line.contains("× the sequential speed"), "{line}");
    }
}

#[test]
fn overhead_reports_start_up_and_round_trip() {
    let Some(out) = run("overhead") else { return };
    for backend in backends() {
        let lines = lines(&out, backend.id());
        let line = lines.iter().find(|l| l.contains(": start-up ")).expect(&out);
        assert!(line.contains("; round trip of a no-op: median "), "{line}");
        assert!(line.ends_with(" µs over 1000"), "{line}");
    }
}
