//! An agent's free workers, for which it pulls a `map`'s parcels: those that neither a
//! parcel nor a unit of single tasks (or of an `imap`) takes.
//!
//! Single tasks come from a queue of their own, pulled for free slots (several per worker),
//! so they take workers whatever the parcels do; a parcel pulled for a worker busy with them
//! would wait behind them while another agent's worker is free. A unit takes a worker for
//! each of its items, until it finishes (waiting in the agent included); a parcel takes one
//! from when it is asked for until it finishes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// What takes an agent's workers.
pub(crate) struct Idle {
    workers: usize,
    /// Items of units of single tasks started and not finished.
    items: AtomicUsize,
    /// Parcels held, and asked for by the pull request out.
    parcels: AtomicUsize,
    /// Told when a worker becomes free, when the workers are all taken, and when a parcel
    /// is let go.
    changed: Notify,
}

impl Idle {
    /// An agent's `workers` workers, all free.
    pub(crate) fn new(workers: usize) -> Arc<Idle> {
        let (items, parcels) = (AtomicUsize::new(0), AtomicUsize::new(0));
        Arc::new(Idle { workers, items, parcels, changed: Notify::new() })
    }

    /// How many workers neither a unit nor a parcel takes.
    fn free(&self) -> usize {
        let items = self.items.load(Ordering::SeqCst).min(self.workers);
        self.workers.saturating_sub(items + self.parcels.load(Ordering::SeqCst))
    }

    /// Waits until a worker is free, and takes every free worker for a parcel each: a claim
    /// for each, which lets its worker go when dropped.
    pub(crate) async fn claim(self: &Arc<Self>) -> Vec<Claim> {
        self.until(|idle| idle.free() > 0).await;
        // Only the agent's pull loop of parcels claims: nothing takes them meanwhile.
        let free = self.free();
        self.parcels.fetch_add(free, Ordering::SeqCst);
        (0..free).map(|_| Claim(self.clone())).collect()
    }

    /// Resolves once more is asked of the workers than there are: single tasks took workers
    /// that parcels were asked for.
    pub(crate) async fn overbooked(&self) {
        self.until(|idle| idle.taken() > idle.workers).await;
    }

    /// Resolves once no parcel is held or asked for.
    pub(crate) async fn no_parcel(&self) {
        self.until(|idle| idle.parcels.load(Ordering::SeqCst) == 0).await;
    }

    /// Notes a unit of `items` items of single tasks started: what it returns takes its
    /// workers until dropped (when the unit finishes).
    pub(crate) fn busy(self: &Arc<Self>, items: usize) -> Busy {
        let before = self.items.fetch_add(items, Ordering::SeqCst);
        let parcels = self.parcels.load(Ordering::SeqCst);
        // Parcels were asked for workers that this unit takes now.
        if parcels > 0
            && before + parcels <= self.workers
            && before + items + parcels > self.workers
        {
            self.changed.notify_waiters();
        }
        Busy { idle: self.clone(), items }
    }

    /// Items and parcels, taken together.
    fn taken(&self) -> usize {
        self.items.load(Ordering::SeqCst) + self.parcels.load(Ordering::SeqCst)
    }

    /// Waits until `ready` holds, looking again each time something changes.
    async fn until(&self, ready: impl Fn(&Idle) -> bool) {
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            // Told from here on: a change between the look and the wait is not missed.
            changed.as_mut().enable();
            if ready(self) {
                return;
            }
            changed.await;
        }
    }
}

/// A worker taken for a parcel.
pub(crate) struct Claim(Arc<Idle>);

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.parcels.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// The workers a unit of single tasks takes.
pub(crate) struct Busy {
    idle: Arc<Idle>,
    items: usize,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let idle = &self.idle;
        let after = idle.items.fetch_sub(self.items, Ordering::SeqCst) - self.items;
        // A worker became free.
        if after + idle.parcels.load(Ordering::SeqCst) < idle.workers {
            idle.changed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use futures_util::FutureExt;

    #[test]
    fn parcels_are_claimed_only_for_workers_no_unit_takes() {
        let idle = Idle::new(2);
        let busy = idle.busy(1);
        let claims = idle.claim().now_or_never().expect("a worker is free");
        assert_eq!(claims.len(), 1, "one worker is free");
        assert!(idle.claim().now_or_never().is_none(), "no worker is free");
        drop(busy);
        let more = idle.claim().now_or_never().expect("the unit's worker is free again");
        assert_eq!(more.len(), 1);
        drop(claims);
        drop(more);
        assert!(idle.no_parcel().now_or_never().is_some(), "every claim was let go");
    }

    #[test]
    fn a_unit_of_many_items_takes_every_worker_and_overbooks_a_claim() {
        let idle = Idle::new(2);
        let claims = idle.claim().now_or_never().expect("both workers are free");
        assert_eq!(claims.len(), 2);
        assert!(idle.overbooked().now_or_never().is_none(), "nothing more was asked");
        let busy = idle.busy(5);
        assert!(idle.overbooked().now_or_never().is_some(), "the unit took a claimed worker");
        drop(claims);
        assert!(idle.claim().now_or_never().is_none(), "the unit takes both workers");
        drop(busy);
        assert_eq!(idle.claim().now_or_never().map(|c| c.len()), Some(2));
    }
}
