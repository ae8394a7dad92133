//! The scenarios as the criterion benches see them: groups of cases, one case per backend
//! and size, each prepared on first use (a case that a filter leaves out starts nothing).
//! The benches only hand the cases to criterion; what a case runs is defined once, here and
//! in the scenario modules, for the report too.

use std::cell::RefCell;
use std::time::Duration;

use super::{MESSAGES, OVERHEAD, Plan, faults, io, throughput};
use crate::backends::Pools;

/// One iteration of a case: runs it once and returns the time it measured (set-up and
/// tear-down of the iteration are left out).
pub type Iteration = Box<dyn FnMut() -> Result<Duration, String>>;

/// What an iteration handles, for criterion's throughput figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Nothing to count: criterion reports time only.
    None,
    /// The size counts items (tasks, map items).
    Elements,
    /// The size counts bytes.
    Bytes,
}

impl Count {
    /// What one iteration at `size` handles, as `(kind, amount)`; `None` for time only.
    pub(crate) fn of(self, size: u64) -> Option<(Count, u64)> {
        (self != Count::None).then_some((self, size))
    }
}

/// How criterion samples a group (`None`: criterion's default or the bench's own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    /// Samples per benchmark.
    pub sample_size: Option<usize>,
    /// Warm-up time.
    pub warm_up: Option<Duration>,
    /// Measurement time.
    pub measurement: Option<Duration>,
    /// Whether every sample runs the same number of iterations (for long iterations).
    pub flat: bool,
}

/// A criterion group: a scenario's cases.
pub struct Group<'s> {
    /// The group's name.
    pub name: String,
    /// How criterion samples it.
    pub settings: Settings,
    /// Its cases.
    pub cases: Vec<Case<'s>>,
}

impl std::fmt::Debug for Group<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("name", &self.name).field("cases", &self.cases).finish()
    }
}

/// One benchmark: a backend at one size.
pub struct Case<'s> {
    /// The variant (the backend's id, such as `processes`).
    pub variant: String,
    /// The parameter (a size, a worker count, or `noop`).
    pub parameter: String,
    /// What one iteration handles, for criterion's throughput.
    pub count: Option<(Count, u64)>,
    /// Samples for this case, if it needs other than its group's.
    pub sample_size: Option<usize>,
    /// Why this backend does not run this case, if it does not.
    pub skipped: Option<String>,
    prepare: Box<dyn Fn() -> Result<Iteration, String> + 's>,
}

impl<'s> Case<'s> {
    /// A case whose iteration `prepare` builds.
    pub(crate) fn new(
        variant: impl Into<String>,
        parameter: impl Into<String>,
        prepare: impl Fn() -> Result<Iteration, String> + 's,
    ) -> Case<'s> {
        Case {
            variant: variant.into(),
            parameter: parameter.into(),
            count: None,
            sample_size: None,
            skipped: None,
            prepare: Box::new(prepare),
        }
    }

    /// Starts what the case needs (pools are shared with the other cases of the suite) and
    /// returns its iteration.
    ///
    /// # Errors
    ///
    /// A pool that did not start, or the case cannot run here.
    pub fn prepare(&self) -> Result<Iteration, String> {
        if let Some(why) = &self.skipped {
            return Err(why.clone());
        }
        (self.prepare)()
    }
}

impl std::fmt::Debug for Case<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case")
            .field("variant", &self.variant)
            .field("parameter", &self.parameter)
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

/// The scenarios of one bench binary, with the pools its cases share (as the report shares
/// them between the rows of a section).
#[derive(Debug)]
pub struct Suite {
    plan: Plan,
    pools: RefCell<Pools>,
}

impl Suite {
    /// A suite measuring `plan`'s sizes.
    pub fn new(plan: Plan) -> Suite {
        Suite { plan, pools: RefCell::new(Pools::default()) }
    }

    /// Its plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The overhead groups: spawn, start-up, round trip, tasks in flight, map, imap, payloads
    /// (as `ByteBuf`, `Vec<u8>` and `SharedBytes`), and small messages between two processes
    /// through a queue and a pipe.
    pub fn overhead(&self) -> Vec<Group<'_>> {
        OVERHEAD.iter().chain(&MESSAGES).map(|s| s.group(&self.plan, &self.pools)).collect()
    }

    /// The CPU-bound groups, one per kernel and task size, each with a `sequential` case and
    /// one case per backend and worker count; a group calibrates its kernel when its first
    /// case is prepared.
    pub fn throughput(&self) -> Vec<Group<'_>> {
        throughput::groups(&self.plan, &self.pools)
    }

    /// The I/O-bound groups: tasks that sleep, and tasks that read a slow local server's
    /// answer, each at 2, 16 and 64 workers, and the start-up of a pool of 64.
    pub fn io(&self) -> Vec<Group<'_>> {
        io::groups(&self.plan, &self.pools)
    }

    /// The failure groups: each fault on the backends that survive it in this program, on
    /// pools of one and two workers, and a recycled worker per task.
    pub fn isolation(&self) -> Vec<Group<'_>> {
        faults::groups(&self.plan, &self.pools)
    }
}
