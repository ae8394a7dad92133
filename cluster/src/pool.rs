//! [`ClusterPool`]: the shared pool API, on agents reached through NATS JetStream.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use taskpool_core::backend::{Cancel, Completer, Execute, Job};
use taskpool_core::{IntoTask, NextTimeout, Pool, Side, TaskError};
use taskpool_process::remote::{self, EncodedJob};
use tokio::sync::mpsc;

use crate::batch::Stream;
use crate::chunk::ItemTime;
use crate::config::ClusterConfig;
use crate::error;
use crate::image;
use crate::inbox;
use crate::link::{self, Names, Queue};
use crate::outbox::{self, Post};
use crate::pending::{Part, Pending, Settle};
use crate::wire::{self, RefusedResults, ResultMessage, Unit, UnitResult};

/// An agent counts as alive this long after it last said so (it says so every second).
pub(crate) const ALIVE_FOR: Duration = Duration::from_secs(3);
/// How often an agent says it is alive.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);

/// What an agent says once a second on `{name}.agents.{image}`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Heartbeat {
    pub(crate) agent: String,
    pub(crate) workers: u32,
}

/// What a caller says once a second on `{name}.callers.{image}`: that it is alive.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CallerBeat {
    pub(crate) caller: String,
}

/// The header of a task message that says, in milliseconds, how long its caller may be
/// silent before agents take it for gone ([`ClusterConfig::abandon_after`]).
pub(crate) const ABANDON_AFTER_HEADER: &str = "Taskpool-Abandon-After-Ms";

/// What a caller says on `{name}.cancel.{image}` to drop or stop one of its units.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CancelNotice {
    pub(crate) caller: String,
    pub(crate) task: u64,
}

/// A pool whose workers are agents on other machines, reached through a NATS JetStream
/// server: the same tasks as on one machine, crash isolation included.
///
/// Tasks are stored in a work-queue stream until an agent running the same executable image
/// takes one, runs it in a worker process of its own ([`taskpool_process::ProcessPool`]),
/// stores the result in the results stream and only then acknowledges the task. An agent
/// that dies (or is cut off) before that leaves the task to be delivered again after its ack
/// wait. So execution is at least once, and settlement exactly once: the pool keeps the
/// first result for each task and ignores any other.
///
/// A segfault, an abort, a time limit or a memory limit on an agent fails that task with the
/// same [`TaskError`] as on one machine. Three failures are the cluster's own: no agent of
/// this image for [`ClusterConfig::agent_wait`] while the server answers
/// ([`TaskError::NoWorker`]), a task delivered [`ClusterConfig::delivery_limit`] times without
/// an outcome ([`TaskError::DeliveryLimit`]), a server that does not take the task or does
/// not answer for as long, or that refuses for as long to store the result an agent holds
/// for it (a results stream that stays full, a permission refused: the agent tells the
/// pool, and the error says why) ([`TaskError::Unreachable`]).
///
/// The pool runs a small async runtime of its own, so async code on any runtime can use it:
/// `submit` never blocks, and its handles can be awaited. Connecting, `map`, `apply`, `join`,
/// `shutdown` and dropping the pool block the calling thread, as the other backends' do;
/// they are allowed on a thread of a tokio runtime too, and in `spawn_blocking` they leave
/// the runtime's threads free.
///
/// # Dropping
///
/// Dropping the pool waits up to [`taskpool_core::Config::shutdown_grace`] for tasks in
/// flight, then fails the rest with [`TaskError::ShutDown`], asks the agents to stop them and
/// removes them and their results from the streams. Call [`Pool::shutdown`] first to wait for
/// everything submitted. A program that ends without dropping its pool (killed, or
/// `std::process::exit`) leaves that to the agents: they stop and drop its tasks once they
/// have not heard the pool for [`ClusterConfig::abandon_after`].
///
/// # A program that forks
///
/// A copy of the program made by `fork()` inherits the pool's memory but not its runtime's
/// threads. There the inherited pool takes no work: every task given to it fails at once
/// with [`TaskError::ShutDown`], and `shutdown` and dropping return at once, leaving the
/// streams (whose work is the original's) alone. The original's pool goes on as if nothing
/// happened, and the copy can start pools of its own. A handle of a task submitted before the
/// fork settles in the original only: in the copy, joining it fails at once with
/// [`TaskError::ShutDown`].
///
/// # Examples
///
/// ```no_run
/// use taskpool_cluster::{ClusterConfig, ClusterPool, Pool, TaskError};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// # fn main() -> Result<(), TaskError> {
/// // Agents are this same program started with TASKPOOL_AGENT=nats://127.0.0.1:4222.
/// let pool = ClusterPool::with_config(ClusterConfig::new("nats://127.0.0.1:4222"))?;
/// assert_eq!(pool.map(square, 1..=5)?, [1, 4, 9, 16, 25]);
/// # Ok(())
/// # }
/// ```
pub struct ClusterPool {
    inner: Arc<Inner>,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    /// The task that pulls this caller's results (`inbox::receive`), stopped before its
    /// consumer is deleted: finding its consumer gone, it would make it again.
    receiver: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// What the pool's threads and its runtime's tasks share.
pub(crate) struct Inner {
    pub(crate) config: ClusterConfig,
    pub(crate) names: Names,
    pub(crate) image: &'static str,
    pub(crate) caller: String,
    /// The pool's initializer, as an offset into the executable image, for the agents.
    pub(crate) initializer: Option<i64>,
    pub(crate) pending: Pending,
    /// The id of the last batch job started (`map`, `imap`, `starmap`): see [`Unit::job`].
    jobs: AtomicU64,
    client: async_nats::Client,
    /// The connection the pool says it is alive on (see [`say_alive`]).
    beats: async_nats::Client,
    pub(crate) js: jetstream::Context,
    tasks: jetstream::stream::Stream,
    results: jetstream::stream::Stream,
    outbox: mpsc::UnboundedSender<Post>,
    agents: Mutex<HashMap<String, (Instant, u32)>>,
    /// Signalled when an agent says it is alive.
    agent_seen: Condvar,
    /// Units settled by a fast copy whose stored copy has not come yet.
    settled_fast: Mutex<HashSet<u64>>,
    /// When an agent was last known to be alive.
    last_alive: Mutex<Option<Instant>>,
    /// When the tasks stream known now was created (nanoseconds since the epoch): another
    /// time later means the server lost the stream and what was in it.
    tasks_created: Mutex<i128>,
    /// When the pool found that the server had lost the tasks stream, if it did.
    store_lost: Mutex<Option<Instant>>,
    /// Since when the server has taken none of the pool's task messages, if it failed one.
    pub(crate) outage: crate::outbox::Outage,
    closed: AtomicBool,
    /// The copy of the process that started the pool (see `remote::fork_generation`).
    home: u64,
    /// The largest unit the server and the tasks stream took when the pool connected.
    kept_max_unit: usize,
    runtime: tokio::runtime::Handle,
}

/// Counters of a cluster pool's life, from [`ClusterPool::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Units (a submitted task, or a chunk of a batch) settled, by a result or a failure.
    pub settled: u64,
    /// Results that arrived for a unit already settled by a result: the other runs of a task
    /// that was delivered more than once (an agent lost, or an acknowledgement). Never handed
    /// to a caller. The result of a unit its caller stopped waiting for (cancelled, its
    /// `imap` dropped) or that the pool failed itself (no agent in time, the server out of
    /// reach) is dropped too when it comes, and is not counted: only a second result is.
    pub duplicates: u64,
    /// Agents of this image seen alive in the last three seconds: heard by the heartbeat each
    /// sends once a second, so a pool connected less than a second ago may count none yet,
    /// even of agents that ran its tasks ([`ClusterPool::wait_for_agents`] waits for them).
    pub agents: usize,
    /// Their workers, summed.
    pub agent_workers: usize,
}

