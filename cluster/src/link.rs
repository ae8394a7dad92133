//! The connection to the server that callers and agents share: the private runtime, the
//! client, the two streams and the names of everything in them.
//!
//! Two streams, both work queues kept on disk (and replicated when asked):
//!
//! | stream | subject | consumer |
//! |---|---|---|
//! | `{NAME}_TASKS` | `{name}.tasks.{image}.{caller}` | `agents_{image}`: each agent pulls for its free slots |
//! | | `{name}.tasks.{image}.{caller}.map` | `parcels_{image}`: a `map`'s parcels, each agent pulls for its free workers |
//! | `{NAME}_RESULTS` | `{name}.results.{caller}` | `results_{caller}`: the caller pulls its results |
//!
//! and four plain (not stored) subjects: `{name}.agents.{image}`, where each agent says once a
//! second that it is alive and how many workers it has, `{name}.callers.{image}`, where each
//! caller says once a second that it is alive, `{name}.cancel.{image}`, where a
//! caller asks the agents to drop or stop a task, and `{name}.fast.{caller}`, where an agent
//! sends a copy of each small result straight to its caller, ahead of the stored one.

use std::fmt;
use std::future::Future;
use std::io::Read;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{CreateStreamError, CreateStreamErrorKind};
use async_nats::jetstream::stream::{ConsumerError, ConsumerErrorKind};
use async_nats::jetstream::{self, consumer, stream};
use async_nats::{Client, ConnectOptions, Event};
use taskpool_core::TaskError;

use crate::config::Server;
use crate::error;

/// How long results of a caller that died are kept.
const RESULTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// How long after its caller stops pulling a results consumer is removed.
const RESULTS_INACTIVE: Duration = Duration::from_secs(600);

/// The largest message a stream keeps: a JetStream file store refuses a message whose
/// record (subject, headers and payload) is over 32 MiB, whatever the server's
/// `max_payload`, on every try. Room is left for the subject and headers.
const STORED_MESSAGE_MAX: usize = (32 << 20) - (4 << 10);

/// The most bytes of messages a caller (of its results) or an agent (of tasks) asks the server
/// for at once: a little over the largest message a stream keeps, so that every stored
/// message fits one pull whatever the `max_payload` of the server that took it (a pull too
/// small for the next message would be refused for ever). A caller's client asks for more
/// once half has come, so the server holds at most one and a half times this for a client:
/// under what it buffers for one (its `max_pending`, 64 MiB by default), past which it takes
/// the client for a slow consumer and closes its connection. A caller cannot learn a lowered
/// `max_pending`: the workspace README asks for 50 MiB at least.
pub(crate) const PULL_BYTES: usize = (32 << 20) + (64 << 10);

/// The bytes an agent asks for at once from a server whose message limit
/// ([`message_limit`]) is `limit`: one message of that limit, its subject and headers, at
/// most [`PULL_BYTES`]. A server's `max_pending` is never below its `max_payload` (it refuses
/// to start so), so a lowered `max_pending` does not take an agent for a slow consumer the
/// way a pull of [`PULL_BYTES`] of several messages did. A message stored larger than that
/// (taken by a server of a larger `max_payload`) ends such a pull unread: the agent then
/// asks for [`PULL_BYTES`].
pub(crate) fn pull_bytes(limit: usize) -> usize {
    limit.saturating_add(64 << 10).min(PULL_BYTES)
}

/// The smallest message limit a pool and an agent work with: a worker's error report, cut to
/// 64 KiB, must fit one message.
const MIN_MESSAGE_LIMIT: usize = 64 << 10;

/// The largest payload of a message that the server at the other end of `client` takes and
/// its streams keep: its `max_payload`, at most what a stream's store keeps.
///
/// # Errors
///
/// [`TaskError::InvalidConfig`] for a server whose `max_payload` is below
/// [`MIN_MESSAGE_LIMIT`]: values between the two would be refused on every try.
pub(crate) fn message_limit(client: &Client, server: &Server) -> Result<usize, TaskError> {
    let max_payload = client.server_info().max_payload;
    if max_payload < MIN_MESSAGE_LIMIT {
        return Err(TaskError::InvalidConfig {
            reason: format!(
                "the server at {} takes messages of at most {max_payload} bytes (its \
                 max_payload): taskpool needs at least {MIN_MESSAGE_LIMIT}; raise the server's \
                 max_payload",
                server.shown_url()
            ),
        });
    }
    Ok(max_payload.min(STORED_MESSAGE_MAX))
}

