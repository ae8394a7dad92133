//! What a backend author implements and uses; a user of a pool never needs this module.
//!
//! A backend is a type that implements [`Execute`] (run one job on one input and settle its
//! [`Completer`]) and [`crate::Pool`] (`workers` and `shutdown`; every user method is provided
//! on top of `execute`, and a backend overrides the batch methods where it is faster).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use taskpool_core::backend::{Completer, Execute, Job, catch_panic};
//! use taskpool_core::{Pool, TaskError};
//!
//! /// Runs every task at once on the calling thread.
//! struct Inline;
//!
//! impl Execute for Inline {
//!     fn execute<J: Job>(
//!         &self,
//!         job: &Arc<J>,
//!         input: J::Input,
//!         completer: Completer<J::Output>,
//!         _timeout: Option<Duration>,
//!     ) {
//!         completer.complete(catch_panic(false, || job.run(input)).map_err(TaskError::from));
//!     }
//! }
//!
//! impl Pool for Inline {
//!     fn workers(&self) -> usize {
//!         1
//!     }
//!
//!     fn shutdown(&self) {}
//! }
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! assert_eq!(Inline.map(square, 1..=3).unwrap(), [1, 4, 9]);
//! ```
//!
//! A backend that overrides a method that accepts a task starts it with
//! `let () = <T::Job as Job>::PORTABLE;`, as the provided methods do: that makes a fn pointer
//! or a capturing closure fail the build at the user's call (see [`Job::PORTABLE`]).
//!
//! A backend that overrides `imap` or one of its siblings returns an iterator that also
//! implements [`crate::NextTimeout`]: whatever it waits on for the next outcome (a channel,
//! a handle) takes a deadline there, and a timeout leaves every outcome in the iterator.
//!
//! A backend that runs jobs in another process asks each [`Job`] how it travels with a
//! [`Shipper`]. Every backend runs the conformance suite (feature `conformance`,
//! `taskpool_core::conformance_suite!`).

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::TaskHandle;

pub use crate::cpu::{leave_cpu, runnable_threads};
pub use crate::crowding::Crowding;
pub use crate::handle::{
    Cancel, Completer, Holds, Slot, discard, handle_of, promise, promise_notify, promise_of,
};
pub use crate::imap::{deadline_after, recv_until};
pub use crate::pace::ImapPace;
pub use crate::panic::{
    PanicScope, catch_panic, initializer_panicked, keep_hook_in_front, payload_text,
    report_aborting_panics_with,
};
pub use crate::pool::{map_by_handles, map_by_handles_with_progress};
pub use crate::reorder::Reorder;
pub use crate::spawn::Child;
pub use crate::task::{Callable, FnJob, IsTask, Job, Shipper, TaskJob};

/// Runs one job: the one method a backend must write to run work.
///
/// [`crate::Pool`] builds every user method on top of it.
pub trait Execute {
    /// Starts `job` on `input`; its outcome goes to `completer`.
    ///
    /// `timeout` overrides the pool's per-task limit for this task. On a pool that is shut
    /// down the completer is settled with [`crate::TaskError::ShutDown`].
    fn execute<J: Job>(
        &self,
        job: &Arc<J>,
        input: J::Input,
        completer: Completer<J::Output>,
        timeout: Option<Duration>,
    );

    /// Starts `job` on every input of `group`, each outcome to the completer beside it, with
    /// the pool's per-task limit: what an `imap` hands over at once, at most
    /// the group size of [`Execute::imap_pace`]. By default, [`Execute::execute`] for each.
    ///
    /// A backend may run the group's items on fewer workers than it has, one after another
    /// (on an idle worker rather than a busy one), and must settle each completer as its
    /// item ends, so that an outcome is not held back by the items behind it.
    fn execute_group<J: Job>(&self, job: &Arc<J>, group: Vec<(J::Input, Completer<J::Output>)>) {
        for (input, completer) in group {
            self.execute(job, input, completer, None);
        }
    }

    /// Starts `job` on every input of `inputs` with the pool's per-task limit, as
    /// [`Execute::execute_group`] does, and returns their handles in input order: what an
    /// `imap` hands over at once. With `notes`, the handle of `inputs[i]` sends `notes.1[i]`
    /// on `notes.0` once it is settled, as one made by [`promise_notify`] does.
    ///
    /// By default, a [`promise`] (or [`promise_notify`]) for each item and
    /// [`Execute::execute_group`]. A backend may hold the group's slots in one record of its
    /// own ([`Holds`]): one allocation for the group, where a promise is one for each item.
    fn start_group<J: Job>(
        &self,
        job: &Arc<J>,
        inputs: Vec<J::Input>,
        notes: Option<(&Sender<usize>, &[usize])>,
    ) -> Vec<TaskHandle<J::Output>> {
        start_each(self, job, inputs, notes)
    }

    /// How an `imap` starts handing items to [`Execute::execute_group`], and that it grows
    /// its groups and window while its items prove fast; `None`, the default: one item at a
    /// time, as room for it comes, with [`crate::Pool::imap_window`] items in flight.
    fn imap_pace(&self) -> Option<ImapPace> {
        None
    }
}

/// What [`Execute::start_group`] does by default, for a backend whose own `start_group` falls
/// back to it for some groups: a [`promise`] (or [`promise_notify`]) for each of `inputs` and
/// [`Execute::execute_group`]; the handles in input order.
pub fn start_each<E: Execute + ?Sized, J: Job>(
    pool: &E,
    job: &Arc<J>,
    inputs: Vec<J::Input>,
    notes: Option<(&Sender<usize>, &[usize])>,
) -> Vec<TaskHandle<J::Output>> {
    let mut handles = Vec::with_capacity(inputs.len());
    let group = inputs
        .into_iter()
        .enumerate()
        .map(|(i, input)| {
            let (completer, handle) = match notes {
                Some((tx, indices)) => promise_notify(tx.clone(), indices[i]),
                None => promise(),
            };
            handles.push(handle);
            (input, completer)
        })
        .collect();
    pool.execute_group(job, group);
    handles
}