impl ClusterPool {
    /// Connects to the server at `url` with default settings.
    ///
    /// # Errors
    ///
    /// As [`ClusterPool::with_config`].
    pub fn connect(url: impl Into<String>) -> Result<Self, TaskError> {
        Self::with_config(ClusterConfig::new(url))
    }

    /// Connects to the server, creates the streams unless they exist, and starts listening
    /// for results. Returns without waiting for an agent: tasks wait in the stream for one
    /// (at most [`ClusterConfig::agent_wait`]).
    ///
    /// # Errors
    ///
    /// [`TaskError::InvalidConfig`] for a bad setting: among them a url that is not a NATS
    /// url, a credentials file that cannot be read, and replicas the server cannot have
    /// (more than one on a server that is not part of a cluster); and for a server whose
    /// `max_payload`, or a tasks stream whose `max_msg_size`, is below 64 KiB.
    /// [`TaskError::Unreachable`]
    /// if the server cannot be reached or refuses the streams: at once if its answer is
    /// final (a server without JetStream, or streams of that name made by someone else with
    /// other subjects or not as work queues), else after 40 tries (17 s of pauses between
    /// them) while it may change (a cluster electing its leaders); `waited` says how long.
    /// [`TaskError::Io`] if the executable cannot be read to identify its image.
    pub fn with_config(config: ClusterConfig) -> Result<Self, TaskError> {
        link::off_runtime(move || Self::start(config))?
    }

    /// [`ClusterPool::with_config`], on a thread outside any async runtime.
    fn start(config: ClusterConfig) -> Result<Self, TaskError> {
        config.validate()?;
        crate::entry::ensure_linked();
        remote::watch_forks();
        let image =
            image::current().map_err(|e| TaskError::Io(Arc::new(std::io::Error::other(e))))?;
        let runtime = link::runtime(config.config.get_name_prefix())?;
        let caller = link::random_id();
        let server_error = |reason: String| error::unreachable(reason, Duration::ZERO);
        let (client, beats, js, tasks, results, consumer) = runtime.block_on(async {
            let client =
                link::connect(&config.server, &format!("taskpool caller {caller}")).await?;
            // A connection of its own, so that the pool's beats never wait behind large task
            // messages on their way to the server.
            let beats =
                link::connect(&config.server, &format!("taskpool caller {caller} beats")).await?;
            let js = link::jetstream(client.clone());
            let (tasks, results) = link::streams(&js, &config.server, None).await?;
            let names = Names::new(&config.server);
            let consumer = link::results_consumer(&results, &names, &caller).await?;
            Ok::<_, TaskError>((client, beats, js, tasks, results, consumer))
        })?;
        let max_payload = link::message_limit(&client, &config.server)?;
        // Task messages go to the tasks stream, which may take less than the server.
        let max_payload = link::stream_message_limit(&tasks, max_payload)?;
        let (outbox, inbox) = mpsc::unbounded_channel();
        let tasks_created = tasks.cached_info().created.unix_timestamp_nanos();
        let inner = Arc::new(Inner {
            names: Names::new(&config.server),
            initializer: config.config.get_initializer().map(remote::initializer_offset),
            config,
            image,
            caller,
            pending: Pending::new(),
            jobs: AtomicU64::new(wire::SINGLE_TASKS),
            client,
            beats,
            js,
            tasks,
            results,
            outbox,
            agents: Mutex::new(HashMap::new()),
            agent_seen: Condvar::new(),
            settled_fast: Mutex::new(HashSet::new()),
            last_alive: Mutex::new(None),
            tasks_created: Mutex::new(tasks_created),
            store_lost: Mutex::new(None),
            outage: crate::outbox::Outage::default(),
            closed: AtomicBool::new(false),
            home: remote::fork_generation(),
            // Room for the envelope around the largest unit.
            kept_max_unit: max_payload - 1024,
            runtime: runtime.handle().clone(),
        });
        runtime.block_on(async {
            let agents = inner.client.subscribe(inner.names.agents_subject(image)).await;
            let agents = agents.map_err(|e| server_error(e.to_string()))?;
            tokio::spawn(watch_agents(inner.clone(), agents));
            // The server knows of the subscription before the first beat: the agents answer a
            // new caller's first beat with a heartbeat at once.
            inner.client.flush().await.ok();
            let fast = inner.client.subscribe(inner.names.fast_subject(&inner.caller)).await;
            let fast = fast.map_err(|e| server_error(e.to_string()))?;
            tokio::spawn(inbox::receive_fast(Arc::downgrade(&inner), fast));
            // Heard by the agents before the first task reaches them.
            let beat = inner.beat();
            inner.beats.publish(inner.names.callers_subject(image), beat).await.ok();
            inner.beats.flush().await.ok();
            Ok::<_, TaskError>(())
        })?;
        runtime.spawn(say_alive(Arc::downgrade(&inner), Instant::now()));
        runtime.spawn(outbox::publish(Arc::downgrade(&inner), inbox));
        let receiver = runtime.spawn(inbox::receive(Arc::downgrade(&inner), consumer));
        runtime.spawn(police(Arc::downgrade(&inner)));
        let receiver = Mutex::new(Some(receiver));
        Ok(ClusterPool { inner, runtime: Mutex::new(Some(runtime)), receiver })
    }

