//! The caller's table of units sent and not yet settled: where exactly-once settlement lives.
//!
//! Execution is at least once (a unit whose agent dies runs again elsewhere), so a result may
//! arrive twice. Each unit has an id; the first outcome for an id removes its entry and
//! settles it, any later one finds no entry and is counted as a duplicate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use taskpool_core::TaskError;

/// What settles a unit: called once with every item's outcome, in order.
pub(crate) type Settle = Box<dyn for<'a> FnOnce(Vec<Result<&'a [u8], TaskError>>) + Send>;

/// A unit waiting for its outcome.
pub(crate) struct Entry {
    pub(crate) items: usize,
    pub(crate) submitted: Instant,
    settle: Settle,
}

impl Entry {
    /// Settles the unit with `outcomes`.
    pub(crate) fn settle(self, outcomes: Vec<Result<&[u8], TaskError>>) {
        (self.settle)(outcomes);
    }

    /// Fails every item of the unit with `error`.
    pub(crate) fn fail(self, error: &TaskError) {
        let outcomes = (0..self.items).map(|_| Err(error.clone())).collect();
        (self.settle)(outcomes);
    }
}

struct Table {
    entries: HashMap<u64, Entry>,
    closed: bool,
}

/// The units of one pool that are not settled yet.
pub(crate) struct Pending {
    table: Mutex<Table>,
    emptied: Condvar,
    next: AtomicU64,
    duplicates: AtomicU64,
    settled: AtomicU64,
}

impl Pending {
    pub(crate) fn new() -> Self {
        Pending {
            table: Mutex::new(Table { entries: HashMap::new(), closed: false }),
            emptied: Condvar::new(),
            next: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            settled: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Each change is one insert or remove: a poisoned lock is still consistent.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh unit id.
    pub(crate) fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Records unit `id` of `items` items. Hands `settle` back if the pool is closed.
    pub(crate) fn insert(&self, id: u64, items: usize, settle: Settle) -> Result<(), Settle> {
        let mut table = self.lock();
        if table.closed {
            return Err(settle);
        }
        table.entries.insert(id, Entry { items, submitted: Instant::now(), settle });
        Ok(())
    }

    /// Takes unit `id` out, to settle it: `None` if it was settled already (a duplicate result,
    /// or a result after the unit was cancelled or failed).
    pub(crate) fn take(&self, id: u64) -> Option<Entry> {
        let mut table = self.lock();
        let entry = table.entries.remove(&id);
        if entry.is_some() {
            self.settled.fetch_add(1, Ordering::Relaxed);
            if table.entries.is_empty() {
                self.emptied.notify_all();
            }
        }
        entry
    }

    /// Records a result for unit `id`, which was not pending.
    pub(crate) fn duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether unit `id` still waits.
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.lock().entries.contains_key(&id)
    }

    /// Takes out every unit that has waited `wait` since `since(submitted)`.
    pub(crate) fn overdue(
        &self,
        now: Instant,
        wait: Duration,
        since: impl Fn(Instant) -> Instant,
    ) -> Vec<(u64, Entry)> {
        let mut table = self.lock();
        let ids: Vec<u64> = table
            .entries
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(since(e.submitted)) >= wait)
            .map(|(id, _)| *id)
            .collect();
        let out: Vec<_> =
            ids.into_iter().filter_map(|id| table.entries.remove(&id).map(|e| (id, e))).collect();
        self.settled.fetch_add(out.len() as u64, Ordering::Relaxed);
        if table.entries.is_empty() && !out.is_empty() {
            self.emptied.notify_all();
        }
        out
    }

    /// Refuses new units from now on.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
    }

    /// Takes out every unit.
    pub(crate) fn drain(&self) -> Vec<(u64, Entry)> {
        let mut table = self.lock();
        let out: Vec<_> = table.entries.drain().collect();
        self.settled.fetch_add(out.len() as u64, Ordering::Relaxed);
        self.emptied.notify_all();
        out
    }

    /// Waits until no unit is pending, at most `limit` if given. Returns whether none is.
    pub(crate) fn wait_empty(&self, limit: Option<Duration>) -> bool {
        // A limit too long to be an instant is none.
        let deadline = limit.and_then(|l| Instant::now().checked_add(l));
        let mut table = self.lock();
        while !table.entries.is_empty() {
            table = match deadline {
                None => self.emptied.wait(table).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let Some(left) = d.checked_duration_since(Instant::now()) else {
                        return false;
                    };
                    self.emptied.wait_timeout(table, left).unwrap_or_else(PoisonError::into_inner).0
                }
            };
        }
        true
    }

    /// `(units settled, duplicate results ignored)` so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.settled.load(Ordering::Relaxed), self.duplicates.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    fn counting(hits: &Arc<AtomicUsize>) -> Settle {
        let hits = hits.clone();
        Box::new(move |outcomes| {
            assert_eq!(outcomes.len(), 2);
            hits.fetch_add(1, Ordering::SeqCst);
        })
    }

    #[test]
    fn a_unit_settles_once_however_many_results_arrive() {
        let pending = Pending::new();
        let hits = Arc::new(AtomicUsize::new(0));
        let id = pending.next_id();
        assert!(pending.insert(id, 2, counting(&hits)).is_ok());
        for _ in 0..3 {
            match pending.take(id) {
                Some(entry) => entry.settle(vec![Ok(&[1][..]), Ok(&[2][..])]),
                None => pending.duplicate(),
            }
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert_eq!(pending.counts(), (1, 2));
        assert!(pending.wait_empty(Some(Duration::ZERO)));
    }

    #[test]
    fn overdue_units_are_taken_out_and_a_closed_table_refuses() {
        let pending = Pending::new();
        let hits = Arc::new(AtomicUsize::new(0));
        let (a, b) = (pending.next_id(), pending.next_id());
        assert!(pending.insert(a, 2, counting(&hits)).is_ok());
        assert!(pending.insert(b, 2, counting(&hits)).is_ok());
        let now = Instant::now();
        assert!(pending.overdue(now, Duration::from_secs(60), |s| s).is_empty());
        let late = now + Duration::from_secs(61);
        let overdue = pending.overdue(late, Duration::from_secs(60), |s| s);
        assert_eq!(overdue.len(), 2);
        for (_, entry) in overdue {
            entry.fail(&TaskError::ShutDown);
        }
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        assert!(!pending.contains(a));
        pending.close();
        assert!(pending.insert(pending.next_id(), 2, counting(&hits)).is_err());
    }
}
