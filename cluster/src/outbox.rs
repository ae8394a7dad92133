//! The caller's way to the tasks stream: units queue here and travel to the server, several
//! to a message when they queue up, each message retried until the server has stored it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use tokio::sync::{Semaphore, mpsc};

use crate::error;
use crate::link::{self, Queue};
use crate::pool::{ABANDON_AFTER_HEADER, Inner};
use crate::refusal::{Stream, refusal};
use crate::wire::{self, TaskMessage, Unit};

/// Task messages being stored at once; units that arrive meanwhile travel together.
const PUBLISHING: usize = 64;
/// The most items in one task message of loose units (single tasks) packed together (a unit
/// of more travels alone): an agent takes a whole message, and an agent that dies takes the
/// whole message back to the stream. The chunks of a batch sent at once travel in parcels,
/// a share for each agent (for each worker, of a `map`), each in a message of its own
/// whatever its items.
pub(crate) const ITEMS_PER_MESSAGE: usize = 128;

/// What the pool hands the outbox.
pub(crate) enum Post {
    /// A single task's unit, which shares a message with the units queued beside it.
    Loose(Unit),
    /// Units that travel together, in messages of their own to the queue given: as few as
    /// their size allows (the chunks a batch sends at once, shared out among the agents or
    /// their workers).
    Parcel(Vec<Unit>, Queue),
}

/// Stores units in the tasks stream, several to a message when they queue up, and each
/// parcel ([`Post::Parcel`]) in messages of its own.
///
/// Each message is handed to the client here, at once; a task of its own waits for the
/// server's acknowledgement and retries if need be.
pub(crate) async fn publish(
    inner: std::sync::Weak<Inner>,
    mut inbox: mpsc::UnboundedReceiver<Post>,
) {
    let slots = Arc::new(Semaphore::new(PUBLISHING));
    while let Some(first) = inbox.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let Some(inner) = inner.upgrade() else { return };
        let max_unit = inner.max_unit();
        let (units, (parcel, queue)) = match first {
            Post::Loose(first) => gather(first, &mut inbox, max_unit),
            Post::Parcel(units, queue) => (Vec::new(), (units, queue)),
        };
        let mut messages = vec![(units, Queue::Tasks)];
        messages.extend(pack(parcel, max_unit).into_iter().map(|units| (units, queue)));
        let mut slot = Some(slot);
        for (mut units, queue) in messages {
            // Units cancelled while they queued need not travel.
            units.retain(|u| inner.pending.contains(u.task));
            if units.is_empty() {
                continue;
            }
            let message = Outgoing::new(&inner, units, queue);
            let first_try = inner.js.send_publish(message.subject.clone(), message.publish()).await;
            tokio::spawn(message.confirm(inner.clone(), first_try, slot.take()));
        }
    }
}

/// The loose units queued now, from `first` on, that share its message; and the units met
/// that do not, with their queue: a unit too heavy or of too many items to join, or a
/// parcel, which travel next in messages of their own.
fn gather(
    first: Unit,
    inbox: &mut mpsc::UnboundedReceiver<Post>,
    max_unit: usize,
) -> (Vec<Unit>, (Vec<Unit>, Queue)) {
    let (mut weight, mut items) = (first.weight(), first.ends.len());
    let mut units = vec![first];
    while weight < max_unit / 2 && items < ITEMS_PER_MESSAGE {
        match inbox.try_recv() {
            Ok(Post::Loose(unit))
                if weight + unit.weight() <= max_unit
                    && items + unit.ends.len() <= ITEMS_PER_MESSAGE =>
            {
                weight += unit.weight();
                items += unit.ends.len();
                units.push(unit);
            }
            Ok(Post::Loose(unit)) => return (units, (vec![unit], Queue::Tasks)),
            Ok(Post::Parcel(parcel, queue)) => return (units, (parcel, queue)),
            Err(_) => break,
        }
    }
    (units, (Vec::new(), Queue::Tasks))
}

/// The messages a parcel travels in, its units in order: as many to a message as fit (no
/// more units once half of `max_unit` is taken), whatever their items. A parcel is an
/// agent's share of a pass, which it takes whole in one message: cut into several by
/// [`ITEMS_PER_MESSAGE`], its messages went to whichever agents' pull requests had room, and
/// one whose request had room for one message took one and left the rest of its share to
/// the others.
fn pack(parcel: Vec<Unit>, max_unit: usize) -> Vec<Vec<Unit>> {
    let mut messages: Vec<Vec<Unit>> = Vec::new();
    let mut weight = 0;
    for unit in parcel {
        let w = unit.weight();
        match messages.last_mut() {
            Some(message) if weight < max_unit / 2 && weight + w <= max_unit => {
                message.push(unit);
                weight += w;
            }
            _ => {
                messages.push(vec![unit]);
                weight = w;
            }
        }
    }
    messages
}

/// A task message on its way to the stream.
struct Outgoing {
    ids: Vec<u64>,
    id: String,
    subject: String,
    payload: bytes::Bytes,
    abandon_after_ms: u64,
}

type PublishTry = Result<jetstream::context::PublishAckFuture, jetstream::context::PublishError>;

impl Outgoing {
    fn new(inner: &Inner, units: Vec<Unit>, queue: Queue) -> Self {
        let ids: Vec<u64> = units.iter().map(|u| u.task).collect();
        let message = TaskMessage {
            caller: inner.caller.clone(),
            delivery_limit: inner.config.delivery_limit,
            initializer: inner.initializer,
            units,
        };
        Outgoing {
            id: format!("{}-{}", inner.caller, ids[0]),
            ids,
            subject: queue.subject(&inner.names, inner.image, &inner.caller),
            payload: bytes::Bytes::from(wire::encode(&message)),
            abandon_after_ms: u64::try_from(inner.config.abandon_after.as_millis())
                .unwrap_or(u64::MAX),
        }
    }