    /// The settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    /// The id of the executable image whose agents this pool's tasks need.
    pub fn image(&self) -> &str {
        self.inner.image
    }

    /// What happened so far: units settled, duplicate results ignored, agents alive.
    pub fn stats(&self) -> ClusterStats {
        let (settled, duplicates) = self.inner.pending.counts();
        let (agents, agent_workers) = self.inner.live_agents();
        ClusterStats { settled, duplicates, agents, agent_workers }
    }

    /// Waits until at least `n` agents of this image are alive, at most `limit`. Returns
    /// whether they are. Agents beat once a second, and answer a new pool's first beat at
    /// once: right after the pool connects, agents already serving are seen within a round
    /// trip to the server; one that starts later, once it serves.
    pub fn wait_for_agents(&self, n: usize, limit: Duration) -> bool {
        // A limit too long to be an instant is none.
        let deadline = Instant::now().checked_add(limit);
        let mut agents = self.inner.agents.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if alive(&agents).0 >= n {
                return true;
            }
            let left = match deadline.map(|d| d.checked_duration_since(Instant::now())) {
                Some(None) => return false,
                Some(Some(left)) => left,
                None => HEARTBEAT,
            };
            // Heartbeats come every second: wake at least that often to see agents expire.
            let nap = left.min(HEARTBEAT);
            agents = self
                .inner
                .agent_seen
                .wait_timeout(agents, nap)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Inner {
    /// The largest unit (a task message's payload, less room for its envelope) to send now:
    /// the smaller of what the server and the tasks stream took when the pool connected and
    /// what the server takes now (it may have restarted with a lower `max_payload`, and
    /// would refuse a larger message on every try).
    pub(crate) fn max_unit(&self) -> usize {
        let now = link::payload_limit_now(&self.js.client()).saturating_sub(1024);
        self.kept_max_unit.min(now)
    }

    /// What the pool says on its heartbeat subject.
    fn beat(&self) -> bytes::Bytes {
        wire::encode(&CallerBeat { caller: self.caller.clone() }).into()
    }

    /// `(agents, workers)` alive now.
    pub(crate) fn live_agents(&self) -> (usize, usize) {
        alive(&self.agents.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The workers of the smallest agent alive now; 0 with none.
    pub(crate) fn fewest_workers(&self) -> usize {
        let agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let alive = agents.values().filter(|(seen, _)| now.duration_since(*seen) < ALIVE_FOR);
        alive.map(|(_, workers)| *workers as usize).min().unwrap_or(0)
    }

    /// The workers to plan for: the configured number, or more if the agents have more.
    pub(crate) fn planned_workers(&self) -> usize {
        self.config.config.get_workers().max(self.live_agents().1)
    }

    /// Whether the pool takes no more work: it was closed, or this is a copy of the process
    /// that started it, made by `fork()`, where its runtime's threads do not exist.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.copied()
    }

    /// Whether this is a copy of the process that started the pool, made by `fork()`.
    pub(crate) fn copied(&self) -> bool {
        remote::fork_generation() != self.home
    }

    /// Notes the tasks stream as the server has it now, after the pool's consumer was found
    /// gone: a stream made since the pool last saw it means the server lost the old one,
    /// and the units waiting in it.
    pub(crate) fn found_tasks_stream(&self, tasks: &jetstream::stream::Stream) {
        let created = tasks.cached_info().created.unix_timestamp_nanos();
        let mut known = self.tasks_created.lock().unwrap_or_else(PoisonError::into_inner);
        if *known != created {
            *known = created;
            *self.store_lost.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        }
    }

    /// The id of a new batch job, for its units ([`Unit::job`]).
    pub(crate) fn new_job(&self) -> u64 {
        self.jobs.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Sends one unit of the caller's job `job_id` ([`Unit::job`]) whose outcomes go to
    /// `settle`; returns its id. The time its agent measured goes to `time`, the cost of the
    /// job's items (none for single tasks). A unit that cannot be sent is settled at once
    /// with the reason. With `held`, the unit, pending already, goes there instead of to the
    /// server: for [`Inner::send_spread`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send(
        self: &Arc<Self>,
        job_id: u64,
        time: Option<&Arc<ItemTime>>,
        job: &EncodedJob,
        inputs: Vec<u8>,
        ends: Vec<u32>,
        timeout: Option<Duration>,
        settle: Settle,
        on_id: impl FnOnce(u64),
        held: Option<&mut Vec<Unit>>,
    ) {
        let items = ends.len();
        let unit = Unit {
            task: self.pending.next_id(),
            job: job_id,
            entry: job.entry(),
            state: job.state().to_vec(),
            timeout_ns: timeout
                .or(self.config.config.get_timeout())
                .map(|t| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)),
            inputs,
            ends,
        };
        let fail = |settle: Settle, error: TaskError| {
            settle((0..items).map(|_| Err(error.clone())).collect());
        };
        if self.copied() {
            // Nothing in a copy made by `fork()` would carry the unit or its results.
            return fail(settle, TaskError::ShutDown);
        }
        let max_unit = self.max_unit();
        if let Some(error) = Unit::state_too_large(unit.state.len(), max_unit) {
            return fail(settle, error);
        }
        if unit.weight() > max_unit {
            // The inputs' own size, and the most they may be beside the rest of the unit (a
            // batch makes its chunks fit, so this is a single task's argument).
            let rest = unit.weight() - unit.inputs.len();
            let error = TaskError::TooLarge {
                side: Side::Argument,
                size: unit.inputs.len() as u64,
                limit: max_unit.saturating_sub(rest) as u64,
            };
            return fail(settle, error);
        }
        let id = unit.task;
        on_id(id);
        if let Err(settle) = self.pending.insert(id, items, time.cloned(), settle) {
            return fail(settle, TaskError::ShutDown);
        }
        match held {
            Some(held) => held.push(unit),
            None => self.post(Post::Loose(unit)),
        }
    }

    /// Sends `units`, pending already, in as many parcels as there are agents alive, each
    /// about an equal share of their items, in order: the chunks a job sends at once (its
    /// first ones, sent before it measured what its items cost, or those a result made room
    /// for, which shrink from one to the next as each is a fair share of what is left: shared
    /// out by count, two agents got 60 and 16 items of 17 chunks). Each agent has pull
    /// requests waiting for messages, and the server hands messages to the waiting requests
    /// in turn, so each agent gets a share: in one message, they would all go to one agent
    /// while the others wait; in a message each, the server's work for the messages would
    /// cost most of a small `map`'s time (8 items, 8 messages). With no agent heard yet, each
    /// unit travels alone. A share too large for one message goes in several parcels
    /// ([`parcel_count`]).
    ///
    /// A `map`'s pass goes to [`Queue::Parcels`] in a parcel for each worker of the agents
    /// alive, which each agent pulls one at a time for each of its free workers: an agent of
    /// four workers takes four parcels where one of one worker takes one. Shared out a
    /// parcel to each agent, agents of one and four workers ran a `map` of 10 items of 1 s
    /// 5 and 5 (5 s, where 2 s would do).
    pub(crate) fn send_spread(&self, units: Vec<Unit>, queue: Queue) {
        let (agents, workers) = self.live_agents();
        let takers = match queue {
            Queue::Tasks => agents,
            Queue::Parcels => workers,
        };
        let parcels = parcel_count(&units, takers, self.max_unit());
        for parcel in shares(units, parcels) {
            self.post(Post::Parcel(parcel, queue));
        }
    }

    /// Hands `post` to the outbox; fails its units if the outbox is gone.
    fn post(&self, post: Post) {
        if let Err(mpsc::error::SendError(post)) = self.outbox.send(post) {
            let units = match post {
                Post::Loose(unit) => vec![unit],
                Post::Parcel(units, _) => units,
            };
            for unit in units {
                if let Some(entry) = self.pending.give_up(unit.task) {
                    entry.fail(&TaskError::ShutDown);
                }
            }
        }
    }

    /// Forgets unit `id` (its handle was cancelled, or its batch dropped) and asks the agents
    /// to drop or stop it.
    pub(crate) fn cancel(self: &Arc<Self>, id: u64) {
        if self.pending.give_up(id).is_none() {
            return;
        }
        let notice = wire::encode(&CancelNotice { caller: self.caller.clone(), task: id });
        let (client, subject) = (self.client.clone(), self.names.cancel_subject(self.image));
        self.runtime.spawn(async move {
            let _ = client.publish(subject, notice.into()).await;
        });
    }

    /// Settles the units of one result message, `stored` (from the results stream) or a
    /// fast copy.
    ///
    /// Small results come twice: a fast copy straight from the agent, then the stored one.
    /// Whichever comes first settles the unit. A fast copy for a settled unit is ignored; a
    /// stored copy for one is a duplicate unless its fast copy settled the unit. A result
    /// too large for one message comes in parts ([`Inner::settle_part`]).
    pub(crate) fn settle(&self, message: ResultMessage, stored: bool) {
        let fast = || self.settled_fast.lock().unwrap_or_else(PoisonError::into_inner);
        for result in message.results {
            // A failure of the whole unit is one error, whole even if it says it is a part.
            if let (Some(first), Some(n)) = (result.part, result.outcome.carried()) {
                self.settle_part(&result, first as usize, n);
                continue;
            }
            if !stored {
                // Marked before it is taken: a stored copy arriving meanwhile on another
                // thread, which finds the unit gone, must find the mark too.
                fast().insert(result.task);
            }
            let Some(entry) = self.pending.take(result.task) else {
                let expected = fast().remove(&result.task);
                if stored && !expected {
                    self.pending.late_result(result.task);
                }
                continue;
            };
            if let Some(time) = &entry.time {
                time.record(entry.items, result.elapsed_ns);
            }
            let outcomes = result.outcome.items(entry.items);
            entry.settle(outcomes);
        }
    }

    /// Fails the units of `notice`, as [`TaskError::Unreachable`] saying why, once the server
    /// has refused to store their results for the agent wait: the agent that holds them
    /// retries for as long as it lives, and the pool would wait for them with no word.
    /// Results stored later after all are duplicates.
    pub(crate) fn results_refused(&self, notice: RefusedResults) {
        let refused = Duration::from_millis(notice.refused_ms);
        // The results this pool has (from fast copies) or has given up on: the agent holds
        // their tasks until it stores them, and, in a store full of task messages, would for
        // ever. Cancelled, it throws them away.
        let mut unwanted: Vec<u64> =
            notice.tasks.iter().copied().filter(|&task| !self.pending.contains(task)).collect();
        if refused >= self.config.agent_wait {
            unwanted.extend(self.refused_too_long(&notice, refused));
        }
        for task in unwanted {
            let notice = wire::encode(&CancelNotice { caller: self.caller.clone(), task });
            let (client, subject) = (self.client.clone(), self.names.cancel_subject(self.image));
            self.runtime.spawn(async move {
                let _ = client.publish(subject, notice.into()).await;
            });
        }
    }

    /// Fails the units of `notice` still pending, whose results the server has refused to
    /// store for `refused`, and returns their ids.
    fn refused_too_long(&self, notice: &RefusedResults, refused: Duration) -> Vec<u64> {
        let reason = format!(
            "the server at {} refuses to store the results of this pool's tasks that agent {} \
             ran, and has for {:.0} s: {}",
            self.config.server.shown_url(),
            notice.agent,
            refused.as_secs_f64(),
            notice.reason,
        );
        let error = error::unreachable(reason, refused);
        let mut failed = Vec::new();
        for &task in &notice.tasks {
            if let Some(entry) = self.pending.give_up(task) {
                entry.fail(&error);
                failed.push(task);
            }
        }
        failed
    }

    /// Keeps the `n` outcomes of `result`, a part of its unit's result from item `first`
    /// on, and settles the unit with its last missing part.
    ///
    /// Parts are stored, never fast copies. Each run of a unit sends one part from item 0:
    /// that part, when not wanted, counts the run as a duplicate.
    fn settle_part(&self, result: &UnitResult, first: usize, n: usize) {
        match self.pending.take_part(result.task, first, result.outcome.items(n)) {
            Part::Completed(entry, outcomes) => {
                if let Some(time) = &entry.time {
                    time.record(entry.items, result.elapsed_ns);
                }
                entry.settle_parts(outcomes);
            }
            Part::Kept => {}
            Part::Unwanted if first == 0 => self.pending.late_result(result.task),
            Part::Unwanted => {}
        }
    }
}

/// How many parcels [`Inner::send_spread`] cuts `units` into among `agents` takers alive
/// (agents, or for a `map` their workers): as many for each as one message would need to
/// carry its share of the bytes (about half of `max_unit`, see `outbox::pack`), so that
/// every parcel travels in one message, of about as many items as the others; with none
/// alive, one for each unit. The server hands the
/// messages to the agents' pull requests in turn, and an agent's request asks for as many
/// messages as it had free slots: a share cut into several messages (at 128 items, as loose
/// units are) gave an agent whose request had room for one message a single message of its
/// share, and the others the rest (a pass of 288 items on two agents: 80 and 208 items).
fn parcel_count(units: &[Unit], agents: usize, max_unit: usize) -> usize {
    if agents == 0 {
        return units.len();
    }
    let weight: usize = units.iter().map(Unit::weight).sum();
    let by_weight = weight.div_ceil(agents * (max_unit / 2).max(1));
    // No more than a unit each, and the same number for every agent.
    let each = by_weight.min(units.len() / agents).max(1);
    (agents * each).min(units.len())
}

/// `units` in order, cut into `parcels` parcels of about as many items each (none empty).
fn shares(mut units: Vec<Unit>, parcels: usize) -> Vec<Vec<Unit>> {
    let mut items: usize = units.iter().map(|u| u.ends.len()).sum();
    let mut shares = Vec::with_capacity(parcels);
    for left in (1..=parcels).rev() {
        // Each parcel takes units until it has its share of the items left, but leaves a
        // unit for each parcel after it.
        let share = items.div_ceil(left);
        let (mut taken, mut count) = (0, 0);
        while count < units.len() - (left - 1) && (count == 0 || taken < share) {
            taken += units[count].ends.len();
            count += 1;
        }
        let rest = units.split_off(count);
        shares.push(std::mem::replace(&mut units, rest));
        items -= taken;
    }
    shares
}

/// `(agents, workers)` alive now in `agents`.
fn alive(agents: &HashMap<String, (Instant, u32)>) -> (usize, usize) {
    let now = Instant::now();
    let alive = agents.values().filter(|(seen, _)| now.duration_since(*seen) < ALIVE_FOR);
    alive.fold((0, 0), |(n, w), (_, workers)| (n + 1, w + *workers as usize))
}

/// Keeps the table of live agents from their heartbeats.
async fn watch_agents(inner: Arc<Inner>, mut beats: async_nats::Subscriber) {
    let weak = Arc::downgrade(&inner);
    drop(inner);
    while let Some(message) = beats.next().await {
        let Some(inner) = weak.upgrade() else { return };
        if let Ok(beat) = wire::decode::<Heartbeat>(&message.payload) {
            let now = Instant::now();
            let mut agents = inner.agents.lock().unwrap_or_else(PoisonError::into_inner);
            agents.retain(|_, (seen, _)| now.duration_since(*seen) < ALIVE_FOR);
            agents.insert(beat.agent, (now, beat.workers));
            inner.agent_seen.notify_all();
            *inner.last_alive.lock().unwrap_or_else(PoisonError::into_inner) = Some(now);
        }
    }
}

/// Says once a second, on the callers' subject, that the pool is alive, from `said` on (when
/// it last said so): agents drop the tasks of a pool they have not heard for
/// [`ClusterConfig::abandon_after`].
///
/// A pool that could not speak for nearly that long (its program was stopped, or its
/// connection was down) may have been taken for gone: when it can speak again, it fails the
/// units it had sent before with [`TaskError::Unreachable`], rather than wait for results that
/// may never come.
async fn say_alive(inner: Weak<Inner>, mut said: Instant) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.beats.connection_state() != async_nats::connection::State::Connected {
            // Nothing said now would be heard now.
            continue;
        }
        let now = Instant::now();
        let silent = now.saturating_duration_since(said);
        let bound = inner.config.abandon_after;
        // A beat takes a moment to reach the agents, and one may be slower than the one
        // before: the pool counts itself gone a little early (a tenth of its bound, at most a
        // beat), but not so early that a short stall of its own fails what the agents keep.
        if silent >= bound.saturating_sub((bound / 10).min(HEARTBEAT)) {
            forsaken(&inner, silent);
        }
        let subject = inner.names.callers_subject(inner.image);
        if inner.beats.publish(subject, inner.beat()).await.is_ok() {
            said = now;
        }
    }
}

