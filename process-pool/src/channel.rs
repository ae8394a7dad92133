//! Channels: a bounded queue of messages (byte strings) in a sealed `memfd` that many
//! processes map, each putting and getting: the machinery under `Queue<T>` and `Pipe<T>`.
//!
//! | offset | what |
//! |---|---|
//! | 0 | magic `tpqueue2`; at 8, the channel's id (two random words); at 24, the most messages it holds; at 32, whether a message ever handed off handles or shared bytes |
//! | 64 | the lock word (`shared_lock.rs`) |
//! | 128 | `head`, `tail` (bytes read and written so far) and `count` (messages held), under the lock |
//! | 160 | `putters`, `getters`: how many processes the peer table counts in each role, under the lock |
//! | 192 | the not-empty event (`seq`, `sleepers`): getters sleep on it |
//! | 256 | the not-full event: putters sleep on it |
//! | 1024 | the peer table: per process, its pid and how many handles it holds to put and to get |
//! | 4096 | the data: messages as a `u32` length and the bytes, wrapping around |
//!
//! The contract:
//!
//! - Every change of `head`, `tail`, `count`, the peer table and its summary (`putters`,
//!   `getters`) is made under the lock, and
//!   published by plain stores in an order that leaves the data consistent at each step but
//!   one: `count` may lag behind `tail` or `head` when a holder dies between the two stores.
//!   A process that takes the lock over from a dead holder recounts the messages and the
//!   peers.
//! - Every position and length read from the memory is checked before it is used (`tail -
//!   head` within the capacity, a message's length within what is written); a channel that
//!   fails a check is [`Broken`] for the operation that saw it, and nothing is copied.
//!   Bytes are copied out before they are decoded.
//! - A waiter announces itself in `sleepers`, takes `seq`, checks its condition again, then
//!   sleeps on `seq` (a futex) for at most [`WATCH`]; whoever changes the state bumps `seq`
//!   and wakes the sleepers only if `sleepers` is not zero: no system call while nobody
//!   sleeps. A waiter killed asleep leaves `sleepers` too high, which costs its channel a
//!   futex wake per operation, never a lost wake-up.
//! - A process counts as a peer that puts (gets) while its slot holds handles or handed-off
//!   handles not yet received for that role, and it lives. The summary words say whether
//!   any process counts, so that a put, and a get that finds the channel empty, learn for
//!   one load that nobody is left on the other side. Whether a process lives is asked of the
//!   kernel (a read of `/proc` per peer) only by a waiter that slept [`WATCH`] in vain, and
//!   by a poll that found the channel full (empty), at most once per [`WATCH`] in each
//!   process: a killed peer, whose slot still counts its handles, is noticed by those, and
//!   until then a put with room succeeds.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::os::fd::OwnedFd;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicU32, AtomicU64, fence};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::doorbell::Spin;
use crate::shared_lock::{self, Guard, is_gone, my_pid};
use crate::sys::{self, HeldFd, SharedMemory};

/// Data bytes of a channel unless the user says otherwise.
pub(crate) const DEFAULT_BYTES: usize = 1 << 20;
/// The fewest data bytes a channel may have.
pub(crate) const MIN_BYTES: usize = 64;
// Version 2 added the peer summary: a process of an older build would not keep it up to date.
const MAGIC: u64 = u64::from_le_bytes(*b"tpqueue2");
const MAGIC_AT: usize = 0;
/// Set (to 1, never back) before the first message that hands off handles or shared bytes is
/// put: such messages must be received even when nobody will get them (see
/// [`Shared::discard_abandoned`]).
const HANDOFFS_AT: usize = 32;
const LOCK_AT: usize = 64;
const HEAD_AT: usize = 128;
const TAIL_AT: usize = 136;
const COUNT_AT: usize = 144;
const PUTTERS_AT: usize = 160;
const GETTERS_AT: usize = 168;
const NOT_EMPTY_AT: usize = 192;
const NOT_FULL_AT: usize = 256;
const PEERS_AT: usize = 1024;
const PEER_BYTES: usize = 32;
/// Processes that can hold a channel at once.
pub(crate) const MAX_PEERS: usize = 96;
const DATA_AT: usize = 4096;
/// The control page of a channel's memory (lock, counts, peers): what a process that opens
/// a channel another made pre-faults. Its data pages fault in as they are first touched, so
/// that receiving a handle does not cost a fault of every page of the queue (1 MiB by
/// default: about 100 us), most of which a task that puts a few messages never touches.
pub(crate) const CONTROL: std::ops::Range<usize> = 0..DATA_AT;
const _: () = assert!(PEERS_AT + MAX_PEERS * PEER_BYTES <= DATA_AT);
/// Bytes of a message's length prefix.
const FRAME: usize = 4;
/// How long a waiter sleeps before it checks that its peers live.
const WATCH: Duration = Duration::from_millis(20);

