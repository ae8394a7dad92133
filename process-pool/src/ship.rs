//! How a job reaches a worker: by the address of a monomorphized entry point.
//!
//! Workers run the same executable image as the parent, so any function of the image sits at
//! the same distance from any other. The parent names a job by the offset of its entry point,
//! [`run_stateless`] or [`run_stateful`] instantiated for the job's type, from [`anchor`]; the
//! worker adds the offset to its own `anchor`. The entry point decodes each input, runs the
//! job and encodes the result. A stateless job (a plain function) is rebuilt from its type
//! alone; a stateful one travels encoded.
//!
//! Before a worker trusts any offset it checks that it runs the same image: the executable's
//! device and inode and the offset of [`probe`] must match the parent's ([`ImageId`]).

use std::hint::black_box;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use serde::de::DeserializeOwned;
use taskpool_core::backend::{Job, Shipper};
use taskpool_core::{Direction, Side, TaskError};

use crate::codec;
use crate::entry::ImageVerified;
use crate::handoff::{self, Held};
use crate::worker::{Inputs, Outputs, Scratch};

/// A job's entry point: runs every item of `inputs` with the job rebuilt from `state`.
pub(crate) type BatchFn = fn(state: &[u8], inputs: &mut Inputs<'_>, out: &mut Outputs);

/// A job ready to travel: which entry point runs it, and its encoded state.
#[derive(Debug, Clone)]
pub(crate) struct Shipped {
    pub(crate) entry: i64,
    pub(crate) state: Vec<u8>,
    /// What the state holds for the workers that decode it (queue handles, shared bytes),
    /// kept while the job is: a state that never reaches a worker (a `map` of nothing)
    /// gives it back with the job, instead of counting it as on its way for good.
    pub(crate) kept: Kept,
}

/// Copies of the handles and shared bytes a job's state holds ([`handoff::holding`]).
#[derive(Clone, Default)]
pub(crate) struct Kept(Option<Arc<Mutex<Vec<Held>>>>);

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Kept(..)" } else { "Kept(nothing)" })
    }
}

/// Ships a job: `job.ship(Ship)`.
pub(crate) struct Ship;

impl Shipper for Ship {
    type Shipped = Result<Shipped, TaskError>;

    fn stateless<J: Job + Copy>(self) -> Self::Shipped {
        let entry = offset_of(run_stateless::<J> as BatchFn as usize);
        Ok(Shipped { entry, state: Vec::new(), kept: Kept::default() })
    }

    fn stateful<J: Job + Serialize + DeserializeOwned>(self, job: &J) -> Self::Shipped {
        let mut state = Vec::new();
        let (encoded, held) = handoff::holding(|| codec::encode_caught(job, &mut state));
        encoded.map_err(|e| TaskError::serialization(Side::Task, Direction::Encode, e))?;
        let kept = Kept((!held.is_empty()).then(|| Arc::new(Mutex::new(held))));
        Ok(Shipped { entry: offset_of(run_stateful::<J> as BatchFn as usize), state, kept })
    }
}

/// The point all offsets are measured from. Its body keeps it distinct from every other
/// function, so no linker folds it into one.
#[inline(never)]
fn anchor() -> usize {
    black_box(0x7461_736b)
}

/// A second fixed point: its offset from [`anchor`] identifies the image's layout.
#[inline(never)]
fn probe() -> usize {
    black_box(0x706f_6f6c)
}

/// The offset of the code at `address` from [`anchor`].
pub(crate) fn offset_of(address: usize) -> i64 {
    let anchor = anchor as fn() -> usize as usize;
    address.wrapping_sub(anchor).cast_signed() as i64
}

/// The address in this process of the code at `offset` from [`anchor`].
pub(crate) fn address_at(offset: i64) -> usize {
    let anchor = anchor as fn() -> usize as usize;
    anchor.wrapping_add_signed(offset as isize)
}

/// The job entry point at `offset`, in a worker whose image matches its parent's.
pub(crate) fn entry_at(offset: i64, _image: &ImageVerified) -> BatchFn {
    let address = address_at(offset);
    // SAFETY: the image is the parent's (the `ImageVerified` token proves the check ran), and
    // the parent computed `offset` from a `BatchFn` of that image with `offset_of`, so
    // `address` is the start of a function of exactly this type.
    unsafe { std::mem::transmute::<usize, BatchFn>(address) }
}

/// The pool initializer at `offset`, in a worker whose image matches its parent's.
pub(crate) fn initializer_at(offset: i64, _image: &ImageVerified) -> fn() {
    let address = address_at(offset);
    // SAFETY: as in `entry_at`: the parent computed `offset` from a `fn()` of this image.
    unsafe { std::mem::transmute::<usize, fn()>(address) }
}

/// What identifies the running executable image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ImageId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) probe: i64,
}

