//! The agent: the user's own program, serving the tasks of its executable image from the
//! tasks stream in a local process pool.
//!
//! For each task message the agent takes, it checks the delivery count against the caller's
//! limit, runs every unit in its [`ProcessPool`] (crash isolation as on one machine),
//! reports progress to the server while units run, stores each unit's result in the results
//! stream, and acknowledges the message only once every result is stored. An agent that
//! dies at any point leaves the message to be delivered again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind, message::PublishMessage};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use taskpool_core::TaskError;
use taskpool_process::ProcessPool;
use taskpool_process::remote::{self, EncodedJob, RemoteRun};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::callers::{Callers, Gone, STALLED, abandon_after};
use crate::config::AgentConfig;
use crate::error;
use crate::idle::{Busy, Claim, Idle};
use crate::image;
use crate::link::{self, Names, Queue};
use crate::pool::{CallerBeat, CancelNotice, HEARTBEAT, Heartbeat};
use crate::refusal::{Stream, refusal};
use crate::request::{Next, PullRequest};
use crate::wire::{
    self, Item, RefusedResults, ResultMessage, ResultMessageRef, TaskMessage, Unit, UnitOutcome,
    UnitResult, WireError,
};
use crate::workers::Workers;

/// Result messages being stored at once; results that arrive meanwhile travel together.
const STORING: usize = 64;
/// Result messages up to this size are also sent straight to their caller, which then need
/// not wait for the server to store them (the stored copy is what makes them safe).
const FAST_COPY: usize = 16 << 10;
/// The server's payload limit until it says otherwise (NATS's default).
const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;
/// Room for a result message's envelope around its results.
const ENVELOPE: usize = 1024;
/// How many cancelled tasks an agent remembers, to skip them if they arrive later.
const REMEMBERED_CANCELS: usize = 100_000;
/// How often an agent looks for callers gone silent among those whose units it runs.
const WATCH_CALLERS: Duration = Duration::from_millis(250);
/// How long, at least, an agent remembers a caller it took for gone after its last unit came
/// (and at least the caller's bound): the results stored for it meanwhile are removed then,
/// and what was dropped is said.
const FORGET_GONE: Duration = Duration::from_secs(5);
/// How long an agent remembers when it last heard a caller (or first saw a task of one it has
/// not heard).
const FORGET_HEARD: Duration = Duration::from_secs(3600);
/// How often, at most, an agent says again that the server refuses to store its results.
const SAY_REFUSED: Duration = Duration::from_secs(15);
/// How often, at most, an agent tells a caller that the server refuses to store a result
/// message of its units ([`RefusedResults`]): the caller fails them once that has lasted its
/// agent wait.
const TELL_REFUSED: Duration = Duration::from_secs(1);

/// Serves tasks until the process receives `SIGTERM` or `SIGINT`; then takes no new task,
/// finishes those it holds, and returns. A second such signal ends the process at once (exit
/// status 1, its workers' process groups killed), leaving the tasks it held to be delivered
/// again after the ack wait.
///
/// This is what a program started with `TASKPOOL_AGENT` set runs before `main` (see the
/// crate's documentation); call it yourself to start an agent from code, async code included
/// (it blocks the calling thread until the agent stops; inside an async runtime it runs its
/// own runtime on a thread of its own). The agent waits for its server: while it cannot
/// connect it says why on standard error (at once, then every 15 s); connected to a server
/// whose JetStream is not available yet (a cluster of servers still forming), it waits too,
/// saying why after 15 s and every 15 s after. It prints one line to standard error once it
/// is serving. While the server refuses to store its results (a results stream that stays
/// full, a permission refused, a limit), it says so there, at once and every 15 s at most,
/// and retries them (but for those of a caller it takes for gone, see below, which it throws
/// away); asked to stop, it gives up on them once none has been stored for the ack
/// wait (as once its server has been out of reach for that long), saying what it did not
/// store: the server gives their tasks to other agents.
///
/// It drops the tasks of a caller it has not heard for the caller's
/// [`ClusterConfig::abandon_after`](crate::ClusterConfig::abandon_after) (by its own clock;
/// one it has never heard is silent since the agent began to listen, but is judged only 3 s
/// after its first task came, as its first beat may come after that task):
/// those that arrive are not run, those that run are stopped (their workers killed and
/// replaced), results of it the server refuses to store are thrown away, and the caller's
/// results are removed from the stream. It says on standard
/// error when it takes a caller for gone, and later how many of its tasks it dropped and
/// stopped.
///
/// # Errors
///
/// [`TaskError::InvalidConfig`] for a bad setting (as for
/// [`ClusterPool::with_config`](crate::ClusterPool::with_config), a server whose
/// `max_payload`, or a results stream whose `max_msg_size`, is below 64 KiB included),
/// [`TaskError::WorkerStart`]
/// if the local process pool cannot start, [`TaskError::Unreachable`] if the server refuses
/// the streams.
///
/// # Examples
///
/// ```no_run
/// use taskpool_cluster::{AgentConfig, Config};
///
/// let config = AgentConfig::new("nats://127.0.0.1:4222").pool(Config::new().workers(8));
/// taskpool_cluster::serve_agent(config)?;
/// # Ok::<(), taskpool_cluster::TaskError>(())
/// ```
pub fn serve(config: AgentConfig) -> Result<(), TaskError> {
    link::off_runtime(move || serve_here(config))?
}

/// [`serve`], on a thread outside any async runtime.
fn serve_here(config: AgentConfig) -> Result<(), TaskError> {
    config.validate()?;
    crate::entry::ensure_linked();
    let image = image::current().map_err(|e| TaskError::Io(Arc::new(std::io::Error::other(e))))?;
    let pools = Workers::new(config.pool.clone())?;
    let runtime = link::runtime("agent")?;
    let id = link::random_id();
    let names = Names::new(&config.server);
    let agent = Arc::new(Agent {
        image,
        workers: pools.workers() as u32,
        pools,
        max_result: AtomicUsize::new(DEFAULT_MAX_PAYLOAD - ENVELOPE),
        kept_ack_wait: [AtomicU64::new(nanos(config.ack_wait)), AtomicU64::new(0)],
        running: Mutex::new(HashMap::new()),
        jobs: Jobs::default(),
        held: Mutex::new(HashMap::new()),
        cancelled: Mutex::new(Cancels::default()),
        callers: Mutex::new(Callers::new(Instant::now())),
        js: std::sync::OnceLock::new(),
        stores: Arc::new(Stores::new(&id, names.results_stream())),
        names,
        id,
        config,
    });
    let result = runtime.block_on(agent.clone().run());
    if !matches!(result, Ok(Finished::GaveUp)) {
        // Nothing runs any more: this returns at once.
        agent.pools.shutdown();
    }
    runtime.shutdown_timeout(Duration::from_millis(200));
    // Given up on what it held, the agent does not wait for the tasks that still run: its
    // pools, dropped with it, stop their workers after their shutdown grace.
    drop(agent);
    result.map(|_| ())
}

struct Agent {
    id: String,
    image: &'static str,
    names: Names,
    workers: u32,
    /// The local process pools: the agent's own, and one per caller initializer.
    pools: Workers,
    config: AgentConfig,
    /// The largest result message the server takes, known once connected.
    max_result: AtomicUsize,
    /// The ack waits of the agents' consumers of single tasks and of `map` parcels, in
    /// nanoseconds (zero until known): this agent's own, unless the consumer was made
    /// earlier with another, which the server keeps.
    kept_ack_wait: [AtomicU64; 2],
    /// Units running now, by caller and task id, to stop on a cancel notice or when their
    /// caller is gone; with how long their caller may be silent, if it says.
    running: Mutex<HashMap<(String, u64), Running>>,
    /// The callers' jobs whose units run now.
    jobs: Jobs,
    /// The task messages held now, by stream sequence: their latest delivery. A consumer
    /// whose leader changed (a server of a cluster lost) may deliver a message again to the
    /// agent that still runs it; the agent takes the new delivery as its own (progress and
    /// the acknowledgement go through it) rather than run the units a second time.
    held: Mutex<HashMap<u64, Delivery>>,
    cancelled: Mutex<Cancels>,
    /// What the agent heard from callers, and which it took for gone.
    callers: Mutex<Callers>,
    /// The JetStream context, once connected: to remove a gone caller's results.
    js: std::sync::OnceLock<jetstream::Context>,
    /// The result messages whose stores fail now.
    stores: Arc<Stores>,
}

