//! How a cluster pool and an agent find the server, and what they ask of it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::ServerAddr;
use taskpool_core::{Config, TaskError};
use taskpool_process::ProcessConfig;

/// The longest stream name: JetStream takes names of at most 255 bytes, and the results
/// stream's adds `_RESULTS`.
const MAX_STREAM_NAME: usize = 255 - "_RESULTS".len();

/// How to reach the NATS server, shared by callers and agents.
#[derive(Clone)]
pub(crate) struct Server {
    /// One or more server URLs, comma-separated (`nats://host:4222,nats://other:4222`).
    pub(crate) url: String,
    /// Names the streams (`{NAME}_TASKS`, `{NAME}_RESULTS`) and, lowercased, the subjects.
    pub(crate) name: String,
    /// Replicas of each stream: at least this many, made or raised by this side.
    pub(crate) replicas: usize,
    pub(crate) credentials: Option<PathBuf>,
    pub(crate) root_certificates: Option<PathBuf>,
    pub(crate) client_certificate: Option<(PathBuf, PathBuf)>,
    pub(crate) require_tls: bool,
}

impl std::fmt::Debug for Server {
    /// As derived, with the url as it may be shown ([`Server::shown_url`]): a user's
    /// `{config:?}` in a log must not print the server's password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("url", &self.shown_url())
            .field("name", &self.name)
            .field("replicas", &self.replicas)
            .field("credentials", &self.credentials)
            .field("root_certificates", &self.root_certificates)
            .field("client_certificate", &self.client_certificate)
            .field("require_tls", &self.require_tls)
            .finish()
    }
}

