//! `--out` names a folder the report can be written to, or the report refuses it before it
//! measures anything; a run that fails leaves no earlier run's report in it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// A folder that exists and that nobody, not even root, can create a file in.
const UNWRITABLE: &str = "/proc/sys";

#[test]
fn an_unwritable_out_folder_is_refused_before_the_run() {
    let out = Command::new(env!("CARGO_BIN_EXE_taskpool-bench"))
        .args(["--quick", "--out", UNWRITABLE])
        .stdin(Stdio::null())
        .output()
        .expect("the report starts");
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "it said: {said}");
    assert!(said.contains(&format!("cannot write {UNWRITABLE}/run.log")), "it said: {said}");
    // The progress lines ("[1/34] calibrating ...") would show that it measured.
    assert!(!said.contains("[1/"), "it measured before it failed: {said}");
    assert!(out.stdout.is_empty(), "it printed a report: {}", String::from_utf8_lossy(&out.stdout));
}

/// The process ids of `pid`'s children.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn a_run_that_fails_leaves_no_earlier_report_behind() {
    let dir = std::env::temp_dir().join(format!("taskpool-bench-stale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["report.md", "report.json"] {
        std::fs::write(dir.join(file), "an earlier run's report").unwrap();
    }
    let mut report = Command::new(env!("CARGO_BIN_EXE_taskpool-bench"))
        .args(["--quick", "--out"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the report starts");
    // The first progress line: the measuring child runs. It fails once killed.
    let mut said = String::new();
    let mut stderr = BufReader::new(report.stderr.take().unwrap());
    while !said.contains("[1/") {
        assert!(stderr.read_line(&mut said).unwrap() > 0, "it ended before measuring: {said}");
    }
    let measuring = children(report.id());
    assert_eq!(measuring.len(), 1, "{measuring:?}");
    let killed = Command::new("kill").args(["-KILL", &measuring[0].to_string()]).status();
    assert!(killed.unwrap().success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = report.wait().unwrap();
    assert_eq!(status.code(), Some(1), "it said: {said}{rest}");
    assert!(rest.contains("the measuring process failed"), "it said: {rest}");
    for file in ["report.md", "report.json"] {
        assert!(!dir.join(file).exists(), "{file} of the earlier run is still there");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
