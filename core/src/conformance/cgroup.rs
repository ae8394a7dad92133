//! Control groups of a test's own, for the tests of what a backend does when the kernel
//! refuses it something: no thread or process can start (a `pids` limit), or memory runs
//! out (a `memory` limit). A test makes a group under its process's own, runs a copy of its
//! binary inside it (one ignored test, named on the copy's command line), and the group is
//! removed once the copy has ended.
//!
//! Making a group takes root (or a delegated cgroup); where that cannot be done,
//! [`Cgroup::new`] says why, and the test prints that it is skipped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a [`Cgroup`]'s drop waits for the processes in it to end.
const EMPTY_WAIT: Duration = Duration::from_secs(60);

/// The directory of this process's cgroup of `controller` under cgroup v1 (such as
/// `/sys/fs/cgroup/pids/...`), or of its cgroup v2 group where `controller` is not mounted
/// apart; `None` where `/proc/self/cgroup` cannot be read.
///
/// # Examples
///
/// ```
/// if let Some(dir) = taskpool_core::conformance::cgroup::own_cgroup("pids") {
///     println!("this process's pids cgroup: {}", dir.display());
/// }
/// ```
pub fn own_cgroup(controller: &str) -> Option<PathBuf> {
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

/// A cgroup made under this process's own, removed when dropped (once the processes in it
/// have ended, waiting a minute at most).
#[derive(Debug)]
pub struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    /// Makes a group of `controller` named after `name` (and this process's id) under this
    /// process's own.
    ///
    /// # Errors
    ///
    /// Why it cannot: no cgroup found, or the directory cannot be made (not root).
    pub fn new(controller: &str, name: &str) -> Result<Cgroup, String> {
        let base = own_cgroup(controller).ok_or("no cgroup found")?;
        let dir = base.join(format!("taskpool-test-{name}-{}", std::process::id()));
        fs::create_dir(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        Ok(Cgroup { dir })
    }

    /// [`Cgroup::new`], with `value` written to its control file `file` (which also tells
    /// that the controller is there).
    ///
    /// # Errors
    ///
    /// As [`Cgroup::new`] and [`Cgroup::set`].
    pub fn with(controller: &str, name: &str, file: &str, value: &str) -> Result<Cgroup, String> {
        let cgroup = Cgroup::new(controller, name)?;
        cgroup.set(file, value)?;
        Ok(cgroup)
    }

    /// The group's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the group has the control file `file` (such as `memory.limit_in_bytes`, of
    /// cgroup v1).
    pub fn has(&self, file: &str) -> bool {
        self.dir.join(file).exists()
    }

    /// Writes `value` to the group's control file `file`.
    ///
    /// # Errors
    ///
    /// The write failed (no such controller there, or a value the kernel refuses).
    pub fn set(&self, file: &str, value: &str) -> Result<(), String> {
        fs::write(self.dir.join(file), value).map_err(|e| format!("cannot set {file}: {e}"))
    }

    /// A command that runs `program` inside this group (through `sh`, which joins it and
    /// then becomes `program`).
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("sh");
        let procs = self.dir.join("cgroup.procs");
        command.args(["-c", "echo $$ > \"$0\" && exec \"$@\""]).arg(procs).arg(program);
        command
    }

    /// Runs the test `name` of this test binary (an ignored one, made to run in the group)
    /// in a copy of the binary inside this group.
    ///
    /// # Panics
    ///
    /// Unless the copy ran that one test and it passed (the panic fails the calling test,
    /// with the copy's output).
    pub fn run_test(&self, name: &str) {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut command = self.command(&exe);
        command.args([name, "--exact", "--ignored", "--test-threads=1", "--nocapture"]);
        let out = command.output().expect("a copy of the test binary runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name} failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "{name} did not run:\n{stdout}");
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Empty once what ran in it has ended.
        let procs = self.dir.join("cgroup.procs");
        let deadline = Instant::now() + EMPTY_WAIT;
        while fs::read_to_string(&procs).is_ok_and(|p| !p.trim().is_empty())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = fs::remove_dir(&self.dir);
    }
}