/// The latest delivery of a task message held.
type Delivery = Arc<Mutex<Arc<jetstream::Message>>>;

/// A unit running now.
struct Running {
    run: RemoteRun,
    /// How long its caller may be silent before it counts as gone; `None` from a caller that
    /// does not say it is alive (an older version).
    abandon_after: Option<Duration>,
    /// Whether it was stopped because its caller was taken for gone.
    stopped: Arc<AtomicBool>,
}

/// The jobs of callers whose units run here, by caller and job id ([`Unit::job`]): the units
/// of one job run as one job of the local pool for as long as any of them runs, so that they
/// share what their items were measured to cost and wait in one line in the order they came,
/// while the lines of different jobs, and callers, take turns for the workers.
type Jobs = Arc<Mutex<HashMap<(String, u64), HeldJob>>>;

/// A caller's job whose units run here.
#[derive(Default)]
struct HeldJob {
    /// The job each of its functions ran as last, by entry point, all in the line of the
    /// first: a `map` has one function; a caller's single tasks may have many, which keep
    /// their order as a pool's single tasks do.
    functions: HashMap<i64, EncodedJob>,
    /// How many of its units run.
    units: usize,
}

/// What keeps a caller's job known while one of its units runs.
struct JobHold {
    jobs: Jobs,
    key: (String, u64),
}

impl Drop for JobHold {
    /// The job is forgotten once none of its units runs.
    fn drop(&mut self) {
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(job) = jobs.get_mut(&self.key) {
            job.units -= 1;
            if job.units == 0 {
                jobs.remove(&self.key);
            }
        }
    }
}

/// Cancel notices for units not seen yet, oldest forgotten first.
#[derive(Default)]
struct Cancels {
    set: HashSet<(String, u64)>,
    order: VecDeque<(String, u64)>,
}

impl Cancels {
    fn remember(&mut self, key: (String, u64)) {
        if self.set.insert(key.clone()) {
            self.order.push_back(key);
        }
        while self.order.len() > REMEMBERED_CANCELS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

/// How a stopping agent ended with what it held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finished {
    /// Every unit finished and its result was stored.
    All,
    /// It gave up on what it held (its server out of reach, or no result stored, for the ack
    /// wait): units may still run, and are stopped with its pools.
    GaveUp,
}

/// A unit's result on its way to the results stream, and who waits for it to be stored.
struct Outgoing {
    caller: String,
    /// How long its caller may be silent before it counts as gone, if it says.
    abandon_after: Option<Duration>,
    result: UnitResult,
    stored: oneshot::Sender<()>,
}

/// Whether nobody waits any more for the results of the given tasks of a caller that allows
/// the given silence, if it says: the caller is gone, or it has cancelled every one of them
/// (it does so for results it has, or has given up on, that the server refuses to store).
/// Results the server refuses to store that nobody waits for are thrown away.
type Unwanted = Arc<dyn Fn(&str, Option<Duration>, &[u64]) -> bool + Send + Sync>;

impl Agent {
    async fn run(self: Arc<Self>) -> Result<Finished, TaskError> {
        let server_error = |reason: String| error::unreachable(reason, Duration::ZERO);
        let name = format!("taskpool agent {}", self.id);
        let client = link::connect_waiting(&self.config.server, &name).await?;
        let js = link::jetstream(client.clone());
        // A cluster whose servers are starting may have no JetStream yet: waited for.
        let (tasks, results) = link::streams(&js, &self.config.server, Some(&name)).await?;
        // Connected by now (the streams answered), so the server has said what it takes; the
        // results stream may take less.
        let max_payload = link::message_limit(&client, &self.config.server)?;
        let pull_bytes = link::pull_bytes(max_payload);
        let max_payload = link::stream_message_limit(&results, max_payload)?;
        self.max_result.store(max_payload - ENVELOPE, Ordering::Relaxed);
        let ack_wait = self.config.ack_wait;
        let (names, image) = (&self.names, self.image);
        let mut consumer =
            link::agents_consumer(&tasks, names, image, Queue::Tasks, ack_wait, Some(&name))
                .await?;
        self.keep_ack_wait(&mut consumer, Queue::Tasks);
        let mut parcels =
            link::agents_consumer(&tasks, names, image, Queue::Parcels, ack_wait, Some(&name))
                .await?;
        self.keep_ack_wait(&mut parcels, Queue::Parcels);
        let cancels = client
            .subscribe(self.names.cancel_subject(self.image))
            .await
            .map_err(|e| server_error(e.to_string()))?;
        tokio::spawn(self.clone().listen_for_cancels(cancels));
        let _ = self.js.set(js.clone());
        // Callers' beats come on a connection of their own, so that they never wait behind
        // large task messages on their way to the agent.
        let listener = link::connect_quietly(&self.config.server, &format!("{name} beats")).await?;
        let beats = listener
            .subscribe(self.names.callers_subject(self.image))
            .await
            .map_err(|e| server_error(e.to_string()))?;
        // Callers are silent from now on at the most: they could not be heard before.
        *self.callers.lock().unwrap_or_else(PoisonError::into_inner) = Callers::new(Instant::now());
        // How many of the two pull loops have a request out: the agent says it serves (beats,
        // and answers callers) once both have, so that a caller that hears of it and sends at
        // once finds it pulling.
        let (pulls_out, pulling_rx) = watch::channel(0);
        let listen = self.clone().listen_for_callers(beats, client.clone(), pulling_rx.clone());
        tokio::spawn(listen);
        tokio::spawn(self.clone().watch_callers(listener));
        let beat = tokio::spawn(self.clone().beat(client.clone(), pulling_rx));
        let (outbox, inbox) = mpsc::unbounded_channel();
        let limit = max_payload - ENVELOPE;
        let names = self.names.clone();
        let stores = self.stores.clone();
        let agent = Arc::downgrade(&self);
        let unwanted: Unwanted = Arc::new(move |caller, bound, tasks| {
            agent.upgrade().is_some_and(|agent| agent.unwanted(caller, bound, tasks))
        });
        let id = self.id.clone();
        tokio::spawn(store_results(js.clone(), names, id, stores, unwanted, inbox, limit));
        say!(
            "taskpool agent {} serving image {} with {} workers on {}",
            self.id,
            self.image,
            self.workers,
            self.config.server.shown_url()
        );
        let (stop_tx, stop) = watch::channel(false);
        let id = self.id.clone();
        tokio::spawn(async move {
            let mut signals = StopSignals::new();
            signals.recv().await;
            say!(
                "taskpool agent {id}: stopping: it takes no new task and finishes those it \
                 holds (signal it again to stop at once)"
            );
            let _ = stop_tx.send(true);
            signals.recv().await;
            say!(
                "taskpool agent {id}: stopped at once: the tasks it held go to other agents \
                 after the ack wait"
            );
            // Exit handlers run: the workers' process groups are killed.
            std::process::exit(1);
        });
        let capacity = self.config.capacity_or_default();
        let slots = Arc::new(Semaphore::new(capacity));
        // A `map`'s parcels, one for each free worker: an agent of more workers takes more.
        let idle = Idle::new(self.workers as usize);
        let pulling = Pulling {
            js: js.clone(),
            outbox,
            client: client.clone(),
            pull_bytes,
            idle: idle.clone(),
            pulls_out,
        };
        let (tasks_room, parcels_room) = (Room::Slots(slots.clone()), Room::Workers(idle.clone()));
        tokio::join!(
            self.clone().pull(Queue::Tasks, consumer, tasks_room, stop.clone(), &pulling),
            self.clone().pull(Queue::Parcels, parcels, parcels_room, stop, &pulling),
        );
        drop(pulling);
        // Finish what is held: wait until every slot is free again and no parcel is held,
        // unless the server stays out of reach for the ack wait meanwhile (see
        // `Agent::finish_held`).
        let finished = self.finish_held((&slots, capacity), &idle, &client).await;
        beat.abort();
        // Not for ever: a flush waits for a connection that may never come back.
        let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
        say!("taskpool agent {} stopped", self.id);
        Ok(finished)
    }