impl ImageId {
    /// This process's image, or `None` if `/proc/self/exe` cannot be read.
    pub(crate) fn current() -> Option<ImageId> {
        static CURRENT: OnceLock<Option<ImageId>> = OnceLock::new();
        *CURRENT.get_or_init(|| {
            // Opened where it can be read: under Valgrind, which runs the program in its
            // tool's process, opening `/proc/self/exe` opens the program, its `stat` the
            // tool. A program that may be run but not read is only `stat`ed.
            let exe = "/proc/self/exe";
            let meta = std::fs::File::open(exe)
                .and_then(|file| file.metadata())
                .or_else(|_| std::fs::metadata(exe))
                .ok()?;
            Some(ImageId {
                dev: meta.dev(),
                ino: meta.ino(),
                probe: offset_of(probe as fn() -> usize as usize),
            })
        })
    }

    /// Whether this is the image of the file with device `dev` and inode `ino`.
    pub(crate) fn is_file(self, dev: u64, ino: u64) -> bool {
        (self.dev, self.ino) == (dev, ino)
    }

    /// Whether both name the same executable file (device and inode), whatever its layout.
    pub(crate) fn same_file(self, other: ImageId) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }

    /// The text form carried in the worker marker.
    pub(crate) fn to_marker(self) -> String {
        format!("{}:{}:{}", self.dev, self.ino, self.probe)
    }

    /// Parses [`ImageId::to_marker`]'s form.
    pub(crate) fn from_marker(text: &str) -> Option<ImageId> {
        let mut parts = text.split(':');
        let id = ImageId {
            dev: parts.next()?.parse().ok()?,
            ino: parts.next()?.parse().ok()?,
            probe: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(id)
    }
}

/// Runs the items of a stateless job, rebuilding the job from its type.
fn run_stateless<J: Job + Copy>(_state: &[u8], inputs: &mut Inputs<'_>, out: &mut Outputs) {
    // Every pool method evaluates `J::PORTABLE` where it is called, so that a function that
    // is not zero-sized fails the build at the caller's line; evaluating it here too keeps
    // this function sound whoever calls it.
    let () = J::PORTABLE;
    // SAFETY: `J` is zero-sized (`J::PORTABLE` above fails the build otherwise) and `Copy`,
    // and `Shipper::stateless` is only called by core's sealed `FnJob`, whose values are plain functions or closures that
    // capture nothing (or only other zero-sized copyable values). Such a value carries no
    // data and no invariant, and a value of the type existed in the parent, so creating one
    // from nothing is the same as copying that one.
    let job: J = unsafe { std::mem::zeroed() };
    run_items(&job, inputs, out);
}

/// Runs the items of a stateful job, decoding the job from `state` once per batch.
///
/// The job is decoded inside the first item's run, where a panic is caught: a `Deserialize`
/// that panics fails the item with `Panicked`, as an argument's does (and the next item
/// decodes it again), instead of ending the worker. Its `Drop` may panic too: the items are
/// settled by then, so that panic is printed and goes no further. The decoding is the
/// batch's cost, not the item's: the item's time starts after it.
fn run_stateful<J: Job + DeserializeOwned>(
    state: &[u8],
    inputs: &mut Inputs<'_>,
    out: &mut Outputs,
) {
    let mut job: Option<J> = None;
    for input in inputs {
        out.run(|scratch| {
            let job = match &mut job {
                Some(job) => job,
                empty => {
                    let job = codec::decode(state).map_err(|e| (Side::Task, e.to_string()))?;
                    scratch.begins_now();
                    empty.insert(job)
                }
            };
            run_one(job, input, scratch)
        });
    }
    if let Some(job) = job {
        taskpool_core::backend::discard(job);
    }
}

fn run_items<J: Job>(job: &J, inputs: &mut Inputs<'_>, out: &mut Outputs) {
    for input in inputs {
        out.run(|scratch| run_one(job, input, scratch));
    }
}

/// Decodes one item's input, runs `job` on it and encodes the result into `scratch`.
///
/// The result is dropped once encoded, and a panic of its `Drop` is printed and goes no
/// further: the task has returned, and its value reaches the caller, as on a thread pool,
/// where the caller's copy is the only one.
#[inline(always)]
fn run_one<J: Job>(job: &J, input: &[u8], scratch: &mut Scratch<'_>) -> Result<(), (Side, String)> {
    let arg: J::Input = codec::decode(input).map_err(|e| (Side::Argument, e.to_string()))?;
    let value = job.run(arg);
    let encoded = scratch.encode(&value).map_err(|e| (Side::Result, e.to_string()));
    taskpool_core::backend::discard(value);
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_to_addresses() {
        let f = probe as fn() -> usize as usize;
        assert_eq!(address_at(offset_of(f)), f);
        assert_ne!(offset_of(f), 0);
    }

    #[test]
    fn image_ids_round_trip_through_the_marker() {
        let id = ImageId::current().unwrap();
        assert_eq!(ImageId::from_marker(&id.to_marker()), Some(id));
        assert_eq!(ImageId::from_marker("1:2"), None);
        assert_eq!(ImageId::from_marker("1:2:3:4"), None);
    }
}