/// The largest payload the server at the other end of `client` takes now, at most what a
/// stream's store keeps: a server restarted with a lower `max_payload` refuses, on every try,
/// a message that was within the limit it said when the client first connected.
pub(crate) fn payload_limit_now(client: &Client) -> usize {
    client.server_info().max_payload.min(STORED_MESSAGE_MAX)
}

/// The largest message `stream` stores, within `limit` (the server's, from
/// [`message_limit`]): a stream made beforehand with a smaller `max_msg_size` refuses larger
/// messages for good, so values are split, or fail as too large, by its limit instead.
///
/// # Errors
///
/// [`TaskError::InvalidConfig`] if the stream takes less than [`MIN_MESSAGE_LIMIT`] (a
/// worker's error report, cut to that, must fit a message).
pub(crate) fn stream_message_limit(
    stream: &stream::Stream,
    limit: usize,
) -> Result<usize, TaskError> {
    let config = &stream.cached_info().config;
    let Ok(own) = usize::try_from(config.max_message_size) else { return Ok(limit) };
    if own == 0 || own >= limit {
        return Ok(limit);
    }
    if own < MIN_MESSAGE_LIMIT {
        return Err(TaskError::InvalidConfig {
            reason: format!(
                "stream {} takes messages of at most {own} bytes (its max_msg_size): taskpool \
                 needs at least {MIN_MESSAGE_LIMIT}; raise or remove the stream's limit",
                config.name
            ),
        });
    }
    Ok(own)
}

/// The names of the streams, subjects and consumers of one deployment.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    name: String,
    prefix: String,
}

impl Names {
    pub(crate) fn new(server: &Server) -> Self {
        Names { name: server.name.clone(), prefix: server.name.to_ascii_lowercase() }
    }

    pub(crate) fn tasks_stream(&self) -> String {
        format!("{}_TASKS", self.name)
    }

    pub(crate) fn results_stream(&self) -> String {
        format!("{}_RESULTS", self.name)
    }

    pub(crate) fn tasks_subject(&self, image: &str, caller: &str) -> String {
        format!("{}.tasks.{image}.{caller}", self.prefix)
    }

    pub(crate) fn tasks_filter(&self, image: &str) -> String {
        format!("{}.tasks.{image}.*", self.prefix)
    }

    /// Where a caller's `map` parcels go: a token more than [`Names::tasks_subject`], so
    /// that the filters of the two consumers of the work queue do not overlap.
    pub(crate) fn parcels_subject(&self, image: &str, caller: &str) -> String {
        format!("{}.tasks.{image}.{caller}.map", self.prefix)
    }

    pub(crate) fn parcels_filter(&self, image: &str) -> String {
        format!("{}.tasks.{image}.*.map", self.prefix)
    }

    /// Everything a caller sent, on both subjects.
    pub(crate) fn caller_filters(&self, image: &str, caller: &str) -> [String; 2] {
        let tasks = self.tasks_subject(image, caller);
        [format!("{tasks}.>"), tasks]
    }

    pub(crate) fn results_subject(&self, caller: &str) -> String {
        format!("{}.results.{caller}", self.prefix)
    }

    pub(crate) fn fast_subject(&self, caller: &str) -> String {
        format!("{}.fast.{caller}", self.prefix)
    }

    pub(crate) fn agents_subject(&self, image: &str) -> String {
        format!("{}.agents.{image}", self.prefix)
    }

    pub(crate) fn callers_subject(&self, image: &str) -> String {
        format!("{}.callers.{image}", self.prefix)
    }

    pub(crate) fn cancel_subject(&self, image: &str) -> String {
        format!("{}.cancel.{image}", self.prefix)
    }

    pub(crate) fn agents_consumer(image: &str) -> String {
        format!("agents_{image}")
    }

    pub(crate) fn parcels_consumer(image: &str) -> String {
        format!("parcels_{image}")
    }

    pub(crate) fn results_consumer(caller: &str) -> String {
        format!("results_{caller}")
    }
}

/// A fresh random id (16 hex digits) for a caller or an agent.
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 8];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        // Unusual, and ids need only be unique: the pid and the time are.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = (nanos ^ (u64::from(std::process::id()) << 40)).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The runtime private to a pool or an agent.
pub(crate) fn runtime(name: &str) -> std::io::Result<tokio::runtime::Runtime> {
    keep_standard_numbers();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(format!("{name}-nats"))
        .enable_all()
        .build()
}

