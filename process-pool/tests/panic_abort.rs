//! A program built with `panic = "abort"` (as many release profiles are): a task's panic
//! cannot be caught, yet a process pool's caller still gets `Panicked` with the message and
//! location, and the pool goes on; a panic inside the program itself is printed before it
//! aborts, not lost. Tests are always built to unwind, so this builds the `panic_abort`
//! example with `panic = "abort"` and runs it.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Output};

/// Builds the `panic_abort` example with `panic = "abort"`, in a target directory of its own
/// (the tests' build keeps unwinding); returns its path.
fn build_aborting_example() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("panic-abort");
    let built = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", &target)
        .args(["build", "--offline", "-q", "-p", "taskpool-process", "--example", "panic_abort"])
        .args(["--config", "profile.dev.panic=\"abort\""])
        .output()
        .expect("cargo runs");
    assert!(built.status.success(), "building the example failed: {}", text(&built.stderr));
    target.join("debug").join("examples").join("panic_abort")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(example: &PathBuf, args: &[&str]) -> Output {
    Command::new(example)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the example runs")
}

#[test]
fn under_panic_abort_a_task_panic_reaches_the_caller_and_a_panic_here_is_printed() {
    let example = build_aborting_example();

    let pooled = run(&example, &[]);
    let out = text(&pooled.stdout);
    assert!(pooled.status.success(), "{:?}: {out}{}", pooled.status, text(&pooled.stderr));
    let panicked = "panicked: item 1 panics (at process-pool/examples/panic_abort.rs:";
    let expected = [
        "map item 0: 0".to_owned(),
        format!("map item 1: {panicked}"),
        "map item 2: 20".to_owned(),
        "map item 3: 30".to_owned(),
        format!("apply: {panicked}"),
        format!("spawn: {panicked}"),
        "the pool goes on: [20, 30]".to_owned(),
    ];
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{out}");
    for (line, want) in lines.iter().zip(&expected) {
        assert!(line.starts_with(want.as_str()), "{line:?} should start with {want:?}\n{out}");
    }

    // In this process, as in a thread pool's task: the program dies of SIGABRT, and says why.
    let here = run(&example, &["here"]);
    assert_eq!(here.status.signal(), Some(libc::SIGABRT), "{:?}", here.status);
    let said = text(&here.stderr);
    assert!(said.contains("panicked at process-pool/examples/panic_abort.rs:"), "{said}");
    assert!(said.contains("item 1 panics"), "{said}");
    assert!(text(&here.stdout).is_empty(), "nothing caught it");
}

#[test]
fn under_panic_abort_a_hook_the_initializer_installs_does_not_lose_the_panic() {
    let example = build_aborting_example();
    let logged = run(&example, &["logger"]);
    let out = text(&logged.stdout);
    assert!(logged.status.success(), "{:?}: {out}{}", logged.status, text(&logged.stderr));
    let panicked = "apply: panicked: item 1 panics (at process-pool/examples/panic_abort.rs:";
    assert!(out.starts_with(panicked), "{out}");
}

#[test]
fn under_panic_abort_an_initializer_panic_is_the_reason_workers_cannot_start() {
    let example = build_aborting_example();
    let failed = run(&example, &["initializer"]);
    let out = text(&failed.stdout);
    assert!(failed.status.success(), "{:?}: {out}{}", failed.status, text(&failed.stderr));
    let reason = "initializer: failed: worker failed to start: the initializer panicked at \
                  process-pool/examples/panic_abort.rs:";
    assert!(out.starts_with(reason), "{out}");
    assert!(out.contains("no configuration"), "{out}");
}
