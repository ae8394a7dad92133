//! The spinning floor: a raw ping-pong between two processes through one shared page, each
//! side spinning on the other's word instead of sleeping. It is what a round trip between
//! processes costs when nobody has to be woken: the cost of moving two cache lines between
//! CPUs, with no system call on the way. The blocking floor (`pipe_floor.rs`) is the other
//! end: both sides sleep in `read(2)`, so every round trip pays two wake-ups.
//!
//! [`start`] creates an anonymous shared file (`memfd_create`), re-executes the current
//! binary with a private environment marker naming it (`/proc/<parent>/fd/<n>`), and both
//! processes map its first page. The page holds three words, each on its own cache line:
//!
//! - `request`: the parent writes round trip `n` there;
//! - `response`: the child copies `n` there once it sees it;
//! - `state`: who may do what (below).
//!
//! A child that spins forever would take a CPU from every other measurement of the run, so
//! it spins only while it is used: after [`IDLE`] without a request it goes to sleep in a
//! blocking read of its stdin (the doorbell), and the parent rings the doorbell (one byte)
//! before its next round trip, outside the timed part. `state` keeps the two from crossing:
//! the child may fall asleep only from `SPINNING`; the parent takes `SPINNING` to `CLAIMED`
//! before a round trip and back after it (so the child cannot fall asleep under it), and
//! takes `SLEEPING` to `WAKING` before ringing; the child, woken, stores `SPINNING`.
//!
//! The child exits on the `EXIT` request, when its stdin reaches end-of-file (the parent
//! closed it, or died) or when it finds itself orphaned: it never outlives its parent by
//! more than [`IDLE`].
#![allow(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::env;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{self, Child, ChildStdin, Command, Stdio};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{PoolSpec, Running, text};

/// Environment variable that marks a process as the spinning child; its value is the path
/// of the shared file.
const CHILD_ENV: &str = "__TASKPOOL_BENCH_SPIN_FLOOR_CHILD";

/// How long the child spins without a request before it goes to sleep.
const IDLE: Duration = Duration::from_millis(2);

/// How long the parent waits for an answer or a wake-up before it gives up.
const PATIENCE: Duration = Duration::from_secs(10);

/// The size of the shared mapping: one page.
const PAGE: usize = 4096;

/// The request that tells the child to exit.
const EXIT: u64 = u64::MAX;

/// `state`: the child spins, waiting for requests (or for the idle time to run out).
const SPINNING: u64 = 0;
/// `state`: the parent is in a round trip; the child must not fall asleep.
const CLAIMED: u64 = 1;
/// `state`: the child sleeps in a read of its stdin.
const SLEEPING: u64 = 2;
/// `state`: the parent rang the doorbell; the child will store `SPINNING` when it wakes.
const WAKING: u64 = 3;

/// One word on a cache line of its own, so that the two sides do not share a line they
/// both write.
#[repr(C, align(128))]
struct Line(AtomicU64);

/// The shared page's layout.
#[repr(C)]
struct Words {
    state: Line,
    request: Line,
    response: Line,
}

/// The first page of the shared file, mapped shared and writable.
struct Shared {
    words: NonNull<Words>,
}

impl Shared {
    /// Maps the first page of `file`, which must be at least a page long.
    fn map(file: &File) -> io::Result<Shared> {
        // SAFETY: a fresh shared mapping chosen by the kernel (no address hint), of a file
        // descriptor that is open for reading and writing; nothing else is affected.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let words =
            NonNull::new(address.cast::<Words>()).ok_or_else(|| io::Error::other("null"))?;
        Ok(Shared { words })
    }

    fn words(&self) -> &Words {
        // SAFETY: the mapping is a page long (larger than `Words`), page-aligned (more than
        // `Words` needs), lives until `self` is dropped, and is only ever accessed through
        // atomics, which are valid for any bit pattern (a fresh file reads as zeros).
        unsafe { self.words.as_ref() }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the page `map` mapped; no reference from `words` outlives
        // `self`.
        unsafe { libc::munmap(self.words.as_ptr().cast(), PAGE) };
    }
}

/// Creates an anonymous shared file of one page, closed on exec.
fn shared_file() -> io::Result<File> {
    // SAFETY: the name is a valid C string and the flags are valid; the call returns a new
    // descriptor or -1.
    let fd = unsafe { libc::memfd_create(c"taskpool-spin-floor".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nothing else.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.set_len(PAGE as u64)?;
    Ok(file)
}

/// Call first thing in `main()`: if this process was started as the spinning child, answer
/// requests until told to exit, then exit; otherwise return at once.
pub(crate) fn run_child_if_requested() {
    let Some(path) = env::var_os(CHILD_ENV) else { return };
    let code = match child(&path) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("spin floor child: {e}");
            1
        }
    };
    process::exit(code);
}