/// Opens `/dev/null` onto whichever of descriptors 0, 1 and 2 the program closed (a daemon
/// that did not reopen them), before the runtime and the client open theirs: their numbers
/// (tokio's and async-nats's sockets and event descriptors) are not the pool's to choose, and
/// on one of those the program's next `println!` would write into the server's connection.
/// Each is opened close-on-exec: a program the program starts finds it closed, as before.
fn keep_standard_numbers() {
    loop {
        let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") else {
            return;
        };
        if null.as_raw_fd() > 2 {
            // Every standard number is taken: this one closes as it drops.
            return;
        }
        // The lowest free number was a standard one: it stays `/dev/null` for good.
        let _ = null.into_raw_fd();
    }
}

/// Runs `f`, which starts, blocks on or stops a runtime private to a pool or an agent: here,
/// or on a thread of its own when this thread is inside an async runtime (a pool made or
/// dropped in async code), where tokio refuses to start or stop another runtime.
///
/// # Errors
///
/// The OS's refusal of that thread.
pub(crate) fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Ok(f());
    }
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new().name("taskpool-nats-setup".into());
        let thread = thread.spawn_scoped(scope, f)?;
        Ok(thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}

/// How often an agent that cannot reach its server says so again.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(15);

/// Connects to the server, reconnecting for ever after a loss; the first connection is
/// attempted once.
///
/// # Errors
///
/// [`TaskError::InvalidConfig`] for a url that is not a NATS url or a credentials file that
/// cannot be read; [`TaskError::Unreachable`] if the attempt fails, with the url and why.
pub(crate) async fn connect(server: &Server, name: &str) -> Result<Client, TaskError> {
    connect_with(server, name, ConnectOptions::new()).await
}

/// As [`connect`], with `options` to start from.
async fn connect_with(
    server: &Server,
    name: &str,
    options: ConnectOptions,
) -> Result<Client, TaskError> {
    let mut options = options
        .name(name)
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(reconnect_delay);
    if let Some(path) = &server.credentials {
        options = options.credentials_file(path).await.map_err(|e| TaskError::InvalidConfig {
            reason: format!("credentials file {}: {e}", path.display()),
        })?;
    }
    if let Some(path) = &server.root_certificates {
        options = options.add_root_certificates(path.clone());
    }
    if let Some((cert, key)) = &server.client_certificate {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if server.require_tls {
        options = options.require_tls(true);
    }
    let addresses = server.addresses()?;
    // The client reads no user, password or token from a url: pass on the first one given.
    let login = addresses.iter().find_map(|a| a.username().map(|user| (user, a.password())));
    match login {
        Some((user, Some(password))) => {
            options = options.user_and_password(decoded(user), decoded(password));
        }
        Some((token, None)) => options = options.token(decoded(token)),
        None => {}
    }
    options.connect(addresses).await.map_err(|e| {
        let why = format!("cannot connect to {}: {e}{}", server.shown_url(), hint(&e.to_string()));
        error::unreachable(why, Duration::ZERO)
    })
}

/// What a connection error's text suggests to fix, if anything: a TLS handshake answered by
/// a server without TLS (a `tls://` url, or TLS required, for a plain server) reads as a
/// corrupt message of the wrong content type.
fn hint(error: &str) -> &'static str {
    if error.contains("InvalidContentType") {
        " (the server does not speak TLS: use a nats:// url, and no TLS settings, for a server \
         without TLS)"
    } else {
        ""
    }
}

/// A user, password or token as a url carries it, percent-encoded (`p%40ss` for `p@ss`), as
/// the server expects it: decoded.
fn decoded(part: &str) -> String {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match hex.filter(|_| bytes[i] == b'%').and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Connects to the server, trying until it answers: an agent may start before its server.
///
/// A server not started yet looks, from here, the same as a mistyped url, so the wait is
/// not silent: after the first failed attempt, and every [`REPORT_EVERY`] after, `name`
/// says on standard error why it cannot connect; once connected after that, it says so once.
///
/// # Errors
///
/// [`TaskError::InvalidConfig`] as [`connect`]: a setting that no retry can mend.
pub(crate) async fn connect_waiting(server: &Server, name: &str) -> Result<Client, TaskError> {
    let started = Instant::now();
    let mut reported: Option<Instant> = None;
    let mut attempt = 1;
    loop {
        let connected = Arc::new(OnceLock::new());
        match connect_with(server, name, reporting(server, name, connected.clone())).await {
            Ok(client) => {
                let _ = connected.set(client.clone());
                if reported.is_some() {
                    let waited = started.elapsed().as_secs();
                    say!("{name}: connected to {} after {waited} s", server.shown_url());
                }
                return Ok(client);
            }
            Err(TaskError::Unreachable { source, .. }) => {
                if reported.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
                    let every = REPORT_EVERY.as_secs();
                    say!("{name}: {source}; trying again (reported every {every} s)");
                    reported = Some(Instant::now());
                }
            }
            Err(e) => return Err(e),
        }
        attempt += 1;
        tokio::time::sleep(reconnect_delay(attempt)).await;
    }
}

