//! The report's measuring child ends soon after the process that supervises it is gone
//! (killed with `SIGKILL`, which it cannot pass on), rather than measure for nobody.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Long enough to call a measuring child that did not end hung.
const HANG: Duration = Duration::from_secs(60);

/// Whether process `pid` has ended (gone, or a zombie not reaped yet).
fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command's closing parenthesis.
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn the_measuring_child_ends_when_its_supervisor_is_killed() {
    let dir = std::env::temp_dir().join(format!("taskpool-bench-orphan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A shell stands in for the supervisor: it starts the measuring child as the report
    // binary does (the variables), says its process id, and waits.
    let script = "TASKPOOL_BENCH_SUPERVISOR=$$ \"$0\" --quick >/dev/null \
                  2>\"$TASKPOOL_BENCH_MEASURE_INTO/stderr\" & echo $!; wait";
    let mut shell = Command::new("sh")
        .args(["-c", script, env!("CARGO_BIN_EXE_taskpool-bench")])
        .env("TASKPOOL_BENCH_MEASURE_INTO", &dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sh starts");
    let mut line = String::new();
    BufReader::new(shell.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let child: u32 = line.trim().parse().expect("the measuring child's process id");
    assert!(!ended(child), "the measuring child ended before its supervisor");

    shell.kill().unwrap();
    shell.wait().unwrap();
    let started = Instant::now();
    while !ended(child) {
        if started.elapsed() > HANG {
            let _ = Command::new("kill").args(["-KILL", &child.to_string()]).status();
            panic!("the measuring child still runs {HANG:?} after its supervisor was killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let said = std::fs::read_to_string(dir.join("stderr")).unwrap_or_default();
    assert!(said.contains("the report's process is gone; stopping"), "it said: {said}");
    let _ = std::fs::remove_dir_all(&dir);
}
