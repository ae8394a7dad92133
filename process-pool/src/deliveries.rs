//! Outcomes gathered under the pool's lock and handed to their sinks after it is released.

use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use taskpool_core::TaskError;

use crate::run::{Run, Slice};
use crate::sink::{Encoded, Tally, Value};
use crate::usage::Cost;

/// An item's outcome before delivery: its encoded result, as a range of a supervisor's read
/// buffer, and what it cost; or the failure.
pub(crate) type Outcome = Result<(Range<usize>, Cost), TaskError>;

/// Outcomes of consecutive items of a run, from the first item's index.
type Group = (Arc<Run>, usize, Vec<Outcome>);

/// Outcomes to hand to sinks once the lock is released.
#[derive(Default)]
pub(crate) struct Deliveries {
    groups: Vec<Group>,
    count: usize,
}

impl Deliveries {
    /// Adds the outcome of item `index` of `run`, joining the previous group when it continues.
    pub(crate) fn add(&mut self, run: &Arc<Run>, index: usize, outcome: Outcome) {
        self.count += 1;
        if let Some((last, first, outcomes)) = self.groups.last_mut() {
            if Arc::ptr_eq(last, run) && *first + outcomes.len() == index {
                outcomes.push(outcome);
                return;
            }
        }
        self.groups.push((run.clone(), index, vec![outcome]));
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
        buffer: &dyn Fn(Range<usize>) -> &'b [u8],
        tally: &Tally,
    ) -> usize {
        let count = self.count;
        for (run, first, outcomes) in self.groups {
            let outcomes: Vec<Encoded<'b>> = outcomes
                .into_iter()
                .map(|o| o.map(|(range, cost)| Value { bytes: buffer(range), cost }))
                .collect();
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