/// Connects to the server, trying until it answers, without a word (a second connection of
/// a process whose first one says what happens).
///
/// # Errors
///
/// [`TaskError::InvalidConfig`] as [`connect`]: a setting that no retry can mend.
pub(crate) async fn connect_quietly(server: &Server, name: &str) -> Result<Client, TaskError> {
    let mut attempt = 1;
    loop {
        match connect(server, name).await {
            Ok(client) => return Ok(client),
            Err(TaskError::Unreachable { .. }) => {}
            Err(e) => return Err(e),
        }
        attempt += 1;
        tokio::time::sleep(reconnect_delay(attempt)).await;
    }
}

/// Options that say on standard error, as `name`, when the connection to `server` is lost
/// and when it is back (once each), and when the server is about to shut down: an agent is a
/// long-running service whose client reconnects by itself, and its operator would otherwise
/// see nothing while it serves no one.
///
/// Each message names the server the client is connected to, once `client` holds the client:
/// of a cluster, that may be another server than the url's, which the cluster told it of.
fn reporting(server: &Server, name: &str, client: Arc<OnceLock<Client>>) -> ConnectOptions {
    let (name, url) = (name.to_string(), server.shown_url());
    let lost = Arc::new(AtomicBool::new(false));
    ConnectOptions::new().event_callback(move |event| {
        let (name, url, lost, client) = (name.clone(), url.clone(), lost.clone(), client.clone());
        async move {
            let server = || match client.get() {
                Some(client) => {
                    let info = client.server_info();
                    let at = format!("{}:{}", info.host, info.port);
                    format!("the server {} at {at} (servers: {url})", info.server_name)
                }
                None => format!("the server at {url}"),
            };
            match event {
                Event::Disconnected if !lost.swap(true, Ordering::Relaxed) => {
                    say!("{name}: lost {}; reconnecting", server());
                }
                Event::Connected if lost.swap(false, Ordering::Relaxed) => {
                    say!("{name}: reconnected, to {}", server());
                }
                Event::LameDuckMode => {
                    say!("{name}: {} is shutting down (lame duck mode)", server());
                }
                Event::ServerError(async_nats::ServerError::Other(said)) => note_server_error(said),
                _ => {}
            }
        }
    })
}

/// The latest error the server sent on a connection of this process, and when: the server
/// answers a publish it refuses (a permission violation) with an error of the connection,
/// not with an answer to the publish, which then times out.
static SERVER_ERROR: std::sync::Mutex<Option<(Instant, String)>> = std::sync::Mutex::new(None);

fn note_server_error(said: String) {
    *SERVER_ERROR.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
        Some((Instant::now(), said));
}

/// What the server said of `subject` within `within`, if it sent an error naming it (such as
/// `Permissions Violation for Publish to "taskpool.results.…"`).
pub(crate) fn server_error_about(subject: &str, within: Duration) -> Option<String> {
    let said = SERVER_ERROR.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (at, said) = said.as_ref()?;
    let quoted = format!("\"{subject}\"");
    (at.elapsed() <= within && said.contains(&quoted)).then(|| said.clone())
}

/// How long the server has to answer, on the pool's connection or on a new one, before it
/// counts as not answering.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// Why the server cannot be reached through `js` now, or `None` if it answers.
///
/// A connection that is down is probed with a new one, whose failure says why: the client's
/// own attempts to reconnect keep only the kind of error, not the system's reason.
pub(crate) async fn why_unreachable(js: &jetstream::Context, server: &Server) -> Option<String> {
    let url = &server.shown_url();
    let within = ANSWER_WITHIN.as_secs();
    if js.client().connection_state() == async_nats::connection::State::Connected {
        // A request the server itself answers: a connection can look up while the server
        // behind it is stopped or cut off.
        return match tokio::time::timeout(ANSWER_WITHIN, js.query_account()).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => {
                let hint = match e.kind() {
                    jetstream::context::AccountErrorKind::JetStream(e)
                        if e.kind() == ErrorCode::CLUSTER_NOT_AVAILABLE =>
                    {
                        " (on a cluster of servers: fewer than a majority of its servers are up, \
                         or it has not formed yet)"
                    }
                    _ => "",
                };
                Some(format!("the server at {url} did not answer: {e}{hint}"))
            }
            Err(_) => Some(format!("the server at {url} did not answer within {within} s")),
        };
    }
    let probe = tokio::time::timeout(ANSWER_WITHIN, connect(server, "taskpool probe")).await;
    Some(match probe {
        Ok(Err(TaskError::Unreachable { source, .. })) => {
            format!("lost the connection to the server: {source}")
        }
        Ok(Err(e)) => format!("lost the connection to the server at {url}: {e}"),
        Ok(Ok(_)) => {
            format!("lost the connection to the server at {url}; it answers again, reconnecting")
        }
        Err(_) => format!(
            "lost the connection to the server at {url}, which does not answer a new one \
             within {within} s"
        ),
    })
}

