//! The caller's way back: results pulled from the results stream, and the fast copies of
//! small results that agents send straight to the caller.

use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt;

use taskpool_core::TaskError;

use crate::link;
use crate::pool::Inner;
use crate::wire::{self, RefusedResults, ResultMessage};

/// Pulls this caller's results and settles their units.
///
/// One pull subscription serves for the pool's life: a result delivered to it is never
/// stranded. It is made anew only if it ends or keeps failing.
pub(crate) async fn receive(
    inner: std::sync::Weak<Inner>,
    mut consumer: jetstream::consumer::PullConsumer,
) {
    let mut lost = false;
    loop {
        if lost {
            // The server may have lost its store (restarted without it): the streams and
            // this caller's consumer are made again if they are gone.
            let Some(strong) = inner.upgrade() else { return };
            match attach(&strong).await {
                Ok(found) => {
                    consumer = found;
                    lost = false;
                }
                Err(_) => {
                    drop(strong);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        let messages = consumer
            .stream()
            .max_messages_per_batch(1024)
            // Not every stored result at once: more than the server buffers for a client.
            .max_bytes_per_batch(link::PULL_BYTES)
            .heartbeat(Duration::from_secs(1))
            .expires(Duration::from_secs(10))
            .messages()
            .await;
        let Ok(mut messages) = messages else {
            lost = true;
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
                Err(e) if crate::agent::consumer_lost(&e) => {
                    lost = true;
                    break;
                }
                // A missed heartbeat while the server restarts: the stream pulls anew.
                Err(_) if errors < 20 => {
                    errors += 1;
                    continue;
                }
                Err(_) => {
                    lost = true;
                    break;
                }
            };
            errors = 0;
            match wire::decode::<ResultMessage>(&message.payload) {
                Ok(results) => inner.settle(results, true),
                Err(e) => say!("taskpool cluster: dropped an unreadable result message: {e}"),
            }
            // A lost ack means the message comes again: its units are duplicates then.
            let _ = message.ack().await;
        }
    }
}

/// This caller's results consumer, and the streams, made again if they are gone.
async fn attach(inner: &Inner) -> Result<jetstream::consumer::PullConsumer, TaskError> {
    let (tasks, results) = link::streams(&inner.js, &inner.config.server, None).await?;
    inner.found_tasks_stream(&tasks);
    link::results_consumer(&results, &inner.names, &inner.caller).await
}

/// Settles units from the fast copies of their results, and hears from agents whose results
/// the server refuses to store ([`RefusedResults`]).
pub(crate) async fn receive_fast(
    inner: std::sync::Weak<Inner>,
    mut copies: async_nats::Subscriber,
) {
    while let Some(message) = copies.next().await {
        let Some(inner) = inner.upgrade() else { return };
        let refused =
            message.headers.as_ref().is_some_and(|h| h.get(wire::REFUSED_HEADER).is_some());
        if refused {
            if let Ok(notice) = wire::decode::<RefusedResults>(&message.payload) {
                inner.results_refused(notice);
            }
        } else if let Ok(results) = wire::decode::<ResultMessage>(&message.payload) {
            inner.settle(results, false);
        }
    }
}
