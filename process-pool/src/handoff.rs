//! How a channel handle reaches another process: serialized like any task argument, and
//! opened there by mapping the same `memfd`.
//!
//! A serialized handle carries the channel's id, its size, what the handle may do, the
//! sending process's id, and where the memory can be found: `(pid, fd)` of the process that
//! serializes it and of the one that created the channel. The receiver opens
//! `/proc/PID/fd/FD` of the first that works (which needs the same user, as any worker of
//! the pool is), maps it, and accepts it only if the header holds the same id: a descriptor
//! number reused for something else is refused. A process that already maps the channel
//! reuses its mapping.
//!
//! Only the pool's codec writes a handle (another serializer's copy, one written to log it,
//! say, would never be received, so it is refused). Serializing a handle counts it in the
//! sender's peer slot as "handed off"; the receiver registers its own handle, then takes that count back, once per serialized copy (each
//! carries a ticket: serde decodes a value inside an untagged enum once per variant it tries,
//! and that must not take the count back twice). So from the moment a handle is
//! serialized until it is received, its role still counts, and a process that drops its
//! last handle meanwhile keeps the memory open for the receiver (until the next handle of
//! any channel is made, opened or dropped in it with nothing on its way). A handle serialized
//! but never received counts as held by its sender until that process exits (but in a pool
//! task's argument, below, and in a one-off's: that is counted in the child's own slot,
//! [`handed_to`], which the child's death frees; and in a message left in a channel when its
//! last getter is dropped, which that drop receives: `Shared::discard_abandoned`).
//!
//! A pool task's argument is the exception ([`holding`]): what it holds is not counted as
//! handed off but kept, as a copy of its own, with the task's input in this process until
//! the task's outcome is decoded (before its caller can see it, so a caller that has the
//! outcome finds them gone) or its input is dropped unsent (the task cancelled, its
//! `imap` dropped, the argument refused as too large). So an argument that never reaches a
//! worker gives its handles back, a worker that dies or skips the task takes nothing back,
//! and an argument sent twice (its first worker died) is counted once. A task's own state
//! (a struct task's fields) is kept so too, with its shipped job (`ship::Kept`), for as long
//! as the job is: its runs, or a one-off's process.
//!
//! A task may close descriptors it did not open (as a daemon closes all from 3 up): the
//! descriptors kept for `/proc` are [`HeldFd`]s, which notice it. A process whose descriptor
//! of a channel was closed names, when it hands the channel on, the processes it got the
//! channel from instead of itself.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::fs::OpenOptions;
use std::ops::Range;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::LocalKey;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::channel::{Roles, Shared};
use crate::shared_lock::my_pid;
use crate::sys::{self, HeldFd, SharedMemory};

/// What a process maps and may hand to another: found again by its id, and kept alive while
/// what it handed off is on its way.
pub(crate) trait Mapped {
    /// Its random id.
    fn id(&self) -> [u64; 2];
    /// Whether this process handed it off and the receiver has not opened it yet.
    fn handing_off(&self) -> bool;

    /// Drops `this`, which may be the last reference in this process.
    fn let_go(this: Arc<Self>) {
        drop(this);
    }
}

/// The objects of one kind this process maps: each by a weak reference, and a strong one
/// while what it handed off is on its way.
pub(crate) struct Known<T> {
    entries: Mutex<Vec<Entry<T>>>,
}

struct Entry<T> {
    weak: Weak<T>,
    keep: Option<Arc<T>>,
}

impl<T: Mapped> Known<T> {
    pub(crate) const fn new() -> Self {
        Known { entries: Mutex::new(Vec::new()) }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<Entry<T>>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        Self::tidy(&mut entries);
        entries
    }

    /// Forgets what no handle refers to, and lets go of what has arrived.
    fn tidy(entries: &mut Vec<Entry<T>>) {
        for entry in entries.iter_mut() {
            if entry.keep.as_ref().is_some_and(|keep| !keep.handing_off()) {
                if let Some(keep) = entry.keep.take() {
                    T::let_go(keep);
                }
            }
        }
        entries.retain(|entry| entry.weak.strong_count() > 0);
    }

    /// Lets go of what has arrived and forgets what nobody holds.
    pub(crate) fn sweep(&self) {
        drop(self.entries());
    }