/// How long to wait before connection attempt `attempts` (counted from 1 since the last
/// success): none before the first, which the client makes through this too; then quick
/// retries (a server restart takes about a second), then once a second.
fn reconnect_delay(attempts: usize) -> Duration {
    match attempts {
        0 | 1 => Duration::ZERO,
        n => Duration::from_millis((25u64 << (n - 1).min(6)).min(1000)),
    }
}

/// The JetStream context of `client`: publishes are retried by the pool itself, so the
/// client gives up on an acknowledgement after a few seconds.
pub(crate) fn jetstream(client: Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .ack_timeout(Duration::from_secs(4))
        .timeout(Duration::from_secs(5))
        .max_ack_inflight(16_384)
        .build(client)
}

/// Creates the two streams unless they exist, and returns them. With `waiting` (the name to
/// speak as), a server whose JetStream keeps failing is waited for, and said so (see [`ask`]).
///
/// # Errors
///
/// As [`ask`]: [`TaskError::InvalidConfig`] for replicas a server outside a cluster cannot have,
/// [`TaskError::Unreachable`] for a server without JetStream or one that keeps failing.
pub(crate) async fn streams(
    js: &jetstream::Context,
    server: &Server,
    waiting: Option<&str>,
) -> Result<(stream::Stream, stream::Stream), TaskError> {
    let names = Names::new(server);
    let tasks = stream::Config {
        name: names.tasks_stream(),
        subjects: vec![format!("{}.tasks.>", names.prefix)],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        num_replicas: server.replicas,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    let results = stream::Config {
        name: names.results_stream(),
        subjects: vec![format!("{}.results.>", names.prefix)],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        num_replicas: server.replicas,
        max_age: RESULTS_MAX_AGE,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    Ok((stream_of(js, tasks, waiting).await?, stream_of(js, results, waiting).await?))
}

async fn stream_of(
    js: &jetstream::Context,
    config: stream::Config,
    waiting: Option<&str>,
) -> Result<stream::Stream, TaskError> {
    let what = format!(
        "stream {} (replicas: {}, subjects {})",
        config.name,
        config.num_replicas,
        config.subjects.join(", ")
    );
    let answer = |e: &StreamRefusal| match e.0.kind() {
        CreateStreamErrorKind::JetStreamUnavailable => Answer::NoJetStream,
        CreateStreamErrorKind::JetStream(e) => answer_of(e.kind()),
        _ => Answer::Passing,
    };
    let request = || async { js.get_or_create_stream(config.clone()).await.map_err(StreamRefusal) };
    let stream = ask(&what, request, answer, waiting).await?;
    let found = stream.cached_info().config.clone();
    if let Some(reason) = foreign(&found, &config) {
        // Someone else's stream by that name: final until its operator changes something.
        return Err(error::unreachable(reason, Duration::ZERO));
    }
    if found.num_replicas.max(1) < config.num_replicas {
        // Made with fewer replicas (by a side that asked for none): raised to what this side
        // asks for, as it would have been made, never lowered.
        let raised = stream::Config { num_replicas: config.num_replicas, ..found };
        let request = || async { js.update_stream(&raised).await.map_err(StreamRefusal) };
        ask(&what, request, answer, waiting).await?;
    }
    Ok(stream)
}

/// A failed request for a stream, shown with what to do about the server's refusals that a
/// setting of this side can mend.
struct StreamRefusal(CreateStreamError);

impl fmt::Display for StreamRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        match self.0.kind() {
            CreateStreamErrorKind::JetStream(e)
                if e.kind() == ErrorCode::STREAM_SUBJECT_OVERLAP =>
            {
                f.write_str(
                    " (another stream of this server takes these subjects: one whose name \
                     differs from this one only in case, as subjects take the name lowercased, \
                     or one made by someone else; choose another stream name)",
                )
            }
            CreateStreamErrorKind::JetStream(e) if e.kind() == ErrorCode::CLUSTER_NO_PEERS => f
                .write_str(
                    " (the cluster has fewer servers with JetStream up than the replicas asked \
                     for, or is still forming: ask for fewer replicas, or start more servers)",
                ),
            _ => Ok(()),
        }
    }
}