    /// Pulls the messages of `queue` from `consumer` and starts their units while `room`
    /// has some, each held until its message is finished, until the agent is asked to
    /// `stop`.
    async fn pull(
        self: Arc<Self>,
        queue: Queue,
        mut consumer: jetstream::consumer::PullConsumer,
        room: Room,
        mut stop: watch::Receiver<bool>,
        pulling: &Pulling,
    ) {
        // Each pull request asks for as many messages as there are free slots, so that every
        // message the server delivers starts at once and has its progress reported: one that
        // waited in the agent unstarted past the ack wait would be delivered again (and run
        // twice, or fail its delivery limit without having run).
        let mut lost = false;
        // Whether the last pull ended on a message larger than it asked for: the next asks
        // for the largest message a stream keeps.
        let mut oversized = false;
        // Whether this loop counted its first request out (`Pulling::pulls_out`).
        let mut told = false;
        while !*stop.borrow() {
            let mut permits = tokio::select! {
                _ = stop.changed() => return,
                permits = room.take() => permits,
            };
            if lost {
                // The server may have lost its store (restarted without it): the streams
                // and the consumer are made again if they are gone.
                let again = tokio::select! {
                    _ = stop.changed() => return,
                    again = self.attach(&pulling.js, queue) => again,
                };
                match again {
                    Ok(found) => {
                        consumer = found;
                        lost = false;
                    }
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
            // Not without a way out: while the connection is down, the client queues what it
            // is asked to send, and once its queue is full (progress reports, beats and pull
            // requests add to it all the while) sending waits until the server is back.
            let bytes = if oversized { link::PULL_BYTES } else { pulling.pull_bytes };
            let expires = Duration::from_secs(5);
            let request = tokio::select! {
                _ = stop.changed() => return,
                request = PullRequest::send(&pulling.js, &consumer, permits.len(), bytes, expires)
                    => request,
            };
            let Ok(mut request) = request else {
                lost = true;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            if !told {
                told = true;
                pulling.pulls_out.send_modify(|out| *out += 1);
            }
            let mut taken = false;
            loop {
                let next = tokio::select! {
                    _ = stop.changed() => return,
                    // Single tasks took workers that parcels are asked for: the server gives
                    // those parcels to other agents. What it sent before it heard still
                    // comes, and runs here.
                    _ = room.overbooked(), if !permits.is_empty() && !request.withdrawn() => {
                        request.withdraw().await;
                        continue;
                    }
                    next = request.next() => next,
                };
                match next {
                    Next::Message(message) => {
                        taken = true;
                        oversized = false;
                        // The request asked for no more messages than there are permits.
                        let Some(permit) = permits.pop() else { break };
                        let busy = match queue {
                            Queue::Tasks => Some(&pulling.idle),
                            Queue::Parcels => None,
                        };
                        let Some(held) =
                            self.begin(*message, &pulling.outbox, &pulling.client, busy)
                        else {
                            continue;
                        };
                        let (agent, outbox) = (self.clone(), pulling.outbox.clone());
                        tokio::spawn(async move {
                            agent.finish(held, outbox).await;
                            drop(permit);
                        });
                    }
                    // The pull's bytes ran out before its messages: the server ends it.
                    Next::BytesRanOut => {
                        oversized = !taken;
                        break;
                    }
                    // The consumer is gone (the server lost its store, or someone removed
                    // it), or the server does not answer: made again before the next pull.
                    Next::Failed => {
                        lost = true;
                        break;
                    }
                    Next::End => break,
                }
            }
        }
    }

    /// The agents' consumer of `queue`, and the streams, made again if they are gone.
    async fn attach(
        &self,
        js: &jetstream::Context,
        queue: Queue,
    ) -> Result<jetstream::consumer::PullConsumer, TaskError> {
        let (tasks, _) = link::streams(js, &self.config.server, None).await?;
        let ack_wait = self.config.ack_wait;
        let mut consumer =
            link::agents_consumer(&tasks, &self.names, self.image, queue, ack_wait, None).await?;
        self.keep_ack_wait(&mut consumer, queue);
        Ok(consumer)
    }

    /// The shorter ack wait the server keeps for the agents' two consumers (see
    /// [`Agent::keep_ack_wait`]); zero if it says none.
    fn kept_ack_wait(&self) -> Duration {
        let kept = self.kept_ack_wait.iter().map(|k| k.load(Ordering::Relaxed));
        Duration::from_nanos(kept.filter(|&k| k > 0).min().unwrap_or(0))
    }

    /// Notes the ack wait that the server keeps for `consumer`, of `queue`, which progress
    /// reports must beat, and says so if it is not this agent's own: the first agent of an
    /// image to make the consumer sets it, and the server keeps it for those that come after.
    fn keep_ack_wait(&self, consumer: &mut jetstream::consumer::PullConsumer, queue: Queue) {
        let kept = consumer.cached_info().config.ack_wait;
        let index = match queue {
            Queue::Tasks => 0,
            Queue::Parcels => 1,
        };
        let before = self.kept_ack_wait[index].swap(nanos(kept), Ordering::Relaxed);
        if kept != self.config.ack_wait && before != nanos(kept) {
            say!(
                "taskpool agent {}: the server keeps an ack wait of {kept:?} for the agents of \
                 this executable, which the first of them set, not this agent's {:?}: a dead \
                 agent's tasks go elsewhere after {kept:?} (remove the consumer {} of stream \
                 {}_TASKS, with no agent running, to set it anew)",
                self.id,
                self.config.ack_wait,
                queue.consumer(self.image),
                self.config.server.name
            );
        }
    }

    /// Waits, once stopping, until every permit of `slots` (the semaphore of the messages of
    /// single tasks held, and its size) is free again and no parcel is held (`idle`): the
    /// units held are finished and their results stored. While the server cannot be
    /// reached, results cannot be stored and the server, hearing no progress, gives the
    /// messages to other agents after its ack wait: once the connection has been down for
    /// that long, waiting on for a server that may never come back (to store results that
    /// others will store too) would keep a stopping agent alive for ever. It stops then,
    /// saying so. So it does once stores of results have failed, with none stored, for the
    /// ack wait while connected: a server that refuses them (a results stream that stays
    /// full, a permission refused, a limit) may refuse them for ever.
    async fn finish_held(
        &self,
        (slots, capacity): (&Semaphore, usize),
        idle: &Idle,
        client: &async_nats::Client,
    ) -> Finished {
        let all = async {
            let _slots = slots.acquire_many(capacity as u32).await;
            idle.no_parcel().await;
        };
        let mut all = std::pin::pin!(all);
        let mut down_since: Option<Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = &mut all => return Finished::All,
                _ = tick.tick() => {}
            }
            let kept = self.kept_ack_wait();
            let ack_wait = if kept.is_zero() { self.config.ack_wait } else { kept };
            if client.connection_state() == async_nats::connection::State::Connected {
                down_since = None;
                if let Some(failing) = self.stores.given_up(ack_wait) {
                    say!(
                        "taskpool agent {}: stops without storing {failing}: no result has been \
                         stored for the ack wait ({ack_wait:?}); the server gives their tasks to \
                         other agents",
                        self.id,
                    );
                    return Finished::GaveUp;
                }
                continue;
            }
            let since = *down_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= ack_wait {
                say!(
                    "taskpool agent {}: stops without storing the results of the tasks it \
                     holds: the server at {} has been out of reach for the ack wait ({:?}), \
                     and gives them to other agents",
                    self.id,
                    self.config.server.shown_url(),
                    ack_wait,
                );
                return Finished::GaveUp;
            }
        }
    }

    /// How often to report progress on a task held: three times per ack wait, the shorter
    /// of this agent's own and the one the server keeps.
    fn progress_period(&self) -> Duration {
        let kept = self.kept_ack_wait();
        // A consumer that says none has the server's default, longer than any agent's minimum.
        let kept = if kept.is_zero() { self.config.ack_wait } else { kept };
        kept.min(self.config.ack_wait) / 3
    }

    /// What the agent says on its heartbeat subject: its id and workers.
    fn heartbeat(&self) -> bytes::Bytes {
        wire::encode(&Heartbeat { agent: self.id.clone(), workers: self.workers }).into()
    }

    /// Says once a second that this agent is alive, and stops the pools of initializers
    /// that no task used for a while.
    async fn beat(self: Arc<Self>, client: async_nats::Client, pulling: watch::Receiver<u8>) {
        let subject = self.names.agents_subject(self.image);
        let payload = self.heartbeat();
        // Not before it pulls (see `pulling_both`), unless its pulls fail on (a server that
        // lost its store, say): it beats then as it always did.
        let _ = tokio::time::timeout(PULLING_WAIT, pulling_both(pulling)).await;
        let mut tick = tokio::time::interval(HEARTBEAT);
        loop {
            tick.tick().await;
            let _ = client.publish(subject.clone(), payload.clone()).await;
            let idle = self.pools.take_idle(Instant::now());
            if !idle.is_empty() {
                // Dropping a pool waits for its workers to exit: not on the runtime's threads.
                tokio::task::spawn_blocking(move || drop(idle));
            }
        }
    }

    /// Notes when each caller says it is alive, and answers a caller's first beat with a
    /// heartbeat on `client` (where the agent beats): a pool that has just connected, and
    /// subscribed to the heartbeats before it beat, learns of this agent at once rather than
    /// at its next beat, up to a second later.
    async fn listen_for_callers(
        self: Arc<Self>,
        mut beats: async_nats::Subscriber,
        client: async_nats::Client,
        pulling: watch::Receiver<u8>,
    ) {
        let subject = self.names.agents_subject(self.image);
        let heartbeat = self.heartbeat();
        while let Some(message) = beats.next().await {
            let Ok(beat) = wire::decode::<CallerBeat>(&message.payload) else { continue };
            let now = Instant::now();
            let new = {
                let mut callers = self.callers.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(gone) = callers.gone.remove(&beat.caller) {
                    // Heard again after all (it was stopped or cut off for longer than its
                    // bound): what it sends from now on runs; it fails what it had sent before
                    // by itself.
                    self.said_gone(&beat.caller, &gone);
                }
                callers.hear(beat.caller, now)
            };
            // Not before it pulls: its first beat, once it does, answers.
            if new && *pulling.borrow() >= PULL_LOOPS {
                // Not waited for: while the connection is down, sending waits once the
                // client's queue is full, and callers would go unheard meanwhile. The next
                // beat makes up for an answer not sent.
                let _ = client.publish(subject.clone(), heartbeat.clone()).now_or_never();
            }
        }
    }

    /// Every [`WATCH_CALLERS`]: stops the units of callers silent for longer than they allow,
    /// and forgets what is old. While the agent is not connected (on `listener`, where it hears
    /// the callers) it hears no one, which says nothing about the callers: their silence counts
    /// only from when it is connected again.
    async fn watch_callers(self: Arc<Self>, listener: async_nats::Client) {
        let mut tick = tokio::time::interval(WATCH_CALLERS);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = Instant::now();
            let connected = listener.connection_state() == async_nats::connection::State::Connected;
            self.callers.lock().unwrap_or_else(PoisonError::into_inner).look(now, connected);
            if !connected {
                continue;
            }
            let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            let mut judged: HashMap<&str, bool> = HashMap::new();
            for ((caller, _), unit) in running.iter() {
                let Some(bound) = unit.abandon_after else { continue };
                let gone = *judged
                    .entry(caller.as_str())
                    .or_insert_with(|| self.is_gone(caller, bound, now, true, (0, 0)));
                if gone && !unit.stopped.swap(true, Ordering::SeqCst) {
                    // Its worker is killed, as at a time limit, and replaced.
                    unit.run.stop();
                }
            }
            drop(running);
            // A caller that died after its last result here was stored: silent for its bound
            // by then, or never.
            let stored: Vec<(String, Duration)> = {
                let mut callers = self.callers.lock().unwrap_or_else(PoisonError::into_inner);
                callers.stored.retain(|_, (bound, at)| {
                    now.saturating_duration_since(*at) <= bound.saturating_add(STALLED)
                });
                callers.stored.iter().map(|(caller, (bound, _))| (caller.clone(), *bound)).collect()
            };
            for (caller, bound) in stored {
                // Nothing of it is here: gone without a word, unless units of it come.
                if self.is_gone(&caller, bound, now, false, (0, 0)) {
                    self.callers
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .stored
                        .remove(&caller);
                }
            }
            let mut callers = self.callers.lock().unwrap_or_else(PoisonError::into_inner);
            callers.forget(now, FORGET_HEARD);
            let old: Vec<String> = callers
                .gone
                .iter()
                .filter(|(_, gone)| {
                    now.saturating_duration_since(gone.last) >= gone.bound.max(FORGET_GONE)
                })
                .map(|(caller, _)| caller.clone())
                .collect();
            for caller in old {
                if let Some(gone) = callers.gone.remove(&caller) {
                    self.said_gone(&caller, &gone);
                    // Still silent, with nothing of it left here: what was stored for it,
                    // here and by other agents, is removed. (Not when it was taken for gone:
                    // were it heard again after all, it would want its results.)
                    self.remove_results(caller);
                }
            }
        }
    }

