//! The caller's table of units sent and not yet settled: where exactly-once settlement lives.
//!
//! Execution is at least once (a unit whose agent dies runs again elsewhere), so a result may
//! arrive twice. Each unit has an id; the first outcome for an id removes its entry and
//! settles it, any later one finds no entry and is counted as a duplicate.
//!
//! A unit whose result is too large for one message comes back in parts (consecutive items
//! each): the entry collects them, keeping the first outcome for each item, and settles
//! once every item has one.
//!
//! A unit the pool settles itself (cancelled, its batch dropped, failed for want of an agent
//! or a server) may still have a result on its way: the table remembers the latest
//! [`GIVEN_UP_REMEMBERED`] such ids, so that result is not taken for another run's.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use taskpool_core::TaskError;

use crate::chunk::ItemTime;

/// How many units settled without a result (cancelled or failed by the pool) the table
/// remembers, the latest ones: a result that comes for one of them later is its run's, not a
/// duplicate.
const GIVEN_UP_REMEMBERED: usize = 65_536;

/// What settles a unit: called once with every item's outcome, in order.
pub(crate) type Settle = Box<dyn for<'a> FnOnce(Vec<Result<&'a [u8], TaskError>>) + Send>;

/// A unit waiting for its outcome.
pub(crate) struct Entry {
    pub(crate) items: usize,
    pub(crate) submitted: Instant,
    /// What the items of the unit's job cost, for its measured time: `None` for a single
    /// task, which no chunk is sized from.
    pub(crate) time: Option<Arc<ItemTime>>,
    settle: Settle,
    /// The items' outcomes that came in parts so far; `None` until a part comes.
    parts: Option<Parts>,
    /// Set once the entry is taken out of the table: the table counts as empty only once
    /// this is dropped, after the unit's handle is settled.
    taken: Option<Taken>,
}

/// The mark of an entry taken out of its table and not settled yet.
struct Taken(Arc<Shared>);

impl Drop for Taken {
    fn drop(&mut self) {
        let mut table = self.0.table.lock().unwrap_or_else(PoisonError::into_inner);
        table.settling -= 1;
        if table.is_empty() {
            self.0.emptied.notify_all();
        }
    }
}

/// The outcomes of a unit's items that came in parts, owned: each part's message is gone by
/// the time the last one comes.
struct Parts {
    outcomes: Vec<Option<Result<Vec<u8>, TaskError>>>,
    missing: usize,
}

/// What a part of a unit's result did ([`Pending::take_part`]).
pub(crate) enum Part {
    /// Nothing: the unit was settled already, or none of the part's items was missing (a
    /// part of another run's result).
    Unwanted,
    /// Its outcomes were kept; other items of the unit still wait.
    Kept,
    /// It completed the unit, which is taken out: the entry to settle, and every item's
    /// outcome in order.
    Completed(Entry, Vec<Result<Vec<u8>, TaskError>>),
}

impl Entry {
    /// Settles the unit with `outcomes`.
    pub(crate) fn settle(self, outcomes: Vec<Result<&[u8], TaskError>>) {
        (self.settle)(outcomes);
    }

    /// Settles the unit with outcomes that came in parts ([`Part::Completed`]).
    pub(crate) fn settle_parts(self, outcomes: Vec<Result<Vec<u8>, TaskError>>) {
        let outcomes = outcomes
            .iter()
            .map(|outcome| match outcome {
                Ok(bytes) => Ok(&bytes[..]),
                Err(e) => Err(e.clone()),
            })
            .collect();
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
    /// Entries taken out whose settling has not ended yet.
    settling: usize,
    closed: bool,
    /// Units taken out without a result, whose result has not come (the latest ones).
    given_up: GivenUp,
}

/// The ids of the latest units settled without a result, in the order they were given up.
#[derive(Default)]
struct GivenUp {
    ids: HashSet<u64>,
    order: VecDeque<u64>,
}

impl GivenUp {
    fn remember(&mut self, id: u64) {
        if self.ids.insert(id) {
            self.order.push_back(id);
        }
        while self.order.len() > GIVEN_UP_REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }

