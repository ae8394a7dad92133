//! `SharedBytes`: bytes written once into a sealed `memfd` and read in place by every process
//! that receives them, so that large task arguments and results cross without a copy.
//!
//! Two files make one value: the data file (a header page with the magic, the value's id and
//! length, then the bytes), sealed against every change once written (`sys::SealedBytes`),
//! so that every process maps it read-only and reads it through a plain `&[u8]`; and a
//! control page (a [`SharedMemory`]) with the same id and the count of serialized copies not
//! yet received. They cross as queue handles do (`handoff.rs`): the receiver opens both
//! through `/proc/PID/fd` of a process that holds them and checks both ids. In a pool task's
//! argument, the sender keeps a copy with the task's input until the task's outcome is
//! delivered or the input is dropped unsent (`handoff::holding`), and in a one-off's until
//! the one-off has ended (`handoff::handed_to`). Elsewhere (results, queue values) it keeps
//! them open while copies are on their way, and lets go
//! at its next use of `SharedBytes` (made, received or dropped) once every copy arrived, or
//! in a pool worker once it has sat idle ([`kept_for_receivers`]);
//! each such copy is received once, however often serde decodes it
//! (`handoff::first_receipt`). A copy that a receiver failed to open (out of descriptors,
//! say) is taken off the count by that receiver as soon as it can open the control page
//! ([`settle_unreceived`]): it will never be received. A process whose descriptors of a
//! value were closed by a task sends a copy of the bytes in new memory instead.

use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, mpsc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::handoff::{
    Known, Mapped, first_receipt, held_by_argument, next_ticket, on_take_back, open_proc,
    open_proc_os, refuse_off_machine, sender_waits,
};
use crate::shared_lock::my_pid;
use crate::sys::{HeldFd, SEALED_DATA_AT, SealedBytes, SharedMemory};

const MAGIC: u64 = u64::from_le_bytes(*b"tpbytes1");
const CONTROL_LEN: usize = 4096;
/// Bytes of the data file's header: magic, id, length.
const HEADER: usize = 32;

/// One value as this process maps it.
struct Inner {
    data: SealedBytes,
    data_fd: HeldFd,
    control: SharedMemory,
    control_fd: HeldFd,
    id: [u64; 2],
    len: usize,
}

impl Inner {
    fn bytes(&self) -> &[u8] {
        &self.data.file()[SEALED_DATA_AT..SEALED_DATA_AT + self.len]
    }

    /// Copies serialized and not yet received.
    fn pending(&self) -> &std::sync::atomic::AtomicU64 {
        pending_in(&self.control)
    }
}

/// The count of a value's copies serialized and not yet received, in its control page.
fn pending_in(control: &SharedMemory) -> &std::sync::atomic::AtomicU64 {
    &control.words(24, 1)[0]
}

impl Mapped for Inner {
    fn id(&self) -> [u64; 2] {
        self.id
    }

    fn handing_off(&self) -> bool {
        self.pending().load(Acquire) != 0
    }

    fn let_go(this: Arc<Self>) {
        release(this);
    }
}

/// Values of this many bytes or more are unmapped (and their pages freed, where this process
/// held the last reference) on a thread of their own: giving back 64 MiB of pages takes
/// milliseconds, which would otherwise land on whatever the dropping thread does next (a
/// worker's next task, a caller's next round trip).
const RELEASE_APART_FROM: usize = 4 << 20;

/// How many values the releasing thread let go of, for the tests.
#[cfg(test)]
static RELEASED_APART: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Drops `inner`: on the releasing thread if this is the last reference to a large value,
/// here otherwise.
fn release(inner: Arc<Inner>) {
    if inner.len >= RELEASE_APART_FROM && Arc::strong_count(&inner) == 1 {
        release_apart(inner);
    }
}

