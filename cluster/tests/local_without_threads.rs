//! A local server started when no thread or process can be started (a container's pids
//! limit reached): `Server::start` fails with the operating system's error instead of
//! panicking in the library.
//!
//! The test makes a pids cgroup of its own under this process's, which takes root; where
//! that cannot be done, or without a `nats-server` binary, it says why and passes.

mod common;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use taskpool_cluster::local::Server;

/// How long the test waits for an event before it calls it a hang.
const HANG: Duration = Duration::from_secs(60);

/// The directory of this process's cgroup of `controller` (v1), or of its v2 cgroup.
fn own_cgroup(controller: &str) -> Option<PathBuf> {
    let cgroups = fs::read_to_string("/proc/self/cgroup").ok()?;
    let find = |wanted: &dyn Fn(&str) -> bool| {
        cgroups.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            wanted(controllers).then(|| path.to_string())
        })
    };
    match find(&|c| c.split(',').any(|c| c == controller)) {
        Some(path) => Some(PathBuf::from(format!("/sys/fs/cgroup/{controller}{path}"))),
        None => find(&|c| c.is_empty()).map(|path| PathBuf::from(format!("/sys/fs/cgroup{path}"))),
    }
}

/// Run by the test below, inside a pids cgroup of its own.
#[test]
#[ignore = "run in a copy of this binary, in a pids cgroup, by the test after it"]
fn start_a_server_when_no_thread_can_start() {
    let cgroup = own_cgroup("pids").unwrap();
    let current = fs::read_to_string(cgroup.join("pids.current")).unwrap();
    // No thread or process more from here on.
    fs::write(cgroup.join("pids.max"), current.trim()).unwrap();
    // Before, the library panicked, as the thread that starts local processes could not start.
    let started = std::panic::catch_unwind(Server::start);
    fs::write(cgroup.join("pids.max"), "max").unwrap();
    match started {
        Ok(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock, "{e}"),
        Ok(Ok(server)) => panic!("a server started without a process: {server:?}"),
        Err(_) => panic!("starting a server panicked"),
    }
    // Threads and processes can start again: so can a server.
    let server = Server::start().expect("a server starts once processes can");
    assert!(server.pid().is_some());
}

/// A pids cgroup made under this process's, removed when dropped.
struct Cgroup(PathBuf);

impl Cgroup {
    /// Makes one named after `test`, which runs in it.
    fn new(test: &str) -> Result<Cgroup, String> {
        let base = own_cgroup("pids").ok_or("no cgroup found")?;
        let dir = base.join(format!("taskpool-test-{test}-{}", std::process::id()));
        fs::create_dir(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        let cgroup = Cgroup(dir);
        fs::write(cgroup.0.join("pids.max"), "max")
            .map_err(|e| format!("no pids controller there: {e}"))?;
        Ok(cgroup)
    }

    /// A command that runs `program` inside this cgroup.
    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("sh");
        let procs = self.0.join("cgroup.procs");
        command.args(["-c", "echo $$ > \"$0\" && exec \"$@\""]).arg(procs).arg(program);
        command
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Empty once the copy has ended.
        let procs = self.0.join("cgroup.procs");
        let deadline = Instant::now() + HANG;
        while fs::read_to_string(&procs).is_ok_and(|p| !p.trim().is_empty())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = fs::remove_dir(&self.0);
    }
}

#[test]
fn a_local_server_that_cannot_start_a_thread_says_so() {
    let name = "start_a_server_when_no_thread_can_start";
    if common::server_or_skip(name).is_none() {
        return;
    }
    let cgroup = match Cgroup::new(name) {
        Ok(cgroup) => cgroup,
        Err(why) => {
            println!("skipped: no pids cgroup of this test's own: {why}");
            return;
        }
    };
    let mut command = cgroup.command(&std::env::current_exe().unwrap());
    command.args([name, "--exact", "--ignored", "--test-threads=1", "--nocapture"]);
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{name} did not run:\n{stdout}");
}