    /// Whether something handed off is still on its way.
    pub(crate) fn any_on_the_way(&self) -> bool {
        self.entries().iter().any(|entry| entry.keep.is_some())
    }

    /// Remembers `object`, mapped in this process.
    pub(crate) fn add(&self, object: &Arc<T>) {
        MAPS_ANY.store(true, Ordering::Relaxed);
        self.entries().push(Entry { weak: Arc::downgrade(object), keep: None });
    }

    /// Keeps `object` alive until what it handed off arrives.
    pub(crate) fn keep(&self, object: &Arc<T>) {
        let mut entries = self.entries();
        match entries.iter_mut().find(|e| std::ptr::eq(e.weak.as_ptr(), Arc::as_ptr(object))) {
            Some(entry) => entry.keep = Some(object.clone()),
            None => {
                entries.push(Entry { weak: Arc::downgrade(object), keep: Some(object.clone()) })
            }
        }
    }

    /// The object `id` if this process maps it; else `open`s it and remembers it.
    pub(crate) fn find_or_open(
        &self,
        id: [u64; 2],
        open: impl FnOnce() -> Result<T, String>,
    ) -> Result<Arc<T>, String> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up before what has arrived is let go: an object this process sent on and
        // receives again (a task's argument sent to the same worker again) is found mapped.
        let found = entries.iter().filter_map(|e| e.weak.upgrade()).find(|o| o.id() == id);
        Self::tidy(&mut entries);
        if let Some(found) = found {
            return Ok(found);
        }
        let object = Arc::new(open()?);
        MAPS_ANY.store(true, Ordering::Relaxed);
        entries.push(Entry { weak: Arc::downgrade(&object), keep: None });
        Ok(object)
    }
}

