//! Runs the `cluster_map` example (a local server, two agents, the seeds' `Pool.map`) and
//! checks its output.
//!
//! Cargo builds the examples before it runs the tests; they sit in `examples/` next to this
//! test binary's `deps/` folder. An example that was not built is reported and skipped.

mod common;

use std::path::PathBuf;
use std::process::Command;

#[test]
fn cluster_map_runs_the_seeds_map_on_two_agents() {
    let Some(server) = common::server_or_skip("cluster_map example") else { return };
    let exe = std::env::current_exe().expect("the test binary's path");
    let path: PathBuf = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("examples").join("cluster_map"))
        .expect("the target folder");
    if !path.is_file() {
        eprintln!("skipping cluster_map: {} was not built", path.display());
        return;
    }
    let output = Command::new(&path).env("NATS_SERVER", server).output().expect("it runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cluster_map failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), "[cluster] [1, 4, 9, 16, 25]");
}