/// Fails, as [`TaskError::Unreachable`], every unit pending now: the pool was silent for
/// `silent`, long enough for the agents to take it for gone and drop them (those sent since it
/// last spoke as well as before: an agent may have run them and stopped them; and those sent
/// while its connection was down may reach the agents before its next beat does).
fn forsaken(inner: &Inner, silent: Duration) {
    let now = Instant::now();
    let overdue = inner.pending.overdue(now, Duration::ZERO, |submitted| submitted);
    if overdue.is_empty() {
        return;
    }
    let reason = format!(
        "this pool could not tell the agents that it was alive for {:.1} s (its program was \
         stopped, or its connection to {} was down), and they take a pool silent for {:?} \
         for gone and drop its tasks (ClusterConfig::abandon_after)",
        silent.as_secs_f64(),
        inner.config.server.shown_url(),
        inner.config.abandon_after,
    );
    for (_, entry) in overdue {
        entry.fail(&error::unreachable(reason.clone(), silent));
    }
}

/// Fails units that waited too long for an agent: as [`TaskError::Unreachable`] if the server
/// does not answer now (its loss is what stopped the heartbeats, and what keeps agents from
/// the task), else as [`TaskError::NoWorker`].
async fn police(inner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let now = Instant::now();
        fail_lost(&inner, now);
        if inner.live_agents().0 > 0 {
            continue;
        }
        let last = *inner.last_alive.lock().unwrap_or_else(PoisonError::into_inner);
        let wait = inner.config.agent_wait;
        // A unit waits from when it was sent or when an agent was last alive, the later.
        let since = |submitted: Instant| last.map_or(submitted, |l| l.max(submitted));
        // But while the pool's connection is down and no agent has been heard for the wait,
        // the server's loss is what keeps agents from every unit, however recently sent:
        // each does not wait anew (a `map` sends its later chunks as earlier ones settle,
        // and would wait once per window of chunks in flight).
        let cut_off = inner.client.connection_state() != async_nats::connection::State::Connected
            && last.is_some_and(|l| now.saturating_duration_since(l) >= wait);
        let lost_since = |submitted: Instant| last.map_or(submitted, |l| l.min(submitted));
        // The agents of other builds and stream names are listened to before units fail as
        // `NoWorker`, for `LISTEN_FOR`: from that long before the first is due until it is
        // due, so that it fails when due (listened to once due, it failed 1.25 s late; for
        // `LISTEN_FOR` from a wait's start, a wait shorter than that lasted that long).
        let due = if cut_off {
            inner.pending.first_due(wait, lost_since).filter(|&due| due <= now)
        } else {
            let soon = now.checked_add(LISTEN_FOR).unwrap_or(now);
            inner.pending.first_due(wait, since).filter(|&due| due <= soon)
        };
        let Some(due) = due else { continue };
        let unreachable = link::why_unreachable(&inner.js, &inner.config.server).await;
        let (other_agents, other_streams) = match unreachable {
            Some(_) => (0, 0),
            // Until the first unit is due, and at least as long as a wait (or `LISTEN_FOR`)
            // for units that were due before the pool listened (those whose agents went).
            None => {
                let least = tokio::time::Instant::now() + wait.min(LISTEN_FOR);
                other_agents(&inner, least.max(due.into())).await
            }
        };
        if inner.live_agents().0 > 0 {
            // An agent spoke up while the server was asked, or the others listened to.
            continue;
        }
        // Those due by now fail; any others of those due soon wait for a later round.
        let now = Instant::now();
        let overdue = if cut_off && unreachable.is_some() {
            inner.pending.overdue(now, wait, lost_since)
        } else {
            inner.pending.overdue(now, wait, since)
        };
        // The unit waited until it fails, the time the server was asked included.
        let failed = Instant::now();
        for (_, entry) in overdue {
            // What this unit waited: never more than since it was submitted.
            let waited = failed.saturating_duration_since(since(entry.submitted));
            let error = match &unreachable {
                Some(reason) => error::unreachable(reason.clone(), waited),
                None => TaskError::NoWorker { waited, other_agents, other_streams },
            };
            entry.fail(&error);
        }
    }
}

