//! The connection to the server that callers and agents share: the private runtime, the
//! client, the two streams and the names of everything in them.
//!
//! Two streams, both work queues kept on disk (and replicated when asked):
//!
//! | stream | subject | consumer |
//! |---|---|---|
//! | `{NAME}_TASKS` | `{name}.tasks.{image}.{caller}` | `agents_{image}`: every agent of an image pulls from it |
//! | `{NAME}_RESULTS` | `{name}.results.{caller}` | `results_{caller}`: the caller pulls its results |
//!
//! and three plain (not stored) subjects: `{name}.agents.{image}`, where each agent says once a
//! second that it is alive and how many workers it has, `{name}.cancel.{image}`, where a
//! caller asks the agents to drop or stop a task, and `{name}.fast.{caller}`, where an agent
//! sends a copy of each small result straight to its caller, ahead of the stored one.

use std::io::Read;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_nats::{Client, ConnectOptions};

use crate::config::Server;

/// How long results of a caller that died are kept.
const RESULTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// How long after its caller stops pulling a results consumer is removed.
const RESULTS_INACTIVE: Duration = Duration::from_secs(600);

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

    pub(crate) fn results_subject(&self, caller: &str) -> String {
        format!("{}.results.{caller}", self.prefix)
    }

    pub(crate) fn fast_subject(&self, caller: &str) -> String {
        format!("{}.fast.{caller}", self.prefix)
    }

    pub(crate) fn agents_subject(&self, image: &str) -> String {
        format!("{}.agents.{image}", self.prefix)
    }

    pub(crate) fn cancel_subject(&self, image: &str) -> String {
        format!("{}.cancel.{image}", self.prefix)
    }

    pub(crate) fn agents_consumer(image: &str) -> String {
        format!("agents_{image}")
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
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(format!("{name}-nats"))
        .enable_all()
        .build()
}

/// Connects to the server, reconnecting for ever after a loss. With `wait`, keeps trying to
/// make the first connection too (an agent started before its server).
pub(crate) async fn connect(server: &Server, wait: bool, name: &str) -> Result<Client, String> {
    let mut options = ConnectOptions::new()
        .name(name)
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(reconnect_delay);
    if wait {
        options = options.retry_on_initial_connect();
    }
    if let Some(path) = &server.credentials {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| format!("credentials file {}: {e}", path.display()))?;
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
    let urls: Vec<&str> = server.url.split(',').map(str::trim).collect();
    let addresses = urls
        .iter()
        .map(|u| u.parse::<async_nats::ServerAddr>().map_err(|e| format!("server url {u:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    options.connect(addresses).await.map_err(|e| format!("cannot connect to {}: {e}", server.url))
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

/// Creates the two streams unless they exist, and returns them.
pub(crate) async fn streams(
    js: &jetstream::Context,
    server: &Server,
) -> Result<(stream::Stream, stream::Stream), String> {
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
    Ok((stream_of(js, tasks).await?, stream_of(js, results).await?))
}

async fn stream_of(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, String> {
    let name = config.name.clone();
    let mut last = String::new();
    // Two processes may create the stream at once; the loser finds it on the next turn. A
    // cluster that is still electing its leaders answers after a moment.
    for attempt in 0..40u64 {
        match js.get_or_create_stream(config.clone()).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50 * attempt.min(10))).await;
    }
    Err(format!("stream {name}: {last}"))
}

/// The pull consumer every agent of `image` shares.
pub(crate) async fn agents_consumer(
    tasks: &stream::Stream,
    names: &Names,
    image: &str,
    ack_wait: Duration,
) -> Result<consumer::PullConsumer, String> {
    let name = Names::agents_consumer(image);
    let config = consumer::pull::Config {
        durable_name: Some(name.clone()),
        filter_subject: names.tasks_filter(image),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait,
        // Deliveries are counted by the agents, which fail a task past its caller's limit:
        // the server never parks a task undelivered.
        max_deliver: -1,
        max_ack_pending: -1,
        max_waiting: 4096,
        ..Default::default()
    };
    consumer_of(tasks, &name, config).await
}

/// The pull consumer of one caller's results.
pub(crate) async fn results_consumer(
    results: &stream::Stream,
    names: &Names,
    caller: &str,
) -> Result<consumer::PullConsumer, String> {
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
    consumer_of(results, &name, config).await
}

async fn consumer_of(
    stream: &stream::Stream,
    name: &str,
    config: consumer::pull::Config,
) -> Result<consumer::PullConsumer, String> {
    let mut last = String::new();
    for attempt in 0..40u64 {
        match stream.get_or_create_consumer(name, config.clone()).await {
            Ok(consumer) => return Ok(consumer),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50 * attempt.min(10))).await;
    }
    Err(format!("consumer {name}: {last}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_attempt_is_at_once_and_retries_back_off_to_a_second() {
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(2), Duration::from_millis(50));
        assert_eq!(reconnect_delay(3), Duration::from_millis(100));
        assert_eq!(reconnect_delay(7), Duration::from_millis(1000));
        assert_eq!(reconnect_delay(1000), Duration::from_millis(1000));
    }
}