/// Why `found`, the settings of an existing stream named as `wanted`, cannot serve as it:
/// it does not take `wanted`'s subjects, or is not a work queue. `None` if it can.
fn foreign(found: &stream::Config, wanted: &stream::Config) -> Option<String> {
    let takes_subjects = wanted.subjects.iter().all(|s| found.subjects.contains(s));
    let work_queue = found.retention == stream::RetentionPolicy::WorkQueue;
    if takes_subjects && work_queue {
        return discarding(found, wanted);
    }
    Some(format!(
        "stream {} exists with other settings (subjects {:?}, retention {:?}) than this \
         deployment needs (subjects {:?}, a work queue): another application's? Choose \
         another stream name, or remove it",
        wanted.name, found.subjects, found.retention, wanted.subjects
    ))
}

/// Why `found` would delete messages stored in it that `wanted` keeps: limits `wanted` does
/// not have (a size, a count, an age shorter than its own) with the policy that makes room by
/// discarding the oldest messages, NATS's default. Tasks or results deleted so are never
/// answered, and their callers would wait for ever while agents live. `None` if it keeps them.
fn discarding(found: &stream::Config, wanted: &stream::Config) -> Option<String> {
    if found.discard != stream::DiscardPolicy::Old {
        // A full stream refuses new messages: a store that fails, and says so.
        return None;
    }
    let mut limits = Vec::new();
    if found.max_bytes > 0 && found.max_bytes != wanted.max_bytes {
        limits.push(format!("max_bytes {}", found.max_bytes));
    }
    if found.max_messages > 0 && found.max_messages != wanted.max_messages {
        limits.push(format!("max_msgs {}", found.max_messages));
    }
    if found.max_messages_per_subject > 0
        && found.max_messages_per_subject != wanted.max_messages_per_subject
    {
        limits.push(format!("max_msgs_per_subject {}", found.max_messages_per_subject));
    }
    if !found.max_age.is_zero() && (wanted.max_age.is_zero() || found.max_age < wanted.max_age) {
        limits.push(format!("max_age {:?}", found.max_age));
    }
    if limits.is_empty() {
        return None;
    }
    Some(format!(
        "stream {} exists with limits ({}) at which it discards its oldest messages: it would \
         delete stored {} silently, whose callers would wait for ever. Set its discard policy \
         to discard new (a full stream then refuses new ones, which fail saying so), remove \
         the limits, or remove the stream",
        wanted.name,
        limits.join(", "),
        if wanted.max_age.is_zero() { "tasks" } else { "results" },
    ))
}

/// The two queues of an image's tasks in the tasks stream, each a pull consumer every agent
/// of the image shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queue {
    /// Single tasks and the chunks of an `imap`: agents pull as many messages as they have
    /// free slots (several per worker), so that the tasks of many callers reach them and
    /// take turns for their workers.
    Tasks,
    /// The parcels of a `map`: agents pull a parcel for each free worker (one that neither
    /// a parcel nor a unit of single tasks takes), so that an agent of more workers takes
    /// more of a `map`, and an agent busy with single tasks leaves it to others.
    Parcels,
}

impl Queue {
    /// Its consumer's name for `image`.
    pub(crate) fn consumer(self, image: &str) -> String {
        match self {
            Queue::Tasks => Names::agents_consumer(image),
            Queue::Parcels => Names::parcels_consumer(image),
        }
    }

    /// The subject of `caller`'s messages to it.
    pub(crate) fn subject(self, names: &Names, image: &str, caller: &str) -> String {
        match self {
            Queue::Tasks => names.tasks_subject(image, caller),
            Queue::Parcels => names.parcels_subject(image, caller),
        }
    }

    /// Its consumer's filter: every caller's messages to it.
    fn filter(self, names: &Names, image: &str) -> String {
        match self {
            Queue::Tasks => names.tasks_filter(image),
            Queue::Parcels => names.parcels_filter(image),
        }
    }
}