    /// Whether unit `id` was given up and its result had not come yet; forgets it then (a
    /// second result is another run's).
    fn forget(&mut self, id: u64) -> bool {
        self.ids.remove(&id)
    }
}

impl Table {
    /// No unit pending, and every one taken out settled.
    fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.settling == 0
    }
}

/// The table and what waits for it to empty, shared with the entries taken out of it.
struct Shared {
    table: Mutex<Table>,
    emptied: Condvar,
}

/// The units of one pool that are not settled yet.
pub(crate) struct Pending {
    shared: Arc<Shared>,
    next: AtomicU64,
    duplicates: AtomicU64,
    settled: AtomicU64,
}

impl Pending {
    pub(crate) fn new() -> Self {
        Pending {
            shared: Arc::new(Shared {
                table: Mutex::new(Table {
                    entries: HashMap::new(),
                    settling: 0,
                    closed: false,
                    given_up: GivenUp::default(),
                }),
                emptied: Condvar::new(),
            }),
            next: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            settled: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Each change is one insert or remove: a poisoned lock is still consistent.
        self.shared.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks `entry` as taken out of `table`: the table is not empty until it is settled.
    fn mark_taken(&self, table: &mut Table, mut entry: Entry) -> Entry {
        table.settling += 1;
        entry.taken = Some(Taken(self.shared.clone()));
        entry
    }

    /// A fresh unit id.
    pub(crate) fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Records unit `id` of `items` items, of the job whose items' cost is `time`. Hands
    /// `settle` back if the pool is closed.
    pub(crate) fn insert(
        &self,
        id: u64,
        items: usize,
        time: Option<Arc<ItemTime>>,
        settle: Settle,
    ) -> Result<(), Settle> {
        let mut table = self.lock();
        if table.closed {
            return Err(settle);
        }
        let submitted = Instant::now();
        table
            .entries
            .insert(id, Entry { items, submitted, time, settle, parts: None, taken: None });
        Ok(())
    }

    /// Takes unit `id` out, to settle it with its result: `None` if it was settled already (a
    /// duplicate result, or a result after the unit was cancelled or failed: see
    /// [`Pending::late_result`]).
    pub(crate) fn take(&self, id: u64) -> Option<Entry> {
        self.remove(&mut self.lock(), id)
    }

    /// Takes unit `id` out to settle it without its result (it is cancelled, or failed by the
    /// pool): `None` if it was settled already. A result that comes for it later is not a
    /// duplicate.
    pub(crate) fn give_up(&self, id: u64) -> Option<Entry> {
        let mut table = self.lock();
        let entry = self.remove(&mut table, id)?;
        table.given_up.remember(id);
        Some(entry)
    }

    fn remove(&self, table: &mut Table, id: u64) -> Option<Entry> {
        let entry = table.entries.remove(&id)?;
        self.settled.fetch_add(1, Ordering::Relaxed);
        Some(self.mark_taken(table, entry))
    }

    /// Records `outcomes`, those of unit `id`'s items from item `first` on, which came as a
    /// part of its result; takes the unit out once every item has an outcome. An item that
    /// has one already keeps it (its other outcome is another run's).
    pub(crate) fn take_part(
        &self,
        id: u64,
        first: usize,
        outcomes: Vec<Result<&[u8], TaskError>>,
    ) -> Part {
        let mut table = self.lock();
        let Some(entry) = table.entries.get_mut(&id) else { return Part::Unwanted };
        let items = entry.items;
        let parts = entry.parts.get_or_insert_with(|| Parts {
            outcomes: (0..items).map(|_| None).collect(),
            missing: items,
        });
        let mut kept = false;
        let slots = parts.outcomes.iter_mut().skip(first);
        for (slot, outcome) in slots.zip(outcomes) {
            if slot.is_none() {
                *slot = Some(outcome.map(<[u8]>::to_vec));
                parts.missing -= 1;
                kept = true;
            }
        }
        if !kept {
            return Part::Unwanted;
        }
        if parts.missing > 0 {
            return Part::Kept;
        }
        let Some(mut entry) = self.remove(&mut table, id) else { return Part::Unwanted };
        let outcomes = entry.parts.take().map(|p| p.outcomes).unwrap_or_default();
        // Every slot is filled: `missing` counted them.
        let outcomes = outcomes.into_iter().flatten().collect();
        Part::Completed(entry, outcomes)
    }

    /// Records a result for unit `id`, which was not pending: the result of a unit the pool
    /// gave up on, the first to come for it, is that run's; any other is a duplicate (another
    /// run of a unit settled already).
    pub(crate) fn late_result(&self, id: u64) {
        if !self.lock().given_up.forget(id) {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether unit `id` still waits.
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.lock().entries.contains_key(&id)
    }

    /// When the first unit will have waited `wait` since `since(submitted)` (it may have
    /// already); `None` with no unit waiting.
    pub(crate) fn first_due(
        &self,
        wait: Duration,
        since: impl Fn(Instant) -> Instant,
    ) -> Option<Instant> {
        let table = self.lock();
        let due = table.entries.values().map(|e| since(e.submitted).checked_add(wait));
        // A due time past what an instant holds is never.
        due.flatten().min()
    }

    /// Takes out every unit that has waited `wait` since `since(submitted)`, to fail it (a
    /// result that comes for it later is not a duplicate).
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
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(entry) = table.entries.remove(&id) {
                table.given_up.remember(id);
                out.push((id, self.mark_taken(&mut table, entry)));
            }
        }
        self.settled.fetch_add(out.len() as u64, Ordering::Relaxed);
        out
    }

    /// Refuses new units from now on.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
    }