/// Drops `inner` on the releasing thread; here if that thread cannot be had, or in a copy
/// made by `fork` (where it does not run).
fn release_apart(inner: Arc<Inner>) {
    if crate::sys::forked() {
        return;
    }
    static RELEASER: OnceLock<Option<mpsc::Sender<Arc<Inner>>>> = OnceLock::new();
    let releaser = RELEASER.get_or_init(|| {
        crate::sys::watch_forks();
        let (tx, rx) = mpsc::channel::<Arc<Inner>>();
        let spawned = crate::sys::with_program_signals_blocked(|| {
            std::thread::Builder::new().name("taskpool-release".into()).spawn(move || {
                for inner in rx {
                    drop(inner);
                    #[cfg(test)]
                    RELEASED_APART.fetch_add(1, AcqRel);
                }
            })
        });
        spawned.ok().map(|_| tx)
    });
    if let Some(releaser) = releaser {
        // A failed send hands the value back, to be dropped here.
        let _ = releaser.send(inner);
    }
}

static VALUES: Known<Inner> = Known::new();

/// Whether this process keeps values it sent open for receivers that have not opened them
/// yet. Looking lets go of those whose receivers have: an idle worker looks every
/// [`bulk::KEEP_IDLE`](crate::bulk::KEEP_IDLE) while it keeps any, so that it does not hold the
/// last value it sent (its pages, however large) for as long as its pool sits idle.
pub(crate) fn kept_for_receivers() -> bool {
    crate::handoff::may_hold() && VALUES.any_on_the_way()
}

/// How long a worker at its end waits for the receivers of the values it sent.
pub(crate) const AWAIT_RECEIVERS: Duration = Duration::from_secs(10);