impl Server {
    fn new(url: String) -> Self {
        Server {
            url,
            name: "TASKPOOL".into(),
            replicas: 1,
            credentials: None,
            root_certificates: None,
            client_certificate: None,
            require_tls: false,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), TaskError> {
        let bad = |reason: String| Err(TaskError::InvalidConfig { reason });
        if self.url.trim().is_empty() {
            return bad("the server url is empty".into());
        }
        let name_ok = !self.name.is_empty()
            && self.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            return bad(format!(
                "the stream name {:?} must be letters, digits, '_' or '-'",
                self.name
            ));
        }
        if self.name.len() > MAX_STREAM_NAME {
            return bad(format!(
                "the stream name is {} bytes: JetStream takes stream names of at most 255, so at \
                 most {MAX_STREAM_NAME} before `_RESULTS`",
                self.name.len()
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return bad(format!("{} stream replicas: JetStream allows 1 to 5", self.replicas));
        }
        self.addresses().map(drop)
    }

    /// [`Server::url`] as it may be shown (in messages and errors): any user, password or
    /// token in it replaced by `***`.
    pub(crate) fn shown_url(&self) -> String {
        shown(&self.url)
    }

    /// The server addresses in [`Server::url`]; [`TaskError::InvalidConfig`] for one that is
    /// not a NATS url (a scheme other than `nats`, `tls`, `ws`, `wss`, or no url at all),
    /// which no connection attempt could make work.
    pub(crate) fn addresses(&self) -> Result<Vec<ServerAddr>, TaskError> {
        self.url
            .split(',')
            .map(str::trim)
            .map(|url| {
                url.parse::<ServerAddr>().map_err(|e| TaskError::InvalidConfig {
                    reason: format!("the server url {:?}: {e}", shown(url)),
                })
            })
            .collect()
    }
}

/// `url` (one or more, comma-separated) with the user, password or token of each replaced by
/// `***`: what a url may carry that messages and errors must not.
fn shown(url: &str) -> String {
    let one = |part: &str| {
        let (scheme, rest) = part.split_at(part.find("://").map_or(0, |at| at + 3));
        let authority = rest.find('/').map_or(rest, |end| &rest[..end]);
        match authority.rfind('@') {
            Some(at) => format!("{scheme}***{}", &rest[at..]),
            None => part.to_string(),
        }
    };
    url.split(',').map(one).collect::<Vec<_>>().join(",")
}

macro_rules! server_settings {
    ($ty:ident) => {
        impl $ty {
            /// Names the streams `{NAME}_TASKS` and `{NAME}_RESULTS` (default `TASKPOOL`), so
            /// that separate deployments can share one server. Callers and agents must agree.
            /// Letters, digits, `_` and `-`, at most 247 bytes. The subjects take the name
            /// lowercased, so two names that differ only in case cannot share a server.
            #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
            pub fn stream_name(mut self, name: impl Into<String>) -> Self {
                self.server.name = name.into();
                self
            }

            /// Replicas of each stream (default 1; 3 on a three-node cluster keeps every task
            /// through the loss of a server): this side makes the streams with this many, or
            /// raises the replicas of streams made with fewer (by a side that asked for
            /// fewer), and never lowers them. More than one on a server outside a cluster is
            /// [`TaskError::InvalidConfig`]; more than a cluster has servers with JetStream up
            /// fails once the cluster has refused them for about 20 s (it may still be
            /// forming), with [`TaskError::Unreachable`] and the server's reason (no suitable
            /// peers for placement).
            #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
            pub fn replicas(mut self, n: usize) -> Self {
                self.server.replicas = n;
                self
            }

            /// Authenticates with a NATS credentials file (a user JWT and its nkey seed).
            #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
            pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
                self.server.credentials = Some(path.into());
                self
            }

            /// Trusts the certificate authorities in this PEM file for the server's TLS
            /// certificate, and requires TLS.
            #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
            pub fn root_certificates(mut self, path: impl Into<PathBuf>) -> Self {
                self.server.root_certificates = Some(path.into());
                self.server.require_tls = true;
                self
            }

            /// Presents this client certificate and key (PEM files) to the server, and
            /// requires TLS.
            #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
            pub fn client_certificate(
                mut self,
                cert: impl Into<PathBuf>,
                key: impl Into<PathBuf>,
            ) -> Self {
                self.server.client_certificate = Some((cert.into(), key.into()));
                self.server.require_tls = true;
                self
            }

            /// Refuses to talk to the server without TLS (implied by a `tls://` url).
            #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
            pub fn require_tls(mut self, on: bool) -> Self {
                self.server.require_tls = on;
                self
            }

            /// The server url(s).
            pub fn get_server(&self) -> &str {
                &self.server.url
            }

            /// The streams' name.
            pub fn get_stream_name(&self) -> &str {
                &self.server.name
            }

            /// The replicas of each stream.
            pub fn get_replicas(&self) -> usize {
                self.server.replicas
            }

            /// The NATS credentials file, if one was set.
            pub fn get_credentials_file(&self) -> Option<&Path> {
                self.server.credentials.as_deref()
            }

            /// The PEM file of trusted certificate authorities, if one was set.
            pub fn get_root_certificates(&self) -> Option<&Path> {
                self.server.root_certificates.as_deref()
            }

            /// The client certificate and key (PEM files), if they were set.
            pub fn get_client_certificate(&self) -> Option<(&Path, &Path)> {
                let (cert, key) = self.server.client_certificate.as_ref()?;
                Some((cert, key))
            }

            /// Whether TLS is required: set with [`Self::require_tls`], or by a certificate
            /// setting (a `tls://` url requires it too, whatever this says).
            pub fn get_require_tls(&self) -> bool {
                self.server.require_tls
            }
        }
    };
}

/// The settings of a [`crate::ClusterPool`]: the shared [`Config`] plus where the server is
/// and how long a task may wait for the cluster.
///
/// Of the shared settings, a cluster pool uses `workers` (how many tasks it plans to keep
/// busy, [`taskpool_core::Pool::workers`]: `map` and `imap` split their items into chunks
/// for it and keep about four chunks per worker in flight, or per agent worker alive if
/// those are more; [`taskpool_core::Pool::imap_window`] is 16,384 items whatever it is, and
/// an `imap` keeps fewer ahead once the results it received show that 64 MiB of them are
/// fewer), `timeout` (each task's limit, enforced on the agent, which kills the worker as on
/// one machine), `chunk_size`, `shutdown_grace` and `initializer`: it travels with the tasks,
/// and runs once in every worker of an agent that runs them, before the first (the agent
/// keeps a pool of workers for each initializer its callers bring). The other settings of
/// worker processes (memory limits, start attempts, ...) are the agents' ([`AgentConfig`]).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use taskpool_cluster::{ClusterConfig, Config};
///
/// let config = ClusterConfig::new("nats://127.0.0.1:4222")
///     .config(Config::new().workers(8).timeout(Duration::from_secs(60)))
///     .agent_wait(Duration::from_secs(10))
///     .abandon_after(Duration::from_secs(60))
///     .delivery_limit(3);
/// assert_eq!(config.get_delivery_limit(), 3);
/// ```
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub(crate) config: Config,
    pub(crate) server: Server,
    pub(crate) agent_wait: Duration,
    pub(crate) delivery_limit: u32,
    pub(crate) abandon_after: Duration,
}