    /// Whether `caller`, which allows `bound` of silence, is gone: taken for gone before, or
    /// silent for longer than `bound` now (then taken for gone from now on, and said so if
    /// `announce`: it has units here). If it is, counts `dropped` units dropped and `stopped`
    /// units stopped of it in the same step, so that a beat heard right after cannot say fewer.
    fn is_gone(
        &self,
        caller: &str,
        bound: Duration,
        now: Instant,
        announce: bool,
        (dropped, stopped): (u64, u64),
    ) -> bool {
        let mut callers = self.callers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(gone) = callers.gone.get_mut(caller) {
            if dropped + stopped > 0 {
                gone.last = now;
            }
            gone.dropped += dropped;
            gone.stopped += stopped;
            return true;
        }
        callers.saw(caller, now);
        let Some(silence) = callers.silence(caller, now).filter(|&silence| silence > bound) else {
            return false;
        };
        let gone = Gone { bound, last: now, dropped, stopped, announced: announce };
        callers.gone.insert(caller.to_string(), gone);
        drop(callers);
        if !announce {
            return true;
        }
        say!(
            "taskpool agent {}: caller {caller} is gone (not heard for {:.1} s, it allows {:?}): \
             its tasks here are dropped without running and those running are stopped",
            self.id,
            silence.as_secs_f64(),
            bound
        );
        true
    }