/// At a worker's end: waits (at most [`AWAIT_RECEIVERS`]) until every value (and queue or
/// pipe handle) this process sent was opened by its receiver, which needs this process to hold it until then: the
/// result of a one-off process is decoded only when its parent joins it.
pub(crate) fn await_receivers() {
    let until = Instant::now() + AWAIT_RECEIVERS;
    while (VALUES.any_on_the_way() || crate::handoff::handles_on_the_way())
        && Instant::now() < until
    {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Bytes that live in shared memory: written once by the process that makes them, then read
/// in place by every process they are passed to, as a task argument, a task result or a
/// [`Queue`](crate::Queue) value, with no copy on the way.
///
/// Use it for large inputs and results (from about 64 KiB): a `Vec<u8>` argument is copied
/// into the worker's ring and out of it again on each side, `SharedBytes` is not copied at
/// all; the receiving process maps the same pages and reads them where they are. Making one
/// costs a `memfd`, a mapping and one copy of the bytes (or none with [`SharedBytes::new`],
/// which lets the caller write them in place); for small values that costs more than the
/// copies it saves. The bytes cannot change once made (the file is sealed against writes),
/// so any number of processes and threads may read them at once. It derefs to `[u8]`.
///
/// A value stays alive while any process holds it. A pool task's argument is kept by the
/// pool until the task ends, or until it is dropped unrun (cancelled, its `imap` dropped,
/// refused as too large); a one-off's ([`spawn`](crate::spawn)) by its spawner until the
/// one-off process has ended (and been joined, or its handle dropped). A process that sends
/// one otherwise (a result, a queue value) keeps it open until the receiver has it, or has
/// failed to open it (out of descriptors, say: the receiver tells the sender at the next
/// value it decodes once it can open files again); if the
/// receiver never decodes it, the sender keeps it until it exits (but a value left in a queue
/// or pipe when its last handle that can get is dropped is decoded and dropped by that drop,
/// in that process, so its sender lets go of it). A worker or one-off process
/// ([`spawn`](crate::spawn)) that sent one waits at its end (up to 10 s, and for a pool's worker at most the `shutdown_grace` of
/// a pool being dropped or shut down) for the receiver to open it: a one-off process's
/// result is opened only when its parent joins it, a queue value when someone gets it (so a
/// join of a one-off that put shared bytes on a queue waits until they are got, up to 10 s;
/// and a worker recycled after `max_tasks_per_worker` tasks waits so before its slot starts a
/// fresh one, which holds up the pool's next tasks: with recycling, get such values while
/// the tasks run, or put copies).
/// A value still unopened when its sender has gone is lost: its receiver fails to decode it
/// ([`TaskError::Serialization`](crate::TaskError::Serialization), or `GetError::Decode` from
/// a queue) with an error that names the process that ended. So a process that puts shared
/// bytes on a queue should outlive their getting, or put a copy (`Vec<u8>`) instead. The
/// receiver opens it through `/proc/PID/fd` of the sender (same user, as a pool's workers
/// are). On the thread backend it is passed as is. Another serializer (`serde_json`, say,
/// to save a result) writes it as its plain bytes, and reads it back from them into new
/// shared memory.
///
/// The bytes start on a page boundary (their address is a multiple of 4096) in every
/// process that reads them, so numbers written into them read back in place: with
/// `f64::from_le_bytes` over `chunks_exact(8)`, as in the second example, or as a `&[f64]`
/// through a crate that checks the alignment and the length (`bytemuck::cast_slice`).
///
/// # Examples
///
/// ```
/// use taskpool_process::{Pool, ProcessPool, SharedBytes};
///
/// fn checksum(data: SharedBytes) -> u64 {
///     data.iter().map(|&b| u64::from(b)).sum() // read in place, in the worker
/// }
///
/// fn double(data: SharedBytes) -> SharedBytes {
///     SharedBytes::new(data.len(), |out| {
///         for (o, &b) in out.iter_mut().zip(data.iter()) {
///             *o = b.wrapping_mul(2);
///         }
///     })
///     .unwrap()
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = ProcessPool::new(2)?;
/// let data = SharedBytes::copy_from_slice(&vec![3u8; 1 << 20])?;
/// assert_eq!(pool.apply(checksum, data.clone())?, 3 << 20);
/// let doubled = pool.apply(double, data)?;
/// assert!(doubled.iter().all(|&b| b == 6));
/// # Ok(())
/// # }
/// ```
///
/// Numbers, bit for bit (`-0.0` and NaN payloads included):
///
/// ```
/// use taskpool_process::{Pool, ProcessPool, SharedBytes};
///
/// fn floats(data: &[u8]) -> impl Iterator<Item = f64> + '_ {
///     data.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap()))
/// }
///
/// fn halve(data: SharedBytes) -> SharedBytes {
///     SharedBytes::new(data.len(), |out| {
///         for (o, x) in out.chunks_exact_mut(8).zip(floats(&data)) {
///             o.copy_from_slice(&(x / 2.0).to_le_bytes());
///         }
///     })
///     .unwrap()
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let values = [3.0, -0.0, f64::from_bits(0x7ff8_0000_0000_0001)];
/// let data = SharedBytes::new(values.len() * 8, |out| {
///     for (o, x) in out.chunks_exact_mut(8).zip(values) {
///         o.copy_from_slice(&x.to_le_bytes());
///     }
/// })?;
/// assert_eq!(data.as_ptr() as usize % 4096, 0);
/// let bits = |data: &[u8]| floats(data).map(f64::to_bits).collect::<Vec<u64>>();
/// assert_eq!(bits(&data), values.map(f64::to_bits));
/// let pool = ProcessPool::new(1)?;
/// let halved = bits(&pool.apply(halve, data)?);
/// assert_eq!(halved[..2], [1.5f64.to_bits(), (-0.0f64).to_bits()]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SharedBytes {
    inner: Arc<Inner>,
}

impl SharedBytes {
    /// `len` bytes that `fill` writes in place (they start zeroed), then sealed.
    ///
    /// # Errors
    ///
    /// The kernel refused the memory: [`ErrorKind::Unsupported`](std::io::ErrorKind) where
    /// it has no `memfd` (whatever carries the pool's own messages), and
    /// [`ErrorKind::FileTooLarge`](std::io::ErrorKind) past the process's file-size limit
    /// (`RLIMIT_FSIZE`, which counts shared memory as a file).
    ///
    /// # Examples
    ///
    /// ```
    /// let squares = taskpool_process::SharedBytes::new(16, |out| {
    ///     for (i, b) in out.iter_mut().enumerate() {
    ///         *b = (i * i) as u8;
    ///     }
    /// })?;
    /// assert_eq!(squares[3], 9);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(len: usize, fill: impl FnOnce(&mut [u8])) -> std::io::Result<SharedBytes> {
        // Values whose copies all arrived are let go first: their descriptors may be what
        // this one needs.
        VALUES.sweep();
        let id = crate::channel::new_id();
        let mut header = [0u8; HEADER];
        header[..8].copy_from_slice(&MAGIC.to_le_bytes());
        header[8..16].copy_from_slice(&id[0].to_le_bytes());
        header[16..24].copy_from_slice(&id[1].to_le_bytes());
        header[24..32].copy_from_slice(&(len as u64).to_le_bytes());
        let (data, data_fd) = SealedBytes::create(c"taskpool-bytes", &header, len, fill)?;
        let (control, control_fd) = SharedMemory::create(c"taskpool-bytes-control", CONTROL_LEN)?;
        let words = control.words(0, 4);
        words[1].store(id[0], Relaxed);
        words[2].store(id[1], Relaxed);
        words[0].store(MAGIC, Release);
        let (data_fd, control_fd) = (HeldFd::new(data_fd)?, HeldFd::new(control_fd)?);
        let inner = Arc::new(Inner { data, data_fd, control, control_fd, id, len });
        VALUES.add(&inner);
        Ok(SharedBytes { inner })
    }

    /// A copy of `bytes` in shared memory.
    ///
    /// # Errors
    ///
    /// The kernel refused the memory: [`ErrorKind::Unsupported`](std::io::ErrorKind) where
    /// it has no `memfd` (whatever carries the pool's own messages), and
    /// [`ErrorKind::FileTooLarge`](std::io::ErrorKind) past the process's file-size limit
    /// (`RLIMIT_FSIZE`, which counts shared memory as a file).
    ///
    /// # Examples
    ///
    /// ```
    /// let data = taskpool_process::SharedBytes::copy_from_slice(b"hello")?;
    /// assert_eq!(&data[..], b"hello");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn copy_from_slice(bytes: &[u8]) -> std::io::Result<SharedBytes> {
        SharedBytes::new(bytes.len(), |out| out.copy_from_slice(bytes))
    }

    /// The bytes, read in place (also what `Deref` gives).
    ///
    /// # Examples
    ///
    /// ```
    /// let data = taskpool_process::SharedBytes::copy_from_slice(&[1, 2, 3])?;
    /// assert_eq!(data.as_slice(), &[1, 2, 3]);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn as_slice(&self) -> &[u8] {
        self.inner.bytes()
    }
}