/// How long a pool listens for agents that cannot run its tasks ([`other_agents`]) before
/// its units fail for want of one: a heartbeat, and a margin for one that comes late; no
/// longer than the wait, which may be shorter.
const LISTEN_FOR: Duration = Duration::from_millis(1_250);

/// How many agents alive cannot run the pool's tasks, as `(of other images, of the pool's
/// image on streams of another name)`: those heard until `until` (at most [`LISTEN_FOR`])
/// on the agents' subjects of every image under the pool's stream name, and on those of the
/// pool's image under every other name. Agents started from an older build, and a stream
/// name set on one side only, are the likeliest reasons a pool has none (see
/// [`TaskError::NoWorker`]). Zeros if the server cannot be asked.
async fn other_agents(inner: &Inner, until: tokio::time::Instant) -> (usize, usize) {
    let Ok(beats) = inner.client.subscribe(inner.names.agents_subject("*")).await else {
        return (0, 0);
    };
    // Stream names are one token of letters, digits, '_' and '-'.
    let elsewhere = inner.client.subscribe(format!("*.agents.{}", inner.image)).await.ok();
    let elsewhere = futures_util::stream::iter(elsewhere).flatten().map(|m| (m, true));
    let mut heard = futures_util::stream::select(beats.map(|m| (m, false)), elsewhere);
    let own = inner.names.agents_subject(inner.image);
    let (mut others, mut other_streams) = (HashSet::new(), HashSet::new());
    let until = until.min(tokio::time::Instant::now() + LISTEN_FOR);
    while let Ok(Some((message, elsewhere))) = tokio::time::timeout_at(until, heard.next()).await {
        if message.subject.as_str() == own {
            continue;
        }
        if let Ok(beat) = wire::decode::<Heartbeat>(&message.payload) {
            if elsewhere {
                other_streams.insert(beat.agent);
            } else {
                others.insert(beat.agent);
            }
        }
    }
    // Dropping the subscriptions ends them.
    drop(heard);
    (others.len(), other_streams.len())
}