thread_local! {
    /// Whether the value being encoded or decoded on this thread crosses to another machine,
    /// while [`off_machine`] runs.
    static OFF_MACHINE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` (the encoding or decoding of a value that travels to or from another machine)
/// so that every handle and shared bytes it meets refuses to cross ([`refuse_off_machine`]).
pub(crate) fn off_machine<R>(f: impl FnOnce() -> R) -> R {
    struct Back(bool);
    impl Drop for Back {
        fn drop(&mut self) {
            let _ = OFF_MACHINE.try_with(|o| o.set(self.0));
        }
    }
    let _back = Back(OFF_MACHINE.with(|o| o.replace(true)));
    f()
}

/// Whether this process is a worker whose results go on to another machine
/// (`protocol::OFF_MACHINE`).
static RESULTS_OFF_MACHINE: AtomicBool = AtomicBool::new(false);

/// Marks this process as a worker whose results go on to another machine.
pub(crate) fn results_off_machine() {
    RESULTS_OFF_MACHINE.store(true, Ordering::Relaxed);
}

/// Runs `encode` (of a worker's result) as [`off_machine`] if this worker's results go on to
/// another machine.
pub(crate) fn encode_result<R>(encode: impl FnOnce() -> R) -> R {
    if RESULTS_OFF_MACHINE.load(Ordering::Relaxed) { off_machine(encode) } else { encode() }
}

/// What a handle is called when it refuses to cross machines.
const HANDLE: &str = "a queue or pipe handle (`Queue`, `Producer`, `Consumer`, a `Pipe`'s `End`)";

/// Why `what` cannot be written or read here, if the value it is in crosses to another
/// machine ([`off_machine`]): it lives in this machine's memory, and its receiver could not
/// open it.
pub(crate) fn refuse_off_machine(what: &str) -> Result<(), String> {
    if !OFF_MACHINE.with(Cell::get) {
        return Ok(());
    }
    Err(format!(
        "{what} lives in the shared memory of one machine and cannot cross to another (as a \
         cluster task's argument, result or state): pass the values or bytes themselves"
    ))
}

/// Something an encoded task argument holds for its receiver: a copy of a handle or of
/// shared bytes, dropped when the argument is done with.
pub(crate) type Held = Box<dyn Send>;

thread_local! {
    /// What the task argument being encoded on this thread holds, while [`holding`] runs.
    static HOLDING: RefCell<Option<Vec<Held>>> = const { RefCell::new(None) };
}

/// What a thread records while a value is encoded ([`HOLDING`], [`HANDED_OFF`]): started
/// empty, and put back as it was before when done, even if the encoding panicked (what was
/// recorded is then dropped).
struct Restore<T: 'static> {
    record: &'static LocalKey<RefCell<Option<Vec<T>>>>,
    outer: Option<Option<Vec<T>>>,
}

impl<T> Restore<T> {
    /// Starts recording into `record`.
    fn enter(record: &'static LocalKey<RefCell<Option<Vec<T>>>>) -> Self {
        Restore { record, outer: Some(record.with(|r| r.replace(Some(Vec::new())))) }
    }

    /// Stops recording; returns what was recorded.
    fn finish(mut self) -> Vec<T> {
        let outer = self.outer.take().unwrap_or_default();
        self.record.with(|r| r.replace(outer)).unwrap_or_default()
    }
}

impl<T> Drop for Restore<T> {
    fn drop(&mut self) {
        if let Some(outer) = self.outer.take() {
            let _ = self.record.try_with(|r| r.replace(outer));
        }
    }
}

/// Whether this process ever made or opened a channel or shared bytes: until it has, no
/// argument can hold one, and [`holding`] costs one load.
static MAPS_ANY: AtomicBool = AtomicBool::new(false);

/// Whether an argument encoded in this process may hold a handle or shared bytes: `false`
/// until this process made or opened one.
#[inline]
pub(crate) fn may_hold() -> bool {
    MAPS_ANY.load(Ordering::Relaxed)
}

/// Runs `encode` (the encoding of one pool task's argument) and returns with its outcome
/// what the argument holds for its receiver: a copy of every handle and shared bytes it
/// serialized. Those are not counted as handed off (their receivers take nothing back), so
/// they live exactly as long as the caller keeps what this returns.
#[inline]
pub(crate) fn holding<R>(encode: impl FnOnce() -> R) -> (R, Vec<Held>) {
    if !may_hold() {
        return (encode(), Vec::new());
    }
    let recording = Restore::enter(&HOLDING);
    let outcome = encode();
    (outcome, recording.finish())
}

/// For a handle being serialized: if a task argument is being encoded on this thread
/// ([`holding`]), keeps `copy()` with it and returns `true`; else `false` (the handle is
/// handed off as any other).
pub(crate) fn held_by_argument(copy: impl FnOnce() -> Held) -> bool {
    HOLDING.with(|h| match &mut *h.borrow_mut() {
        Some(held) => {
            held.push(copy());
            true
        }
        None => false,
    })
}

thread_local! {
    /// How to take back each copy handed off by the value being encoded on this thread, while
    /// [`undoable`] runs.
    static HANDED_OFF: RefCell<Option<Vec<TakeBack>>> = const { RefCell::new(None) };
}

/// Takes back one copy handed off, for a value that nobody will receive, when dropped:
/// unless the value was sent ([`HandedOff::sent`]). So an encoding that panics takes back
/// what it handed off too.
struct TakeBack(Option<Box<dyn FnOnce()>>);

impl Drop for TakeBack {
    fn drop(&mut self) {
        if let Some(take_back) = self.0.take() {
            take_back();
        }
    }
}

/// The copies a value handed off as it was encoded ([`undoable`]), taken back when dropped
/// unless the value was [`sent`](HandedOff::sent).
#[must_use]
pub(crate) struct HandedOff(Vec<TakeBack>);

impl fmt::Debug for HandedOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HandedOff({} copies)", self.0.len())
    }
}

impl HandedOff {
    /// The value was not sent (a put that failed gives it back to its caller): its copies
    /// are no longer on their way, and stop counting as held by this process.
    pub(crate) fn take_back(self) {
        drop(self);
    }

    /// The value was sent: its receiver takes its copies back.
    pub(crate) fn sent(mut self) {
        self.0.iter_mut().for_each(|copy| drop(copy.0.take()));
    }

    /// Whether the value handed off nothing.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Runs `encode` (of a value for a queue or pipe, which may not be sent: the queue is full,
/// or the value too large) and returns with its outcome how to take back what it handed
/// off. A handle or shared bytes serialized counts as on its way until a receiver takes it
/// back; a value that never leaves must not keep counting (its queue would never
/// disconnect, its memory would stay until this process exits).
#[inline]
pub(crate) fn undoable<R>(encode: impl FnOnce() -> R) -> (R, HandedOff) {
    if !may_hold() {
        return (encode(), HandedOff(Vec::new()));
    }
    let recording = Restore::enter(&HANDED_OFF);
    let outcome = encode();
    (outcome, HandedOff(recording.finish()))
}

/// For a copy just handed off: if its value is encoded under [`undoable`], keeps how to take
/// it back.
pub(crate) fn on_take_back(take_back: impl FnOnce() + 'static) {
    HANDED_OFF.with(|h| {
        if let Some(handed) = &mut *h.borrow_mut() {
            handed.push(TakeBack(Some(Box::new(take_back))));
        }
    });
}

thread_local! {
    /// The child process that the value being encoded on this thread is for, while
    /// [`handed_to`] runs.
    static HANDED_TO: Cell<Option<u32>> = const { Cell::new(None) };
}

/// Runs `encode` (of the argument of a one-off process, `child`, started and not yet sent
/// its argument) so that the handles it hands off are counted in the child's slot of their
/// channels rather than in this process's: the child takes them back as it receives them,
/// and if it dies before (killed before it read its argument), its slot goes with it. In
/// this process's slot they would count until this process exits: a consumer of the child's
/// queue would never see it disconnect. Shared bytes in the argument are held instead, as a
/// pool task's are ([`holding`]): returned with the outcome, to be kept until the child has
/// ended (it has opened them, or never will).
pub(crate) fn handed_to<R>(child: u32, encode: impl FnOnce() -> R) -> (R, Vec<Held>) {
    /// Puts back what the thread encoded for before, even if `encode` panics.
    struct Reset(Option<u32>);
    impl Drop for Reset {
        fn drop(&mut self) {
            HANDED_TO.set(self.0);
        }
    }
    let _reset = Reset(HANDED_TO.replace(Some(child)));
    holding(encode)
}

/// Set when this process opens something that its sender keeps with a task's argument
/// ([`holding`]): the sender lets go only once it has the task's outcome.
static SENDER_WAITS: AtomicBool = AtomicBool::new(false);

/// Notes that this process opened something its sender keeps until it has the outcome of
/// the task whose argument held it.
pub(crate) fn sender_waits() {
    SENDER_WAITS.store(true, Ordering::Relaxed);
}

/// Whether, since the last call, this process (a worker) opened something its sender keeps
/// until it has the task's outcome: the worker then sends that outcome at once, rather than
/// with the next items of its batch, so the sender lets go as soon as the task is done (a
/// later item may be waiting for the end of a queue whose producer that was).
#[inline]
pub(crate) fn take_sender_waits() -> bool {
    SENDER_WAITS.load(Ordering::Relaxed) && SENDER_WAITS.swap(false, Ordering::Relaxed)
}

/// What the encoded inputs of one run hold for their receivers, by item: each item's let go
/// when its outcome is delivered ([`Holds::release`]), the rest when the run is dropped.
/// Nothing (and no cost) for runs whose inputs hold no handle.
#[derive(Default)]
pub(crate) struct Holds(Option<Box<Mutex<ByItem>>>);

/// What each item holds, by the item's index in its run.
type ByItem = Vec<(usize, Vec<Held>)>;

impl Holds {
    /// Keeps `held` until item `item`'s outcome is delivered.
    pub(crate) fn add(&mut self, item: usize, held: Vec<Held>) {
        if !held.is_empty() {
            let by_item = self.0.get_or_insert_with(Box::default);
            by_item.get_mut().unwrap_or_else(|e| e.into_inner()).push((item, held));
        }
    }

    /// Lets go of what items `items` hold: their outcomes are delivered.
    pub(crate) fn release(&self, items: Range<usize>) {
        let Some(by_item) = &self.0 else { return };
        let gone: Vec<_> = {
            let mut by_item = by_item.lock().unwrap_or_else(|e| e.into_inner());
            let mut gone = Vec::new();
            by_item.retain_mut(|(item, held)| {
                let keep = !items.contains(item);
                if !keep {
                    gone.push(std::mem::take(held));
                }
                keep
            });
            gone
        };
        // Dropped with no lock held: a handle's drop wakes its channel's waiters.
        drop(gone);
    }
}

/// Copies received lately: `(object id, sender, ticket)`.
static RECEIVED: Mutex<VecDeque<([u64; 2], u32, u64)>> = Mutex::new(VecDeque::new());
/// How many receipts [`RECEIVED`] remembers: far more than the handles one value holds.
const REMEMBERED: usize = 256;

/// A ticket for a copy this process serializes, unique among its copies.
pub(crate) fn next_ticket() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Whether this process receives for the first time the copy `ticket` of object `id` that
/// process `from` serialized. Serde decodes a value inside an untagged enum once per variant
/// it tries, so one copy can be received several times; its sender counts it once.
pub(crate) fn first_receipt(id: [u64; 2], from: u32, ticket: u64) -> bool {
    let mut seen = RECEIVED.lock().unwrap_or_else(|e| e.into_inner());
    let key = (id, from, ticket);
    if seen.contains(&key) {
        return false;
    }
    if seen.len() == REMEMBERED {
        seen.pop_front();
    }
    seen.push_back(key);
    true
}

/// The most places a serialized handle names.
const MAX_HOLDERS: usize = 4;

/// The places a process names for an object it hands on: itself if its descriptor `held` is
/// intact, then the places it got the object from (`origins`), at most [`MAX_HOLDERS`].
pub(crate) fn holders(held: &HeldFd, origins: &[(u32, i32)]) -> Vec<(u32, i32)> {
    let me = my_pid();
    let mine = held.is_intact().then_some((me, held.number()));
    let others = origins.iter().copied().filter(|&(pid, _)| pid != me);
    mine.into_iter().chain(others).take(MAX_HOLDERS).collect()
}

/// Opens descriptor `fd` of process `pid` (through `/proc`), for reading, and writing if
/// `write`.
pub(crate) fn open_proc(pid: u32, fd: i32, write: bool) -> Result<OwnedFd, String> {
    let path = format!("/proc/{pid}/fd/{fd}");
    open_proc_os(pid, fd, write).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound if !std::path::Path::new("/proc/self").exists() => format!(
            "{path}: {e}: /proc is not mounted where this process looks for it (it moved into \
             a chroot, say), and queues and shared bytes cross through it"
        ),
        // The usual cause, said plainly: the sender did not outlive the value's journey.
        std::io::ErrorKind::NotFound => format!(
            "process {pid} no longer holds it ({path}: {e}): it ended (or closed it) before \
             this process opened what it sent"
        ),
        // The kernel lets a process open another's descriptors only where it may read its
        // memory: a process of the same user may, unless that one is not dumpable.
        std::io::ErrorKind::PermissionDenied => format!(
            "{path}: {e}: process {pid} runs as another user or is not dumpable (it called \
             prctl(PR_SET_DUMPABLE, 0), runs set-user-ID, or runs an executable its user may \
             not read, as its workers and one-offs then do too), and only a process with \
             CAP_SYS_PTRACE may open its descriptors"
        ),
        _ => format!("{path}: {e}"),
    })
}

/// As [`open_proc`], with the OS's error alone.
pub(crate) fn open_proc_os(pid: u32, fd: i32, write: bool) -> std::io::Result<OwnedFd> {
    let path = format!("/proc/{pid}/fd/{fd}");
    let file = OpenOptions::new().read(true).write(write).open(&path)?;
    sys::above_standard(OwnedFd::from(file))
}

impl Mapped for Shared {
    fn id(&self) -> [u64; 2] {
        Shared::id(self)
    }

    fn handing_off(&self) -> bool {
        Shared::handing_off(self)
    }
}

static CHANNELS: Known<Shared> = Known::new();

/// Whether a handle this process handed off (put on a queue, say) has not reached its
/// receiver yet, which opens the channel through this process's descriptor.
pub(crate) fn handles_on_the_way() -> bool {
    may_hold() && CHANNELS.any_on_the_way()
}

/// One handle to a channel: what it may do, counted in the channel's peer table while it
/// lives.
pub(crate) struct Handle {
    shared: Arc<Shared>,
    roles: Roles,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").field("channel", &self.shared).field("roles", &self.roles).finish()
    }
}

fn table_full() -> std::io::Error {
    std::io::Error::other(format!(
        "more than {} processes hold the queue",
        crate::channel::MAX_PEERS
    ))
}

fn broken() -> std::io::Error {
    std::io::Error::other("the queue's shared memory is broken")
}

fn not_taskpools() -> std::io::Error {
    std::io::Error::other(
        "a queue or pipe handle is written only by taskpool, as (part of) a task's argument or \
         result or a queue's value: a copy that another serializer writes could never be \
         received, and would keep the handle's role in this process for as long as it lives",
    )
}

fn closed() -> std::io::Error {
    std::io::Error::other(
        "the queue's descriptor in this process was closed (by a task that closed descriptors \
         it did not open), and no other process is known to hold the queue",
    )
}

impl Handle {
    /// A handle with `roles` to a new channel.
    pub(crate) fn create(bytes: usize, max_messages: u64, roles: Roles) -> std::io::Result<Handle> {
        let shared = Arc::new(Shared::create(bytes, max_messages)?);
        CHANNELS.add(&shared);
        Handle::counted(shared, roles)
    }

    fn counted(shared: Arc<Shared>, roles: Roles) -> std::io::Result<Handle> {
        match shared.count(roles, 1, false) {
            Ok(true) => Ok(Handle { shared, roles }),
            Ok(false) => Err(table_full()),
            Err(_) => Err(broken()),
        }
    }

    /// Another handle to the same channel, with `roles`.
    pub(crate) fn with_roles(&self, roles: Roles) -> std::io::Result<Handle> {
        Handle::counted(self.shared.clone(), roles)
    }

    /// Another handle like this one. Counting it cannot fail for want of a slot (this
    /// process has one); if the memory is broken, the handle is simply not counted.
    pub(crate) fn clone_same(&self) -> Handle {
        let _ = self.shared.count(self.roles, 1, false);
        Handle { shared: self.shared.clone(), roles: self.roles }
    }

    pub(crate) fn channel(&self) -> &Shared {
        &self.shared
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.shared.count(self.roles, -1, false);
        // Waiters look at the peers again: this may have been the last on its side.
        self.shared.wake_all();
        // If it was the last that could get, what the messages left hand off is let go.
        self.shared.discard_abandoned();
        CHANNELS.sweep();
    }
}

/// A handle as it crosses to another process.
#[derive(Serialize, Deserialize)]
struct Wire {
    id: [u64; 2],
    len: u64,
    roles: u8,
    from: u32,
    /// Which copy of the sender's this is ([`first_receipt`]); none if the sender keeps a
    /// copy of the handle until it is done with the task argument this one is in
    /// ([`holding`]), so there is nothing to take back.
    ticket: Option<u64>,
    /// `(pid, fd)` pairs where the memory is open.
    holders: Vec<(u32, i32)>,
}

impl Serialize for Handle {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        if !crate::codec::is_encoder::<S>() {
            return Err(S::Error::custom(not_taskpools()));
        }
        refuse_off_machine(HANDLE).map_err(S::Error::custom)?;
        let shared = &self.shared;
        let holders = holders(shared.fd(), shared.origins());
        if holders.is_empty() {
            return Err(S::Error::custom(closed()));
        }
        // Counted in this process's slot, or in the child's that it is for (whose argument
        // holds shared bytes, not handles: a handle kept here would count as this process's).
        let to = HANDED_TO.get();
        let from = to.unwrap_or_else(my_pid);
        let ticket = if to.is_none() && held_by_argument(|| Box::new(self.clone_same())) {
            None
        } else {
            let counted = if from == my_pid() {
                shared.count(self.roles, 1, true)
            } else {
                shared.count_for(from, self.roles)
            };
            match counted {
                Ok(true) => {}
                Ok(false) => return Err(S::Error::custom(table_full())),
                Err(_) => return Err(S::Error::custom(broken())),
            }
            CHANNELS.keep(shared);
            let (shared, roles) = (shared.clone(), self.roles);
            on_take_back(move || {
                // As its receiver would: this process handed it off, and takes it back.
                let _ = shared.received(from, roles);
                drop(shared);
                CHANNELS.sweep();
            });
            Some(next_ticket())
        };
        Wire {
            id: shared.id(),
            len: shared.len() as u64,
            roles: self.roles.bits(),
            from,
            ticket,
            holders,
        }
        .serialize(serializer)
    }
}

/// A handle read from bytes and not opened yet: what it may do can be checked first, so a
/// handle of the wrong kind (serde trying the variants of an untagged enum, say) maps nothing.
pub(crate) struct Unopened(Wire);

impl Unopened {
    /// What the handle may do.
    pub(crate) fn roles(&self) -> Roles {
        Roles::from_bits(self.0.roles)
    }

    /// Maps the channel and registers the handle in this process.
    pub(crate) fn open(self) -> Result<Handle, String> {
        let wire = self.0;
        let roles = Roles::from_bits(wire.roles);
        let shared = open(&wire)?;
        let handle = Handle::counted(shared, roles).map_err(|e| e.to_string())?;
        match wire.ticket {
            Some(ticket) if first_receipt(wire.id, wire.from, ticket) => {
                handle.shared.received(wire.from, roles).map_err(|_| broken().to_string())?;
            }
            Some(_) => {}
            None => sender_waits(),
        }
        Ok(handle)
    }
}

impl<'de> Deserialize<'de> for Unopened {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Unopened, D::Error> {
        refuse_off_machine(HANDLE).map_err(serde::de::Error::custom)?;
        Wire::deserialize(deserializer).map(Unopened)
    }
}

impl<'de> Deserialize<'de> for Handle {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Handle, D::Error> {
        Unopened::deserialize(deserializer)?.open().map_err(serde::de::Error::custom)
    }
}

/// The channel a serialized handle names: this process's mapping if it has one, else the
/// memory opened through a holder.
fn open(wire: &Wire) -> Result<Arc<Shared>, String> {
    CHANNELS.find_or_open(wire.id, || {
        let len = usize::try_from(wire.len).map_err(|e| e.to_string())?;
        let mut why = String::from("no process named holds it");
        for &(pid, fd) in &wire.holders {
            match open_from(pid, fd, len, wire.id, wire.holders.clone()) {
                Ok(shared) => return Ok(shared),
                Err(e) => why = e,
            }
        }
        Err(format!("cannot open the queue's shared memory: {why}"))
    })
}

fn open_from(
    pid: u32,
    number: i32,
    len: usize,
    id: [u64; 2],
    origins: Vec<(u32, i32)>,
) -> Result<Shared, String> {
    let fd = open_proc(pid, number, true)?;
    let place = format!("descriptor {number} of process {pid}");
    let memory = SharedMemory::adopt_populated(fd.as_raw_fd(), len, &[crate::channel::CONTROL])
        .ok_or_else(|| format!("{place} is not a sealed memfd of {len} bytes"))?;
    Shared::adopt(memory, fd, id, origins).ok_or_else(|| format!("{place} is another queue"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_round_trips_to_the_same_channel_and_a_wrong_id_is_refused() {
        let handle = Handle::create(256, u64::MAX, Roles::BOTH).unwrap();
        let mut bytes = Vec::new();
        crate::codec::encode_into(&handle, &mut bytes).unwrap();
        let back: Handle = crate::codec::decode(&bytes).unwrap();
        assert!(Arc::ptr_eq(&back.shared, &handle.shared), "one mapping per process");
        back.channel().try_put(b"through").unwrap();
        assert_eq!(handle.channel().try_get().unwrap().unwrap(), b"through");

        let me = my_pid();
        let fd = handle.shared.fd().number();
        let other = open_from(me, fd, handle.shared.len(), [1, 2], vec![]);
        assert!(other.unwrap_err().contains("another queue"));
        let same = open_from(me, fd, handle.shared.len(), handle.shared.id(), vec![]).unwrap();
        assert_eq!(same.max_message(), handle.shared.max_message());
    }

    #[test]
    fn a_copy_is_received_once_however_often_it_is_decoded() {
        let ticket = next_ticket();
        assert_ne!(ticket, next_ticket());
        assert!(first_receipt([7, 8], 1, ticket));
        assert!(!first_receipt([7, 8], 1, ticket), "decoded again");
        assert!(first_receipt([7, 8], 2, ticket), "another sender's copy");
    }

    #[test]
    fn a_handle_names_where_it_came_from_after_its_own_descriptor() {
        let handle = Handle::create(256, u64::MAX, Roles::BOTH).unwrap();
        let me = my_pid();
        let fd = handle.shared.fd();
        let origins = [(me, 99), (1, 3), (2, 4), (3, 5), (4, 6)];
        let named = holders(fd, &origins);
        assert_eq!(
            named,
            [(me, fd.number()), (1, 3), (2, 4), (3, 5)],
            "itself first, four at most"
        );
    }
}