/// The pull consumer of `queue` that every agent of `image` shares; with `waiting`, as
/// [`streams`].
pub(crate) async fn agents_consumer(
    tasks: &stream::Stream,
    names: &Names,
    image: &str,
    queue: Queue,
    ack_wait: Duration,
    waiting: Option<&str>,
) -> Result<consumer::PullConsumer, TaskError> {
    let name = queue.consumer(image);
    let config = consumer::pull::Config {
        durable_name: Some(name.clone()),
        filter_subject: queue.filter(names, image),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait,
        // Deliveries are counted by the agents, which fail a task past its caller's limit:
        // the server never parks a task undelivered.
        max_deliver: -1,
        max_ack_pending: -1,
        max_waiting: 4096,
        ..Default::default()
    };
    consumer_of(tasks, &name, config, waiting).await
}

/// The pull consumer of one caller's results.
pub(crate) async fn results_consumer(
    results: &stream::Stream,
    names: &Names,
    caller: &str,
) -> Result<consumer::PullConsumer, TaskError> {
    let name = Names::results_consumer(caller);
    let config = consumer::pull::Config {
        durable_name: Some(name.clone()),
        filter_subject: names.results_subject(caller),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        max_deliver: -1,
        max_ack_pending: -1,
        inactive_threshold: RESULTS_INACTIVE,
        ..Default::default()
    };
    consumer_of(results, &name, config, None).await
}

async fn consumer_of(
    stream: &stream::Stream,
    name: &str,
    config: consumer::pull::Config,
    waiting: Option<&str>,
) -> Result<consumer::PullConsumer, TaskError> {
    let answer = |e: &ConsumerError| match e.kind() {
        ConsumerErrorKind::JetStream(e) => answer_of(e.kind()),
        _ => Answer::Passing,
    };
    let what = format!("consumer {name}");
    ask(&what, || stream.get_or_create_consumer(name, config.clone()), answer, waiting).await
}

/// How many times a stream or consumer is asked for before the server counts as unreachable.
const TRIES: u64 = 40;

/// What an error answer to a request for a stream or a consumer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// It may change: ask again. Two processes may create a stream at once, and the loser
    /// finds it on the next turn; a cluster that is still electing its leaders answers after
    /// a moment; a request may time out.
    Passing,
    /// The server has no JetStream (started without `-js`, or not for this account): final.
    NoJetStream,
    /// The server cannot have what the settings ask for: final, whoever asks again.
    BadSetting,
    /// The server refuses for a reason of its own (its or the account's limits, streams of
    /// its own that overlap these): final until its operator changes something.
    Refused,
}

/// What JetStream's error `code` means for a request for a stream or a consumer.
fn answer_of(code: ErrorCode) -> Answer {
    match code {
        ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED => Answer::BadSetting,
        ErrorCode::JETSTREAM_NOT_ENABLED | ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT => {
            Answer::NoJetStream
        }
        ErrorCode::NO_ACCOUNT
        | ErrorCode::STREAM_SUBJECT_OVERLAP
        | ErrorCode::STREAM_INVALID_CONFIG
        | ErrorCode::MAXIMUM_STREAMS_LIMIT
        | ErrorCode::MAXIMUM_CONSUMERS_LIMIT
        | ErrorCode::ACCOUNT_RESOURCES_EXCEEDED => Answer::Refused,
        _ => Answer::Passing,
    }
}