/// The shortest [`ClusterConfig::abandon_after`]: three of the pool's heartbeats, one a
/// second, so that one late beat does not make a live pool look gone.
pub(crate) const MIN_ABANDON_AFTER: Duration = Duration::from_secs(3);

/// The most tasks (or chunks) an agent may hold at once, [`AgentConfig::capacity`]: far more
/// than any agent's workers can use (four per worker is the default, and a pool has at most
/// 65,536), and few enough to count in a pull request's batch and the agent's slots.
const MAX_CAPACITY: usize = 1 << 20;

impl ClusterConfig {
    /// Settings for the server at `url` (for example `nats://127.0.0.1:4222`; several urls of
    /// one cluster, comma-separated; `nats://user:password@host:4222` or
    /// `nats://token@host:4222` to authenticate, with `@`, `:`, `/` and `%` in them
    /// percent-encoded, `p%40ss` for `p@ss`), with the defaults: the default [`Config`], a
    /// 30 s wait for an agent, a delivery limit of 5, tasks abandoned after 30 s of the
    /// pool's silence, streams named `TASKPOOL` with one replica.
    pub fn new(url: impl Into<String>) -> Self {
        ClusterConfig {
            config: Config::new(),
            server: Server::new(url.into()),
            agent_wait: Duration::from_secs(30),
            delivery_limit: 5,
            abandon_after: Duration::from_secs(30),
        }
    }

    /// The shared settings.
    #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// How long a task waits while no agent of this executable image is alive, before it
    /// fails with [`TaskError::NoWorker`] (default 30 s), or with [`TaskError::Unreachable`]
    /// if the server does not answer then. For `NoWorker`, the pool listens a heartbeat
    /// (about 1.25 s) for agents of other builds or stream names, which the error counts,
    /// from that long before the wait ends; through a wait shorter than that, which then
    /// hears only the agents that beat within it (once a second each). The same wait bounds
    /// how long the pool retries storing a task while the server is unreachable
    /// ([`TaskError::Unreachable`]), counted for the pool: once the server has taken none of
    /// its tasks for this long, a task sent before it is back fails without a wait of its
    /// own.
    #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
    pub fn agent_wait(mut self, wait: Duration) -> Self {
        self.agent_wait = wait;
        self
    }

    /// How many times a task may be delivered to an agent before it fails with
    /// [`TaskError::DeliveryLimit`] (default 5). A delivery ends without a result
    /// only when the agent dies, is cut off, or loses the server while running the task.
    #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
    pub fn delivery_limit(mut self, n: u32) -> Self {
        self.delivery_limit = n;
        self
    }

