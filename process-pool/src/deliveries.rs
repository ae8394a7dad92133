//! Outcomes gathered under the pool's lock and handed to their sinks after it is released.

use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use smallvec::SmallVec;
use taskpool_core::TaskError;

use crate::run::{Run, Slice};
use crate::sink::{Received, Tally};
use crate::usage::Cost;

/// An item's outcome before delivery: its encoded result, as a range of a supervisor's read
/// buffer, and what it cost; or the failure.
pub(crate) type Outcome = Result<(Range<usize>, Cost), TaskError>;

/// An outcome as it is held: the range of its encoded result, or the failure (boxed: they
/// are rare, and a value's entry stays small).
pub(crate) type Item = Result<Range<usize>, Box<TaskError>>;

/// The outcomes of a group (inline for one: a single task's).
pub(crate) type Items = SmallVec<[Item; 1]>;

/// What the items of a group cost: each entry holds from its item (counted from the group's
/// first) up to the next entry's. Items that arrive together share one.
pub(crate) type Costs = SmallVec<[(usize, Cost); 1]>;

/// Outcomes of consecutive items of a run, from the first item's index.
struct Group {
    run: Arc<Run>,
    first: usize,
    items: Items,
    costs: Costs,
}

impl Group {
    /// Adds items that cost `cost` each.
    fn push(&mut self, items: impl ExactSizeIterator<Item = Item>, cost: Cost) {
        if self.costs.last().is_none_or(|&(_, last)| last != cost) {
            self.costs.push((self.items.len(), cost));
        }
        self.items.extend(items);
    }
}

/// Outcomes to hand to sinks once the lock is released.
#[derive(Default)]
pub(crate) struct Deliveries {
    groups: SmallVec<[Group; 1]>,
    count: usize,
}

impl Deliveries {
    /// Adds the outcome of item `index` of `run`, joining the previous group when it continues.
    pub(crate) fn add(&mut self, run: &Arc<Run>, index: usize, outcome: Outcome) {
        match outcome {
            Ok((range, cost)) => self.add_values(run, index, std::iter::once(range), cost),
            Err(e) => {
                self.group(run, index).push(std::iter::once(Err(Box::new(e))), Cost::default())
            }
        }
        self.count += 1;
    }

    /// Adds the encoded results of consecutive items of `run` from item `index`, at `ranges`
    /// of the read buffer, which cost `cost` each.
    pub(crate) fn add_values(
        &mut self,
        run: &Arc<Run>,
        index: usize,
        ranges: impl ExactSizeIterator<Item = Range<usize>>,
        cost: Cost,
    ) {
        self.count += ranges.len();
        self.group(run, index).push(ranges.map(Ok), cost);
    }

    /// The group that item `index` of `run` joins: the last one if it continues there.
    fn group(&mut self, run: &Arc<Run>, index: usize) -> &mut Group {
        let joins = self.groups.last().is_some_and(|group| {
            Arc::ptr_eq(&group.run, run) && group.first + group.items.len() == index
        });
        if !joins {
            let (items, costs) = (Items::new(), Costs::new());
            self.groups.push(Group { run: run.clone(), first: index, items, costs });
        }
        let last = self.groups.len() - 1;
        &mut self.groups[last]
    }

    /// Fails every item of `slice` with `error`.
    pub(crate) fn fail(&mut self, slice: Slice, error: &TaskError) {
        for index in slice.items {
            self.add(&slice.run, index, Err(error.clone()));
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
        let count = self.count;
        for Group { run, first, items, costs } in self.groups {
            let outcomes = Received::new(items, costs, buffer);
            let delivered = catch_unwind(AssertUnwindSafe(|| {
                run.sink.deliver(first, outcomes, tally);
            }));
            if let Err(payload) = delivered {
                // A payload whose own drop panics must not unwind out of here either.
                if let Err(inner) = catch_unwind(AssertUnwindSafe(|| drop(payload))) {
                    std::mem::forget(inner);
                }
            }
        }
        count
    }
}
