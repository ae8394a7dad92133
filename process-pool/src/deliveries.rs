//! Outcomes gathered under the pool's lock and handed to their sinks after it is released.

use std::cell::Cell;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use smallvec::SmallVec;
use taskpool_core::TaskError;

use crate::run::{Run, Slice};
use crate::sink::{Received, Tally};
use crate::usage::Cost;

/// Outcomes as they are held: the values of consecutive items, as the range of a read buffer
/// that holds them (each a `u32` length and its bytes, as a result frame lists them), or
/// one failure (boxed: they are rare, and an entry stays small).
#[derive(Debug)]
pub(crate) enum Entry {
    Values { list: Range<usize>, count: usize },
    Failed(Box<TaskError>),
}

/// The outcomes of a group (inline for one entry: a single task's, or a frame's values).
pub(crate) type Entries = SmallVec<[Entry; 1]>;

/// What the items of a group cost: each entry holds from its item (counted from the group's
/// first) up to the next entry's. Items that arrive together share one.
pub(crate) type Costs = SmallVec<[(usize, Cost); 1]>;

/// Outcomes of consecutive items of a run, from the first item's index.
struct Group {
    run: Arc<Run>,
    first: usize,
    /// How many items the entries hold.
    len: usize,
    entries: Entries,
    costs: Costs,
}

impl Group {
    /// Adds `entry`, of `count` items that cost `cost` each.
    fn push(&mut self, entry: Entry, count: usize, cost: Cost) {
        if self.costs.last().is_none_or(|&(_, last)| last != cost) {
            self.costs.push((self.len, cost));
        }
        self.entries.push(entry);
        self.len += count;
    }
}

/// Groups that [`Deliveries`] makes room for at once, past the first.
const GROUPS_STEP: usize = 16;

/// Outcomes to hand to sinks once the lock is released.
#[derive(Default)]
pub(crate) struct Deliveries {
    groups: SmallVec<[Group; 1]>,
    count: usize,
}

/// The most groups whose room [`Spare`] keeps.
const SPARE_GROUPS: usize = 1024;

/// The list of groups of a reader's last deliveries, emptied and kept for its next ones.
///
/// A result frame of a few hundred single tasks makes as many groups; a list allocated and
/// grown anew for every frame cost its reader about a fifth of its time (the allocator's
/// `_int_malloc` and `_int_realloc` and the copies of growing, in a profile of 1,000 tasks in
/// flight on a pool of 2). A reader keeps it while its worker lives, at most
/// [`SPARE_GROUPS`] groups' room, and gives it back with its other buffers once the pool idles.
#[derive(Default)]
pub(crate) struct Spare(SmallVec<[Group; 1]>);

impl Spare {
    /// Gives back the memory kept.
    pub(crate) fn release(&mut self) {
        self.0 = SmallVec::new();
    }

    /// How many groups fit in the room kept.
    #[cfg(test)]
    pub(crate) fn room(&self) -> usize {
        self.0.capacity()
    }
}

impl std::fmt::Debug for Spare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spare").field("room", &self.0.capacity()).finish()
    }
}

impl Deliveries {
    /// No outcomes yet, in the room `spare` kept (see [`Deliveries::deliver_keeping`]).
    pub(crate) fn reusing(spare: &mut Spare) -> Self {
        Deliveries { groups: std::mem::take(&mut spare.0), count: 0 }
    }

    /// Adds the failure of item `index` of `run`, joining the previous group when it
    /// continues.
    pub(crate) fn add_failure(&mut self, run: &Arc<Run>, index: usize, error: TaskError) {
        self.group(run, index).push(Entry::Failed(Box::new(error)), 1, Cost::default());
        self.count += 1;
    }

    /// Adds the encoded results of `count` consecutive items of `run` from item `index`,
    /// listed at `list` of the read buffer, which cost `cost` each.
    pub(crate) fn add_values(
        &mut self,
        run: &Arc<Run>,
        index: usize,
        list: Range<usize>,
        count: usize,
        cost: Cost,
    ) {
        self.count += count;
        self.group(run, index).push(Entry::Values { list, count }, count, cost);
    }

    /// The group that item `index` of `run` joins: the last one if it continues there.
    fn group(&mut self, run: &Arc<Run>, index: usize) -> &mut Group {
        let joins = self
            .groups
            .last()
            .is_some_and(|group| Arc::ptr_eq(&group.run, run) && group.first + group.len == index);
        if !joins {
            if self.groups.len() == self.groups.capacity() {
                // Many groups come from as many single tasks answered together: grow in
                // steps, not by doubling from one.
                self.groups.reserve(self.groups.len().max(GROUPS_STEP));
            }
            let (entries, costs) = (Entries::new(), Costs::new());
            self.groups.push(Group { run: run.clone(), first: index, len: 0, entries, costs });
        }
        let last = self.groups.len() - 1;
        &mut self.groups[last]
    }

    /// Fails every item of `slice` with `error`.
    pub(crate) fn fail(&mut self, slice: Slice, error: &TaskError) {
        for index in slice.items {
            self.add_failure(&slice.run, index, error.clone());
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// How many outcomes are held.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Hands every outcome to its sink, reading encoded results from `buffer` and counting
    /// the outcomes in `tally`. Returns how many there were.
    ///
    /// Sinks run user code (a result's `Deserialize` and `Drop`); they catch its panics per
    /// item. Should a sink panic anyway, the panic stops at its group, so the caller (a
    /// supervisor) goes on.
    pub(crate) fn deliver_from<'b>(
        self,
        buffer: &'b dyn Fn(Range<usize>) -> &'b [u8],
        tally: &Tally,
    ) -> usize {
        deliver(self.groups.into_iter(), buffer, tally);
        self.count
    }

    /// Like [`Deliveries::deliver_from`], then keeps the emptied list in `spare` for the next
    /// deliveries (unless it grew past [`SPARE_GROUPS`]).
    pub(crate) fn deliver_keeping<'b>(
        self,
        buffer: &'b dyn Fn(Range<usize>) -> &'b [u8],
        tally: &Tally,
        spare: &mut Spare,
    ) -> usize {
        let mut groups = self.groups;
        deliver(groups.drain(..), buffer, tally);
        if groups.capacity() <= SPARE_GROUPS {
            spare.0 = groups;
        }
        self.count
    }
}

/// Hands the outcomes of `groups` to their sinks (see [`Deliveries::deliver_from`]).
fn deliver<'b>(
    groups: impl Iterator<Item = Group>,
    buffer: &'b dyn Fn(Range<usize>) -> &'b [u8],
    tally: &Tally,
) {
    for Group { run, first, len, entries, costs } in groups {
        let outcomes = Received::new(entries, len, costs, buffer);
        // The items are done with their inputs: what those held for the workers goes,
        // once the sink has decoded the outcomes and before the caller sees them.
        let released = Cell::new(false);
        let release = || {
            if !released.replace(true) {
                run.holds.release(first..first + len);
            }
        };
        let delivered = catch_unwind(AssertUnwindSafe(|| {
            run.sink.deliver(first, outcomes, tally, &release);
        }));
        // For a sink that panicked before it released them.
        release();
        if let Err(payload) = delivered {
            // A payload whose own drop panics must not unwind out of here either.
            if let Err(inner) = catch_unwind(AssertUnwindSafe(|| drop(payload))) {
                std::mem::forget(inner);
            }
        }
    }
}
