//! The failures only a cluster has, as the core errors every backend shares: no agent
//! ([`TaskError::NoWorker`]), a task that keeps losing its agent
//! ([`TaskError::DeliveryLimit`]), no server ([`TaskError::Unreachable`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use taskpool_core::TaskError;

/// What the server, or the way to it, said: the source of a [`TaskError::Unreachable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerError(pub(crate) String);

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServerError {}

/// The server did not answer, or did not take the task, within `waited`; `reason` is what
/// went wrong on the last attempt.
pub(crate) fn unreachable(reason: impl Into<String>, waited: Duration) -> TaskError {
    TaskError::Unreachable { waited, source: Arc::new(ServerError(reason.into())) }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn the_error_says_what_the_server_said_once() {
        let e = unreachable("cannot connect to nats://127.0.0.1:1: refused", Duration::ZERO);
        assert_eq!(
            e.to_string(),
            "the pool's service could not be reached: cannot connect to nats://127.0.0.1:1: \
             refused"
        );
        assert!(e.source().is_none(), "a chain repeats the reason");
        let TaskError::Unreachable { source, .. } = &e else { unreachable!() };
        assert_eq!(source.to_string(), "cannot connect to nats://127.0.0.1:1: refused");
    }
}