impl Deref for SharedBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.inner.bytes()
    }
}

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        self.inner.bytes()
    }
}

impl PartialEq for SharedBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SharedBytes {}

/// Hashes the bytes, as `[u8]` does, to agree with `PartialEq`.
impl Hash for SharedBytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBytes").field("len", &self.inner.len).finish_non_exhaustive()
    }
}

impl Drop for SharedBytes {
    fn drop(&mut self) {
        if self.inner.len >= RELEASE_APART_FROM && Arc::strong_count(&self.inner) == 1 {
            // The releasing thread's reference is the last once this one is dropped.
            release_apart(self.inner.clone());
        }
        // Lets go of values whose copies all arrived: this may be the last use for a while.
        VALUES.sweep();
        settle_unreceived();
    }
}

/// A value as it crosses to another process.
#[derive(Serialize, Deserialize)]
struct Wire {
    id: [u64; 2],
    len: u64,
    /// The sender's pid, and which of its copies this is ([`first_receipt`]): none if the
    /// sender keeps a copy with the task argument this one is in, so there is nothing to
    /// take back.
    from: u32,
    ticket: Option<u64>,
    /// `(pid, data fd, control fd)` where it is open.
    holders: Vec<(u32, i32, i32)>,
}

impl Serialize for SharedBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if !crate::codec::is_encoder::<S>() {
            // Another serializer (JSON, to save a result): the bytes themselves.
            return serializer.serialize_bytes(self);
        }
        refuse_off_machine("`SharedBytes`").map_err(serde::ser::Error::custom)?;
        if self.inner.data_fd.is_intact() && self.inner.control_fd.is_intact() {
            return wire(&self.inner).serialize(serializer);
        }
        // A task closed this process's descriptors of the value: nobody could open it through
        // them. A copy in new memory crosses instead.
        let copy = SharedBytes::copy_from_slice(self).map_err(|e| {
            serde::ser::Error::custom(format!(
                "the descriptors of shared bytes were closed in this process, and a copy \
                 failed: {e}"
            ))
        })?;
        wire(&copy.inner).serialize(serializer)
    }
}

