//! The caller's way back: results pulled from the results stream, and the fast copies of
//! small results that agents send straight to the caller.

use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;

use crate::pool::Inner;
use crate::wire::{self, ResultMessage};

/// Pulls this caller's results and settles their units.
///
/// One pull subscription serves for the pool's life: a result delivered to it is never
/// stranded. It is made anew only if it ends or keeps failing.
pub(crate) async fn receive(
    inner: std::sync::Weak<Inner>,
    consumer: jetstream::consumer::PullConsumer,
) {
    loop {
        let messages = consumer
            .stream()
            .max_messages_per_batch(1024)
            .heartbeat(Duration::from_secs(1))
            .expires(Duration::from_secs(10))
            .messages()
            .await;
        let Ok(mut messages) = messages else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if inner.strong_count() == 0 {
                return;
            }
            continue;
        };
        let mut errors = 0;
        while let Some(message) = messages.next().await {
            let Some(inner) = inner.upgrade() else { return };
            let message = match message {
                Ok(message) => message,
                // A missed heartbeat while the server restarts: the stream pulls anew.
                Err(_) if errors < 20 => {
                    errors += 1;
                    continue;
                }
                Err(_) => break,
            };
            errors = 0;
            match wire::decode::<ResultMessage>(&message.payload) {
                Ok(results) => inner.settle(results, true),
                Err(e) => eprintln!("taskpool cluster: dropped an unreadable result message: {e}"),
            }
            // A lost ack means the message comes again: its units are duplicates then.
            let _ = message.ack().await;
        }
    }
}

/// Settles units from the fast copies of their results.
pub(crate) async fn receive_fast(
    inner: std::sync::Weak<Inner>,
    mut copies: async_nats::Subscriber,
) {
    while let Some(message) = copies.next().await {
        let Some(inner) = inner.upgrade() else { return };
        if let Ok(results) = wire::decode::<ResultMessage>(&message.payload) {
            inner.settle(results, false);
        }
    }
}