    /// If `caller` was taken for gone, counts `dropped` units dropped and `stopped` units
    /// stopped of it, and returns true.
    fn note_gone(&self, caller: &str, dropped: u64, stopped: u64) -> bool {
        let mut callers = self.callers.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(gone) = callers.gone.get_mut(caller) else { return false };
        gone.last = Instant::now();
        gone.dropped += dropped;
        gone.stopped += stopped;
        true
    }

    /// Whether nobody waits for the results of `tasks` of `caller` (which allows `bound` of
    /// silence, if it says) any more: the caller is gone (the tasks then count as stopped),
    /// or it cancelled every one of them (the notices are then forgotten).
    fn unwanted(&self, caller: &str, bound: Option<Duration>, tasks: &[u64]) -> bool {
        let stopped = (0, tasks.len() as u64);
        if bound.is_some_and(|bound| self.is_gone(caller, bound, Instant::now(), true, stopped)) {
            return true;
        }
        let mut cancelled = self.cancelled.lock().unwrap_or_else(PoisonError::into_inner);
        let key = |task: &u64| (caller.to_string(), *task);
        if tasks.is_empty() || !tasks.iter().all(|task| cancelled.set.contains(&key(task))) {
            return false;
        }
        for task in tasks {
            cancelled.set.remove(&key(task));
        }
        true
    }

    /// Says, once per caller taken for gone, what became of its tasks here, if anything is
    /// worth saying ([`Gone::worth_saying`]).
    fn said_gone(&self, caller: &str, gone: &Gone) {
        if !gone.worth_saying() {
            return;
        }
        say!(
            "taskpool agent {}: of gone caller {caller}, {} tasks were dropped without running \
             and {} stopped or their results thrown away",
            self.id,
            gone.dropped,
            gone.stopped
        );
    }

    /// Removes the results stored for `caller`, and its results consumer: nobody reads them.
    fn remove_results(&self, caller: String) {
        let Some(js) = self.js.get().cloned() else { return };
        let names = self.names.clone();
        tokio::spawn(async move {
            let Ok(results) = js.get_stream(names.results_stream()).await else { return };
            let _ = results.delete_consumer(&Names::results_consumer(&caller)).await;
            let _ = results.purge().filter(names.results_subject(&caller)).await;
        });
    }

    async fn listen_for_cancels(self: Arc<Self>, mut notices: async_nats::Subscriber) {
        while let Some(message) = notices.next().await {
            let Ok(notice) = wire::decode::<CancelNotice>(&message.payload) else { continue };
            let key = (notice.caller, notice.task);
            // Locks in this order here and in `start`: a unit starting meanwhile is either
            // found running or finds the notice remembered.
            let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            match running.get(&key) {
                Some(running) => running.run.cancel(),
                None => {
                    self.cancelled.lock().unwrap_or_else(PoisonError::into_inner).remember(key);
                }
            }
        }
    }

    /// Starts the units of one task message (on the pull loop's own thread, so they start
    /// at once), and returns what waits for them; `None` for an unreadable message, or one
    /// delivered again while this agent still holds it. Units of single tasks take workers
    /// of `busy` until they finish.
    fn begin(
        self: &Arc<Self>,
        message: jetstream::Message,
        outbox: &mpsc::UnboundedSender<Outgoing>,
        client: &async_nats::Client,
        busy: Option<&Arc<Idle>>,
    ) -> Option<Held> {
        let (delivered, sequence) = message
            .info()
            .map_or((1, None), |info| (info.delivered.max(1) as u64, Some(info.stream_sequence)));
        let message = Arc::new(message);
        let delivery = match sequence {
            // Delivered again while its units still run here: they are not run twice.
            Some(sequence) => self.take_again(sequence, &message)?,
            None => Arc::new(Mutex::new(message.clone())),
        };
        let task: TaskMessage = match wire::decode(&message.payload) {
            Ok(task) => task,
            Err(e) => {
                say!("taskpool agent {}: dropped an unreadable task message: {e}", self.id);
                tokio::spawn(async move { message.ack_with(AckKind::Term).await });
                if let Some(sequence) = sequence {
                    self.held.lock().unwrap_or_else(PoisonError::into_inner).remove(&sequence);
                }
                return None;
            }
        };
        let abandon_after = abandon_after(message.headers.as_ref());
        let now = Instant::now();
        let dropped = (task.units.len() as u64, 0);
        let gone = abandon_after
            .is_some_and(|bound| self.is_gone(&task.caller, bound, now, true, dropped));
        let progress = tokio::spawn(report_progress(delivery.clone(), self.progress_period()));
        let mut stored = Vec::with_capacity(task.units.len());
        let runs = FuturesUnordered::new();
        if gone {
            // Its caller is gone: the units do not run. Each gets a small failure, which says
            // why should the caller be heard again after all (else it is removed with the
            // caller's other results), and the message is acknowledged once they are stored.
            for unit in &task.units {
                let result = UnitResult::failed(unit.task, gone_error(&self.id));
                stored.push(send(outbox, task.caller.clone(), abandon_after, result));
            }
        } else {
            let over_limit = delivered > u64::from(task.delivery_limit);
            let fast = self.names.fast_subject(&task.caller);
            // The pool for the caller's initializer; one that cannot start fails every unit.
            let pool =
                if over_limit { Ok(None) } else { self.pools.pool(task.initializer).map(Some) };
            for unit in task.units {
                let key = (task.caller.clone(), unit.task);
                let cancelled =
                    self.cancelled.lock().unwrap_or_else(PoisonError::into_inner).set.remove(&key);
                if cancelled {
                    continue;
                }
                let pool = match &pool {
                    Ok(Some(pool)) => pool,
                    Ok(None) => {
                        let error = WireError::DeliveryLimit(task.delivery_limit);
                        let result = UnitResult::failed(unit.task, error);
                        stored.push(send(outbox, task.caller.clone(), abandon_after, result));
                        continue;
                    }
                    Err(e) => {
                        let result = UnitResult::failed(unit.task, WireError::from_error(e));
                        stored.push(send(outbox, task.caller.clone(), abandon_after, result));
                        continue;
                    }
                };
                let taken: Option<Busy> = busy.map(|idle| idle.busy(unit.ends.len().max(1)));
                let run = self.start(
                    pool,
                    &task.caller,
                    abandon_after,
                    unit,
                    client.clone(),
                    fast.clone(),
                );
                let run = async move {
                    let result = run.await;
                    drop(taken);
                    result
                };
                runs.push(Box::pin(run) as Pin<Box<dyn Future<Output = UnitResult> + Send>>);
            }
        }
        Some(Held {
            delivery,
            sequence,
            progress,
            stored,
            runs,
            caller: task.caller,
            abandon_after,
        })
    }

    /// Notes `message`, stream sequence `sequence`, as held, and returns its delivery; `None`
    /// if the agent holds it already (a delivery again while its units run here), which
    /// then becomes the delivery that progress and the acknowledgement go through.
    fn take_again(&self, sequence: u64, message: &Arc<jetstream::Message>) -> Option<Delivery> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(delivery) = held.get(&sequence) {
            *delivery.lock().unwrap_or_else(PoisonError::into_inner) = message.clone();
            // Its ack wait runs from now: progress is reported on it at once.
            let message = message.clone();
            tokio::spawn(async move { message.ack_with(AckKind::Progress).await });
            return None;
        }
        let delivery = Arc::new(Mutex::new(message.clone()));
        held.insert(sequence, delivery.clone());
        Some(delivery)
    }