    /// How long the agents wait for word from the pool before they take it for gone
    /// (default 30 s, at least 3 s).
    ///
    /// The pool says once a second that it is alive. An agent that has not heard it for this
    /// long, by the agent's own clock, takes the pool's program for dead (killed, or ended
    /// without dropping the pool): it drops the pool's queued tasks without running them,
    /// kills the workers running its tasks (as a time limit does; each is replaced), and
    /// removes the results stored for it. An agent that has never heard the pool counts its
    /// silence from when the agent began to listen, but judges it only 3 s after the pool's
    /// first task reached it (beats take another way than tasks, and the first beat may come
    /// after the first task): the tasks of a pool killed before any agent heard it are stopped
    /// or dropped within 3 s of reaching an agent that has listened for longer than this bound.
    /// A pool that is only slow to speak (its program stopped with `SIGSTOP` and continued, a
    /// connection to the server that drops and comes back) loses nothing as long as it speaks
    /// again within this bound. One that was silent for longer fails its pending tasks with
    /// [`TaskError::Unreachable`], saying so, when it speaks again: the agents may have dropped
    /// them. [`Duration::MAX`] never abandons them.
    ///
    /// Agents older than this setting run every task of a gone pool, as they always did.
    #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
    pub fn abandon_after(mut self, bound: Duration) -> Self {
        self.abandon_after = bound;
        self
    }

    /// The shared settings.
    pub fn get_config(&self) -> &Config {
        &self.config
    }

    /// How long the agents wait for word from the pool before they take it for gone.
    pub fn get_abandon_after(&self) -> Duration {
        self.abandon_after
    }

    /// The wait for an agent.
    pub fn get_agent_wait(&self) -> Duration {
        self.agent_wait
    }

    /// The delivery limit.
    pub fn get_delivery_limit(&self) -> u32 {
        self.delivery_limit
    }

    /// Checks the settings, the shared ones included, without reaching the server: what
    /// [`crate::ClusterPool::with_config`] checks first.
    ///
    /// # Errors
    ///
    /// [`TaskError::InvalidConfig`] naming the first bad setting: among them a url that is
    /// not a NATS url, and a stream name JetStream would refuse.
    ///
    /// # Examples
    ///
    /// ```
    /// use taskpool_cluster::{ClusterConfig, TaskError};
    ///
    /// assert!(ClusterConfig::new("nats://127.0.0.1:4222").validate().is_ok());
    /// let bad = ClusterConfig::new("http://127.0.0.1:4222").validate();
    /// assert!(matches!(bad, Err(TaskError::InvalidConfig { .. })));
    /// ```
    pub fn validate(&self) -> Result<(), TaskError> {
        self.config.validate()?;
        self.server.validate()?;
        if self.delivery_limit == 0 {
            return Err(TaskError::InvalidConfig {
                reason: "a delivery limit of 0 would run nothing".into(),
            });
        }
        if self.agent_wait.is_zero() {
            return Err(TaskError::InvalidConfig { reason: "the agent wait is zero".into() });
        }
        if self.abandon_after < MIN_ABANDON_AFTER {
            return Err(TaskError::InvalidConfig {
                reason: format!(
                    "abandoning a pool's tasks after {:?} of silence is below the {:?} minimum",
                    self.abandon_after, MIN_ABANDON_AFTER
                ),
            });
        }
        Ok(())
    }
}

server_settings!(ClusterConfig);

/// The settings of an agent: the server, and the local process pool its tasks run in.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use taskpool_cluster::{AgentConfig, Config};
///
/// let config = AgentConfig::new("nats://127.0.0.1:4222")
///     .pool(Config::new().workers(4))
///     .ack_wait(Duration::from_secs(10));
/// assert_eq!(config.get_ack_wait(), Duration::from_secs(10));
/// ```
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub(crate) pool: ProcessConfig,
    pub(crate) server: Server,
    pub(crate) ack_wait: Duration,
    pub(crate) capacity: Option<usize>,
}

impl AgentConfig {
    /// Settings for an agent of the server at `url`, with the defaults: a process pool with
    /// the default [`Config`] (one worker per CPU), a 30 s ack wait.
    pub fn new(url: impl Into<String>) -> Self {
        AgentConfig {
            pool: ProcessConfig::default(),
            server: Server::new(url.into()),
            ack_wait: Duration::from_secs(30),
            capacity: None,
        }
    }