    /// Takes out every unit, to fail it (a result that comes for it later is not a
    /// duplicate).
    pub(crate) fn drain(&self) -> Vec<(u64, Entry)> {
        let mut table = self.lock();
        let entries: Vec<_> = table.entries.drain().collect();
        entries.iter().for_each(|(id, _)| table.given_up.remember(*id));
        let out: Vec<_> =
            entries.into_iter().map(|(id, e)| (id, self.mark_taken(&mut table, e))).collect();
        self.settled.fetch_add(out.len() as u64, Ordering::Relaxed);
        if table.is_empty() {
            self.shared.emptied.notify_all();
        }
        out
    }

    /// Waits until no unit is pending and every unit taken out is settled, at most `limit` if
    /// given. Returns whether none is.
    pub(crate) fn wait_empty(&self, limit: Option<Duration>) -> bool {
        // A limit too long to be an instant is none.
        let deadline = limit.and_then(|l| Instant::now().checked_add(l));
        let mut table = self.lock();
        while !table.is_empty() {
            table = match deadline {
                None => self.shared.emptied.wait(table).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let Some(left) = d.checked_duration_since(Instant::now()) else {
                        return false;
                    };
                    let emptied = &self.shared.emptied;
                    emptied.wait_timeout(table, left).unwrap_or_else(PoisonError::into_inner).0
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
        assert!(pending.insert(id, 2, None, counting(&hits)).is_ok());
        for _ in 0..3 {
            match pending.take(id) {
                Some(entry) => entry.settle(vec![Ok(&[1][..]), Ok(&[2][..])]),
                None => pending.late_result(id),
            }
        }
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert_eq!(pending.counts(), (1, 2));
        assert!(pending.wait_empty(Some(Duration::ZERO)));
    }

    #[test]
    fn the_result_of_a_unit_given_up_is_not_a_duplicate_but_a_second_one_is() {
        let pending = Pending::new();
        let hits = Arc::new(AtomicUsize::new(0));
        let (cancelled, failed) = (pending.next_id(), pending.next_id());
        assert!(pending.insert(cancelled, 2, None, counting(&hits)).is_ok());
        assert!(pending.insert(failed, 2, None, counting(&hits)).is_ok());
        drop(pending.give_up(cancelled).expect("pending"));
        let overdue = pending.overdue(Instant::now(), Duration::ZERO, |s| s);
        assert_eq!(overdue.len(), 1);
        // The runs that were under way when the pool gave up on them answer.
        for id in [cancelled, failed] {
            assert!(pending.take(id).is_none());
            pending.late_result(id);
        }
        assert_eq!(pending.counts().1, 0, "each unit's one run is no duplicate");
        // A unit delivered twice: its second run is.
        assert!(pending.take(cancelled).is_none());
        pending.late_result(cancelled);
        assert_eq!(pending.counts().1, 1);
    }

    #[test]
    fn a_unit_in_parts_settles_once_every_item_came_keeping_the_first_outcomes() {
        let pending = Pending::new();
        let got = Arc::new(Mutex::new(Vec::new()));
        let seen = got.clone();
        let id = pending.next_id();
        let settle: Settle = Box::new(move |outcomes| {
            let values = outcomes.into_iter().map(|o| o.map(<[u8]>::to_vec).ok()).collect();
            *seen.lock().unwrap() = values;
        });
        assert!(pending.insert(id, 3, None, settle).is_ok());
        assert!(matches!(pending.take_part(id, 1, vec![Ok(&[2][..])]), Part::Kept));
        // Another run's copy of the same items adds nothing.
        assert!(matches!(pending.take_part(id, 1, vec![Ok(&[9][..])]), Part::Unwanted));
        assert!(got.lock().unwrap().is_empty(), "not settled before every item came");
        match pending.take_part(id, 2, vec![Err(TaskError::Cancelled)]) {
            Part::Kept => {}
            _ => panic!("item 0 is still missing"),
        }
        match pending.take_part(id, 0, vec![Ok(&[1][..]), Ok(&[8][..])]) {
            Part::Completed(entry, outcomes) => entry.settle_parts(outcomes),
            _ => panic!("the last missing item completes the unit"),
        }
        assert_eq!(*got.lock().unwrap(), [Some(vec![1]), Some(vec![2]), None]);
        assert!(!pending.contains(id));
        assert!(matches!(pending.take_part(id, 0, vec![Ok(&[1][..])]), Part::Unwanted));
        assert_eq!(pending.counts().0, 1);
    }

    #[test]
    fn the_table_is_empty_only_once_every_unit_taken_out_is_settled() {
        let pending = Pending::new();
        let hits = Arc::new(AtomicUsize::new(0));
        let (a, b) = (pending.next_id(), pending.next_id());
        assert!(pending.insert(a, 2, None, counting(&hits)).is_ok());
        assert!(pending.insert(b, 2, None, counting(&hits)).is_ok());
        let taken = pending.take(a).expect("pending");
        let drained = pending.drain();
        // Taken out, but their handles not settled yet: a shutdown waiting for the table to
        // empty must not return before they are.
        assert!(!pending.wait_empty(Some(Duration::ZERO)));
        taken.settle(vec![Ok(&[1][..]), Ok(&[2][..])]);
        assert!(!pending.wait_empty(Some(Duration::ZERO)));
        for (_, entry) in drained {
            entry.fail(&TaskError::ShutDown);
        }
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        assert!(pending.wait_empty(Some(Duration::ZERO)));
        // An entry dropped without settling (a cancelled unit) counts as settled too.
        let c = pending.next_id();
        assert!(pending.insert(c, 2, None, counting(&hits)).is_ok());
        drop(pending.take(c));
        assert!(pending.wait_empty(Some(Duration::ZERO)));
    }

    #[test]
    fn overdue_units_are_taken_out_and_a_closed_table_refuses() {
        let pending = Pending::new();
        let hits = Arc::new(AtomicUsize::new(0));
        let (a, b) = (pending.next_id(), pending.next_id());
        assert!(pending.insert(a, 2, None, counting(&hits)).is_ok());
        assert!(pending.insert(b, 2, None, counting(&hits)).is_ok());
        let now = Instant::now();
        assert!(pending.overdue(now, Duration::from_secs(60), |s| s).is_empty());
        let due = pending.first_due(Duration::from_secs(60), |s| s).expect("units wait");
        assert!(due > now);
        let late = now + Duration::from_secs(61);
        assert!(due <= late);
        let overdue = pending.overdue(late, Duration::from_secs(60), |s| s);
        assert_eq!(overdue.len(), 2);
        for (_, entry) in overdue {
            entry.fail(&TaskError::ShutDown);
        }
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        assert!(!pending.contains(a));
        pending.close();
        assert!(pending.insert(pending.next_id(), 2, None, counting(&hits)).is_err());
    }
}