/// The child: answers every new request, sleeps on its stdin after [`IDLE`] without one.
fn child(path: &std::ffi::OsStr) -> io::Result<()> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let shared = Shared::map(&file)?;
    let words = shared.words();
    let mut doorbell = io::stdin().lock();
    let parent = std::os::unix::process::parent_id();
    // Requests count from 1: the first may be waiting already.
    let mut last = 0;
    let mut since = Instant::now();
    let mut spins = 0u32;
    loop {
        let request = words.request.0.load(Ordering::Acquire);
        if request != last {
            if request == EXIT {
                return Ok(());
            }
            last = request;
            words.response.0.store(request, Ordering::Release);
            since = Instant::now();
            continue;
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if !spins.is_multiple_of(1024) || since.elapsed() < IDLE {
            continue;
        }
        if std::os::unix::process::parent_id() != parent {
            return Ok(());
        }
        let asleep =
            words.state.0.compare_exchange(SPINNING, SLEEPING, Ordering::AcqRel, Ordering::Acquire);
        if asleep.is_ok() {
            let mut byte = [0u8; 1];
            if doorbell.read(&mut byte)? == 0 {
                return Ok(());
            }
            words.state.0.store(SPINNING, Ordering::Release);
        }
        since = Instant::now();
    }
}

/// The parent's side: the child, its doorbell and the shared page.
struct SpinFloor {
    child: RefCell<Child>,
    doorbell: RefCell<Option<ChildStdin>>,
    shared: Shared,
    /// The last request sent.
    sent: Cell<u64>,
    /// Keeps the shared file open until the child has opened it (it does so first thing).
    _file: File,
}

/// Starts the spinning child; `spec` is ignored (the floor has one peer process).
pub(crate) fn start(spec: &PoolSpec) -> Result<Box<dyn Running>, String> {
    let _ = spec;
    Ok(Box::new(SpinFloor::start().map_err(text)?))
}

impl SpinFloor {
    fn start() -> io::Result<SpinFloor> {
        let file = shared_file()?;
        let shared = Shared::map(&file)?;
        let path = format!("/proc/{}/fd/{}", process::id(), file.as_raw_fd());
        let mut child = Command::new(env::current_exe()?)
            .env(CHILD_ENV, path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let doorbell = child.stdin.take();
        let floor = SpinFloor {
            child: RefCell::new(child),
            doorbell: RefCell::new(doorbell),
            shared,
            sent: Cell::new(0),
            _file: file,
        };
        // The first round trip waits until the child has started and mapped the page.
        floor.round_trip().map_err(io::Error::other)?;
        Ok(floor)
    }

    /// Spins until `done` holds, checking now and then that the child still runs and that
    /// the wait has not run out of patience.
    fn spin_until(&self, what: &str, done: impl Fn() -> bool) -> Result<(), String> {
        let start = Instant::now();
        let mut spins = 0u32;
        while !done() {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1 << 16) {
                if let Ok(Some(status)) = self.child.borrow_mut().try_wait() {
                    return Err(format!("the spinning child exited ({status}) {what}"));
                }
                if start.elapsed() > PATIENCE {
                    return Err(format!("no answer within {} s {what}", PATIENCE.as_secs()));
                }
            }
        }
        Ok(())
    }

    /// Takes the child from spinning to claimed, waking it first if it sleeps.
    fn claim(&self) -> Result<(), String> {
        let state = &self.shared.words().state.0;
        let start = Instant::now();
        loop {
            match state.compare_exchange(SPINNING, CLAIMED, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(SLEEPING) => {
                    let woken = state.compare_exchange(
                        SLEEPING,
                        WAKING,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                    if woken.is_ok() {
                        self.ring()?;
                    }
                }
                Err(_) => std::hint::spin_loop(),
            }
            if start.elapsed() > PATIENCE {
                return Err("the spinning child did not wake up".to_owned());
            }
        }
    }

    /// Writes one byte to the child's stdin.
    fn ring(&self) -> Result<(), String> {
        let mut doorbell = self.doorbell.borrow_mut();
        let pipe = doorbell.as_mut().ok_or("the spin floor is shut down")?;
        pipe.write_all(&[1]).map_err(text)
    }

    /// One timed round trip: the child is claimed (and woken if it slept) first, untimed.
    fn round_trip(&self) -> Result<Duration, String> {
        self.claim()?;
        let words = self.shared.words();
        let n = self.sent.get() + 1;
        self.sent.set(n);
        let start = Instant::now();
        words.request.0.store(n, Ordering::Release);
        let answered =
            self.spin_until("to a round trip", || words.response.0.load(Ordering::Acquire) == n);
        let elapsed = start.elapsed();
        words.state.0.store(SPINNING, Ordering::Release);
        answered.map(|()| elapsed)
    }
}

impl Running for SpinFloor {
    fn noop(&self) -> Result<(), String> {
        self.round_trip().map(drop)
    }

    fn round_trip(&self) -> Result<Duration, String> {
        SpinFloor::round_trip(self)
    }
}

impl Drop for SpinFloor {
    fn drop(&mut self) {
        // A spinning child sees the exit request; a sleeping one sees end-of-file.
        self.shared.words().request.0.store(EXIT, Ordering::Release);
        drop(self.doorbell.borrow_mut().take());
        let _ = self.child.borrow_mut().wait();
    }
}