/// Fails, as [`TaskError::Unreachable`], the units sent before the server lost its tasks
/// stream that no agent answered within the agent wait since: they were lost with it, unless
/// an agent held them then.
fn fail_lost(inner: &Inner, now: Instant) {
    let lost = *inner.store_lost.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(lost) = lost else { return };
    let wait = inner.config.agent_wait;
    if now.saturating_duration_since(lost) < wait {
        return;
    }
    // Units sent since then are in the new stream: they wait from now, never long enough.
    let since = |submitted: Instant| if submitted < lost { lost } else { now };
    let reason = format!(
        "the server at {} lost its tasks stream (restarted without its store?), and the task \
         with it",
        inner.config.server.shown_url()
    );
    for (_, entry) in inner.pending.overdue(now, wait, since) {
        let waited = now.saturating_duration_since(entry.submitted);
        entry.fail(&error::unreachable(reason.clone(), waited));
    }
    let mut known = inner.store_lost.lock().unwrap_or_else(PoisonError::into_inner);
    if *known == Some(lost) {
        *known = None;
    }
}

impl Execute for ClusterPool {
    fn execute<J: Job>(
        &self,
        job: &Arc<J>,
        input: J::Input,
        completer: Completer<J::Output>,
        timeout: Option<Duration>,
    ) {
        if self.inner.is_closed() {
            completer.complete(Err(TaskError::ShutDown));
            return;
        }
        let encoded = match remote::off_machine(|| EncodedJob::of(&**job)) {
            Ok(encoded) => encoded,
            Err(e) => {
                completer.complete(Err(e));
                return;
            }
        };
        let mut inputs = Vec::new();
        if let Err(e) =
            remote::off_machine(|| remote::encode_into(&input, &mut inputs, Side::Argument))
        {
            completer.complete(Err(e));
            return;
        }
        let ends = vec![inputs.len() as u32];
        let completer = Arc::new(completer);
        let settler = completer.clone();
        // The task's record lives while it is pending: its settling holds it.
        let record = Arc::new(Sent { inner: Arc::downgrade(&self.inner), id: OnceLock::new() });
        let held = record.clone();
        let settle: Settle = Box::new(move |outcomes| {
            let outcome = outcomes.into_iter().next().unwrap_or(Err(TaskError::ShutDown));
            settler.complete(
                outcome
                    .and_then(|bytes| remote::off_machine(|| remote::decode(bytes, Side::Result))),
            );
            drop(held);
        });
        let on_id = |id| {
            let _ = record.id.set(id);
            completer.on_cancel_of(Arc::downgrade(&record) as Weak<Sent>);
        };
        let single = wire::SINGLE_TASKS;
        self.inner.send(single, None, &encoded, inputs, ends, timeout, settle, on_id, None);
    }
}

