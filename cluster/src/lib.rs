//! Runs taskpool tasks on many machines through a NATS JetStream server, each task in a
//! crash-isolated worker process.
//!
//! [`ClusterPool`] implements the shared [`Pool`] trait, so code written for
//! `taskpool-thread` or `taskpool-process` runs here unchanged, but for what lives in one
//! machine's memory: a task whose argument, `Task` struct or result holds a
//! `taskpool_process::Queue` (or its `Producer` or `Consumer`), a `Pipe`'s `End` or
//! `SharedBytes` fails with [`TaskError::Serialization`] saying that it cannot cross to
//! another machine.
//!
//! Its workers are *agents*: the same program, started on any machine with the server's url
//! in `TASKPOOL_AGENT`. No function is registered anywhere; an agent runs the tasks of its
//! own executable image.
//!
//! ```no_run
//! use taskpool_cluster::{ClusterPool, Pool, TaskError};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn main() -> Result<(), TaskError> {
//!     // On every machine:  TASKPOOL_AGENT=nats://10.0.0.5:4222 ./this-program
//!     // Here:              ./this-program
//!     let pool = ClusterPool::connect("nats://10.0.0.5:4222")?;
//!     assert_eq!(pool.map(square, 1..=5)?, [1, 4, 9, 16, 25]);
//!     let h = pool.submit(square, 7);
//!     assert_eq!(h.join()?, 49);
//!     Ok(())
//! }
//! ```
//!
//! # Delivery
//!
//! - **At least once.** A task stays in the tasks stream (a work queue on disk, replicated on
//!   a cluster) until an agent has stored its result; an agent that dies, is cut off or loses
//!   the server while running it leaves it to run again elsewhere after the ack wait
//!   ([`AgentConfig::ack_wait`]). Agents report progress on long tasks, so those are not
//!   given away while their agent lives; but on a cluster of servers, losing the one that
//!   leads the agents' consumer gives the tasks agents hold to agents again (its successor
//!   does not know their progress), and another agent with free slots runs them a second
//!   time.
//! - **A delivery limit.** A task delivered more than [`ClusterConfig::delivery_limit`] times
//!   fails with [`TaskError::DeliveryLimit`]: a task that kills whatever runs it cannot
//!   circle for ever.
//! - **Exactly-once settlement.** Each task has an id; the first result settles its handle
//!   and later ones are counted ([`ClusterStats::duplicates`]) and dropped.
//! - **Chunks.** `map`, `imap` and `imap_unordered` send items in chunks sized from the time
//!   per item the agents measure, with a result per item. Each call learns what its own
//!   items cost, starting from a share for each agent alive of its first few items (as many
//!   as it keeps chunks in flight), each in a message of its own: what one `map` measured
//!   never sizes the chunks of another. An `imap`'s share travels in chunks of at most an
//!   item for each of an agent's workers, so that its first results come as soon as their
//!   items are done. A `map` sends its chunks in a parcel for each worker of the agents
//!   alive (their heartbeats say how many), on a queue of their own that agents pull one
//!   parcel at a time for each free worker (one that neither a parcel nor a single task
//!   takes): agents of unequal size take shares of a `map` that follow their free workers,
//!   and an agent whose workers run single tasks leaves the parcels to others. While single
//!   tasks keep every worker of every agent busy, a `map`'s parcels wait for them.
//! - **Order, not fairness.** The agents of an image take the tasks of every caller from one
//!   work queue, first stored first served. `map` and `imap` keep only a few chunks per
//!   worker in flight, each about 10 ms of work (and, until the call has measured what its
//!   items cost, no more items than it keeps chunks), so another caller's task reaches an
//!   agent after those, and there waits for a batch of them, not all (the jobs an agent
//!   holds take turns for its workers); but tasks `submit`ted in bulk are all queued at
//!   once, and a task another caller sends after them waits until agents have taken every
//!   one: send many tasks with `map` or `imap` rather than `submit`, or give such work a
//!   stream name of its own and agents of its own.
//! - **No agent.** A task waits at most [`ClusterConfig::agent_wait`] while no agent of its
//!   image is alive, then fails with [`TaskError::NoWorker`] if the server answers (counting
//!   the agents of other images alive: agents not restarted after a rebuild run another
//!   image, and cannot run the new one's tasks; and the agents of its image alive that
//!   serve streams of another name), or with
//!   [`TaskError::Unreachable`] (and why) if it does not: a lost server, not a lack of
//!   agents, is then the cause. A server that does not take a task for as long fails it
//!   with [`TaskError::Unreachable`] too; so does one that refuses for as long to store the
//!   result an agent holds for it (a results stream that stays full, a permission refused
//!   on the results subject): the agent tells the pool, and the error says why.
//! - **A gone caller.** A pool says once a second that it is alive. Agents that have not
//!   heard it for [`ClusterConfig::abandon_after`] (by their own clocks) take its program for
//!   dead (killed, or ended without dropping the pool): they drop its queued tasks without
//!   running them, kill the workers running its tasks (each is replaced) and remove its
//!   stored results. A pool whose program was only stopped, or whose connection dropped, for
//!   less loses nothing; one silent for longer fails its pending tasks with
//!   [`TaskError::Unreachable`] when it is back.
//!
//! # Failures
//!
//! An agent runs every task in a local [`taskpool_process::ProcessPool`], so a segfault, an
//! abort, a hang past its time limit or a memory bomb fails that task with the same
//! [`TaskError`] as on one machine (`Crashed` with the signal, `TimedOut`,
//! `ResourceLimit`), and the agent serves on.
//!
//! # Tests and benchmarks
//!
//! [`local::Cluster`] starts a throwaway cluster on this machine: a `nats-server` on a free
//! loopback port and agents that are the running program itself.
//!
//! # Trust
//!
//! A task names its function by an offset into the executable. Whoever can publish to the
//! tasks stream can therefore make agents run any function of their image with inputs of
//! their choice: the NATS account is the trust boundary. Give agents and callers an account
//! of their own ([`ClusterConfig::credentials_file`]) and use TLS
//! ([`ClusterConfig::root_certificates`]) on any network you do not control.
//!
//! Linux only.
#![deny(unsafe_code)]

/// Writes a line to standard error as `eprintln!` does, but never panics: a line that cannot
/// be written (standard error closed, or a pipe that nobody reads any more) is lost.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

#[allow(unsafe_code)]
mod agent;
mod batch;
mod callers;
mod chunk;
mod config;
#[allow(unsafe_code)]
mod entry;
mod error;
mod idle;
mod image;
mod inbox;
mod link;
#[allow(unsafe_code)]
pub mod local;
mod outbox;
mod pending;
mod pool;
mod refusal;
mod request;
mod wire;
#[allow(unsafe_code)]
mod workers;

pub use crate::agent::serve as serve_agent;
pub use crate::config::{AgentConfig, ClusterConfig};
pub use crate::pool::{ClusterPool, ClusterStats};
pub use taskpool_core::{
    Config, Direction, Exit, IntoTask, NextTimeout, PanicReport, Pool, Resource, Side, Task,
    TaskError, TaskHandle, Timeout, TryError,
};
/// The settings of an agent's local process pool, for [`AgentConfig::pool`]: re-exported so
/// that agents' memory and CPU-time limits need no dependency of their own.
pub use taskpool_process::ProcessConfig;
