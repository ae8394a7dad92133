//! Why the server did not store a message, and what that may mean: one reading of its
//! refusals, for a caller's task messages and an agent's results alike.

use std::time::Duration;

use async_nats::jetstream::context::{PublishError, PublishErrorKind};

use crate::link;

/// The stream a message was to be stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    /// A caller's task message.
    Tasks,
    /// An agent's result message.
    Results,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Tasks => "tasks",
            Stream::Results => "results",
        }
    }

    /// Who makes room in the stream.
    fn emptied_by(self) -> &'static str {
        match self {
            Stream::Tasks => "agents take their tasks",
            Stream::Results => "callers read their results",
        }
    }
}

/// What the server says of a message it cannot store for want of room (JetStream error 10023).
const STORE_FULL: &str = "error code 10023";

/// What the server says of a message whose earlier try it is still storing (JetStream error
/// 10158).
const STILL_STORING: &str = "duplicate message id is in process";

/// What a stream made with a limit says of a message over it.
const STREAM_LIMITS: [&str; 3] =
    ["maximum bytes exceeded", "maximum messages exceeded", "message size exceeds maximum"];

/// How long after the server sent an error of the connection naming a subject that error
/// counts as its answer to a store on that subject.
const SERVER_ERROR_WITHIN: Duration = Duration::from_secs(30);

/// Why the server did not store a message on `subject`, of `stream`, as `error` says, with
/// what it may mean.
pub(crate) fn refusal(error: &PublishError, subject: &str, stream: Stream) -> String {
    let said = error.to_string();
    if let Some(refused) = link::server_error_about(subject, SERVER_ERROR_WITHIN) {
        // A publish the server refuses (a permission violation) is answered by an error of
        // the connection; the publish itself only times out.
        return format!("the server said: {refused} (and the store: {said})");
    }
    let hint = if error.kind() == PublishErrorKind::StreamNotFound {
        format!(
            " (nothing takes the {} stream's subjects: on a cluster of servers, the stream has \
             no leader while fewer than a majority of its servers are up; or the stream was \
             removed)",
            stream.name()
        )
    } else if said.contains(STILL_STORING) {
        // On a cluster, what a stream that cannot reach a majority of its servers answers
        // while it waits for them.
        " (an earlier try of the message is not stored yet: on a cluster of servers, a stream \
         stores nothing while fewer than a majority of its servers are up)"
            .to_string()
    } else if said.contains(STORE_FULL) {
        // Once the streams' messages fill what the server may store (its `max_file_store`,
        // or its disk): the tasks and results waiting take it all.
        " (the server's JetStream store is full: the tasks and results waiting in the streams \
         take all the server may store, its max_file_store or its disk; this lasts until \
         agents take tasks and callers their results. Raise the server's max_file_store, or \
         keep fewer or smaller tasks in flight)"
            .to_string()
    } else if STREAM_LIMITS.iter().any(|limit| said.contains(limit)) {
        format!(
            " (the {} stream was made with a limit at which it refuses new messages: it takes \
             more only as {}, and never a message above the limit; raise or remove the limit)",
            stream.name(),
            stream.emptied_by()
        )
    } else if error.kind() == PublishErrorKind::TimedOut {
        " (the server did not confirm the store in time: a busy or unreachable server, or, on \
         a cluster of servers, fewer than a majority of its servers up)"
            .to_string()
    } else {
        String::new()
    };
    format!("{said}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBJECT: &str = "taskpool.tasks.image.caller";

    #[test]
    fn a_store_refused_while_an_earlier_try_is_stored_says_what_it_may_mean() {
        let answer = "duplicate message id is in process (code 409, error code 10158)";
        let error = PublishError::with_source(PublishErrorKind::Other, answer);
        let said = refusal(&error, SUBJECT, Stream::Tasks);
        assert!(said.contains(answer) && said.contains("fewer than a majority"), "{said}");
        let late = refusal(&PublishError::new(PublishErrorKind::TimedOut), SUBJECT, Stream::Tasks);
        assert!(late.contains("fewer than a majority"), "{late}");
        let other = PublishError::with_source(PublishErrorKind::Other, "something else");
        assert_eq!(refusal(&other, SUBJECT, Stream::Results), other.to_string());
    }

    #[test]
    fn a_store_refused_for_want_of_room_says_what_to_do() {
        let answer = "publish failed: insufficient resources (code 503, error code 10023)";
        let error = PublishError::with_source(PublishErrorKind::Other, answer);
        for stream in [Stream::Tasks, Stream::Results] {
            let full = refusal(&error, SUBJECT, stream);
            assert!(full.contains(answer) && full.contains("max_file_store"), "{full}");
        }
    }

    #[test]
    fn a_store_refused_by_a_limit_of_the_stream_names_the_stream() {
        let error = PublishError::with_source(PublishErrorKind::Other, "maximum bytes exceeded");
        let tasks = refusal(&error, SUBJECT, Stream::Tasks);
        assert!(tasks.contains("the tasks stream was made with a limit"), "{tasks}");
        assert!(tasks.contains("agents take their tasks"), "{tasks}");
        let results = refusal(&error, SUBJECT, Stream::Results);
        assert!(results.contains("the results stream was made with a limit"), "{results}");
        assert!(results.contains("callers read their results"), "{results}");
    }
}