    /// Waits for the units of a message, has their results stored, and acknowledges the
    /// message once every one is.
    async fn finish(self: Arc<Self>, held: Held, outbox: mpsc::UnboundedSender<Outgoing>) {
        let Held { delivery, sequence, progress, mut stored, mut runs, caller, abandon_after } =
            held;
        while let Some(result) = runs.next().await {
            let key = (caller.clone(), result.task);
            self.running.lock().unwrap_or_else(PoisonError::into_inner).remove(&key);
            let result = if self.note_gone(&caller, 0, 1) {
                // Nobody waits for its value: a small failure is stored in its place, which
                // says why should the caller be heard again after all.
                UnitResult::failed(result.task, gone_error(&self.id))
            } else {
                result
            };
            // A result too large for one message travels in parts, each stored on its own.
            for part in result.split(self.result_limit()) {
                stored.push(send(&outbox, caller.clone(), abandon_after, part));
            }
        }
        let mut all_stored = true;
        for receipt in stored {
            all_stored &= receipt.await.is_ok();
        }
        progress.abort();
        if let Some(bound) = abandon_after.filter(|_| all_stored) {
            let mut callers = self.callers.lock().unwrap_or_else(PoisonError::into_inner);
            callers.stored.insert(caller, (bound, Instant::now()));
        }
        if all_stored {
            // A lost ack only means another delivery, whose results are then duplicates.
            let message = delivery.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let _ = message.ack().await;
        }
        if let Some(sequence) = sequence {
            self.held.lock().unwrap_or_else(PoisonError::into_inner).remove(&sequence);
        }
    }

    /// The largest result message to send now: the smaller of what the results stream and
    /// the server took when the agent connected, and what the server takes now (it may have
    /// restarted with a lower `max_payload`).
    fn result_limit(&self) -> usize {
        let kept = self.max_result.load(Ordering::Relaxed);
        self.js.get().map_or(kept, |js| {
            kept.min(link::payload_limit_now(&js.client()).saturating_sub(ENVELOPE))
        })
    }

    /// Starts one unit on `pool`; resolves to its result. A small result is also sent
    /// straight to its caller (to `fast`) from the pool's thread the moment it exists.
    fn start(
        &self,
        pool: &Arc<ProcessPool>,
        caller: &str,
        abandon_after: Option<Duration>,
        unit: Unit,
        client: async_nats::Client,
        fast: String,
    ) -> impl std::future::Future<Output = UnitResult> + use<> {
        let (tx, rx) = oneshot::channel();
        let task = unit.task;
        // Holds the pool while the unit runs, so that it is not stopped as idle meanwhile.
        let holds = pool.clone();
        let finish = async move {
            let result = rx.await.unwrap_or(UnitResult::failed(task, WireError::ShutDown));
            drop(holds);
            result
        };
        let ends: Vec<usize> = unit.ends.iter().map(|&e| e as usize).collect();
        let in_order = ends.windows(2).all(|w| w[0] <= w[1]);
        if !in_order || ends.last().is_some_and(|&e| e > unit.inputs.len()) {
            let reason = "a task message's item bounds are out of order".to_string();
            let outcome = UnitOutcome::Failed(WireError::Protocol(reason));
            let _ = tx.send(UnitResult { task, elapsed_ns: 0, part: None, outcome });
            return finish;
        }
        // The job the unit runs as: that of the other units of its caller's job held here.
        let key = (caller.to_string(), unit.job);
        let mut jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        let held = jobs.entry(key.clone()).or_default();
        let (entry, state) = (unit.entry, unit.state);
        // SAFETY: the unit names its entry point by an offset into the executable image with
        // id `self.image`: the agents' consumer takes only tasks published under that id,
        // which callers compute from their own executable. Whoever can publish on the tasks
        // subject can make a worker run any function of this image: the NATS account is the
        // trust boundary (see the crate's documentation).
        let job = unsafe {
            match (held.functions.get(&entry), held.functions.values().next()) {
                (Some(known), _) if known.state() == state.as_slice() => known.clone(),
                (Some(known), _) => known.in_line_of(entry, state),
                (None, Some(other)) => other.in_line_of(entry, state),
                (None, None) => EncodedJob::from_parts(entry, state),
            }
        };
        held.functions.insert(entry, job.clone());
        held.units += 1;
        drop(jobs);
        let hold = JobHold { jobs: self.jobs.clone(), key };
        let timeout = unit.timeout_ns.map(Duration::from_nanos);
        let stopped = Arc::new(AtomicBool::new(false));
        let (was_stopped, agent) = (stopped.clone(), self.id.clone());
        let workers = self.workers as usize;
        let run = remote::run_encoded(pool, &job, &unit.inputs, &ends, timeout, move |o| {
            let elapsed_ns = unit_time(o.worker_ns(), o.len(), workers);
            let mut outcome = encode_outcomes(&o);
            if was_stopped.load(Ordering::SeqCst) {
                // Stopped because its caller was taken for gone: should the caller be heard
                // again after all, it learns why.
                outcome.replace_cancelled(&gone_error(&agent));
            }
            let result = UnitResult { task, elapsed_ns, part: None, outcome };
            // The unit is no longer held: its job is let go once none of its units is.
            drop(hold);
            send_fast_copy(&client, fast, &result);
            let _ = tx.send(result);
        });
        // A notice that came since `begin` looked finds the run, or is found here.
        let key = (caller.to_string(), task);
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let cancelled =
            self.cancelled.lock().unwrap_or_else(PoisonError::into_inner).set.remove(&key);
        if cancelled {
            run.cancel();
        }
        running.insert(key, Running { run, abandon_after, stopped });
        finish
    }
}

/// What a unit of `items` items takes on an agent of `workers` workers with nothing else to
/// run, its items having taken `worker_ns` in all in the workers: spread over as many workers
/// as it has items, at most all of them. The time the unit waited in the agent, behind other
/// work, is not in it: its caller sizes its chunks from it (`chunk.rs`), and would take every
/// item of a busy agent for a slow one. 0 if no item was measured (all failed).
fn unit_time(worker_ns: u64, items: usize, workers: usize) -> u64 {
    worker_ns / items.clamp(1, workers.max(1)) as u64
}

/// What a unit dropped or stopped because its caller was taken for gone fails with, should
/// the caller be heard again after all.
fn gone_error(agent: &str) -> WireError {
    let reason = format!(
        "agent {agent} did not hear this pool for longer than its abandon_after, took it for \
         gone and dropped or stopped the task"
    );
    WireError::Unreachable { waited_ns: 0, reason }
}

/// What both pull loops of an agent share.
struct Pulling {
    js: jetstream::Context,
    outbox: mpsc::UnboundedSender<Outgoing>,
    client: async_nats::Client,
    /// The bytes a pull request asks for (see [`link::pull_bytes`]).
    pull_bytes: usize,
    /// The agent's workers, as units of single tasks and parcels take them.
    idle: Arc<Idle>,
    /// How many of the [`PULL_LOOPS`] have sent their first request (see [`pulling_both`]).
    pulls_out: watch::Sender<u8>,
}

/// An agent's pull loops: single tasks and `map` parcels.
const PULL_LOOPS: u8 = 2;

/// How long an agent waits for its pull loops' first requests before it beats all the same.
const PULLING_WAIT: Duration = Duration::from_secs(2);

/// Resolves once both pull loops of an agent have a request out (`pulling` counts them). An
/// agent says it serves (its heartbeat) only then: a pool that heard of it before, and sent
/// at once, sent to a consumer it did not pull yet, whose messages went to agents that did
/// (two agents of two workers, the first four items of an `imap` on one of them).
async fn pulling_both(mut pulling: watch::Receiver<u8>) {
    let _ = pulling.wait_for(|out| *out >= PULL_LOOPS).await;
}

/// What an agent's pull loop asks for messages for.
enum Room {
    /// Free slots (of [`AgentConfig::capacity`]), a message each: single tasks and `imap`s.
    Slots(Arc<Semaphore>),
    /// Free workers, a parcel each: a `map`'s parcels.
    Workers(Arc<Idle>),
}

/// What a message pulled holds until it is finished.
enum Permit {
    /// A slot of single tasks.
    Slot { _slot: tokio::sync::OwnedSemaphorePermit },
    /// A worker, for a parcel.
    Worker { _claim: Claim },
}