/// The wire form of a copy of `inner` on its way: kept with the task argument it is in
/// (`handoff::holding`), or counted and kept until it arrives.
fn wire(inner: &Arc<Inner>) -> Wire {
    let ticket = if held_by_argument(|| Box::new(SharedBytes { inner: inner.clone() })) {
        None
    } else {
        inner.pending().fetch_add(1, AcqRel);
        VALUES.keep(inner);
        let copy = inner.clone();
        on_take_back(move || {
            let _ = copy.pending().fetch_update(AcqRel, Acquire, |n| n.checked_sub(1));
            drop(copy);
            VALUES.sweep();
        });
        Some(next_ticket())
    };
    let me = my_pid();
    let holder = (me, inner.data_fd.number(), inner.control_fd.number());
    let len = inner.len as u64;
    Wire { id: inner.id, len, from: me, ticket, holders: vec![holder] }
}

impl<'de> Deserialize<'de> for SharedBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SharedBytes, D::Error> {
        if !crate::codec::is_decoder::<D>() {
            // Another deserializer: the bytes themselves, as `serialize` writes them.
            return deserializer.deserialize_byte_buf(PlainBytes);
        }
        refuse_off_machine("`SharedBytes`").map_err(serde::de::Error::custom)?;
        let wire = Wire::deserialize(deserializer)?;
        settle_unreceived();
        let inner = VALUES
            .find_or_open(wire.id, || {
                let mut why = String::from("no process named holds it");
                for &(pid, data, control) in &wire.holders {
                    match open_from(pid, data, control, &wire) {
                        Ok(inner) => return Ok(inner),
                        Err(e) => why = e,
                    }
                }
                Err(format!("cannot open shared bytes: {why}"))
            })
            .map_err(|why| {
                if let Some(ticket) = wire.ticket {
                    unreceived(Unreceived {
                        id: wire.id,
                        from: wire.from,
                        ticket,
                        holders: wire.holders.clone(),
                    });
                }
                serde::de::Error::custom(why)
            })?;
        // One copy on its way arrived (saturating: a count a peer broke only costs how long
        // its sender keeps the value).
        match wire.ticket {
            Some(ticket) if first_receipt(wire.id, wire.from, ticket) => {
                let _ = inner.pending().fetch_update(AcqRel, Acquire, |n| n.checked_sub(1));
            }
            Some(_) => {}
            None => sender_waits(),
        }
        Ok(SharedBytes { inner })
    }
}

/// A copy of a value that this process failed to receive (it could not open or map it: it
/// was out of descriptors, say), which its sender still counts as on its way, and so keeps
/// open.
struct Unreceived {
    id: [u64; 2],
    from: u32,
    ticket: u64,
    /// `(pid, data fd, control fd)` where it is open.
    holders: Vec<(u32, i32, i32)>,
}

/// The copies this process failed to receive and has not taken off their senders' counts
/// yet, oldest first.
static UNRECEIVED: Mutex<VecDeque<Unreceived>> = Mutex::new(VecDeque::new());
/// Whether [`UNRECEIVED`] may hold any: a drop or a receipt looks at it only then.
static ANY_UNRECEIVED: AtomicBool = AtomicBool::new(false);
/// The most copies [`UNRECEIVED`] holds (the oldest are forgotten past that, and their
/// senders keep them until they exit, as before).
const MAX_UNRECEIVED: usize = 1024;