    /// Reads the settings from the environment: `TASKPOOL_AGENT` (the server url, required),
    /// `TASKPOOL_AGENT_WORKERS`, `TASKPOOL_AGENT_MEMORY_LIMIT` (bytes per worker),
    /// `TASKPOOL_AGENT_ACK_WAIT_MS`, `TASKPOOL_AGENT_STREAM`,
    /// `TASKPOOL_AGENT_REPLICAS`, `TASKPOOL_NATS_CREDS`, `TASKPOOL_NATS_CA`,
    /// `TASKPOOL_NATS_CERT` with `TASKPOOL_NATS_KEY`. Returns `None` without
    /// `TASKPOOL_AGENT`.
    ///
    /// # Errors
    ///
    /// [`TaskError::InvalidConfig`] for a variable that does not parse, and for one of
    /// `TASKPOOL_NATS_CERT` and `TASKPOOL_NATS_KEY` set without the other.
    pub fn from_env() -> Option<Result<AgentConfig, TaskError>> {
        let url = std::env::var(crate::entry::AGENT_VAR).ok()?;
        Some(Self::from_vars(url, |name| std::env::var(name).ok()))
    }

    pub(crate) fn from_vars(
        url: String,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<AgentConfig, TaskError> {
        let number = |name: &str| -> Result<Option<u64>, TaskError> {
            var(name)
                .map(|v| {
                    v.trim().parse::<u64>().map_err(|_| TaskError::InvalidConfig {
                        reason: format!("{name}={v:?} is not a whole number"),
                    })
                })
                .transpose()
        };
        let mut config = AgentConfig::new(url);
        if let Some(n) = number("TASKPOOL_AGENT_WORKERS")? {
            let shared = config.pool.get_config().clone().workers(n as usize);
            config.pool = config.pool.config(shared);
        }
        if let Some(bytes) = number("TASKPOOL_AGENT_MEMORY_LIMIT")? {
            config.pool = config.pool.memory_limit(bytes);
        }
        if let Some(ms) = number("TASKPOOL_AGENT_ACK_WAIT_MS")? {
            config.ack_wait = Duration::from_millis(ms);
        }
        if let Some(n) = number("TASKPOOL_AGENT_REPLICAS")? {
            config.server.replicas = n as usize;
        }
        if let Some(name) = var("TASKPOOL_AGENT_STREAM") {
            config.server.name = name;
        }
        if let Some(path) = var("TASKPOOL_NATS_CREDS") {
            config = config.credentials_file(path);
        }
        if let Some(path) = var("TASKPOOL_NATS_CA") {
            config = config.root_certificates(path);
        }
        match (var("TASKPOOL_NATS_CERT"), var("TASKPOOL_NATS_KEY")) {
            (Some(cert), Some(key)) => config = config.client_certificate(cert, key),
            (None, None) => {}
            (cert, _) => {
                let (set, unset) = match cert {
                    Some(_) => ("TASKPOOL_NATS_CERT", "TASKPOOL_NATS_KEY"),
                    None => ("TASKPOOL_NATS_KEY", "TASKPOOL_NATS_CERT"),
                };
                return Err(TaskError::InvalidConfig {
                    reason: format!(
                        "{set} is set without {unset}: a client certificate needs both files"
                    ),
                });
            }
        }
        Ok(config)
    }

    /// The settings of the local process pool that runs the tasks: a [`Config`] or a
    /// [`ProcessConfig`] (for per-worker memory and CPU-time limits).
    #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
    pub fn pool(mut self, config: impl Into<ProcessConfig>) -> Self {
        self.pool = config.into();
        self
    }

    /// How long the server waits for word from the agent about a task before it gives the
    /// task to another agent (default 30 s). The agent reports progress on every task it
    /// holds three times per wait, so a long task is not given away while its agent lives;
    /// a dead or cut-off agent's tasks go elsewhere after this long. Set by the first agent
    /// of an executable image that the server sees, which keeps it (on disk) for the agents
    /// of that image that come after: an agent that finds another one kept says so on
    /// standard error, and reports progress three times per the shorter of the two.
    #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// The most tasks (or chunks) the agent holds at once (default: four per worker), from
    /// 1 to 1,048,576.
    #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
    pub fn capacity(mut self, n: usize) -> Self {
        self.capacity = Some(n);
        self
    }

    /// The local pool's settings.
    pub fn get_pool(&self) -> &ProcessConfig {
        &self.pool
    }

    /// The ack wait.
    pub fn get_ack_wait(&self) -> Duration {
        self.ack_wait
    }

    /// The most tasks (or chunks) the agent holds at once, if set; see
    /// [`AgentConfig::capacity`].
    pub fn get_capacity(&self) -> Option<usize> {
        self.capacity
    }

    /// Checks the settings, those of the local pool included, without reaching the server:
    /// what [`crate::serve_agent`] checks first.
    ///
    /// # Errors
    ///
    /// [`TaskError::InvalidConfig`] naming the first bad setting.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use taskpool_cluster::{AgentConfig, TaskError};
    ///
    /// let config = AgentConfig::new("nats://127.0.0.1:4222");
    /// assert!(config.validate().is_ok());
    /// let bad = config.ack_wait(Duration::from_millis(10)).validate();
    /// assert!(matches!(bad, Err(TaskError::InvalidConfig { .. })));
    /// ```
    pub fn validate(&self) -> Result<(), TaskError> {
        self.pool.validate()?;
        self.server.validate()?;
        if self.ack_wait < Duration::from_millis(300) {
            return Err(TaskError::InvalidConfig {
                reason: format!("an ack wait of {:?} is below the 300 ms minimum", self.ack_wait),
            });
        }
        if self.capacity == Some(0) {
            return Err(TaskError::InvalidConfig { reason: "an agent capacity of 0".into() });
        }
        if let Some(n) = self.capacity.filter(|&n| n > MAX_CAPACITY) {
            return Err(TaskError::InvalidConfig {
                reason: format!("an agent capacity of {n}: at most {MAX_CAPACITY}"),
            });
        }
        Ok(())
    }

    pub(crate) fn capacity_or_default(&self) -> usize {
        self.capacity.unwrap_or(4 * self.pool.get_config().get_workers())
    }
}

server_settings!(AgentConfig);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_settings_come_from_the_environment() {
        let vars = |name: &str| match name {
            "TASKPOOL_AGENT_WORKERS" => Some("3".to_string()),
            "TASKPOOL_AGENT_ACK_WAIT_MS" => Some("1500".to_string()),
            "TASKPOOL_AGENT_STREAM" => Some("JOBS".to_string()),
            _ => None,
        };
        let config = AgentConfig::from_vars("nats://127.0.0.1:1".into(), vars).unwrap();
        assert_eq!(config.pool.get_config().get_workers(), 3);
        assert_eq!(config.ack_wait, Duration::from_millis(1500));
        assert_eq!(config.get_stream_name(), "JOBS");
        assert_eq!(config.capacity_or_default(), 12);
        let bad = |name: &str| (name == "TASKPOOL_AGENT_WORKERS").then(|| "many".to_string());
        assert!(matches!(
            AgentConfig::from_vars("x".into(), bad),
            Err(TaskError::InvalidConfig { .. })
        ));
    }

