//! `--out` names a folder the report can be written to, or the report refuses it before it
//! measures anything.

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