/// What a handle may do: put, get, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Roles {
    pub(crate) put: bool,
    pub(crate) get: bool,
}

impl Roles {
    pub(crate) const BOTH: Roles = Roles { put: true, get: true };
    pub(crate) const PUT: Roles = Roles { put: true, get: false };
    pub(crate) const GET: Roles = Roles { put: false, get: true };

    pub(crate) fn bits(self) -> u8 {
        u8::from(self.put) | (u8::from(self.get) << 1)
    }

    pub(crate) fn from_bits(bits: u8) -> Roles {
        Roles { put: bits & 1 != 0, get: bits & 2 != 0 }
    }
}

/// The channel's memory breaks its protocol: a position or length read from it is
/// impossible (a peer wrote over it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Broken;

/// Why a put did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PutFail {
    Full,
    Timeout,
    Disconnected,
    TooLarge,
    Broken,
}

/// What a blocking put or get waits with: its deadline, the peers it needs (getters for a
/// put, putters for a get), the bell it sleeps on, and its failure when the deadline passes.
struct Wait<F> {
    deadline: Option<Instant>,
    peer: Roles,
    bell: usize,
    timeout: F,
}

/// Why a get did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GetFail {
    Empty,
    Timeout,
    Disconnected,
    Broken,
}

impl From<Broken> for PutFail {
    fn from(_: Broken) -> Self {
        PutFail::Broken
    }
}

impl From<Broken> for GetFail {
    fn from(_: Broken) -> Self {
        GetFail::Broken
    }
}

/// A channel as one process maps it; shared by all of the process's handles to it.
pub(crate) struct Shared {
    memory: SharedMemory,
    /// Kept open so that other processes can open the same memory through `/proc`.
    fd: HeldFd,
    /// Where this process found the memory, `(pid, fd)`: more places for a receiver to try.
    origins: Vec<(u32, i32)>,
    id: [u64; 2],
    capacity: usize,
    max_messages: u64,
    /// This process's slot in the peer table, once it has one.
    slot: Mutex<Option<usize>>,
    /// Processes this one started that it handed handles off to, counted in their own slots
    /// ([`Shared::count_for`]): while one of them has not received them, this process keeps
    /// the memory open for it.
    children: Mutex<Vec<u32>>,
    /// When a poll that finds the channel full or empty may next ask the kernel whether the
    /// peers live: at most once per [`WATCH`], so that a polling loop costs no system call
    /// per poll.
    next_look: Mutex<Instant>,
    /// How this process receives, and drops, the value of a message nobody will get (see
    /// [`Shared::discard_abandoned`]): set by the first typed handle used here.
    discard: OnceLock<fn(&[u8])>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("id", &format_args!("{:016x}{:016x}", self.id[0], self.id[1]))
            .field("capacity", &self.capacity)
            .field("max_messages", &(self.max_messages != u64::MAX).then_some(self.max_messages))
            .finish_non_exhaustive()
    }
}

/// A fresh random id: keyed hashes of the time, the pid and a counter.
pub(crate) fn new_id() -> [u64; 2] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let word = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Relaxed));
        h.write_u32(my_pid());
        h.write_u128(std::time::SystemTime::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos()));
        h.finish()
    };
    [word(), word()]
}