/// Remembers `copy`, to take it off its sender's count as soon as this process can open
/// files again ([`settle_unreceived`]): it will never be received, and the sender need not
/// keep it for this process.
fn unreceived(copy: Unreceived) {
    let mut list = UNRECEIVED.lock().unwrap_or_else(PoisonError::into_inner);
    if list.len() == MAX_UNRECEIVED {
        list.pop_front();
    }
    list.push_back(copy);
    ANY_UNRECEIVED.store(true, Release);
}

/// Takes the copies this process failed to receive off their senders' counts, where it can
/// now; keeps those it cannot yet for want of descriptors or memory. Called at each use of
/// `SharedBytes` (received or dropped), as values are let go, and at each value this process
/// decodes (a task's result, a queue's message): one load while there are none.
pub(crate) fn settle_unreceived() {
    if !ANY_UNRECEIVED.load(Acquire) {
        return;
    }
    let mut list = UNRECEIVED.lock().unwrap_or_else(PoisonError::into_inner);
    list.retain(|copy| !copy.settle());
    ANY_UNRECEIVED.store(!list.is_empty(), Release);
}

impl Unreceived {
    /// Takes this copy off its sender's count, once (its ticket received); `false` if that
    /// must wait: this process is still out of descriptors or memory. A copy whose control
    /// page no process named holds any more needs nothing.
    fn settle(&self) -> bool {
        for &(pid, _, control) in &self.holders {
            let fd = match open_proc_os(pid, control, true) {
                Ok(fd) => fd,
                Err(e) if is_shortage(&e) => return false,
                Err(_) => continue,
            };
            let Some(memory) = SharedMemory::adopt(fd.as_raw_fd(), CONTROL_LEN) else {
                continue;
            };
            let words = memory.words(0, 3);
            if [words[0].load(Acquire), words[1].load(Relaxed), words[2].load(Relaxed)]
                != [MAGIC, self.id[0], self.id[1]]
            {
                continue;
            }
            if first_receipt(self.id, self.from, self.ticket) {
                let _ = pending_in(&memory).fetch_update(AcqRel, Acquire, |n| n.checked_sub(1));
            }
            return true;
        }
        true
    }
}

/// Whether `e` says that this process lacks descriptors or memory for now.
fn is_shortage(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM))
}

/// Reads shared bytes that another serializer wrote as plain bytes (or a sequence of them),
/// into new shared memory.
struct PlainBytes;

impl<'de> serde::de::Visitor<'de> for PlainBytes {
    type Value = SharedBytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes")
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<SharedBytes, E> {
        SharedBytes::copy_from_slice(bytes).map_err(E::custom)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<SharedBytes, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        self.visit_bytes(&bytes)
    }
}

fn open_from(pid: u32, data: i32, control: i32, wire: &Wire) -> Result<Inner, String> {
    let len = usize::try_from(wire.len).map_err(|e| e.to_string())?;
    let place = format!("process {pid}");
    let data_fd = open_proc(pid, data, false)?;
    let sealed = SealedBytes::adopt(data_fd.as_fd(), len)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::OutOfMemory if crate::sys::memory_limit().is_some() => format!(
                "{place}: no room to map {len} bytes under this process's memory limit \
                 ({e}): shared bytes count toward it"
            ),
            _ => format!("{place}: cannot map {len} bytes: {e}"),
        })?
        .ok_or_else(|| format!("{place}: not sealed bytes of {len} bytes"))?;
    let head = &sealed.file()[..HEADER];
    let word = |i: usize| {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&head[i * 8..i * 8 + 8]);
        u64::from_le_bytes(bytes)
    };
    if [word(0), word(1), word(2), word(3)] != [MAGIC, wire.id[0], wire.id[1], wire.len] {
        return Err(format!("{place}: other bytes"));
    }
    let control_fd = open_proc(pid, control, true)?;
    let memory = SharedMemory::adopt(control_fd.as_raw_fd(), CONTROL_LEN)
        .ok_or_else(|| format!("{place}: not a control page"))?;
    let words = memory.words(0, 3);
    if [words[0].load(Acquire), words[1].load(Relaxed), words[2].load(Relaxed)]
        != [MAGIC, wire.id[0], wire.id[1]]
    {
        return Err(format!("{place}: another control page"));
    }
    let (data_fd, control_fd) = (held(data_fd)?, held(control_fd)?);
    Ok(Inner { data: sealed, data_fd, control: memory, control_fd, id: wire.id, len })
}