impl Room {
    /// Waits until there is room, and takes all there is: a permit for each message.
    async fn take(&self) -> Vec<Permit> {
        match self {
            Room::Slots(slots) => {
                let Ok(first) = slots.clone().acquire_owned().await else {
                    // Never closed.
                    return std::future::pending().await;
                };
                let mut permits = vec![Permit::Slot { _slot: first }];
                while let Ok(permit) = slots.clone().try_acquire_owned() {
                    permits.push(Permit::Slot { _slot: permit });
                }
                permits
            }
            Room::Workers(idle) => idle
                .claim()
                .await
                .into_iter()
                .map(|claim| Permit::Worker { _claim: claim })
                .collect(),
        }
    }

    /// Resolves once more was taken than there is room for (see [`Idle::overbooked`]);
    /// never for slots, which only messages pulled take.
    async fn overbooked(&self) {
        match self {
            Room::Slots(_) => std::future::pending().await,
            Room::Workers(idle) => idle.overbooked().await,
        }
    }
}

/// A task message whose units run.
struct Held {
    /// Its latest delivery.
    delivery: Delivery,
    /// Its sequence in the tasks stream, if the message says.
    sequence: Option<u64>,
    progress: tokio::task::JoinHandle<()>,
    stored: Vec<oneshot::Receiver<()>>,
    runs: FuturesUnordered<Pin<Box<dyn Future<Output = UnitResult> + Send>>>,
    caller: String,
    /// How long the caller may be silent, if it says.
    abandon_after: Option<Duration>,
}

/// Whether `error`, from a pull subscription, says that its consumer does not exist.
pub(crate) fn consumer_lost(error: &jetstream::consumer::pull::MessagesError) -> bool {
    use jetstream::consumer::pull::MessagesErrorKind;
    matches!(error.kind(), MessagesErrorKind::ConsumerDeleted | MessagesErrorKind::NoResponders)
}

/// The travelling form of a unit's outcomes.
fn encode_outcomes(outcomes: &remote::Outcomes) -> UnitOutcome {
    let mut bytes = Vec::new();
    let mut items = Vec::with_capacity(outcomes.len());
    for i in 0..outcomes.len() {
        items.push(match outcomes.get(i) {
            Ok(value) => {
                bytes.extend_from_slice(value);
                Item::Ok(value.len() as u32)
            }
            Err(e) => Item::Err(Box::new(WireError::from_error(e))),
        });
    }
    UnitOutcome::Items { bytes, items }
}

fn send(
    outbox: &mpsc::UnboundedSender<Outgoing>,
    caller: String,
    abandon_after: Option<Duration>,
    result: UnitResult,
) -> oneshot::Receiver<()> {
    let (stored, receipt) = oneshot::channel();
    let _ = outbox.send(Outgoing { caller, abandon_after, result, stored });
    receipt
}

/// Sends a small result straight to its caller, ahead of the stored copy: the caller need
/// not wait for the server to store it. Called from a pool thread: the copy is handed to the
/// client only if its queue has room now. Lost if the caller is not connected at that moment,
/// which the stored copy makes up for.
fn send_fast_copy(client: &async_nats::Client, subject: String, result: &UnitResult) {
    let payload = wire::encode(&ResultMessageRef { results: std::slice::from_ref(result) });
    if payload.len() <= FAST_COPY {
        let _ = client.publish(subject, payload.into()).now_or_never();
    }
}

/// Tells the server, every `period`, that the agent still works on the message delivered
/// as `delivery` (its latest delivery).
async fn report_progress(delivery: Delivery, period: Duration) {
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tick.tick().await;
        let message = delivery.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let _ = message.ack_with(AckKind::Progress).await;
    }
}

/// Stores results in the results stream, grouped by caller when several wait.
async fn store_results(
    js: jetstream::Context,
    names: Names,
    agent: String,
    stores: Arc<Stores>,
    unwanted: Unwanted,
    mut inbox: mpsc::UnboundedReceiver<Outgoing>,
    limit: usize,
) {
    let slots = Arc::new(Semaphore::new(STORING));
    let mut sequence = 0u64;
    while let Some(first) = inbox.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        // Per caller, the messages to store: each within the server's payload limit, as the
        // server says now.
        let limit = limit.min(link::payload_limit_now(&js.client()).saturating_sub(ENVELOPE));
        let mut groups: HashMap<String, Vec<(usize, Vec<Outgoing>)>> = HashMap::new();
        let mut taken = 0;
        let mut next = Some(first);
        while let Some(out) = next.take() {
            let weight = out.result.weight();
            taken += weight;
            let messages = groups.entry(out.caller.clone()).or_default();
            match messages.last_mut() {
                Some((size, group)) if *size + weight <= limit => {
                    *size += weight;
                    group.push(out);
                }
                _ => messages.push((weight, vec![out])),
            }
            if taken < 256 << 10 {
                next = inbox.try_recv().ok();
            }
        }
        let slot = Arc::new(slot);
        for (caller, messages) in groups {
            for (_, outgoing) in messages {
                sequence += 1;
                let id = format!("{agent}-{sequence}");
                let subject = names.results_subject(&caller);
                let tell = names.fast_subject(&caller);
                let stores = stores.clone();
                let unwanted = unwanted.clone();
                let store = store_one(js.clone(), stores, unwanted, subject, tell, id, outgoing);
                let slot = slot.clone();
                tokio::spawn(async move {
                    store.await;
                    drop(slot);
                });
            }
        }
    }
}