impl Shared {
    /// A new channel of `bytes` data bytes holding at most `max_messages` messages.
    ///
    /// # Errors
    ///
    /// The kernel has no `memfd` or refused the memory, or `bytes` is out of range.
    pub(crate) fn create(bytes: usize, max_messages: u64) -> std::io::Result<Shared> {
        if !(MIN_BYTES..=u32::MAX as usize).contains(&bytes) || max_messages == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("a queue holds {MIN_BYTES} to {} bytes and at least one message", u32::MAX),
            ));
        }
        let len = (DATA_AT + bytes).next_multiple_of(8);
        let (memory, fd) = SharedMemory::create(c"taskpool-queue", len)?;
        let id = new_id();
        let words = memory.words(MAGIC_AT, 4);
        words[1].store(id[0], Relaxed);
        words[2].store(id[1], Relaxed);
        words[3].store(max_messages, Relaxed);
        words[0].store(MAGIC, Release);
        Ok(Shared::assemble(memory, HeldFd::new(fd)?, Vec::new(), id, max_messages))
    }

    /// The channel `id` in `memory` (mapped from `fd`, found at `origins`), if it is that
    /// channel.
    pub(crate) fn adopt(
        memory: SharedMemory,
        fd: OwnedFd,
        id: [u64; 2],
        origins: Vec<(u32, i32)>,
    ) -> Option<Shared> {
        if memory.len() < DATA_AT + MIN_BYTES {
            return None;
        }
        let words = memory.words(MAGIC_AT, 4);
        let found = [words[1].load(Relaxed), words[2].load(Relaxed)];
        if words[0].load(Acquire) != MAGIC || found != id {
            return None;
        }
        let max_messages = words[3].load(Relaxed).max(1);
        Some(Shared::assemble(memory, HeldFd::new(fd).ok()?, origins, id, max_messages))
    }

    /// The channel `id` in `memory` (held open by `fd`, found at `origins`), with nothing of
    /// this process's own yet: no peer slot, no children, no way to discard messages.
    fn assemble(
        memory: SharedMemory,
        fd: HeldFd,
        origins: Vec<(u32, i32)>,
        id: [u64; 2],
        max_messages: u64,
    ) -> Shared {
        Shared {
            capacity: memory.len() - DATA_AT,
            memory,
            fd,
            origins,
            id,
            max_messages,
            slot: Mutex::new(None),
            children: Mutex::new(Vec::new()),
            next_look: Mutex::new(Instant::now()),
            discard: OnceLock::new(),
        }
    }

    pub(crate) fn id(&self) -> [u64; 2] {
        self.id
    }

    /// Bytes of the whole memory.
    pub(crate) fn len(&self) -> usize {
        self.memory.len()
    }

    pub(crate) fn fd(&self) -> &HeldFd {
        &self.fd
    }

    /// Where this process found the memory: `(pid, fd)` of the processes it came from.
    pub(crate) fn origins(&self) -> &[(u32, i32)] {
        &self.origins
    }

    /// The largest message (encoded) that fits.
    pub(crate) fn max_message(&self) -> usize {
        self.capacity - FRAME
    }

    fn word(&self, at: usize) -> &AtomicU64 {
        &self.memory.words(at, 1)[0]
    }

    fn lock(&self) -> Result<Guard<'_>, Broken> {
        let guard = shared_lock::lock(self.memory.word32(LOCK_AT));
        if guard.took_over() {
            self.recount()?;
            self.publish_peers();
        }
        Ok(guard)
    }

    /// The positions, checked: `(head, tail)`.
    fn positions(&self) -> Result<(u64, u64), Broken> {
        let head = self.word(HEAD_AT).load(Acquire);
        let tail = self.word(TAIL_AT).load(Acquire);
        if tail.wrapping_sub(head) > self.capacity as u64 {
            return Err(Broken);
        }
        Ok((head, tail))
    }

    /// Where position `pos` lies, and the bytes from there to the end of the data.
    fn at(&self, pos: u64) -> (usize, usize) {
        let within = usize::try_from(pos % self.capacity as u64).unwrap_or(0);
        (DATA_AT + within, self.capacity - within)
    }

    fn copy_in(&self, pos: u64, bytes: &[u8]) -> Result<(), Broken> {
        let (at, to_end) = self.at(pos);
        let (front, back) = bytes.split_at(bytes.len().min(to_end));
        let ok = self.memory.write_at(at, front) && self.memory.write_at(DATA_AT, back);
        if ok { Ok(()) } else { Err(Broken) }
    }

    fn copy_out(&self, pos: u64, bytes: &mut [u8]) -> Result<(), Broken> {
        let (at, to_end) = self.at(pos);
        let split = bytes.len().min(to_end);
        let (front, back) = bytes.split_at_mut(split);
        let ok = self.memory.read_at(at, front) && self.memory.read_at(DATA_AT, back);
        if ok { Ok(()) } else { Err(Broken) }
    }

    /// The length of the message at `pos`, checked against the `used` bytes from there.
    fn message_len(&self, pos: u64, used: u64) -> Result<usize, Broken> {
        if used < FRAME as u64 {
            return Err(Broken);
        }
        let mut frame = [0; FRAME];
        self.copy_out(pos, &mut frame)?;
        let len = u32::from_le_bytes(frame);
        if u64::from(len) > used - FRAME as u64 {
            return Err(Broken);
        }
        Ok(len as usize)
    }

    /// After taking the lock over from a dead holder: counts the messages again.
    fn recount(&self) -> Result<(), Broken> {
        let (head, tail) = self.positions()?;
        let mut pos = head;
        let mut count = 0;
        while pos != tail {
            let len = self.message_len(pos, tail.wrapping_sub(pos))?;
            pos = pos.wrapping_add((FRAME + len) as u64);
            count += 1;
        }
        self.word(COUNT_AT).store(count, Release);
        Ok(())
    }

    /// Puts `message` if it fits now and some process still counts as a getter (one that
    /// was killed counts until a deep look, [`has_peer`](Self::has_peer), frees its slot).
    pub(crate) fn try_put(&self, message: &[u8]) -> Result<(), PutFail> {
        let need = FRAME + message.len();
        if need > self.capacity {
            return Err(PutFail::TooLarge);
        }
        let len = u32::try_from(message.len()).map_err(|_| PutFail::TooLarge)?;
        {
            let _guard = self.lock()?;
            // Read under the lock, where handles are counted: a put that follows the drop of
            // the last handle that can get is refused, not left for nobody to read.
            if self.peers(Roles::GET) == 0 {
                return Err(PutFail::Disconnected);
            }
            let (head, tail) = self.positions()?;
            let count = self.word(COUNT_AT).load(Acquire);
            let free = self.capacity as u64 - tail.wrapping_sub(head);
            if free < need as u64 || count >= self.max_messages {
                return Err(PutFail::Full);
            }
            self.copy_in(tail, &len.to_le_bytes())?;
            self.copy_in(tail.wrapping_add(FRAME as u64), message)?;
            self.word(TAIL_AT).store(tail.wrapping_add(need as u64), Release);
            self.word(COUNT_AT).store(count + 1, Release);
        }
        self.wake(NOT_EMPTY_AT);
        Ok(())
    }

    /// Puts `message` if it fits now, without waiting: [`try_put`](Self::try_put), and, when
    /// the channel is full, a look (deep at most once per [`WATCH`]) for a live getter, so
    /// that a loop that polls a full channel whose getters were killed ends.
    pub(crate) fn poll_put(&self, message: &[u8]) -> Result<(), PutFail> {
        match self.try_put(message) {
            Err(PutFail::Full) if !self.polled_peer(Roles::GET)? => Err(PutFail::Disconnected),
            done => done,
        }
    }

    /// Takes the oldest message if there is one, without waiting; once the channel is empty
    /// and no putter is left (looked for as by [`poll_put`](Self::poll_put)),
    /// [`GetFail::Disconnected`].
    pub(crate) fn poll_get(&self) -> Result<Vec<u8>, GetFail> {
        if let Some(message) = self.try_get()? {
            return Ok(message);
        }
        if self.polled_peer(Roles::PUT)? {
            return Err(GetFail::Empty);
        }
        // A last put may have landed since the look before: it is still read.
        self.try_get()?.ok_or(GetFail::Disconnected)
    }

    /// Takes the oldest message, if there is one.
    pub(crate) fn try_get(&self) -> Result<Option<Vec<u8>>, Broken> {
        let message = {
            let guard = self.lock()?;
            self.take(&guard)?
        };
        if message.is_some() {
            self.wake(NOT_FULL_AT);
        }
        Ok(message)
    }

    /// Under the lock: takes the oldest message, if there is one.
    fn take(&self, _guard: &Guard<'_>) -> Result<Option<Vec<u8>>, Broken> {
        let (head, tail) = self.positions()?;
        let used = tail.wrapping_sub(head);
        if used == 0 {
            return Ok(None);
        }
        let len = self.message_len(head, used)?;
        let mut message = vec![0; len];
        self.copy_out(head.wrapping_add(FRAME as u64), &mut message)?;
        let count = self.word(COUNT_AT).load(Acquire);
        self.word(HEAD_AT).store(head.wrapping_add((FRAME + len) as u64), Release);
        self.word(COUNT_AT).store(count.saturating_sub(1), Release);
        Ok(Some(message))
    }

    /// Notes, before it is put, a message that hands off handles or shared bytes: their
    /// senders keep them until a receiver decodes them (see [`Shared::discard_abandoned`]).
    pub(crate) fn carries_handoffs(&self) {
        if self.word(HANDOFFS_AT).load(Relaxed) == 0 {
            self.word(HANDOFFS_AT).store(1, Release);
        }
    }

    /// How this process decodes and drops the value of a message (the first typed handle
    /// used here says; later calls change nothing).
    pub(crate) fn discard_with(&self, discard: fn(&[u8])) {
        if self.discard.get().is_none() {
            let _ = self.discard.set(discard);
        }
    }

    /// Receives and drops the messages that nobody can get any more, if they may hand off
    /// handles or shared bytes: once no process counts as a getter (none holds a handle that
    /// gets, nor has one on its way), no message is put again, and the senders of those in
    /// the channel would keep what they handed off (a channel's memory, a value's pages and
    /// descriptors) until they exit. Decoded here, each is received as a getter would
    /// receive it, and the senders let go of it. A value that cannot be decoded (its sender
    /// is gone) is dropped as it is. Called as a handle is dropped.
    pub(crate) fn discard_abandoned(&self) {
        let Some(&discard) = self.discard.get() else { return };
        // A value's own `Deserialize` or `Drop` may panic: never while a panic unwinds, and
        // otherwise the panic is printed and goes no further (this runs in a handle's drop).
        if std::thread::panicking() {
            return;
        }
        while let Some(message) = self.take_abandoned() {
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| discard(&message)));
        }
    }

    /// The oldest message, taken, if nobody can get it any more and messages may hand off
    /// handles or shared bytes (see [`Shared::discard_abandoned`]).
    fn take_abandoned(&self) -> Option<Vec<u8>> {
        if self.word(HANDOFFS_AT).load(Acquire) == 0 {
            return None;
        }
        let message = {
            let guard = self.lock().ok()?;
            if self.peers(Roles::GET) != 0 {
                return None;
            }
            self.take(&guard).ok()??
        };
        self.wake(NOT_FULL_AT);
        Some(message)
    }

    /// A hint, without the lock: whether a message seems to wait.
    fn seems_nonempty(&self) -> bool {
        self.word(COUNT_AT).load(SeqCst) != 0
            || self.word(TAIL_AT).load(SeqCst) != self.word(HEAD_AT).load(SeqCst)
    }

    /// A hint, without the lock: whether `need` bytes seem to fit.
    fn seems_to_fit(&self, need: usize) -> bool {
        let used = self.word(TAIL_AT).load(SeqCst).wrapping_sub(self.word(HEAD_AT).load(SeqCst));
        used.saturating_add(need as u64) <= self.capacity as u64
            && self.word(COUNT_AT).load(SeqCst) < self.max_messages
    }

    fn event(&self, at: usize) -> (&AtomicU32, &AtomicU32) {
        (self.memory.word32(at), self.memory.word32(at + 4))
    }

    /// Wakes whoever sleeps on the event at `at`, with no system call if nobody does.
    fn wake(&self, at: usize) {
        let (seq, sleepers) = self.event(at);
        fence(SeqCst);
        if sleepers.load(Relaxed) != 0 {
            seq.fetch_add(1, SeqCst);
            sys::futex_wake(seq, i32::MAX);
        }
    }

    /// Wakes every waiter, to look at the peers again.
    pub(crate) fn wake_all(&self) {
        self.wake(NOT_EMPTY_AT);
        self.wake(NOT_FULL_AT);
    }

    /// Sleeps on the event at `at` until it is rung, `ready` says so, or `until`.
    fn sleep(&self, at: usize, ready: impl Fn() -> bool, until: Instant) {
        let (seq, sleepers) = self.event(at);
        sleepers.fetch_add(1, SeqCst);
        let ticket = seq.load(SeqCst);
        let left = until.saturating_duration_since(Instant::now());
        if !ready() && !left.is_zero() {
            sys::futex_wait(seq, ticket, Some(left));
        }
        sleepers.fetch_sub(1, SeqCst);
    }

    /// Puts `message`, waiting for room until `deadline` (forever if `None`).
    pub(crate) fn put(&self, message: &[u8], deadline: Option<Instant>) -> Result<(), PutFail> {
        let need = FRAME + message.len();
        let attempt = || match self.try_put(message) {
            Err(PutFail::Full) => Ok(None),
            done => done.map(Some),
        };
        let ready = || self.seems_to_fit(need);
        let wait =
            Wait { deadline, peer: Roles::GET, bell: NOT_FULL_AT, timeout: PutFail::Timeout };
        // Nobody left to get it: the message would never be read.
        self.wait(wait, ready, attempt, || Err(PutFail::Disconnected))
    }

    /// Takes the oldest message, waiting for one until `deadline` (forever if `None`).
    pub(crate) fn get(&self, deadline: Option<Instant>) -> Result<Vec<u8>, GetFail> {
        let attempt = || Ok(self.try_get()?);
        let ready = || self.seems_nonempty();
        let wait =
            Wait { deadline, peer: Roles::PUT, bell: NOT_EMPTY_AT, timeout: GetFail::Timeout };
        // A last put may have landed since the look before: it is still read.
        self.wait(wait, ready, attempt, || self.try_get()?.ok_or(GetFail::Disconnected))
    }

    /// The wait of a blocking put or get: `attempt`s it; looks once that a peer is there;
    /// spins a little while `ready` may soon hold; then sleeps on the wait's bell until the
    /// deadline, a wake-up or a watch period, and looks for the peer again (deeply once a
    /// watch period passed: a peer that died only the kernel can report). With no peer, it
    /// ends as `alone` says.
    fn wait<T, F: From<Broken>>(
        &self,
        wait: Wait<F>,
        ready: impl Fn() -> bool,
        mut attempt: impl FnMut() -> Result<Option<T>, F>,
        alone: impl FnOnce() -> Result<T, F>,
    ) -> Result<T, F> {
        let mut spin = Spin::default();
        let mut checked = false;
        loop {
            if let Some(done) = attempt()? {
                return Ok(done);
            }
            if !checked {
                if !self.has_peer(wait.peer, false)? {
                    return alone();
                }
                checked = true;
            }
            if spin.spin(&ready) {
                continue;
            }
            let now = Instant::now();
            if wait.deadline.is_some_and(|d| now >= d) {
                return Err(wait.timeout);
            }
            let watch = now + WATCH;
            let until = wait.deadline.map_or(watch, |d| d.min(watch));
            self.sleep(wait.bell, &ready, until);
            // Woken early: maybe the last peer dropped its handle. Slept in vain: maybe it
            // died, which only the kernel can say.
            if !self.has_peer(wait.peer, Instant::now() >= watch)? {
                return alone();
            }
        }
    }

    /// The words of peer slot `i`: pid, handles to put, to get, handed off to put, to get.
    fn peer(&self, i: usize) -> [&AtomicU32; 5] {
        let at = PEERS_AT + i * PEER_BYTES;
        std::array::from_fn(|k| self.memory.word32(at + 4 * k))
    }

    /// This process's slot (under the lock), claimed if it has none.
    fn own_slot(&self, guard: &Guard<'_>) -> Option<usize> {
        let me = my_pid();
        let mut cached = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = *cached {
            if self.peer(i)[0].load(Relaxed) == me {
                return Some(i);
            }
        }
        let i = self.slot_of(me, guard)?;
        *cached = Some(i);
        Some(i)
    }

    /// The slot of process `pid` (under the lock), claimed if it has none: a free one, or
    /// one of a process that ended.
    fn slot_of(&self, pid: u32, _guard: &Guard<'_>) -> Option<usize> {
        let pids: Vec<u32> = (0..MAX_PEERS).map(|i| self.peer(i)[0].load(Relaxed)).collect();
        let found = pids.iter().position(|&p| p == pid);
        let free = || pids.iter().position(|&p| p == 0);
        let i = found.or_else(free).or_else(|| pids.iter().position(|&p| is_gone(p)))?;
        let words = self.peer(i);
        if found.is_none() {
            for word in &words[1..] {
                word.store(0, Relaxed);
            }
            words[0].store(pid, Release);
        }
        Some(i)
    }

    /// Adds `delta` handles with `roles` to this process's slot (or `delta` handed off, not
    /// yet received, when `handed_off`). Returns `false` if the peer table is full.
    pub(crate) fn count(&self, roles: Roles, delta: i32, handed_off: bool) -> Result<bool, Broken> {
        let guard = self.lock()?;
        let Some(i) = self.own_slot(&guard) else { return Ok(false) };
        self.add(i, roles, delta, handed_off);
        Ok(true)
    }

    /// Counts one handle with `roles` handed off to `child`, a process this one started, in
    /// the child's own slot rather than in this process's: the child takes the count back as
    /// it receives the handle ([`Shared::received`] with its own pid), and should it die
    /// before, its slot is freed as any dead process's is. So a child killed before it read
    /// its argument does not leave the handle counted for ever. Returns `false` if the peer
    /// table is full.
    pub(crate) fn count_for(&self, child: u32, roles: Roles) -> Result<bool, Broken> {
        let guard = self.lock()?;
        let Some(i) = self.slot_of(child, &guard) else { return Ok(false) };
        self.add(i, roles, 1, true);
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        if !children.contains(&child) {
            children.push(child);
        }
        Ok(true)
    }

    /// Adds `delta` to the counts of slot `i` (under the lock) for `roles`: of handles held,
    /// or handed off if `handed_off`.
    fn add(&self, i: usize, roles: Roles, delta: i32, handed_off: bool) {
        let words = self.peer(i);
        let first = if handed_off { 3 } else { 1 };
        for (word, on) in [(words[first], roles.put), (words[first + 1], roles.get)] {
            if on {
                word.store(word.load(Relaxed).saturating_add_signed(delta), Relaxed);
            }
        }
        self.publish_peers();
    }

    /// A handle handed off by process `from` arrived here: no longer counted as on its way.
    pub(crate) fn received(&self, from: u32, roles: Roles) -> Result<(), Broken> {
        let _guard = self.lock()?;
        if let Some(i) = (0..MAX_PEERS).find(|&i| self.peer(i)[0].load(Relaxed) == from) {
            let words = self.peer(i);
            for (word, on) in [(words[3], roles.put), (words[4], roles.get)] {
                if on {
                    word.store(word.load(Relaxed).saturating_sub(1), Relaxed);
                }
            }
            self.publish_peers();
        }
        Ok(())
    }

    /// Whether this process has handed off handles not yet received: counted in its own
    /// slot, or in the slot of a child it started that lives and has not received them.
    pub(crate) fn handing_off(&self) -> bool {
        let Ok(_guard) = self.lock() else { return false };
        let slot = *self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let pending =
            |words: [&AtomicU32; 5]| words[3].load(Relaxed) != 0 || words[4].load(Relaxed) != 0;
        let own = slot.is_some_and(|i| {
            let words = self.peer(i);
            words[0].load(Relaxed) == my_pid() && pending(words)
        });
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        children.retain(|&child| {
            (0..MAX_PEERS)
                .map(|i| self.peer(i))
                .any(|words| words[0].load(Relaxed) == child && pending(words) && !is_gone(child))
        });
        own || !children.is_empty()
    }

    /// Whether some process holds a handle with `role` (one set). Without `deep`, as the
    /// summary says (one load). With `deep`, asks the kernel whether each such process lives,
    /// and frees the slots of the dead.
    fn has_peer(&self, role: Roles, deep: bool) -> Result<bool, Broken> {
        if !deep {
            return Ok(self.peers(role) != 0);
        }
        let _guard = self.lock()?;
        let mut freed = false;
        let mut found = false;
        for i in 0..MAX_PEERS {
            let words = self.peer(i);
            let pid = words[0].load(Relaxed);
            if pid == 0 || !Self::slot_has(&words, role) {
                continue;
            }
            if !is_gone(pid) {
                // One live peer is enough: the others are asked about at the next look.
                found = true;
                break;
            }
            words[0].store(0, Release);
            freed = true;
        }
        if freed {
            self.publish_peers();
        }
        Ok(found)
    }

    /// [`has_peer`](Self::has_peer) for a poll that found the channel full or empty: deep if
    /// the last deep look of this process was a [`WATCH`] ago.
    fn polled_peer(&self, role: Roles) -> Result<bool, Broken> {
        if !self.has_peer(role, false)? {
            return Ok(false);
        }
        let now = Instant::now();
        let deep = {
            let mut next = self.next_look.lock().unwrap_or_else(|e| e.into_inner());
            let due = now >= *next;
            if due {
                *next = now + WATCH;
            }
            due
        };
        if deep { self.has_peer(role, true) } else { Ok(true) }
    }

    /// Whether the peer words `words` count a handle with `role` (one set), held or handed
    /// off.
    fn slot_has(words: &[&AtomicU32; 5], role: Roles) -> bool {
        let (held, handed) = if role.put { (1, 3) } else { (2, 4) };
        words[held].load(Relaxed) != 0 || words[handed].load(Relaxed) != 0
    }

    /// How many processes the summary counts with `role` (one set).
    fn peers(&self, role: Roles) -> u64 {
        self.word(if role.put { PUTTERS_AT } else { GETTERS_AT }).load(Acquire)
    }

    /// Under the lock, after the peer table changed: counts again the processes in each role,
    /// for the summary that puts and gets read without scanning the table.
    fn publish_peers(&self) {
        let (mut putters, mut getters) = (0, 0);
        for i in 0..MAX_PEERS {
            let words = self.peer(i);
            if words[0].load(Relaxed) != 0 {
                putters += u64::from(Self::slot_has(&words, Roles::PUT));
                getters += u64::from(Self::slot_has(&words, Roles::GET));
            }
        }
        self.word(PUTTERS_AT).store(putters, Release);
        self.word(GETTERS_AT).store(getters, Release);
    }

    /// Messages waiting now (a snapshot).
    pub(crate) fn len_now(&self) -> usize {
        usize::try_from(self.word(COUNT_AT).load(Acquire)).unwrap_or(usize::MAX)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Frees this process's slot: it holds no handle any more.
        let Ok(_guard) = self.lock() else { return };
        let slot = *self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = slot {
            let words = self.peer(i);
            if words[0].load(Relaxed) == my_pid() {
                words[0].store(0, Release);
                self.publish_peers();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(bytes: usize, max: u64) -> Shared {
        let shared = Shared::create(bytes, max).unwrap();
        assert!(shared.count(Roles::BOTH, 1, false).unwrap());
        shared
    }

    #[test]
    fn messages_come_out_in_order_and_wrap_around() {
        let shared = channel(64, u64::MAX);
        for round in 0..50u8 {
            let a = vec![round; 20];
            let b = vec![round.wrapping_add(1); 3];
            shared.try_put(&a).unwrap();
            shared.try_put(&b).unwrap();
            assert_eq!(shared.try_get().unwrap().unwrap(), a);
            assert_eq!(shared.try_get().unwrap().unwrap(), b);
        }
        assert_eq!(shared.try_get().unwrap(), None);
    }

    #[test]
    fn a_full_channel_refuses_and_a_too_large_message_is_told_apart() {
        let shared = channel(64, 2);
        shared.try_put(b"one").unwrap();
        shared.try_put(b"two").unwrap();
        assert_eq!(shared.try_put(b"three"), Err(PutFail::Full), "two messages at most");
        assert_eq!(shared.try_put(&[0; 61]), Err(PutFail::TooLarge));
        assert_eq!(shared.max_message(), 60);
    }

    #[test]
    fn impossible_positions_and_lengths_are_broken_not_trusted() {
        let shared = channel(64, u64::MAX);
        shared.try_put(b"hello").unwrap();
        shared.word(TAIL_AT).store(1 << 40, Release);
        assert_eq!(shared.try_get(), Err(Broken));
        assert_eq!(shared.try_put(b"x"), Err(PutFail::Broken));
        shared.word(TAIL_AT).store(9, Release);
        shared.memory.write_at(DATA_AT, &1000u32.to_le_bytes());
        assert_eq!(shared.try_get(), Err(Broken), "a length past what was written");
    }

    #[test]
    fn a_getter_with_no_putter_left_is_disconnected_once_empty() {
        let shared = channel(128, u64::MAX);
        shared.try_put(b"last").unwrap();
        assert!(shared.count(Roles::PUT, -1, false).unwrap());
        assert_eq!(shared.get(None).unwrap(), b"last");
        assert_eq!(shared.get(None), Err(GetFail::Disconnected));
        assert!(shared.count(Roles::PUT, 1, true).unwrap());
        let soon = Instant::now() + Duration::from_millis(5);
        assert_eq!(shared.get(Some(soon)), Err(GetFail::Timeout), "a handle on its way counts");
    }

    #[test]
    fn a_lock_left_by_a_dead_holder_is_taken_over_and_the_count_repaired() {
        let shared = channel(128, u64::MAX);
        shared.try_put(b"a").unwrap();
        shared.try_put(b"bc").unwrap();
        // A holder that died between the tail and the count.
        shared.word(COUNT_AT).store(1, Release);
        shared.memory.word32(LOCK_AT).store((1 << 30) + 3, Release);
        assert_eq!(shared.try_get().unwrap().unwrap(), b"a");
        assert_eq!(shared.len_now(), 1);
    }
}