    #[test]
    fn a_client_certificate_from_the_environment_needs_both_files() {
        let both = |name: &str| match name {
            "TASKPOOL_NATS_CERT" => Some("cert.pem".to_string()),
            "TASKPOOL_NATS_KEY" => Some("key.pem".to_string()),
            _ => None,
        };
        let config = AgentConfig::from_vars("nats://127.0.0.1:1".into(), both).unwrap();
        let (cert, key) = config.get_client_certificate().expect("the certificate");
        assert_eq!((cert.to_str(), key.to_str()), (Some("cert.pem"), Some("key.pem")));
        for (alone, missing) in [
            ("TASKPOOL_NATS_CERT", "TASKPOOL_NATS_KEY"),
            ("TASKPOOL_NATS_KEY", "TASKPOOL_NATS_CERT"),
        ] {
            let one = |name: &str| (name == alone).then(|| "file.pem".to_string());
            match AgentConfig::from_vars("nats://127.0.0.1:1".into(), one) {
                Err(TaskError::InvalidConfig { reason }) => {
                    assert!(reason.contains(alone) && reason.contains(missing), "{reason}")
                }
                other => panic!("{alone} alone: expected an invalid configuration, got {other:?}"),
            }
        }
    }

    #[test]
    fn credentials_in_a_url_are_not_shown() {
        let config = format!("{:?}", ClusterConfig::new("nats://alice:secret@a:1"));
        assert!(config.contains("nats://***@a:1") && !config.contains("secret"), "{config}");
        let agent = format!("{:?}", AgentConfig::new("nats://token@a:1"));
        assert!(agent.contains("nats://***@a:1") && !agent.contains("token@"), "{agent}");
        let shown = |url: &str| Server::new(url.into()).shown_url();
        assert_eq!(shown("nats://alice:secret@a:1"), "nats://***@a:1");
        assert_eq!(shown("tls://token@a:1, nats://b:2"), "tls://***@a:1, nats://b:2");
        assert_eq!(shown("u:p@a:1"), "***@a:1");
        assert_eq!(shown("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
    }

    #[test]
    fn bad_settings_are_refused() {
        let ok = ClusterConfig::new("nats://127.0.0.1:4222");
        assert!(ok.validate().is_ok());
        let invalid =
            |c: ClusterConfig| matches!(c.validate(), Err(TaskError::InvalidConfig { .. }));
        assert!(invalid(ok.clone().stream_name("a.b")));
        assert!(invalid(ok.clone().replicas(0)));
        assert!(invalid(ok.clone().delivery_limit(0)));
        for bound in [Duration::ZERO, Duration::from_millis(2999)] {
            assert!(
                matches!(
                    ok.clone().abandon_after(bound).validate(),
                    Err(TaskError::InvalidConfig { .. })
                ),
                "{bound:?}"
            );
        }
        assert!(ok.clone().abandon_after(Duration::from_secs(3)).validate().is_ok());
        assert!(ok.clone().abandon_after(Duration::MAX).validate().is_ok(), "never");
        assert!(invalid(ClusterConfig::new(" ")));
        for url in ["not a url at all", "http://127.0.0.1:1", "nats://a:1, http://b:2"] {
            assert!(
                matches!(ClusterConfig::new(url).validate(), Err(TaskError::InvalidConfig { .. })),
                "{url}"
            );
        }
        for url in ["127.0.0.1:4222", "tls://a:1,nats://b:2", "nats://a"] {
            assert!(ClusterConfig::new(url).validate().is_ok(), "{url}");
        }
        assert!(matches!(
            AgentConfig::new("x").ack_wait(Duration::from_millis(10)).validate(),
            Err(TaskError::InvalidConfig { .. })
        ));
    }

    /// A capacity is a count of tasks held at once: one past what the agent can count (its
    /// slots, a pull request's batch) is a mistake, refused before the agent starts, rather
    /// than a panic as it starts or a wait for its held tasks that ends at once.
    #[test]
    fn an_agent_capacity_past_the_most_is_refused() {
        assert!(AgentConfig::new("x").capacity(MAX_CAPACITY).validate().is_ok());
        for n in [MAX_CAPACITY + 1, 1 << 32, usize::MAX] {
            match AgentConfig::new("x").capacity(n).validate() {
                Err(TaskError::InvalidConfig { reason }) => {
                    assert!(reason.contains("capacity"), "{reason}");
                }
                other => panic!("capacity {n}: unexpected {other:?}"),
            }
        }
    }
}
