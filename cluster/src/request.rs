//! One pull request of an agent on a consumer of the tasks stream, which the agent can
//! withdraw before the server has filled it.
//!
//! A pull request asks the server for a number of messages and waits there until it has
//! them or expires. An agent that asked for a `map`'s parcels for its free workers, and whose
//! workers then became busy with single tasks, withdraws its request so that the parcels go
//! to agents whose workers are free. It does so by draining its reply subscription: the
//! server forgets a request nobody listens for, and the messages it sent before it heard
//! still come through (rather than sit unacknowledged, lost to every agent until the ack
//! wait).

use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer, consumer::pull::BatchConfig};
use async_nats::{StatusCode, Subscriber};
use futures_util::StreamExt;

/// How long after its expiry a request that the server never ended is taken for ended.
const SPARE: Duration = Duration::from_secs(5);

/// A pull request sent, and the messages that come for it.
pub(crate) struct PullRequest {
    replies: Subscriber,
    context: jetstream::Context,
    /// How many messages it still waits for.
    left: usize,
    /// Ends it should the server's own end never come.
    deadline: Pin<Box<tokio::time::Sleep>>,
    withdrawn: bool,
}

/// What comes next for a pull request.
pub(crate) enum Next {
    /// A message.
    Message(Box<jetstream::Message>),
    /// The request ended: filled, expired or withdrawn.
    End,
    /// The next message did not fit in what was left of its bytes: the server ended it, and
    /// the next request takes that message.
    BytesRanOut,
    /// The server refused or ended it otherwise (its consumer gone, for one).
    Failed,
}

impl PullRequest {
    /// Asks `consumer`, of the JetStream `context`, for at most `messages` messages of at
    /// most `bytes` in all, for at most `expires`. `Err` if it cannot be sent.
    pub(crate) async fn send(
        context: &jetstream::Context,
        consumer: &PullConsumer,
        messages: usize,
        bytes: usize,
        expires: Duration,
    ) -> Result<PullRequest, Failed> {
        let context = context.clone();
        let inbox = context.client().new_inbox();
        let replies = context.client().subscribe(inbox.clone()).await.map_err(|_| Failed)?;
        let config = BatchConfig {
            batch: messages,
            expires: Some(expires),
            max_bytes: bytes,
            ..BatchConfig::default()
        };
        consumer.request_batch(config, inbox.into()).await.map_err(|_| Failed)?;
        let deadline = Box::pin(tokio::time::sleep(expires.saturating_add(SPARE)));
        Ok(PullRequest { replies, context, left: messages, deadline, withdrawn: false })
    }

    /// The next message, or how the request ended.
    pub(crate) async fn next(&mut self) -> Next {
        loop {
            if self.left == 0 {
                return Next::End;
            }
            let message = tokio::select! {
                _ = &mut self.deadline => return Next::End,
                message = self.replies.next() => message,
            };
            let Some(message) = message else { return Next::End };
            match message.status.unwrap_or(StatusCode::OK) {
                StatusCode::OK => {
                    self.left -= 1;
                    let context = self.context.clone();
                    return Next::Message(Box::new(jetstream::Message { message, context }));
                }
                StatusCode::IDLE_HEARTBEAT => {}
                // Expired (408), or nothing to deliver (404).
                StatusCode::TIMEOUT | StatusCode::NOT_FOUND => return Next::End,
                _ if bytes_ran_out(message.description.as_deref()) => return Next::BytesRanOut,
                _ => return Next::Failed,
            }
        }
    }

    /// Whether it was withdrawn.
    pub(crate) fn withdrawn(&self) -> bool {
        self.withdrawn
    }

    /// Withdraws the request: the server delivers nothing more for it once it hears, and
    /// [`PullRequest::next`] ends after the messages it sent before.
    pub(crate) async fn withdraw(&mut self) {
        if !std::mem::replace(&mut self.withdrawn, true) {
            // Failed only if the connection is gone, with the request.
            let _ = self.replies.drain().await;
        }
    }
}

/// A pull request that could not be sent.
#[derive(Debug)]
pub(crate) struct Failed;

/// Whether a status's `description` says that the next message did not fit in what was left
/// of the request's bytes.
fn bytes_ran_out(description: Option<&str>) -> bool {
    description.is_some_and(|d| d.contains("Message Size Exceeds MaxBytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_message_past_the_bytes_left_ends_a_request_for_the_next() {
        assert!(bytes_ran_out(Some("Message Size Exceeds MaxBytes")));
        assert!(!bytes_ran_out(Some("Consumer Deleted")));
        assert!(!bytes_ran_out(None));
    }
}