/// Stores a result message on `subject`, retrying with the same message id until the server
/// takes it; notes in `stores` while it fails, and why, and tells its caller (on `tell`, its
/// fast subject) while the server refuses it. Once nobody waits for it (`unwanted`: its
/// caller is gone, or has its results or gave up on them), the message is thrown away
/// instead: retrying it for ever would hold its task, and keep a store that is full so (full
/// of task messages, deleted only once their results are stored; or of what is stored for a
/// gone caller, removed only once the agent holds nothing of it).
async fn store_one(
    js: jetstream::Context,
    stores: Arc<Stores>,
    unwanted: Unwanted,
    subject: String,
    tell: String,
    id: String,
    outgoing: Vec<Outgoing>,
) {
    let caller = outgoing.first().map(|o| o.caller.clone()).unwrap_or_default();
    let bound = outgoing.first().and_then(|o| o.abandon_after);
    let count = outgoing.len();
    let (results, receipts): (Vec<_>, Vec<_>) =
        outgoing.into_iter().map(|o| (o.result, o.stored)).unzip();
    let mut tasks: Vec<u64> = results.iter().map(|r| r.task).collect();
    tasks.dedup();
    let payload = bytes::Bytes::from(wire::encode(&ResultMessage { results }));
    let mut pause = Duration::from_millis(20);
    let mut told: Option<Instant> = None;
    let mut thrown = false;
    loop {
        let publish = PublishMessage::build().payload(payload.clone()).message_id(&id);
        let error = match js.send_publish(subject.clone(), publish).await {
            Ok(ack) => match ack.await {
                Ok(_) => break,
                Err(e) => e,
            },
            Err(e) => e,
        };
        let connected = js.client().connection_state() == async_nats::connection::State::Connected;
        if connected && unwanted(&caller, bound, &tasks) {
            thrown = true;
            break;
        }
        let reason = refusal(&error, &subject, Stream::Results);
        stores.failed(&id, &caller, count, reason.clone(), connected);
        if connected && told.is_none_or(|at| at.elapsed() >= TELL_REFUSED) {
            told = Some(Instant::now());
            let refused = stores.refused_for(&id);
            let notice = RefusedResults {
                agent: stores.agent.clone(),
                tasks: tasks.clone(),
                refused_ms: u64::try_from(refused.as_millis()).unwrap_or(u64::MAX),
                reason,
            };
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(wire::REFUSED_HEADER, "1");
            let payload = wire::encode(&notice).into();
            let _ = js.client().publish_with_headers(tell.clone(), headers, payload).await;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
    if thrown {
        stores.thrown_away(&id);
    } else {
        stores.stored(&id);
    }
    for receipt in receipts {
        let _ = receipt.send(());
    }
}

/// The result messages whose stores fail now, and what the agent said of them.
struct Stores {
    agent: String,
    stream: String,
    state: Mutex<StoreState>,
}

#[derive(Default)]
struct StoreState {
    /// By message id.
    failing: HashMap<String, Failing>,
    /// When a store last succeeded.
    last_stored: Option<Instant>,
    /// When the agent last said that stores fail, while they do.
    said: Option<Instant>,
}

/// A result message whose store fails.
struct Failing {
    since: Instant,
    caller: String,
    results: usize,
    /// Why its latest try failed.
    reason: String,
}

impl Stores {
    fn new(agent: &str, stream: String) -> Self {
        Stores { agent: agent.to_string(), stream, state: Mutex::default() }
    }

    /// The store of message `id`, `results` results for `caller`, failed for `reason`. Said on
    /// standard error if the agent is `connected` (it says by itself when it is not): at
    /// once, then every [`SAY_REFUSED`] at most while stores keep failing.
    fn failed(&self, id: &str, caller: &str, results: usize, reason: String, connected: bool) {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let failing = state.failing.entry(id.to_string()).or_insert_with(|| Failing {
            since: now,
            caller: caller.to_string(),
            results,
            reason: String::new(),
        });
        failing.reason = reason;
        if !connected {
            // Not a refusal: the agent cannot reach the server, which it says by itself and
            // gives up on by itself (see `Agent::finish_held`). Refusals count from now.
            failing.since = now;
        }
        let due = state.said.is_none_or(|said| now.duration_since(said) >= SAY_REFUSED);
        if !connected || !due {
            return;
        }
        state.said = Some(now);
        let what = state.what(id);
        drop(state);
        say!(
            "taskpool agent {}: the server refuses to store results in stream {}: {what}. They \
             are retried; their tasks stay held here until they are stored (a stopping agent \
             gives up on them after the ack wait), and their callers are told (they fail them \
             once refused for their agent wait)",
            self.agent,
            self.stream,
        );
    }

    /// How long the server has refused to store message `id` while the agent could reach it.
    fn refused_for(&self, id: &str) -> Duration {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.failing.get(id).map_or(Duration::ZERO, |f| f.since.elapsed())
    }

    /// The store of message `id` succeeded; said once stores succeed again after failures
    /// were said.
    fn stored(&self, id: &str) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.failing.remove(id);
        state.last_stored = Some(Instant::now());
        if state.failing.is_empty() && state.said.take().is_some() {
            drop(state);
            say!(
                "taskpool agent {}: results are stored again in stream {}",
                self.agent,
                self.stream
            );
        }
    }

    /// Message `id`, whose store failed, was thrown away (its caller is gone); said once no
    /// other store fails after failures were said.
    fn thrown_away(&self, id: &str) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.failing.remove(id);
        if state.failing.is_empty() && state.said.take().is_some() {
            drop(state);
            say!(
                "taskpool agent {}: no result waits to be stored in stream {} any more (those \
                 nobody waited for were thrown away)",
                self.agent,
                self.stream
            );
        }
    }

    /// What fails to be stored, if stores fail and none has succeeded for `wait`.
    fn given_up(&self, wait: Duration) -> Option<String> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (newest, first) = state.failing.iter().max_by_key(|(_, f)| f.since)?;
        let oldest = state.failing.values().map(|f| f.since).min().unwrap_or(first.since);
        let quiet_since = state.last_stored.map_or(oldest, |stored| stored.max(oldest));
        (quiet_since.elapsed() >= wait).then(|| state.what(newest))
    }
}

impl StoreState {
    /// The results that fail to be stored, for which callers, since when, and why (as the
    /// store of message `id` failed).
    fn what(&self, id: &str) -> String {
        let results: usize = self.failing.values().map(|f| f.results).sum();
        let mut callers: Vec<&str> = self.failing.values().map(|f| f.caller.as_str()).collect();
        callers.sort_unstable();
        callers.dedup();
        let shown = callers.iter().take(3).copied().collect::<Vec<_>>().join(", ");
        let more = match callers.len() {
            0..=3 => String::new(),
            n => format!(" and {} more", n - 3),
        };
        let since = self
            .failing
            .values()
            .map(|f| f.since)
            .min()
            .map_or(0.0, |since| since.elapsed().as_secs_f64());
        let reason = self.failing.get(id).map_or("", |f| f.reason.as_str());
        format!(
            "{results} result{} for caller{} {shown}{more}, failing for {since:.0} s: {reason}",
            if results == 1 { "" } else { "s" },
            if callers.len() == 1 { "" } else { "s" },
        )
    }
}

/// `SIGTERM` and `SIGINT`, as they come.
struct StopSignals(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl StopSignals {
    fn new() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(term), Ok(int)) => StopSignals(Some((term, int))),
            _ => StopSignals(None),
        }
    }

    /// Resolves on the next `SIGTERM` or `SIGINT`; never if they cannot be caught.
    async fn recv(&mut self) {
        let Some((term, int)) = self.0.as_mut() else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}

/// `d` in nanoseconds, saturated.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cancel notices for tasks the agent never sees (they ran elsewhere, or finished before
    /// the notice) are remembered within the bound: the oldest are forgotten first.
    #[test]
    fn a_unit_takes_its_items_time_spread_over_the_workers_it_can_use() {
        assert_eq!(unit_time(8_000, 8, 4), 2_000, "eight items on four workers");
        assert_eq!(unit_time(3_000, 3, 4), 1_000, "three items use three of four workers");
        assert_eq!(unit_time(5_000, 1, 4), 5_000);
        assert_eq!(unit_time(0, 0, 4), 0, "nothing measured");
        assert_eq!(unit_time(7, 2, 0), 7);
    }

    #[test]
    fn remembered_cancels_stay_within_their_bound() {
        let mut cancels = Cancels::default();
        let caller = "0123456789abcdef".to_string();
        for task in 0..(REMEMBERED_CANCELS as u64 + 1000) {
            cancels.remember((caller.clone(), task));
        }
        assert_eq!(cancels.order.len(), REMEMBERED_CANCELS);
        assert_eq!(cancels.set.len(), REMEMBERED_CANCELS);
        assert!(!cancels.set.contains(&(caller.clone(), 0)), "the oldest is forgotten");
        assert!(cancels.set.contains(&(caller, REMEMBERED_CANCELS as u64 + 999)));
    }

    /// Failing stores are said once, not at every retry, and given up on only once none has
    /// been stored for the wait; a success clears them.
    #[test]
    fn failing_stores_are_said_once_a_while_and_given_up_after_the_wait() {
        let stores = Stores::new("agent", "TASKPOOL_RESULTS".to_string());
        stores.failed("a-1", "caller", 2, "refused".to_string(), true);
        let said = stores.state.lock().unwrap().said.expect("said at once");
        stores.failed("a-1", "caller", 2, "refused again".to_string(), true);
        assert_eq!(stores.state.lock().unwrap().said, Some(said), "not at every retry");
        let what = stores.given_up(Duration::ZERO).expect("failing");
        assert!(what.starts_with("2 results for caller caller"), "{what}");
        assert!(what.ends_with("refused again"), "{what}");
        assert!(stores.given_up(Duration::from_secs(3600)).is_none(), "not yet");
        stores.stored("a-1");
        assert!(stores.given_up(Duration::ZERO).is_none());
        assert!(stores.state.lock().unwrap().said.is_none(), "said again when it comes back");
    }
}