/// The record of one task sent by a caller, for its handle: cancels it, and tells a caller
/// that joins it in a copy of the process made by `fork()` (which has none of the pool's
/// threads) that it will never be answered there.
struct Sent {
    inner: Weak<Inner>,
    /// The task's id, once it has one.
    id: OnceLock<u64>,
}

impl Cancel for Sent {
    fn cancel(&self) {
        if let (Some(inner), Some(&id)) = (self.inner.upgrade(), self.id.get()) {
            inner.cancel(id);
        }
    }

    /// Fails the task joined in a copy of the process with [`TaskError::ShutDown`]; nothing
    /// to do otherwise.
    fn help_wait(&self, _: Option<Instant>, _: &dyn Fn() -> bool) -> Result<(), TaskError> {
        self.forsaken().map_or(Ok(()), Err)
    }

    /// [`TaskError::ShutDown`] in a copy of the process made by `fork()`, as for a join.
    fn forsaken(&self) -> Option<TaskError> {
        let copied = self.inner.upgrade().is_some_and(|inner| inner.copied());
        copied.then_some(TaskError::ShutDown)
    }
}

impl Pool for ClusterPool {
    fn workers(&self) -> usize {
        self.inner.config.config.get_workers()
    }

    fn shutdown(&self) {
        if self.inner.copied() {
            // What runs is the original process's.
            return;
        }
        self.inner.closed.store(true, Ordering::Release);
        self.inner.pending.close();
        self.inner.pending.wait_empty(None);
    }

    fn map_results<M, T, I>(&self, task: T, items: I) -> Vec<Result<T::Output, TaskError>>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
    {
        let () = <T::Job as Job>::PORTABLE;
        Stream::new(&self.inner, task.into_job(), items.into_iter(), true, usize::MAX).collect()
    }

    fn map_results_with_progress<M, T, I, F>(
        &self,
        task: T,
        items: I,
        mut progress: F,
    ) -> Vec<Result<T::Output, TaskError>>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
        F: FnMut(usize, usize),
    {
        let () = <T::Job as Job>::PORTABLE;
        let items: Vec<T::Input> = items.into_iter().collect();
        let total = items.len();
        progress(0, total);
        let mut outcomes = Vec::with_capacity(total);
        let stream = Stream::new(&self.inner, task.into_job(), items.into_iter(), true, usize::MAX);
        for outcome in stream {
            outcomes.push(outcome);
            progress(outcomes.len(), total);
        }
        outcomes
    }

    fn map<M, T, I>(&self, task: T, items: I) -> Result<Vec<T::Output>, TaskError>
    where
        T: IntoTask<M>,
        I: IntoIterator<Item = T::Input>,
    {
        let () = <T::Job as Job>::PORTABLE;
        Stream::new(&self.inner, task.into_job(), items.into_iter(), true, usize::MAX).collect()
    }

    /// Wide: items cross the network in chunks, and a narrow window would leave agents idle
    /// for a round trip.
    fn imap_window(&self) -> usize {
        crate::batch::LAZY_WINDOW
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
        let () = <T::Job as Job>::PORTABLE;
        Stream::new(&self.inner, task.into_job(), items.into_iter(), true, self.imap_window())
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
        let () = <T::Job as Job>::PORTABLE;
        Stream::new(&self.inner, task.into_job(), items.into_iter(), false, self.imap_window())
    }
}

