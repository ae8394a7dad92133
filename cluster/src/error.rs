//! The failures only a cluster has: no agent, a task that keeps losing its agent, no server.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use taskpool_core::TaskError;

/// Why a task failed in the cluster itself rather than in its worker.
///
/// A task's errors are the core [`TaskError`]s, the same as on one machine (a segfault on an
/// agent is [`TaskError::Crashed`] with `SIGSEGV`). These three have no core variant: they
/// travel as [`TaskError::Io`] whose source is a `ClusterError`, and [`ClusterError::of`]
/// finds them.
///
/// # Examples
///
/// ```
/// use taskpool_cluster::{ClusterError, TaskError};
///
/// let err: TaskError = ClusterError::DeliveryLimit { deliveries: 5 }.into();
/// assert_eq!(ClusterError::of(&err), Some(&ClusterError::DeliveryLimit { deliveries: 5 }));
/// assert_eq!(ClusterError::of(&TaskError::Cancelled), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ClusterError {
    /// No agent running the caller's executable image was seen for `waited` while the task
    /// waited ([`crate::ClusterConfig::agent_wait`]).
    NoAgent {
        /// The image's id, as agents print it when they start.
        image: String,
        /// How long the task waited.
        waited: Duration,
    },
    /// The task was taken by an agent `deliveries` times and never finished: each agent died
    /// or lost the server while running it ([`crate::ClusterConfig::delivery_limit`]). A task
    /// that kills whatever runs it stops here.
    DeliveryLimit {
        /// How many deliveries it took.
        deliveries: u32,
    },
    /// The NATS server could not store the task within `waited`.
    Server {
        /// What went wrong on the last attempt.
        reason: String,
        /// How long the pool kept trying.
        waited: Duration,
    },
}

impl ClusterError {
    /// The cluster failure behind `e`, if it is one.
    pub fn of(e: &TaskError) -> Option<&ClusterError> {
        match e {
            TaskError::Io(io) => Self::of_io(io),
            _ => None,
        }
    }

    pub(crate) fn of_io(e: &io::Error) -> Option<&ClusterError> {
        e.get_ref()?.downcast_ref::<ClusterError>()
    }
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterError::NoAgent { image, waited } => {
                write!(f, "no agent of executable image {image} was seen for {waited:?}")
            }
            ClusterError::DeliveryLimit { deliveries } => {
                write!(f, "the task was delivered {deliveries} times and never finished")
            }
            ClusterError::Server { reason, waited } => {
                write!(f, "the server did not take the task within {waited:?}: {reason}")
            }
        }
    }
}

impl std::error::Error for ClusterError {}

impl From<ClusterError> for TaskError {
    fn from(e: ClusterError) -> TaskError {
        let kind = match e {
            ClusterError::NoAgent { .. } => io::ErrorKind::NotConnected,
            ClusterError::DeliveryLimit { .. } => io::ErrorKind::Other,
            ClusterError::Server { .. } => io::ErrorKind::TimedOut,
        };
        TaskError::Io(Arc::new(io::Error::new(kind, e)))
    }
}