/// Asks for `what` with `request` until the server gives it or a final no (as `answer`
/// reads its errors), at most [`TRIES`] times; with `waiting`, for as long as it takes: a
/// service waits for its server's JetStream (a cluster without a quorum of its servers up
/// has none), and says as `waiting` on standard error why, once it has waited
/// [`REPORT_EVERY`] and every [`REPORT_EVERY`] after, then once that it got `what`.
///
/// # Errors
///
/// [`TaskError::InvalidConfig`] for [`Answer::BadSetting`]; else
/// [`TaskError::Unreachable`], with how long the asking took if it asked more than once, and
/// with what the server said.
async fn ask<T, E, F>(
    what: &str,
    mut request: impl FnMut() -> F,
    answer: impl Fn(&E) -> Answer,
    waiting: Option<&str>,
) -> Result<T, TaskError>
where
    F: Future<Output = Result<T, E>>,
    E: fmt::Display,
{
    let started = Instant::now();
    let mut last = String::new();
    let mut reported: Option<Instant> = None;
    let mut attempt = 0;
    while attempt < TRIES || waiting.is_some() {
        if let Some(name) = waiting {
            let due = reported.unwrap_or(started) + REPORT_EVERY;
            if !last.is_empty() && Instant::now() >= due {
                let every = REPORT_EVERY.as_secs();
                say!("{name}: {last}; trying again (reported every {every} s)");
                reported = Some(Instant::now());
            }
        }
        let error = match request().await {
            Ok(value) => {
                if let (Some(name), Some(_)) = (waiting, reported) {
                    let waited = started.elapsed().as_secs();
                    say!("{name}: got {what} after {waited} s");
                }
                return Ok(value);
            }
            Err(e) => e,
        };
        // Zero if it did not retry.
        let waited = if attempt == 0 { Duration::ZERO } else { started.elapsed() };
        last = format!("{what}: {error}");
        match answer(&error) {
            Answer::Passing => {}
            Answer::BadSetting => return Err(TaskError::InvalidConfig { reason: last }),
            Answer::NoJetStream => {
                let reason =
                    format!("{last} (JetStream is not enabled on the server or for this account)");
                return Err(error::unreachable(reason, waited));
            }
            Answer::Refused => return Err(error::unreachable(last, waited)),
        }
        tokio::time::sleep(Duration::from_millis(50 * attempt.min(10))).await;
        attempt += 1;
    }
    Err(error::unreachable(last, started.elapsed()))
}

#[cfg(test)]
mod tests {

    use std::cell::Cell;

    use super::*;

    /// Asks with answers that fail as `answers` say, in turn, then succeed.
    fn ask_through(answers: &[Answer]) -> Result<u32, TaskError> {
        let asked = Cell::new(0);
        let request = || {
            let n = asked.get();
            asked.set(n + 1);
            async move { if n < answers.len() { Err(n) } else { Ok(7) } }
        };
        let answer = |n: &usize| answers[*n];
        let runtime = runtime("test").unwrap();
        runtime.block_on(ask("stream S", request, answer, None))
    }

    #[test]
    fn a_final_answer_fails_at_once_and_a_passing_one_is_asked_again() {
        assert_eq!(ask_through(&[Answer::Passing, Answer::Passing]).unwrap(), 7);
        match ask_through(&[Answer::BadSetting]) {
            Err(TaskError::InvalidConfig { reason }) => assert_eq!(reason, "stream S: 0"),
            other => panic!("expected a bad setting, got {other:?}"),
        }
        match ask_through(&[Answer::NoJetStream]) {
            Err(TaskError::Unreachable { waited, source }) => {
                assert_eq!(waited, Duration::ZERO, "it did not retry");
                assert!(source.to_string().contains("JetStream is not enabled"), "{source}");
            }
            other => panic!("expected no JetStream, got {other:?}"),
        }
        match ask_through(&[Answer::Passing, Answer::Refused]) {
            Err(TaskError::Unreachable { waited, source }) => {
                assert!(waited > Duration::ZERO, "it retried, for a while");
                assert_eq!(source.to_string(), "stream S: 1");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn only_the_answers_that_cannot_change_are_final() {
        assert_eq!(answer_of(ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED), Answer::BadSetting);
        assert_eq!(answer_of(ErrorCode::JETSTREAM_NOT_ENABLED), Answer::NoJetStream);
        assert_eq!(answer_of(ErrorCode::STREAM_SUBJECT_OVERLAP), Answer::Refused);
        // A cluster electing its leaders, and a stream created by another process meanwhile.
        assert_eq!(answer_of(ErrorCode::CLUSTER_NOT_AVAILABLE), Answer::Passing);
        assert_eq!(answer_of(ErrorCode::CLUSTER_NO_PEERS), Answer::Passing);
        assert_eq!(answer_of(ErrorCode::STREAM_NAME_EXIST), Answer::Passing);
    }

    #[test]
    fn the_first_attempt_is_at_once_and_retries_back_off_to_a_second() {
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(2), Duration::from_millis(50));
        assert_eq!(reconnect_delay(3), Duration::from_millis(100));
        assert_eq!(reconnect_delay(7), Duration::from_millis(1000));
        assert_eq!(reconnect_delay(1000), Duration::from_millis(1000));
    }

    #[test]
    fn a_password_in_a_url_is_percent_decoded() {
        assert_eq!(decoded("p%40ss%3Aw%25rd"), "p@ss:w%rd");
        assert_eq!(decoded("plain"), "plain");
        assert_eq!(decoded("100%"), "100%", "a lone percent sign stays");
        assert_eq!(decoded("%zz%4"), "%zz%4");
        assert_eq!(decoded("caf%C3%A9"), "café");
    }
}
