//! Where the items of `imap` come from: pulled on the consumer's thread, or fed by a thread
//! of their own so that an input that waits for its items never holds results back.

use std::any::Any;
use std::iter::Fuse;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crossbeam_channel::{Receiver, RecvError, RecvTimeoutError, TryRecvError, select};

use crate::imap::{Timeout, recv_until};

/// What the feeder thread sends: an item, or the panic of the input's `next`.
type Fed<T> = Result<T, Box<dyn Any + Send>>;

/// The input of an `imap` iterator.
pub(crate) enum Input<I: Iterator> {
    /// Pulled inside the consumer's `next`: every pull may wait.
    Pulled(Fuse<I>),
    /// Pulled by a feeder thread and received here as they come.
    Fed(Feed<I::Item>),
}

/// One pull from an [`Input`].
pub(crate) enum Pull<T> {
    /// The next item.
    Item(T),
    /// None has come yet (a fed input only); more may.
    NotYet,
    /// The input ended.
    End,
}

/// The receiving end of a feeder thread.
pub(crate) struct Feed<T> {
    rx: Receiver<Fed<T>>,
    /// An item received while waiting for something else, not taken yet.
    held: Option<T>,
    ended: bool,
}

impl<I: Iterator> Input<I> {
    /// Pulls on the consumer's thread.
    pub(crate) fn pulled(items: I) -> Self {
        Input::Pulled(items.fuse())
    }

    /// Starts a thread that pulls `items` and hands them over as they come, at most `ahead`
    /// of those taken. If no thread can be started, the items are pulled on the consumer's
    /// thread instead, as [`Input::pulled`] does.
    pub(crate) fn fed(items: I, ahead: usize) -> Self
    where
        I: Send + 'static,
        I::Item: Send + 'static,
    {
        let (tx, rx) = crossbeam_channel::bounded::<Fed<I::Item>>(ahead.max(1));
        // The thread takes the items out of the slot; if it never starts, they are taken
        // back from it.
        let slot = Arc::new(Mutex::new(Some(items)));
        let theirs = slot.clone();
        let feeder = move || {
            let Some(items) = theirs.lock().unwrap_or_else(PoisonError::into_inner).take() else {
                return;
            };
            let mut items = AssertUnwindSafe(items);
            loop {
                let next = match catch_unwind(AssertUnwindSafe(|| items.next())) {
                    Ok(Some(item)) => Ok(item),
                    Ok(None) => return,
                    Err(panic) => Err(panic),
                };
                let failed = next.is_err();
                // A send fails once the consumer dropped its iterator: nobody wants more.
                if tx.send(next).is_err() || failed {
                    return;
                }
            }
        };
        match std::thread::Builder::new().name("taskpool-imap-feed".into()).spawn(feeder) {
            Ok(_) => Input::Fed(Feed { rx, held: None, ended: false }),
            Err(_) => match slot.lock().unwrap_or_else(PoisonError::into_inner).take() {
                Some(items) => Input::Pulled(items.fuse()),
                // Taken by a thread that did start after all: it feeds them.
                None => Input::Fed(Feed { rx, held: None, ended: false }),
            },
        }
    }

    /// The next item. A fed input waits for it only if `wait` says so, and until `deadline`
    /// (none: for ever), and gives [`Pull::NotYet`] otherwise; a pulled input always waits,
    /// as long as its `next` takes. A panic of the input's `next` on the feeder thread goes
    /// on here, on the consumer's.
    pub(crate) fn pull(&mut self, wait: bool, deadline: Option<Instant>) -> Pull<I::Item> {
        match self {
            Input::Pulled(items) => items.next().map_or(Pull::End, Pull::Item),
            Input::Fed(feed) => {
                if let Some(item) = feed.held.take() {
                    return Pull::Item(item);
                }
                if feed.ended {
                    return Pull::End;
                }
                let received = match (wait, deadline) {
                    (true, None) => feed.rx.recv().map_err(|RecvError| TryRecvError::Disconnected),
                    (true, Some(deadline)) => {
                        feed.rx.recv_deadline(deadline).map_err(|error| match error {
                            RecvTimeoutError::Timeout => TryRecvError::Empty,
                            RecvTimeoutError::Disconnected => TryRecvError::Disconnected,
                        })
                    }
                    (false, _) => feed.rx.try_recv(),
                };
                match received {
                    Ok(fed) => Pull::Item(feed.take(fed)),
                    Err(TryRecvError::Empty) => Pull::NotYet,
                    Err(TryRecvError::Disconnected) => {
                        feed.ended = true;
                        Pull::End
                    }
                }
            }
        }
    }

    /// Whether the items are fed by a thread of their own (even once they ended).
    pub(crate) fn is_fed(&self) -> bool {
        matches!(self, Input::Fed(_))
    }

    /// Whether items may still come without the consumer's thread pulling them: the input
    /// is fed and has not ended. Only then is waiting for a result and for the input at once
    /// ([`Input::wait_with`]) of use.
    pub(crate) fn may_come(&self) -> bool {
        match self {
            Input::Pulled(_) => false,
            Input::Fed(feed) => feed.held.is_some() || !feed.ended,
        }
    }

    /// Waits until the next item or the input's end comes (it is kept for [`Input::pull`]),
    /// or something comes on `other` (returned), or `deadline` (none: never) passes. An input
    /// that cannot come ([`Input::may_come`] is false) waits on `other` alone.
    pub(crate) fn wait_with<T>(
        &mut self,
        other: &Receiver<T>,
        deadline: Option<Instant>,
    ) -> Result<Option<T>, Timeout> {
        let feed = match self {
            Input::Fed(feed) if feed.held.is_none() && !feed.ended => feed,
            _ => return recv_until(other, deadline),
        };
        let late = deadline.map_or_else(crossbeam_channel::never, crossbeam_channel::at);
        select! {
            recv(feed.rx) -> fed => {
                match fed {
                    Ok(fed) => feed.held = Some(feed.take(fed)),
                    Err(RecvError) => feed.ended = true,
                }
                Ok(None)
            }
            recv(other) -> got => Ok(got.ok()),
            recv(late) -> _ => Err(Timeout),
        }
    }
}

impl<T> Feed<T> {
    /// The item the feeder sent, or its input's panic, resumed.
    fn take(&mut self, fed: Fed<T>) -> T {
        match fed {
            Ok(item) => item,
            Err(panic) => {
                self.ended = true;
                resume_unwind(panic)
            }
        }
    }
}