impl Drop for ClusterPool {
    fn drop(&mut self) {
        if self.inner.copied() {
            // A copy made by `fork()`: the runtime's threads are the original's, and so is
            // the work in the streams, which tidying would remove. Nothing to do, and the
            // runtime cannot be shut down without its threads.
            let runtime = self.runtime.get_mut().unwrap_or_else(PoisonError::into_inner).take();
            std::mem::forget(runtime);
            return;
        }
        let inner = &self.inner;
        inner.closed.store(true, Ordering::Release);
        inner.pending.close();
        inner.pending.wait_empty(Some(inner.config.config.get_shutdown_grace()));
        let left = inner.pending.drain();
        let ids: Vec<u64> = left.iter().map(|(id, _)| *id).collect();
        for (_, entry) in left {
            entry.fail(&TaskError::ShutDown);
        }
        // Stopping the runtime blocks: never on a thread of the caller's own async runtime.
        let mut runtime = self.runtime.lock().unwrap_or_else(PoisonError::into_inner).take();
        let receiver = self.receiver.lock().unwrap_or_else(PoisonError::into_inner).take();
        let held = &mut runtime;
        let _ = link::off_runtime(|| {
            if let Some(runtime) = held.take() {
                tidy(inner, ids, runtime, receiver);
            }
        });
        if let Some(runtime) = runtime {
            // No thread to stop it on: the streams' own limits remove what is left.
            runtime.shutdown_background();
        }
    }
}

/// Asks the agents to stop the pool's units `ids`, removes what waits of them and the
/// results nobody will read from the streams (a server that is gone is not waited for), and
/// stops the pool's runtime.
fn tidy(
    inner: &Inner,
    ids: Vec<u64>,
    runtime: tokio::runtime::Runtime,
    receiver: Option<tokio::task::JoinHandle<()>>,
) {
    let tidy = async {
        // Nothing pulls the results any more, nor makes the consumer again once deleted.
        if let Some(receiver) = receiver {
            receiver.abort();
            let _ = receiver.await;
        }
        let cancel = inner.names.cancel_subject(inner.image);
        for task in ids {
            let notice = CancelNotice { caller: inner.caller.clone(), task };
            let _ = inner.client.publish(cancel.clone(), wire::encode(&notice).into()).await;
        }
        for filter in inner.names.caller_filters(inner.image, &inner.caller) {
            let _ = inner.tasks.purge().filter(filter).await;
        }
        let _ = inner.results.delete_consumer(&Names::results_consumer(&inner.caller)).await;
        let _ = inner.results.purge().filter(inner.names.results_subject(&inner.caller)).await;
        let _ = inner.client.flush().await;
    };
    // Not connected (the server is gone, or the pool is between two connections): nothing
    // could be tidied; the agents remove what is left once the pool is silent for its bound.
    if inner.client.connection_state() == async_nats::connection::State::Connected {
        let _ =
            runtime.block_on(async { tokio::time::timeout(Duration::from_secs(2), tidy).await });
    }
    runtime.shutdown_timeout(Duration::from_millis(200));
}

impl fmt::Debug for ClusterPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterPool")
            .field("server", &self.inner.config.server.shown_url())
            .field("image", &self.inner.image)
            .field("caller", &self.inner.caller)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(task: u64, items: usize) -> Unit {
        let ends = (1..=items as u32).collect();
        let inputs = vec![0; items];
        Unit { task, job: 1, entry: 0, state: Vec::new(), timeout_ns: None, inputs, ends }
    }

    fn items(parcels: &[Vec<Unit>]) -> Vec<usize> {
        parcels.iter().map(|p| p.iter().map(|u| u.ends.len()).sum()).collect()
    }

    /// The burst of a `map` of 100 items of 1 ms on two agents of two workers once its first
    /// unit was measured: 17 chunks, each a fair share of what was left. Shared out by count
    /// (9 and 8 chunks), one agent got 60 items and the other 16.
    #[test]
    fn parcels_share_out_the_items_not_the_chunks() {
        let sizes = [11, 9, 8, 7, 6, 6, 5, 4, 4, 3, 3, 2, 2, 2, 2, 1, 1];
        let units = sizes.iter().enumerate().map(|(i, &n)| unit(i as u64, n)).collect();
        let parcels = shares(units, 2);
        assert_eq!(items(&parcels), [41, 35]);
        let order: Vec<u64> = parcels.iter().flatten().map(|u| u.task).collect();
        assert_eq!(order, (0..sizes.len() as u64).collect::<Vec<u64>>(), "in order");
    }

    /// A pass of 18 chunks of 16 items on two agents: 144 items each, more than 128, in a
    /// parcel each; a share too heavy for a message goes in several parcels.
    #[test]
    fn a_share_too_heavy_for_a_message_goes_in_several_parcels() {
        let units: Vec<Unit> = (0..18).map(|i| unit(i, 16)).collect();
        let max_unit = 1 << 20;
        assert_eq!(parcel_count(&units, 2, max_unit), 2);
        assert_eq!(items(&shares(units.clone(), 2)), [144, 144]);
        assert_eq!(parcel_count(&units, 3, max_unit), 3);
        assert_eq!(parcel_count(&units, 0, max_unit), 18, "no agent: a unit each");
        assert_eq!(parcel_count(&units[..3], 2, max_unit), 2);
        assert_eq!(parcel_count(&units[..1], 2, max_unit), 1);
        assert_eq!(parcel_count(&units, 2, 64), 18, "heavy units: as many parcels as units");
        assert_eq!(parcel_count(&units[..17], 2, 64), 16, "the same number for each agent");
        // Half a message holds about a quarter of the pass's bytes: two parcels each.
        let weight: usize = units.iter().map(Unit::weight).sum();
        assert_eq!(parcel_count(&units, 2, weight / 2 + 4), 4);
    }

    #[test]
    fn each_parcel_takes_a_unit_at_least() {
        let units = vec![unit(0, 100), unit(1, 1), unit(2, 1)];
        assert_eq!(items(&shares(units, 3)), [100, 1, 1]);
        let units = vec![unit(0, 1), unit(1, 1), unit(2, 100)];
        assert_eq!(items(&shares(units, 2)), [2, 100]);
        let units = (0..8).map(|i| unit(i, 1)).collect();
        assert_eq!(items(&shares(units, 2)), [4, 4]);
        assert!(shares(Vec::new(), 0).is_empty());
    }
}