    /// The message, with its id (the stream keeps one copy however often it is sent) and how
    /// long its caller may be silent before agents drop it (a header: agents that do not know
    /// it run the units as before, and units without it are never dropped).
    fn publish(&self) -> PublishMessage {
        PublishMessage::build()
            .payload(self.payload.clone())
            .message_id(&self.id)
            .header(ABANDON_AFTER_HEADER, self.abandon_after_ms.to_string().as_str())
    }

    /// Waits until the server has stored the message, sending it again as long as its units
    /// wait and the agent wait has not run out, for the message or for the pool (the server
    /// has taken none of its messages for that long); then fails them with
    /// [`taskpool_core::TaskError::Unreachable`]. While the pool's connection is down after
    /// such an outage, a message fails at once: each one does not wait the agent wait
    /// again, which would make a `map` of many chunks wait as many times.
    async fn confirm(
        self,
        inner: Arc<Inner>,
        first_try: PublishTry,
        slot: Option<tokio::sync::OwnedSemaphorePermit>,
    ) {
        let started = Instant::now();
        let mut pause = Duration::from_millis(20);
        let mut attempt = Some(first_try);
        let connected =
            || inner.js.client().connection_state() == async_nats::connection::State::Connected;
        let lost = if connected() { None } else { inner.outage.over(inner.config.agent_wait) };
        if let Some(reason) = lost {
            self.fail(&inner, reason, started.elapsed());
            drop(slot);
            return;
        }
        loop {
            let sent = match attempt.take() {
                Some(sent) => sent,
                None => inner.js.send_publish(self.subject.clone(), self.publish()).await,
            };
            let error = match sent {
                Ok(ack) => match ack.await {
                    Ok(_) => {
                        inner.outage.end();
                        break;
                    }
                    Err(e) => refusal(&e, &self.subject, Stream::Tasks),
                },
                Err(e) => refusal(&e, &self.subject, Stream::Tasks),
            };
            let outage = inner.outage.begin();
            if !self.ids.iter().any(|id| inner.pending.contains(*id)) {
                // Every unit was settled meanwhile (cancelled, or failed by a dropped pool).
                break;
            }
            let waited = started.elapsed();
            if waited >= inner.config.agent_wait || outage >= inner.config.agent_wait {
                let reason = match inner.outage.over(inner.config.agent_wait) {
                    Some(reason) if !connected() => reason,
                    _ => {
                        // Why the server cannot be reached says more than how the last store
                        // failed (often just a missing acknowledgement).
                        let why = link::why_unreachable(&inner.js, &inner.config.server).await;
                        let reason = why.unwrap_or(error);
                        inner.outage.explain(&reason);
                        reason
                    }
                };
                self.fail(&inner, reason, waited);
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
        drop(slot);
    }

    /// Fails the message's units that still wait: the server did not take them.
    fn fail(&self, inner: &Inner, reason: String, waited: Duration) {
        let failure = error::unreachable(reason, waited);
        for id in &self.ids {
            if let Some(entry) = inner.pending.give_up(*id) {
                entry.fail(&failure);
            }
        }
    }
}

/// Since when the server has failed to store the pool's task messages, with none stored
/// since, and why, once a message has failed for it.
#[derive(Default)]
pub(crate) struct Outage(Mutex<Option<(Instant, Option<String>)>>);

impl Outage {
    /// A store failed: how long the server has taken none (from this failure if it took the
    /// one before).
    fn begin(&self) -> Duration {
        let mut outage = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        outage.get_or_insert_with(|| (Instant::now(), None)).0.elapsed()
    }

    /// A store succeeded: the server takes messages.
    fn end(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Notes why the server could not be reached, for the messages that fail after.
    fn explain(&self, reason: &str) {
        if let Some((_, why)) = self.0.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
            *why = Some(reason.to_string());
        }
    }

    /// Why the server has taken no message for `wait` or more, if it has not and a message
    /// failed for it already.
    fn over(&self, wait: Duration) -> Option<String> {
        let outage = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match outage.as_ref() {
            Some((since, Some(why))) if since.elapsed() >= wait => Some(why.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unit of `items` items of `bytes` bytes each, id `task`.
    fn unit(task: u64, items: usize, bytes: usize) -> Unit {
        Unit {
            task,
            job: 1,
            entry: 0,
            state: Vec::new(),
            timeout_ns: None,
            inputs: vec![0; items * bytes],
            ends: (1..=items).map(|i| (i * bytes) as u32).collect(),
        }
    }

    fn tasks(messages: &[Vec<Unit>]) -> Vec<Vec<u64>> {
        messages.iter().map(|m| m.iter().map(|u| u.task).collect()).collect()
    }

    #[test]
    fn a_parcel_travels_in_as_few_messages_as_fit_in_order() {
        let small: Vec<Unit> = (0..4).map(|t| unit(t, 9, 8)).collect();
        assert_eq!(tasks(&pack(small, 1 << 20)), [vec![0, 1, 2, 3]]);
        // Whatever their items: a parcel is not cut at 128 items as loose units are.
        let many = vec![unit(0, 100, 8), unit(1, 100, 8), unit(2, 200, 8), unit(3, 1, 8)];
        assert_eq!(tasks(&pack(many, 1 << 20)), [vec![0, 1, 2, 3]]);
        // No more units once half the limit is taken, none past the limit.
        let heavy: Vec<Unit> = (0..5).map(|t| unit(t, 1, 300)).collect();
        assert_eq!(tasks(&pack(heavy, 1000)), [vec![0, 1], vec![2, 3], vec![4]]);
        assert!(pack(Vec::new(), 1000).is_empty());
    }
}