fn held(fd: OwnedFd) -> Result<HeldFd, String> {
    HeldFd::new(fd).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_through_serde_to_the_same_mapping_and_wrong_ids_are_refused() {
        let data = SharedBytes::copy_from_slice(b"in place").unwrap();
        let mut encoded = Vec::new();
        crate::codec::encode_into(&data, &mut encoded).unwrap();
        assert!(data.inner.handing_off());
        let back: SharedBytes = crate::codec::decode(&encoded).unwrap();
        assert!(Arc::ptr_eq(&back.inner, &data.inner), "one mapping per process");
        assert!(!data.inner.handing_off(), "received");

        let me = my_pid();
        let (d, c) = (data.inner.data_fd.number(), data.inner.control_fd.number());
        let wire = |id, len| Wire { id, len, from: me, ticket: None, holders: vec![] };
        let wrong = wire([1, 2], 8);
        assert!(open_from(me, d, c, &wrong).err().unwrap().contains("other bytes"));
        let right = wire(data.inner.id, 8);
        let opened = open_from(me, d, c, &right).unwrap();
        assert_eq!(opened.bytes(), b"in place");
        let short = wire(data.inner.id, 7);
        assert!(open_from(me, d, c, &short).is_err(), "the length is checked");
    }

    #[test]
    fn a_value_sent_on_and_received_again_is_found_still_mapped() {
        let data = SharedBytes::copy_from_slice(b"again").unwrap();
        let mut sent = Vec::new();
        crate::codec::encode_into(&data, &mut sent).unwrap();
        let weak = Arc::downgrade(&data.inner);
        drop(data); // kept: its copy is on its way
        // Another process received the copy: only the keeping holds it now, with nothing on
        // its way, until this process next looks.
        weak.upgrade().unwrap().pending().fetch_sub(1, AcqRel);
        let back: SharedBytes = crate::codec::decode(&sent).unwrap();
        assert!(std::ptr::eq(Arc::as_ptr(&back.inner), weak.as_ptr()), "found, not reopened");
        assert_eq!(&back[..], b"again");
    }

    #[test]
    fn a_large_value_is_let_go_on_the_releasing_thread() {
        let before = RELEASED_APART.load(Acquire);
        let data = SharedBytes::new(RELEASE_APART_FROM, |out| out.fill(1)).unwrap();
        let weak = Arc::downgrade(&data.inner);
        let copy = data.clone();
        drop(data);
        assert_eq!(RELEASED_APART.load(Acquire), before, "not the last reference");
        drop(copy);
        let until = Instant::now() + Duration::from_secs(60);
        while RELEASED_APART.load(Acquire) == before {
            assert!(Instant::now() < until, "the releasing thread never let go of it");
            std::thread::yield_now();
        }
        assert_eq!(weak.strong_count(), 0, "unmapped and closed");
    }

    #[test]
    fn the_bytes_cannot_be_written_by_anyone() {
        let data = SharedBytes::copy_from_slice(&[7; 100]).unwrap();
        let fd = open_proc(my_pid(), data.inner.data_fd.number(), true);
        let mut file = std::fs::File::from(fd.unwrap());
        let err = std::io::Write::write_all(&mut file, b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "sealed against writes");
        assert!(data.iter().all(|&b| b == 7));
    }
}
