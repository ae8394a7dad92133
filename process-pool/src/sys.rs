//! Every operating-system call of the crate, and nothing else.
//!
//! The rest of the crate relies on this contract:
//!
//! - Every descriptor this module creates is close-on-exec. The only descriptors a worker
//!   inherits are the two it is given at [`REQUEST_FD`] and [`RESULT_FD`] and, where the
//!   kernel has `memfd`, the shared memory at [`SHARED_FD`] (plus 0, 1, 2).
//! - Memory shared with a worker ([`SharedMemory`]) is sealed at its size, so a worker can
//!   never make an access of this process fault; it is read and written only through atomics
//!   and bounds-checked copies, so a worker can change only the values read from it, and the
//!   callers check every index and length they take from it.
//! - Reads and writes retry on `EINTR`. A write to a non-blocking descriptor that would block
//!   returns `Ok(0)`.
//! - A child is reaped exactly once, by [`wait_child`]; until then its pid (and the process
//!   group it leads) cannot be reused, which is what makes [`kill`] and [`kill_group`] safe to
//!   call on a child this crate has not reaped.
//!
//! Linux only.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
use std::time::{Duration, Instant};

use taskpool_core::Exit;
use taskpool_core::backend::{leave_cpu, runnable_threads};

use crate::{at_exit, orphans};

/// The descriptor on which a worker reads requests.
pub(crate) const REQUEST_FD: RawFd = 3;
/// The descriptor on which a worker writes results.
pub(crate) const RESULT_FD: RawFd = 4;
/// The descriptor on which a worker finds the memory it shares with its parent, if it has
/// any: its status page and rings (it maps it and closes it).
pub(crate) const SHARED_FD: RawFd = 5;
/// The most descriptors [`spawn`] hands a worker.
const MAX_FDS: usize = 3;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// Retries `f` while it fails with `EINTR`.
fn retry<T: Copy + PartialOrd + Default>(mut f: impl FnMut() -> T) -> io::Result<T> {
    loop {
        let ret = f();
        if ret >= T::default() {
            return Ok(ret);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Makes a close-on-exec pipe: `(read end, write end)`.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two descriptors for pipe2 to fill.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((above_standard(read)?, above_standard(write)?))
}

/// `fd`, or, if it took the number of a standard descriptor (0, 1 or 2: a program that closed
/// those and did not open them again), a close-on-exec copy numbered 3 or more: the
/// program's own `println!` must never write into a pool's channel or shared memory. Every
/// descriptor a pool keeps goes through this.
pub(crate) fn above_standard(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 { Ok(fd) } else { dup_at_least(fd.as_fd(), 3) }
}

/// Grows a pipe's kernel buffer (best effort: the system limit may refuse it).
pub(crate) fn grow_pipe(fd: BorrowedFd<'_>, bytes: usize) {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: F_SETPIPE_SZ takes an int and only changes the pipe's capacity.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, bytes) };
}

/// The capacity in bytes of the pipe that `fd` is an end of (`F_GETPIPE_SZ`).
pub(crate) fn pipe_capacity(fd: BorrowedFd<'_>) -> io::Result<usize> {
    // SAFETY: F_GETPIPE_SZ takes no argument and only reads the pipe's capacity.
    let bytes = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) })?;
    Ok(bytes.unsigned_abs() as usize)
}

/// The size of a memory page, in bytes (4096 if the system will not say).
pub(crate) fn page_bytes() -> usize {
    // SAFETY: sysconf only reads a system setting.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).ok().filter(|&page| page > 0).unwrap_or(4096)
}

/// How many bytes wait unread in the pipe that `fd` is an end of (`FIONREAD`).
pub(crate) fn pipe_unread(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut bytes: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int, which `bytes` is.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut bytes) })?;
    Ok(bytes.unsigned_abs() as usize)
}

/// Switches a descriptor to non-blocking mode.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL read and set status flags of a descriptor we borrow.
    unsafe {
        let flags = check(libc::fcntl(fd.as_raw_fd(), libc::F_GETFL))?;
        check(libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK))?;
    }
    Ok(())
}

/// Duplicates `fd` to a close-on-exec descriptor numbered at least `min`.
fn dup_at_least(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor that nothing else owns.
    let new =
        check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) }).map_err(|e| {
            match e.raw_os_error() {
                // `min` is at or over the descriptor limit: the process is out of descriptors.
                Some(libc::EINVAL) => io::Error::from_raw_os_error(libc::EMFILE),
                _ => e,
            }
        })?;
    // SAFETY: `new` was just created and is owned by this call.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Reads into `buf`, retrying on `EINTR`. `Ok(0)` means end of file.
pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let n = retry(|| {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) }
    })?;
    Ok(n.unsigned_abs())
}

/// Reads at most `max` bytes (and no more than `buf` has room for without growing) onto the
/// end of `buf`, retrying on `EINTR`: the bytes land in its spare capacity, which is not
/// cleared first. Returns how many (0 at end of file).
pub(crate) fn read_appending(
    fd: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    let room = spare.len().min(max);
    let n = retry(|| {
        // SAFETY: `spare` is valid for writes of `room` bytes; read(2) writes only there.
        unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), room) }
    })?
    .unsigned_abs()
    .min(room);
    // SAFETY: read(2) initialized the first `n` bytes of the spare capacity, which holds
    // at least `room >= n` of them.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// Writes some of `buf`, retrying on `EINTR`. On a non-blocking descriptor that is full,
/// returns `Ok(0)`.
pub(crate) fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    match retry(|| {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
        unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) }
    }) {
        Ok(n) => Ok(n.unsigned_abs()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e),
    }
}

thread_local! {
    /// Whether this thread blocks SIGPIPE for good (see [`block_sigpipe_for_good`]).
    static SIGPIPE_BLOCKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// SIGPIPE alone, as a signal set.
fn sigpipe_set() -> libc::sigset_t {
    // SAFETY: sigemptyset and sigaddset fill the set, which is ours.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        set
    }
}

/// Blocks SIGPIPE on the calling thread for the rest of its life: for the pool's own threads,
/// which write to the pipes of workers that may have died (see [`write_to_child`]). A SIGPIPE
/// such a write raises stays pending on the thread, harmless. Programs the thread starts get
/// an empty signal mask (both ways of starting one set it).
pub(crate) fn block_sigpipe_for_good() {
    let set = sigpipe_set();
    // SAFETY: the set is ours; pthread_sigmask only reads it.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, ptr::null_mut()) };
    SIGPIPE_BLOCKED.set(true);
}

/// [`write`] to a pipe read by a child process, which may have died: fails with `EPIPE`
/// then, and never raises SIGPIPE, whatever the program's disposition for it (a program may
/// have set it back to the default, which would end it). On a thread of the program's own,
/// SIGPIPE is blocked for the write, and one the write raised is taken before it is unblocked.
pub(crate) fn write_to_child(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    if SIGPIPE_BLOCKED.get() {
        return write(fd, buf);
    }
    let set = sigpipe_set();
    // SAFETY: sigset_t is plain data; pthread_sigmask writes the old mask into it.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: both sets are ours.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) };
    let written = write(fd, buf);
    // SAFETY: `old` was filled by pthread_sigmask above.
    let was_blocked = unsafe { libc::sigismember(&old, libc::SIGPIPE) } == 1;
    if !was_blocked {
        if matches!(&written, Err(e) if e.raw_os_error() == Some(libc::EPIPE)) {
            let none = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: the set and the timeout are ours; a null info pointer is allowed. It
            // takes the SIGPIPE the write raised, pending on this thread, without waiting.
            unsafe { libc::sigtimedwait(&set, ptr::null_mut(), &none) };
        }
        // SAFETY: `old` is the mask pthread_sigmask saved above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut()) };
    }
    written
}

/// [`write_all`] with [`write_to_child`].
pub(crate) fn write_all_to_child(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<()> {
    write_all_with(fd, buf, write_to_child)
}

/// Writes all of `buf` to a blocking descriptor.
pub(crate) fn write_all(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<()> {
    write_all_with(fd, buf, write)
}

/// Writes all of `buf` with `write`, which writes some.
fn write_all_with(
    fd: BorrowedFd<'_>,
    mut buf: &[u8],
    write: impl Fn(BorrowedFd<'_>, &[u8]) -> io::Result<usize>,
) -> io::Result<()> {
    while !buf.is_empty() {
        let n = write(fd, buf)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// What to wait for on one descriptor in [`poll`].
#[derive(Clone, Copy)]
pub(crate) struct Interest<'a> {
    pub(crate) fd: BorrowedFd<'a>,
    pub(crate) read: bool,
    pub(crate) write: bool,
}

/// What [`poll`] saw on one descriptor.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct Ready {
    /// Readable, or at end of file, or in error: a read will not block.
    pub(crate) read: bool,
    /// Writable, or the reader is gone: a write will not block.
    pub(crate) write: bool,
}

/// Waits until one of `interests` is ready or `timeout` passes (`None`: no limit).
pub(crate) fn poll<const N: usize>(
    interests: [Interest<'_>; N],
    timeout: Option<Duration>,
) -> io::Result<[Ready; N]> {
    let mut fds = interests.map(|i| libc::pollfd {
        fd: i.fd.as_raw_fd(),
        events: (if i.read { libc::POLLIN } else { 0 }) | (if i.write { libc::POLLOUT } else { 0 }),
        revents: 0,
    });
    // A signal interrupts the wait: it goes on for what is left, not the whole timeout again
    // (a program whose signals come more often than the timeout would wait for ever).
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let nfds = libc::nfds_t::try_from(N).unwrap_or(libc::nfds_t::MAX);
    retry(|| {
        let ms = deadline.map_or(-1, |d| {
            let left = d.saturating_duration_since(Instant::now());
            // Round up so a deadline is never polled as already passed.
            libc::c_int::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(libc::c_int::MAX)
        });
        // SAFETY: `fds` is an array of N initialized pollfd structs that poll may write.
        unsafe { libc::poll(fds.as_mut_ptr(), nfds, ms) }
    })?;
    let gone = libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;
    Ok(fds.map(|p| Ready {
        read: p.revents & (libc::POLLIN | gone) != 0,
        write: p.revents & (libc::POLLOUT | gone) != 0,
    }))
}

/// An eventfd: a counter another thread bumps to wake a poller.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd returns a new descriptor or -1.
    let fd = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: `fd` was just created and is owned by this call.
    above_standard(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Bumps an eventfd, waking whoever polls it.
pub(crate) fn notify(fd: BorrowedFd<'_>) {
    let one = 1u64.to_ne_bytes();
    // An eventfd write only fails when the counter would overflow, which leaves it readable:
    // the wake-up happens either way.
    let _ = write(fd, &one);
}

/// Resets an eventfd after a wake-up.
pub(crate) fn drain(fd: BorrowedFd<'_>) {
    let mut buf = [0u8; 8];
    let _ = read(fd, &mut buf);
}

/// A child process started by [`spawn`]: its pid and, where the kernel has them, a pidfd.
///
/// The pidfd is what the crate watches and reaps through. Should the program reap the child
/// behind the crate's back (SIGCHLD set to `SIG_IGN` makes the kernel do it; so does a
/// `waitpid(-1)` of the program's own), [`wait_child`] reads its exit status from the pidfd.
/// (A child of `clone3` with no exit signal is not reaped that way, but `execve` gives every
/// process SIGCHLD as its exit signal again, so that only holds until the worker execs.)
#[derive(Debug)]
pub(crate) struct ChildProcess {
    pub(crate) pid: libc::pid_t,
    /// Readable once the process has ended; `None` where the kernel has no pidfds.
    pub(crate) pidfd: Option<OwnedFd>,
}

/// Makes [`spawn`] use `posix_spawn` (and `pidfd_open`) instead of `clone3`. Set once, when
/// `clone3` is refused (an old kernel, or a seccomp filter), or by the environment variable
/// `TASKPOOL_SPAWN_FALLBACK=1` (which tests of the fallback use).
static NO_CLONE3: AtomicBool = AtomicBool::new(false);
static SPAWN_MODE: std::sync::Once = std::sync::Once::new();

/// Whether [`spawn`] uses `clone3` (otherwise `posix_spawn`).
pub(crate) fn spawns_with_clone3() -> bool {
    SPAWN_MODE.call_once(|| {
        if std::env::var_os("TASKPOOL_SPAWN_FALLBACK").is_some_and(|v| v == "1") {
            NO_CLONE3.store(true, Ordering::Relaxed);
        }
    });
    !NO_CLONE3.load(Ordering::Relaxed)
}

/// Starts `exe` as a worker: `fds[i]` becomes its descriptor `3 + i` ([`REQUEST_FD`],
/// [`RESULT_FD`], and [`SHARED_FD`] if given; at most three), stdin is `/dev/null`, stdout and stderr are shared with this
/// process, every signal has its default action and none is blocked, and it leads a process
/// group of its own (so [`kill_group`] reaches what it starts).
///
/// Uses `clone3` with a pidfd (on x86-64): the child shares this process's memory on a stack
/// of its own while the calling thread waits (as `posix_spawn` does, so nothing is copied),
/// and makes only raw system calls until `execve`. Where `clone3` is refused, and on other
/// architectures, falls back to `posix_spawn` and `pidfd_open`; neither runs code of the
/// program in a copy of this process.
pub(crate) fn spawn(
    exe: &CStr,
    argv0: &CStr,
    env: &[CString],
    fds: &[BorrowedFd<'_>],
) -> io::Result<ChildProcess> {
    let child = spawn_unlisted(exe, argv0, env, fds)?;
    at_exit::started(child.pid);
    Ok(child)
}

/// As [`spawn`], for the undertaker (`undertaker.rs`): not listed among the children whose
/// groups are killed at exit.
pub(crate) fn spawn_unlisted(
    exe: &CStr,
    argv0: &CStr,
    env: &[CString],
    fds: &[BorrowedFd<'_>],
) -> io::Result<ChildProcess> {
    // Move the ends above the target numbers so that no dup below clobbers a source.
    let mut high = Vec::with_capacity(MAX_FDS);
    for fd in fds.iter().take(MAX_FDS) {
        high.push(dup_at_least(*fd, 10)?);
    }
    let sources: Vec<RawFd> = high.iter().map(AsRawFd::as_raw_fd).collect();
    let sources = &sources[..];
    let argv = [argv0.as_ptr(), ptr::null()];
    let envp: Vec<*const libc::c_char> =
        env.iter().map(|v| v.as_ptr()).chain(std::iter::once(ptr::null())).collect();
    let child = match spawns_with_clone3().then(|| spawn_clone3(exe, &argv, &envp, sources)) {
        Some(Err(e)) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
            NO_CLONE3.store(true, Ordering::Relaxed);
            spawn_posix(exe, &argv, &envp, sources)
        }
        Some(spawned) => spawned,
        None => spawn_posix(exe, &argv, &envp, sources),
    }?;
    Ok(child)
}

/// What the child of [`spawn_clone3`] needs, prepared before it exists, and where it says why
/// it could not exec.
struct Exec<'a> {
    exe: &'a CStr,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    sources: &'a [RawFd],
    /// The child's errno if it could not exec (0 if it did).
    error: AtomicI32,
}

/// Bytes of stack for the child of `clone3`, which only makes system calls.
const CHILD_STACK: usize = 32 * 1024;

#[cfg(target_arch = "x86_64")]
fn spawn_clone3(
    exe: &CStr,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    sources: &[RawFd],
) -> io::Result<ChildProcess> {
    let exec = Exec { exe, argv, envp, sources, error: AtomicI32::new(0) };
    // The child runs on a stack of its own, in this process's memory (CLONE_VM), while this
    // thread waits for it to exec or exit (CLONE_VFORK): as `posix_spawn` does, so nothing is
    // copied, however large this process is.
    let mut stack = vec![0u128; CHILD_STACK / 16];
    let mut pidfd: libc::c_int = -1;
    // SAFETY: clone_args is a plain struct of integers; zero is "not used" for every field.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD) as u64;
    args.pidfd = ptr::addr_of_mut!(pidfd) as u64;
    args.exit_signal = 0;
    args.stack = stack.as_mut_ptr() as u64;
    args.stack_size = (stack.len() * 16) as u64;
    let entry: extern "C" fn(*const Exec<'_>) -> ! = exec_child;
    // No signal may run a handler of this process in the child before it resets them.
    let ret = with_signals_blocked(|| {
        let ret: isize;
        // SAFETY: clone3 with a valid clone_args of the size given. The parent's path through the
        // asm is a plain system call. The child starts on its own aligned stack, with this
        // thread suspended (CLONE_VFORK) so that `exec` and everything it points to stay alive
        // and unchanged, and calls `exec_child`, which never returns; of this frame it only reads
        // `exec`.
        unsafe {
            std::arch::asm!(
                "syscall",
                "test rax, rax",
                "jnz 2f",
                "xor ebp, ebp",
                "and rsp, -16",
                "mov rdi, r12",
                "call r13",
                "ud2",
                "2:",
                inlateout("rax") libc::SYS_clone3 as isize => ret,
                in("rdi") ptr::addr_of_mut!(args),
                in("rsi") std::mem::size_of::<libc::clone_args>(),
                in("r12") ptr::addr_of!(exec),
                in("r13") entry,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    });
    drop(stack);
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(i32::try_from(-ret).unwrap_or(libc::EINVAL)));
    }
    let pid =
        libc::pid_t::try_from(ret).map_err(|_| io::Error::other("clone3 returned a bad pid"))?;
    // SAFETY: CLONE_PIDFD stored a new pidfd that nothing else owns.
    let pidfd = above_standard(unsafe { OwnedFd::from_raw_fd(pidfd) });
    // A pidfd that cannot be moved off a standard number is done without (as where the
    // kernel has none).
    let child = ChildProcess { pid, pidfd: pidfd.ok() };
    match exec.error.load(Ordering::Acquire) {
        0 => Ok(child),
        errno => {
            let _ = wait_child(&child, true);
            Err(io::Error::from_raw_os_error(errno))
        }
    }
}

/// Elsewhere than on x86-64, workers are started with `posix_spawn` (see [`spawn`]).
#[cfg(not(target_arch = "x86_64"))]
fn spawn_clone3(
    _exe: &CStr,
    _argv: &[*const libc::c_char],
    _envp: &[*const libc::c_char],
    _sources: &[RawFd],
) -> io::Result<ChildProcess> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// The child of `clone3`: resets signals, takes its descriptors and process group, and execs;
/// if it cannot, leaves its errno in `exec.error` and exits 127.
///
/// It runs in the parent's memory, on a stack of its own, while the parent's thread waits:
/// it makes only raw system calls (no allocation, no lock, no unwinding).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
extern "C" fn exec_child(exec: *const Exec<'_>) -> ! {
    // SAFETY: the parent passed a pointer to an `Exec` that outlives this child's use of it
    // (the parent is suspended until the exec or the exit).
    let exec = unsafe { &*exec };
    // SAFETY: raw system calls on integers and on pointers to memory the parent prepared.
    unsafe {
        // The kernel's sigaction for SIG_DFL: handler, flags, restorer and mask all zero.
        let default = [0u64; 4];
        for signal in 1..=64 {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::syscall(libc::SYS_rt_sigaction, signal, default.as_ptr(), 0usize, 8usize);
            }
        }
        let ok = libc::syscall(libc::SYS_setpgid, 0, 0) == 0
            && exec
                .sources
                .iter()
                .zip(REQUEST_FD..)
                .all(|(&from, to)| libc::syscall(libc::SYS_dup3, from, to, 0) == i64::from(to))
            && {
                let null = libc::syscall(
                    libc::SYS_openat,
                    libc::AT_FDCWD,
                    c"/dev/null".as_ptr(),
                    libc::O_RDONLY | libc::O_CLOEXEC,
                );
                // Descriptor 0 itself if this process has it closed: kept open through the
                // exec (dup3 refuses to copy a descriptor onto its own number).
                match null {
                    0 => libc::syscall(libc::SYS_fcntl, 0, libc::F_SETFD, 0) == 0,
                    _ => null > 0 && libc::syscall(libc::SYS_dup3, null, 0, 0) == 0,
                }
            };
        if ok {
            let empty = 0u64;
            libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &empty, 0usize, 8usize);
            libc::syscall(
                libc::SYS_execve,
                exec.exe.as_ptr(),
                exec.argv.as_ptr(),
                exec.envp.as_ptr(),
            );
        }
        exec.error.store((*libc::__errno_location()).max(1), Ordering::Release);
        libc::syscall(libc::SYS_exit_group, 127);
    }
    unreachable!("exit_group returned")
}

fn spawn_posix(
    exe: &CStr,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    sources: &[RawFd],
) -> io::Result<ChildProcess> {
    let dev_null = c"/dev/null";
    let mut actions = std::mem::MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
    let mut attr = std::mem::MaybeUninit::<libc::posix_spawnattr_t>::uninit();
    // SAFETY: the init calls fill the uninitialized structs before any other use, each is
    // destroyed exactly once below, and every pointer passed to posix_spawn (paths, argv,
    // envp) points to NUL-terminated data that outlives the call.
    let pid = unsafe {
        check_spawn(libc::posix_spawn_file_actions_init(actions.as_mut_ptr()))?;
        let actions = SpawnActions(actions.assume_init_mut());
        check_spawn(libc::posix_spawnattr_init(attr.as_mut_ptr()))?;
        let attr = SpawnAttr(attr.assume_init_mut());

        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        check_spawn(libc::posix_spawnattr_setsigmask(attr.0, &empty))?;
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        check_spawn(libc::posix_spawnattr_setsigdefault(attr.0, &all))?;
        check_spawn(libc::posix_spawnattr_setpgroup(attr.0, 0))?;
        let flags = libc::POSIX_SPAWN_SETSIGMASK
            | libc::POSIX_SPAWN_SETSIGDEF
            | libc::POSIX_SPAWN_SETPGROUP;
        check_spawn(libc::posix_spawnattr_setflags(
            attr.0,
            libc::c_short::try_from(flags).unwrap_or_default(),
        ))?;
        for (&from, to) in sources.iter().zip(REQUEST_FD..) {
            check_spawn(libc::posix_spawn_file_actions_adddup2(actions.0, from, to))?;
        }
        check_spawn(libc::posix_spawn_file_actions_addopen(
            actions.0,
            0,
            dev_null.as_ptr(),
            libc::O_RDONLY,
            0,
        ))?;

        let mut pid = 0;
        check_spawn(libc::posix_spawn(
            &mut pid,
            exe.as_ptr(),
            actions.0,
            attr.0,
            argv.as_ptr().cast(),
            envp.as_ptr().cast(),
        ))?;
        pid
    };
    Ok(ChildProcess { pid, pidfd: pidfd_open(pid) })
}

/// A pidfd for the child `pid`, or `None` where the kernel has none.
fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open returns a new descriptor (close-on-exec) or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = RawFd::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: `fd` was just created and is owned by this call.
    above_standard(unsafe { OwnedFd::from_raw_fd(fd) }).ok()
}

fn check_spawn(ret: libc::c_int) -> io::Result<()> {
    if ret == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(ret)) }
}

struct SpawnActions(*mut libc::posix_spawn_file_actions_t);

impl Drop for SpawnActions {
    fn drop(&mut self) {
        // SAFETY: the struct was initialized by posix_spawn_file_actions_init.
        unsafe { libc::posix_spawn_file_actions_destroy(self.0) };
    }
}

struct SpawnAttr(*mut libc::posix_spawnattr_t);

impl Drop for SpawnAttr {
    fn drop(&mut self) {
        // SAFETY: the struct was initialized by posix_spawnattr_init.
        unsafe { libc::posix_spawnattr_destroy(self.0) };
    }
}

/// Sends `signal` to the unreaped child `pid`.
pub(crate) fn kill(pid: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill has no memory effects; `pid` is an unreaped child, so it names our child.
    check(unsafe { libc::kill(pid, signal) }).map(drop)
}

/// Kills the process group that the unreaped child `pid` leads, with SIGKILL; returns
/// whether the group existed. Makes one system call, no allocation and takes no lock (it
/// runs in an exit handler).
pub(crate) fn kill_unreaped_group(pid: libc::pid_t) -> bool {
    // SAFETY: kill has no memory effects; `-pid` names the group our child leads (its id
    // cannot be reused while the child is unreaped, nor while its group has members).
    unsafe { libc::kill(-pid, libc::SIGKILL) == 0 }
}

/// Waits up to `limit` for `child` (one not listed among the children killed at exit: the
/// undertaker's first process) to end, and reaps it; kills and reaps it if it is still there
/// then. Returns whether it ended of itself.
pub(crate) fn reap_unlisted(child: &ChildProcess, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let ended = loop {
        if has_ended(child) {
            break true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        match &child.pidfd {
            Some(fd) => {
                let _ = poll([Interest { fd: fd.as_fd(), read: true, write: false }], Some(left));
            }
            None => std::thread::sleep(left.min(Duration::from_millis(1))),
        }
    };
    if !ended {
        kill_group(child);
    }
    let _ = waitid(child, libc::WEXITED | libc::__WALL);
    ended
}

/// In a process that the program started and waits for: forks, and returns `true` in the
/// new process, which the program never sees (adopted by init once this one exits), or
/// `false` in this one, which should then exit at once (also if the fork failed). Before
/// `main`, where a process runs one thread, as the undertaker does (`undertaker.rs`).
pub(crate) fn detach() -> bool {
    // SAFETY: fork in a process of one thread (before `main`): the copy may run any code.
    unsafe { libc::fork() == 0 }
}

/// Kills process group `group` with SIGKILL, for the undertaker (`undertaker.rs`): a group
/// of a program that has ended, whose leader was not reaped when it ended.
pub(crate) fn kill_group_of(group: libc::pid_t) {
    if group > 0 {
        // SAFETY: kill has no memory effects; `-group` names a process group.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    }
}

/// Has the C library call `handler` when the program exits normally (`exit`, or `main`
/// returning). If it cannot (no room left), `handler` is not called.
pub(crate) fn at_exit(handler: extern "C" fn()) {
    // SAFETY: `handler` takes no arguments, as `atexit` requires; an `extern "C"` function
    // cannot unwind into the C library (a panic in it aborts).
    unsafe { libc::atexit(handler) };
}

/// Kills `child` and its process group (what it started and did not detach) with SIGKILL.
///
/// Until this crate reaps it, a child (even a zombie) keeps its pid and its group's id from
/// being reused. A child the kernel reaped on its own (SIGCHLD ignored) no longer does once
/// its group is empty: the process alone is then signalled through its pidfd, which never
/// names another process.
pub(crate) fn kill_group(child: &ChildProcess) {
    if kill_unreaped_group(child.pid) {
        return;
    }
    match &child.pidfd {
        Some(fd) => {
            // SAFETY: pidfd_send_signal has no memory effects; a null siginfo is allowed.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    libc::SIGKILL,
                    ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
        }
        None => {
            let _ = kill(child.pid, libc::SIGKILL);
        }
    }
}

/// Reaps `child` if it has ended (waits for it if `block`); `None` if it runs.
///
/// A child the kernel reaped on its own (the program set SIGCHLD to `SIG_IGN`), or that the
/// program reaped itself (`waitpid(-1)`), is gone from `waitid`; its exit status is then
/// read from its pidfd (`PIDFD_GET_INFO`, Linux 6.15 and later).
pub(crate) fn wait_child(child: &ChildProcess, block: bool) -> io::Result<Option<Exit>> {
    if block {
        // Its group was killed: in a program that is pid 1, the members it leaves are its
        // children, and zombies until reaped (`orphans.rs`).
        orphans::reap_group(child.pid);
    }
    let flags = libc::WEXITED | libc::__WALL | if block { 0 } else { libc::WNOHANG };
    let (exit, reaped) = match waitid(child, flags) {
        // Reaped, whether or not its exit status can still be had (a kernel before 6.15
        // keeps none for the pidfd): its id may be another process's from now on.
        Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
            let pidfd = child.pidfd.as_ref();
            (pidfd.and_then(|fd| exit_from_pidfd(fd.as_fd())).map(Some).ok_or(e), true)
        }
        other => {
            let reaped = matches!(other, Ok(Some(_)));
            (other, reaped)
        }
    };
    if reaped {
        at_exit::reaped(child.pid);
    }
    exit
}

/// The exit status of the ended (and reaped) process of `pidfd`, if the kernel keeps it.
fn exit_from_pidfd(pidfd: BorrowedFd<'_>) -> Option<Exit> {
    /// `struct pidfd_info` up to `exit_code` (its first version, 64 bytes).
    const SIZE: libc::c_ulong = 64;
    const PIDFD_INFO_EXIT: u64 = 1 << 3;
    /// `_IOWR(PIDFS_IOCTL_MAGIC, 11, struct pidfd_info)`.
    const PIDFD_GET_INFO: libc::c_ulong = (3 << 30) | (SIZE << 16) | (0xFF << 8) | 11;
    let mut info = [0u64; 8];
    info[0] = PIDFD_INFO_EXIT;
    // SAFETY: `info` is 64 writable bytes, the struct size encoded in the request.
    let ret = unsafe { libc::ioctl(pidfd.as_raw_fd(), PIDFD_GET_INFO, info.as_mut_ptr()) };
    if ret != 0 || info[0] & PIDFD_INFO_EXIT == 0 {
        return None;
    }
    // `exit_code` is the `__s32` at byte 60, a wait status.
    let status = (info[7] >> 32) as u32;
    Some(exit_of(status.cast_signed()))
}

fn exit_of(status: libc::c_int) -> Exit {
    if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        Exit::Code(libc::WEXITSTATUS(status))
    }
}

/// Whether `child` has ended, without reaping it.
pub(crate) fn has_ended(child: &ChildProcess) -> bool {
    let flags = libc::WEXITED | libc::__WALL | libc::WNOHANG | libc::WNOWAIT;
    !matches!(waitid(child, flags), Ok(None))
}

fn waitid(child: &ChildProcess, flags: libc::c_int) -> io::Result<Option<Exit>> {
    let (kind, id) = match &child.pidfd {
        Some(fd) => (libc::P_PIDFD, fd.as_raw_fd().unsigned_abs()),
        None => (libc::P_PID, child.pid.unsigned_abs()),
    };
    // SAFETY: siginfo_t is a plain struct that waitid fills.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid siginfo_t for waitid to fill.
    retry(|| unsafe { libc::waitid(kind, id, &mut info, flags) })?;
    // SAFETY: waitid filled `info` for a child event (or left it zeroed: no child ended).
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(if info.si_code == libc::CLD_EXITED {
        Exit::Code(status)
    } else {
        Exit::Signal(status)
    }))
}

/// Reaps `pid`, a child of this process that has ended, without waiting; does nothing if it
/// has not ended or is no child of this process.
pub(crate) fn reap_ended(pid: libc::pid_t) {
    // SAFETY: siginfo_t is a plain struct that waitid fills.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::__WALL | libc::WNOHANG;
    // SAFETY: `info` is a valid siginfo_t for waitid to fill; P_PID names that one process.
    let _ = retry(|| unsafe { libc::waitid(libc::P_PID, pid.unsigned_abs(), &mut info, flags) });
}

/// Whether the process `pid` (an unreaped child) has begun to exit: its descriptors may be
/// closed already while it is not a zombie yet. Reads the flags in `/proc/PID/stat`.
pub(crate) fn is_exiting(pid: libc::pid_t) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return true };
    // The fields after the command name (which ends at the last ')') start with field 3; the
    // flags are field 9.
    let flags = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(6));
    flags.and_then(|f| f.parse::<u64>().ok()).is_none_or(|f| f & PF_EXITING != 0)
}

/// Whether `pid` (an unreaped child) is dying of a signal it got: killed, or crashed, and
/// then perhaps dumping core (with core dumps on, `ulimit -c`, the kernel writes its memory
/// out before the process ends, which takes seconds for a large one, and a SIGKILL meanwhile
/// cuts the core short). Reads the flags in `/proc/PID/stat` (`PF_SIGNALED`, which the
/// kernel sets on each thread it ends for a fatal signal, before the core dump) and
/// `CoreDumping` in `/proc/PID/status`. A process that ends otherwise (`exit`) is not.
pub(crate) fn is_dying_of_signal(pid: libc::pid_t) -> bool {
    const PF_SIGNALED: u64 = 0x400;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The flags are field 9, as in `is_exiting`.
    let flags = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(6));
    if flags.and_then(|f| f.parse::<u64>().ok()).is_some_and(|f| f & PF_SIGNALED != 0) {
        return true;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CoreDumping:"))
        .is_some_and(|v| v.trim() == "1")
}

/// The error number with which the kernel refused `memfd` (it lacks it, or a seccomp filter
/// forbids it), once it did; 0 before.
static NO_MEMFD: AtomicI32 = AtomicI32::new(0);

/// Whether the pool's transport may use shared memory: the kernel did not refuse `memfd`
/// before, and the environment variable `TASKPOOL_TRANSPORT=pipes` (which tests of the
/// fallback use) does not ask for pipes alone. Queues, pipes and shared bytes do not ask
/// this: they need `memfd` whatever carries the pool's frames.
pub(crate) fn has_memfd() -> bool {
    static PIPES_ONLY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let pipes_only = *PIPES_ONLY
        .get_or_init(|| std::env::var_os("TASKPOOL_TRANSPORT").is_some_and(|v| v == "pipes"));
    !pipes_only && NO_MEMFD.load(Ordering::Relaxed) == 0
}

/// A new anonymous `memfd` of `len` zeroed bytes, close-on-exec and open to seals: the one
/// place the crate makes one.
///
/// # Errors
///
/// `Unsupported` (with the kernel's reason) where the kernel refuses `memfd`, now or before;
/// or the error of sizing the file.
fn new_memfd(name: &CStr, len: usize) -> io::Result<OwnedFd> {
    let unavailable = |e: io::Error| {
        io::Error::new(io::ErrorKind::Unsupported, format!("memfd is unavailable here: {e}"))
    };
    let refused = NO_MEMFD.load(Ordering::Relaxed);
    if refused != 0 {
        return Err(unavailable(io::Error::from_raw_os_error(refused)));
    }
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: `name` is NUL-terminated; memfd_create returns a new descriptor or -1.
    let fd = match check(unsafe { libc::memfd_create(name.as_ptr(), flags) }) {
        Ok(fd) => fd,
        // A policy's refusal (a seccomp filter's `EPERM`, a security module's or, on Linux 6.3
        // to 6.5, `vm.memfd_noexec=2`'s `EACCES`) stands as long as the process does.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOSYS | libc::EPERM | libc::EACCES | libc::EINVAL)
            ) =>
        {
            NO_MEMFD.store(e.raw_os_error().unwrap_or(libc::ENOSYS), Ordering::Relaxed);
            return Err(unavailable(e));
        }
        Err(e) => return Err(e),
    };
    // SAFETY: `fd` was just created and is owned by this call.
    let fd = above_standard(unsafe { OwnedFd::from_raw_fd(fd) })?;
    let bytes = libc::off_t::try_from(len).map_err(io::Error::other)?;
    check_file_size_limit(len)?;
    // SAFETY: ftruncate sizes the file we own; the new bytes read as zero.
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), bytes) })?;
    Ok(fd)
}

/// Refuses a file of `len` bytes past this process's file-size limit (`RLIMIT_FSIZE`), as
/// `ftruncate` would, but without the SIGXFSZ that `ftruncate` raises there, whose default
/// action ends the program.
fn check_file_size_limit(len: usize) -> io::Result<()> {
    // SAFETY: rlimit is a plain struct that getrlimit fills.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `limit` is a valid rlimit for getrlimit to fill.
    check(unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit) })?;
    if limit.rlim_cur == libc::RLIM_INFINITY
        || u64::try_from(len).is_ok_and(|len| len <= limit.rlim_cur)
    {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!(
            "{len} bytes of shared memory exceed this process's file-size limit \
             (RLIMIT_FSIZE) of {} bytes",
            limit.rlim_cur
        ),
    ))
}

/// One `mmap` of a file shared with other processes, unmapped when dropped: what
/// [`SharedMemory`], [`SealedBytes`] and the writable mapping that fills a [`SealedBytes`] are
/// made of. It only owns the address range; how its bytes may be accessed is each owner's
/// rule.
struct Mapping {
    /// The first byte (never null, page-aligned).
    at: ptr::NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// Maps `len` bytes of the file on `fd` from its start, shared, with protection `prot`
    /// and `extra` flags (`MAP_POPULATE` or none).
    fn new(
        fd: BorrowedFd<'_>,
        len: usize,
        prot: libc::c_int,
        extra: libc::c_int,
    ) -> io::Result<Mapping> {
        let flags = libc::MAP_SHARED | extra;
        // SAFETY: a new shared mapping of a file the caller holds open, at an address the
        // kernel picks, overlapping nothing of this process; it stays valid after the
        // descriptor closes, until munmap in Drop.
        let at = unsafe { libc::mmap(ptr::null_mut(), len, prot, flags, fd.as_raw_fd(), 0) };
        if at == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let at = ptr::NonNull::new(at.cast()).ok_or_else(|| io::Error::other("null mapping"))?;
        Ok(Mapping { at, len })
    }

    /// Its first byte.
    #[inline]
    fn ptr(&self) -> *mut u8 {
        self.at.as_ptr()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the range mapped in `new`; every reference into it borrows
        // the owner of this value, so none outlives it.
        unsafe { libc::munmap(self.at.as_ptr().cast(), self.len) };
    }
}

/// The seals of every [`SharedMemory`]: its size is fixed for good, so a peer (or a task
/// running in it) can never shrink it under this process's mapping, which would make an
/// access fault.
const SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// Memory shared with another process: an anonymous `memfd` (no file anywhere), sealed
/// against shrinking and growing, that both map.
///
/// It is only ever accessed through atomics and through copies by raw pointer
/// ([`SharedMemory::read_at`], [`SharedMemory::write_at`]): never through a reference to
/// plain bytes, since the peer may change them at any time. Every offset is checked against
/// the mapping's length.
pub(crate) struct SharedMemory {
    mapping: Mapping,
}

// SAFETY: the mapping is only accessed through atomics and raw-pointer copies, from any
// thread; nothing in it is tied to a thread.
unsafe impl Send for SharedMemory {}
// SAFETY: as above.
unsafe impl Sync for SharedMemory {}

impl SharedMemory {
    /// `len` zeroed bytes (a multiple of 8) in a new sealed `memfd`, mapped and pre-faulted,
    /// and the descriptor (close-on-exec) to give the peer.
    pub(crate) fn create(name: &CStr, len: usize) -> io::Result<(SharedMemory, OwnedFd)> {
        Self::make(name, len, true)
    }

    /// As [`SharedMemory::create`], but pre-faults only the byte ranges in `populate` (each
    /// cut to `len`, widened to whole pages); the rest is allocated on first touch.
    pub(crate) fn create_populated(
        name: &CStr,
        len: usize,
        populate: &[std::ops::Range<usize>],
    ) -> io::Result<(SharedMemory, OwnedFd)> {
        let (memory, fd) = Self::make(name, len, false)?;
        memory.populate(populate);
        Ok((memory, fd))
    }

    /// A new sealed `memfd` of `len` zeroed bytes, mapped, wholly pre-faulted if `populate`.
    fn make(name: &CStr, len: usize, populate: bool) -> io::Result<(SharedMemory, OwnedFd)> {
        let fd = new_memfd(name, len)?;
        // SAFETY: F_ADD_SEALS only restricts what can be done to the file from now on.
        check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, SEALS) })?;
        Ok((Self::map_with(fd.as_fd(), len, populate)?, fd))
    }

    /// The length of the sealed `memfd` a parent passed on descriptor `fd` (in a worker), if
    /// it is one: what [`SharedMemory::adopt`] would accept.
    pub(crate) fn sealed_len(fd: RawFd) -> Option<usize> {
        // SAFETY: `stat` is a plain struct that fstat fills; a closed fd only makes it fail.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(fd, &mut stat) } != 0 {
            return None;
        }
        if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
            return None;
        }
        // SAFETY: F_GET_SEALS reads the seals of an open descriptor.
        let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
        if seals < 0 || seals & SEALS != SEALS {
            return None;
        }
        usize::try_from(stat.st_size).ok()
    }

    /// As [`SharedMemory::adopt`], but pre-faults only the byte ranges in `populate` (as in
    /// [`SharedMemory::create_populated`]).
    pub(crate) fn adopt_populated(
        fd: RawFd,
        len: usize,
        populate: &[std::ops::Range<usize>],
    ) -> Option<SharedMemory> {
        if Self::sealed_len(fd)? != len {
            return None;
        }
        // SAFETY: `fd` is open (fstat succeeded) and stays open during the call.
        let memory = Self::map_with(unsafe { BorrowedFd::borrow_raw(fd) }, len, false).ok()?;
        memory.populate(populate);
        Some(memory)
    }

    /// Pre-faults the pages of `ranges` (best effort: a kernel without
    /// `MADV_POPULATE_WRITE` gets them touched by reads instead).
    fn populate(&self, ranges: &[std::ops::Range<usize>]) {
        const PAGE: usize = 4096;
        for range in ranges {
            let start = range.start.min(self.len()) / PAGE * PAGE;
            let end = range.end.min(self.len()).next_multiple_of(PAGE).min(self.len());
            if start >= end {
                continue;
            }
            // SAFETY: the range lies inside the mapping (cut above) and starts on a page;
            // MADV_POPULATE_WRITE only faults the pages in, without changing their contents.
            let done = unsafe {
                libc::madvise(
                    self.mapping.ptr().add(start).cast(),
                    end - start,
                    libc::MADV_POPULATE_WRITE,
                )
            } == 0;
            if !done {
                for page in (start..end).step_by(PAGE) {
                    self.words(page, 1)[0].load(Ordering::Relaxed);
                }
            }
        }
    }

    /// Maps the memory a parent passed on descriptor `fd` (in a worker), if it is a sealed
    /// `memfd` of exactly `len` bytes.
    pub(crate) fn adopt(fd: RawFd, len: usize) -> Option<SharedMemory> {
        if Self::sealed_len(fd)? != len {
            return None;
        }
        // SAFETY: `fd` is open (fstat succeeded) and stays open during the call.
        Self::map(unsafe { BorrowedFd::borrow_raw(fd) }, len).ok()
    }

    fn map(fd: BorrowedFd<'_>, len: usize) -> io::Result<SharedMemory> {
        // Pre-faulted: no access on a hot path ever takes a page fault.
        Self::map_with(fd, len, true)
    }

    fn map_with(fd: BorrowedFd<'_>, len: usize, populate: bool) -> io::Result<SharedMemory> {
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let populate = if populate { libc::MAP_POPULATE } else { 0 };
        Ok(SharedMemory { mapping: Mapping::new(fd, len, prot, populate)? })
    }

    /// Its length in bytes.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.mapping.len
    }

    /// Whether `count` items of `size` bytes at `offset` lie inside, aligned to `size`.
    fn holds(&self, offset: usize, size: usize, count: usize) -> bool {
        offset.is_multiple_of(size)
            && count
                .checked_mul(size)
                .and_then(|n| n.checked_add(offset))
                .is_some_and(|end| end <= self.len())
    }

    /// The `count` words at byte `offset`.
    ///
    /// # Panics
    ///
    /// If they do not lie inside, 8-aligned: a layout error of this crate.
    #[inline]
    pub(crate) fn words(&self, offset: usize, count: usize) -> &[AtomicU64] {
        assert!(self.holds(offset, 8, count), "words {offset}+{count} outside {}", self.len());
        // SAFETY: the range lies inside the mapping, 8-aligned (the mapping is page-aligned),
        // valid until Drop; the peer changes it only atomically or as plain bytes, which any
        // AtomicU64 may hold.
        unsafe { std::slice::from_raw_parts(self.mapping.ptr().add(offset).cast(), count) }
    }

    /// The 32-bit word at byte `offset`.
    ///
    /// # Panics
    ///
    /// If it does not lie inside, 4-aligned: a layout error of this crate.
    pub(crate) fn word32(&self, offset: usize) -> &AtomicU32 {
        assert!(self.holds(offset, 4, 1), "word {offset} outside {}", self.len());
        // SAFETY: as in `words`, for one 4-aligned 32-bit word.
        unsafe { &*self.mapping.ptr().add(offset).cast::<AtomicU32>() }
    }

    /// Copies `src` to byte `offset`; `false` (nothing copied) if it does not fit.
    pub(crate) fn write_at(&self, offset: usize, src: &[u8]) -> bool {
        if !self.holds(offset, 1, src.len()) {
            return false;
        }
        // SAFETY: the destination lies inside the mapping (checked above) and cannot overlap
        // `src`, a slice of this process's private memory. It is written through a raw
        // pointer, never a reference: the peer may touch the same bytes (it breaks the
        // protocol then), which changes only their values.
        unsafe {
            ptr::copy_nonoverlapping(src.as_ptr(), self.mapping.ptr().add(offset), src.len())
        };
        true
    }

    /// Copies bytes from byte `offset` into `dst`; `false` (nothing copied) if they do not
    /// lie inside.
    pub(crate) fn read_at(&self, offset: usize, dst: &mut [u8]) -> bool {
        if !self.holds(offset, 1, dst.len()) {
            return false;
        }
        // SAFETY: the source lies inside the mapping (checked above) and cannot overlap `dst`.
        // It is read through a raw pointer, never a reference: a peer writing meanwhile can
        // change only the values copied, and any byte is a valid u8. The caller checks what
        // it parses from them.
        unsafe {
            ptr::copy_nonoverlapping(self.mapping.ptr().add(offset), dst.as_mut_ptr(), dst.len())
        };
        true
    }

    /// Copies the `len` bytes at byte `offset` onto the end of `buf`, into room it has
    /// already (its spare capacity, not cleared first); `false` (nothing copied) if they do
    /// not lie inside or `buf` has not the room.
    pub(crate) fn read_appending(&self, offset: usize, len: usize, buf: &mut Vec<u8>) -> bool {
        if !self.holds(offset, 1, len) || buf.capacity() - buf.len() < len {
            return false;
        }
        // SAFETY: the source lies inside the mapping (checked above) and is read through a
        // raw pointer, as in `read_at`; the destination is `len` bytes of `buf`'s spare
        // capacity (checked above), which cannot overlap the mapping. Once they are copied
        // they are initialized, so the length may cover them.
        unsafe {
            ptr::copy_nonoverlapping(
                self.mapping.ptr().add(offset),
                buf.as_mut_ptr().add(buf.len()),
                len,
            );
            buf.set_len(buf.len() + len);
        }
        true
    }
}

impl std::fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMemory").field("len", &self.mapping.len).finish()
    }
}

/// The seals of a [`SealedBytes`]: nothing about the file can change any more, its contents
/// included.
const FROZEN: libc::c_int = SEALS | libc::F_SEAL_WRITE;
/// Where a [`SealedBytes`]'s data starts in its file: after one page of header.
pub(crate) const SEALED_DATA_AT: usize = 4096;

/// Bytes in a `memfd` sealed against every change (`F_SEAL_WRITE` among its seals), mapped
/// read-only: no process can change them any more, by any means, so they are read in place
/// through a plain reference. The file holds a header page, then the data.
pub(crate) struct SealedBytes {
    /// The mapping of the whole file (never empty: it starts with the header page).
    mapping: Mapping,
}

// SAFETY: the mapping is read-only and its contents sealed: any thread may read it.
unsafe impl Send for SealedBytes {}
// SAFETY: as above.
unsafe impl Sync for SealedBytes {}

impl SealedBytes {
    /// A new sealed file of `header` (at most a page), then `len` bytes that `fill` writes
    /// (they start zeroed), and the descriptor for other processes to open.
    pub(crate) fn create(
        name: &CStr,
        header: &[u8],
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> io::Result<(SealedBytes, OwnedFd)> {
        if header.len() > SEALED_DATA_AT {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let total = SEALED_DATA_AT.checked_add(len).ok_or_else(|| io::Error::other("too large"))?;
        let fd = new_memfd(name, total)?;
        {
            let prot = libc::PROT_READ | libc::PROT_WRITE;
            let writable = Mapping::new(fd.as_fd(), total, prot, libc::MAP_POPULATE)?;
            // SAFETY: the mapping is `total` bytes long, writable, and only this call knows
            // of the file: nothing else reads or writes it while these slices live.
            let all = unsafe { std::slice::from_raw_parts_mut(writable.ptr(), total) };
            let (head, data) = all.split_at_mut(SEALED_DATA_AT);
            head[..header.len()].copy_from_slice(header);
            fill(data);
        } // unmapped here (even if `fill` panicked): F_SEAL_WRITE needs no writable mapping
        retry_busy(SEAL_TRIES, || {
            // SAFETY: F_ADD_SEALS only restricts what can be done to the file from now on.
            check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, FROZEN) })
        })?;
        Ok((Self::map(fd.as_fd(), total)?, fd))
    }

    /// The sealed file on `fd` (opened from another process), if it is sealed as
    /// [`SealedBytes::create`] seals it and holds `len` bytes of data: `Ok(None)` if it is
    /// not, the error of mapping it if that fails (no room under a memory limit, say).
    pub(crate) fn adopt(fd: BorrowedFd<'_>, len: usize) -> io::Result<Option<SealedBytes>> {
        let Some(total) = SEALED_DATA_AT.checked_add(len) else { return Ok(None) };
        // SAFETY: `stat` is a plain struct that fstat fills; a closed fd only makes it fail.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } != 0 {
            return Ok(None);
        }
        let regular = stat.st_mode & libc::S_IFMT == libc::S_IFREG;
        if !regular || usize::try_from(stat.st_size).ok() != Some(total) {
            return Ok(None);
        }
        // SAFETY: F_GET_SEALS reads the seals of an open descriptor.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        if seals < 0 || seals & FROZEN != FROZEN {
            return Ok(None);
        }
        Self::map(fd, total).map(Some)
    }

    fn map(fd: BorrowedFd<'_>, total: usize) -> io::Result<SealedBytes> {
        // Small values are mapped whole at once (one system call instead of a fault per
        // page); large ones page by page as they are read, so a reader that looks at part of
        // a large value pays for that part only.
        let populate = if total <= POPULATE_UP_TO { libc::MAP_POPULATE } else { 0 };
        let mapping = Mapping::new(fd, total, libc::PROT_READ, populate)?;
        Ok(SealedBytes { mapping })
    }

    /// The whole file: the header page, then the data.
    pub(crate) fn file(&self) -> &[u8] {
        // SAFETY: the mapping is `len` bytes, readable until Drop, and its contents can never
        // change: the file is sealed against writes (F_SEAL_WRITE, checked or set before
        // mapping), so a shared reference to them is sound.
        unsafe { std::slice::from_raw_parts(self.mapping.ptr(), self.mapping.len) }
    }
}

/// How many times [`SealedBytes::create`] asks to seal a file against writes. The kernel
/// waits (up to ~150 ms) for references that others hold to the file's pages for a moment
/// (page migration, per-CPU caches of pages) and refuses with `EBUSY` if some remain: seen
/// for one 64 MiB value of the few dozen a run of the bench suite makes, on a 2-core VM whose
/// programs allocate huge pages; asked again, it seals.
const SEAL_TRIES: u32 = 5;

/// Calls `f` until it does not fail with `EBUSY`, at most `tries` times; returns what the
/// last call returned.
fn retry_busy<T>(tries: u32, mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut left = tries.max(1);
    loop {
        left -= 1;
        match f() {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && left > 0 => {}
            done => return done,
        }
    }
}

/// The largest sealed file [`SealedBytes`] maps with all its pages at once.
const POPULATE_UP_TO: usize = 2 << 20;

impl std::fmt::Debug for SealedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedBytes").field("len", &self.mapping.len).finish()
    }
}

/// The file behind descriptor `fd`: `(device, inode)`, if it is open.
pub(crate) fn identity(fd: RawFd) -> Option<(u64, u64)> {
    // SAFETY: `stat` is a plain struct that fstat fills; a closed fd only makes it fail.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd, &mut stat) } != 0 {
        return None;
    }
    Some((stat.st_dev, stat.st_ino))
}

/// A descriptor kept open only so that other processes can open the same file through
/// `/proc/PID/fd`, in a process whose task may close descriptors it did not open (as a daemon
/// closes all from 3 up). It remembers its file: it tells whether the number still names that
/// file, and closes the number only if it does, so a task that closed it costs neither an
/// abort nor the close of whatever reused the number.
pub(crate) struct HeldFd {
    fd: RawFd,
    file: (u64, u64),
}

impl HeldFd {
    /// Holds `fd`.
    ///
    /// # Errors
    ///
    /// `fstat` failed (the descriptor is then closed).
    pub(crate) fn new(fd: OwnedFd) -> io::Result<HeldFd> {
        let file = identity(fd.as_raw_fd()).ok_or_else(io::Error::last_os_error)?;
        Ok(HeldFd { fd: std::os::fd::IntoRawFd::into_raw_fd(fd), file })
    }

    /// Whether the number still names the file it was given for.
    pub(crate) fn is_intact(&self) -> bool {
        identity(self.fd) == Some(self.file)
    }

    /// The number, for another process to open through `/proc` (check
    /// [`HeldFd::is_intact`] first).
    pub(crate) fn number(&self) -> RawFd {
        self.fd
    }
}

impl Drop for HeldFd {
    fn drop(&mut self) {
        if self.is_intact() {
            // SAFETY: the number still names the file this value was given (and owned since);
            // nothing else of this crate closes it.
            unsafe { libc::close(self.fd) };
        }
    }
}

impl std::fmt::Debug for HeldFd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HeldFd").field(&self.fd).finish()
    }
}

/// Bytes of a transparent huge page (x86-64 and most 64-bit platforms).
const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back the whole huge pages within `memory` (this process's own, not
/// yet written, as a vector's spare capacity is) with transparent huge pages when they are
/// first written: one fault and one clearing of 2 MiB instead of 512 faults. Only advice:
/// where the kernel offers huge pages only on request (`madvise` in
/// `/sys/kernel/mm/transparent_hugepage/enabled`) it takes them, where it always or never
/// does it changes nothing, and a refusal is ignored. No byte of `memory` changes.
pub(crate) fn advise_huge_pages<T>(memory: &mut [std::mem::MaybeUninit<T>]) {
    let start = memory.as_mut_ptr() as usize;
    let first = start.next_multiple_of(HUGE_PAGE);
    let end = (start + size_of_val(memory)) / HUGE_PAGE * HUGE_PAGE;
    if end > first {
        // SAFETY: the range lies within `memory`, which this process owns and may write (an
        // exclusive borrow); the advice changes how its pages are backed, never its bytes.
        unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
    }
}

/// Asks the C allocator to give back to the kernel the memory it keeps free (glibc's
/// `malloc_trim`). glibc keeps a freed block of a few MiB on its heap for reuse: once it has
/// freed a block it had mapped on its own, it serves blocks up to that size (up to 32 MiB)
/// from the heap, and gives the heap back only when more than twice that is free at its top.
/// An idle worker that moved values of a few MiB would keep one of them resident for good.
/// A no-op where the allocator is not glibc's (and for a Rust global allocator of another
/// kind, whose memory this does not touch).
pub(crate) fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: `malloc_trim` takes no pointer; it walks the allocator's own free lists under
    // the allocator's locks and gives back only pages no allocation holds.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Sleeps while the shared 32-bit `word` holds `expected`, until [`futex_wake`] on it, a
/// signal, or `timeout`. Returns at once if it holds something else. Works across processes
/// that map the same memory.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let spec = timeout.map(|t| libc::timespec {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(t.subsec_nanos().cast_signed()),
    });
    let spec_ptr = spec.as_ref().map_or(ptr::null(), ptr::from_ref);
    // SAFETY: FUTEX_WAIT reads the word (a valid, aligned u32 that outlives the call) and the
    // optional relative timeout; it has no other memory effects.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, expected, spec_ptr);
    }
}

/// Wakes up to `count` sleepers of [`futex_wait`] on `word`, in any process.
pub(crate) fn futex_wake(word: &AtomicU32, count: i32) {
    // SAFETY: FUTEX_WAKE only uses the word's address as a key; no memory is accessed.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, count);
    }
}

/// Makes the descriptor `fd` close-on-exec, so that programs a task starts do not inherit it.
pub(crate) fn set_cloexec(fd: RawFd) {
    // SAFETY: F_SETFD only changes the descriptor's flags.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

/// How many `fork()`s (through the C library) this process is from the one that watched for
/// them first: 0 there, 1 in a copy of it, 2 in a copy of that copy.
static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_fork_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// Arranges for [`forked`] and [`fork_generation`] to tell a copy made by `fork()` from this
/// process. Once per process; later calls do nothing.
pub(crate) fn watch_forks() {
    static WATCH: std::sync::Once = std::sync::Once::new();
    // SAFETY: registers a handler that only adds to an atomic; it lives for the process.
    WATCH.call_once(|| unsafe {
        libc::pthread_atfork(None, None, Some(on_fork_child));
    });
}

/// Whether this process is a copy made by the C library's `fork()` (after [`watch_forks`]).
/// A copy made by a raw `fork` system call is not seen (checking the pid would cost a system
/// call per item).
#[inline]
pub(crate) fn forked() -> bool {
    fork_generation() != 0
}

/// Which copy this process is, as [`FORKS`] counts them: what a value made here records to
/// tell, later, that it was inherited by a copy made by `fork()` (after [`watch_forks`]).
#[inline]
pub(crate) fn fork_generation() -> u64 {
    FORKS.load(Ordering::Relaxed)
}

/// Moves the calling thread to another CPU it may run on, and leaves its allowed CPUs as
/// they were. Returns whether it moved; `false` when the thread may run on one CPU only, when
/// more threads of the machine are runnable than it may use CPUs (the machine is busy: a CPU
/// of its own is not to be had, and sharing one with its peer is then the cheaper
/// turn-taking), or when the kernel refused.
pub(crate) fn move_to_other_cpu() -> bool {
    leave_cpu(|cpus| runnable_threads().is_some_and(|n| n <= cpus)).is_some()
}

/// This process's id.
pub(crate) fn pid() -> u32 {
    std::process::id()
}

/// Whether the calling thread is the process's main thread (its thread id is the process's):
/// the thread whose end, as `main` returns, ends the process.
pub(crate) fn on_main_thread() -> bool {
    // SAFETY: gettid takes nothing and cannot fail.
    let tid = unsafe { libc::gettid() };
    u32::try_from(tid).is_ok_and(|tid| tid == pid())
}

/// The parent's process id.
pub(crate) fn parent_pid() -> u32 {
    // SAFETY: getppid cannot fail and has no memory effects.
    let ppid = unsafe { libc::getppid() };
    ppid.unsigned_abs()
}

/// Asks the kernel to SIGKILL this process when the thread that started it ends.
pub(crate) fn die_with_parent() -> io::Result<()> {
    let sigkill = libc::c_ulong::try_from(libc::SIGKILL).unwrap_or(9);
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and has no memory effects.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sigkill) }).map(drop)
}

/// Sets this thread's name as `ps` and `top` show it (truncated to 15 bytes).
pub(crate) fn set_process_name(name: &str) {
    let mut bytes: Vec<u8> = name.bytes().filter(|&b| b != 0).take(15).collect();
    bytes.push(0);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, bytes.as_ptr()) };
}

/// Closes every descriptor numbered `first` or above.
pub(crate) fn close_from(first: RawFd) {
    let first = first.unsigned_abs();
    // SAFETY: close_range only closes descriptors; the caller owns none of them any more.
    unsafe { libc::close_range(first, libc::c_uint::MAX, 0) };
}

/// A constructor of the program's `.init_array`, as the C library calls it.
type Constructor =
    unsafe extern "C" fn(libc::c_int, *const *const libc::c_char, *const *const libc::c_char);

unsafe extern "C" {
    /// The bounds of the program's `.init_array`, which the linker defines.
    static __init_array_start: [Constructor; 0];
    static __init_array_end: [Constructor; 0];
}

/// The constructors of the program that come after one of them in its `.init_array`, with
/// the arguments the C library called that one with: what the C library would run next,
/// before `main`.
#[derive(Debug)]
pub(crate) struct LaterConstructors {
    argc: libc::c_int,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    /// The index of the entry in `.init_array` (none found: none to run).
    position: Option<usize>,
}

impl LaterConstructors {
    /// The constructors after the entry at address `slot` of the program's `.init_array`,
    /// whose constructor the C library calls now with `argc`, `argv` and `envp`.
    pub(crate) fn after(
        slot: usize,
        argc: libc::c_int,
        argv: *const *const libc::c_char,
        envp: *const *const libc::c_char,
    ) -> LaterConstructors {
        let position = init_array().iter().position(|f| ptr::from_ref(f) as usize == slot);
        LaterConstructors { argc, argv, envp, position }
    }

    /// Runs them, in order, as the C library would have before `main`.
    pub(crate) fn run(self) {
        let Some(position) = self.position else { return };
        for &constructor in &init_array()[position + 1..] {
            // SAFETY: the C library would call each of these, in this order, with these
            // arguments once the one at `position` returned; the process has run nothing
            // in between but that constructor, which calls this and never returns.
            unsafe { constructor(self.argc, self.argv, self.envp) };
        }
    }
}

/// The program's `.init_array`.
fn init_array() -> &'static [Constructor] {
    // SAFETY: the linker places the two symbols at the start and the end of `.init_array`,
    // an array of constructors that stays mapped, unchanged after relocation, for the life
    // of the process; reading them takes no reference to memory outside it.
    unsafe {
        let start = ptr::addr_of!(__init_array_start).cast::<Constructor>();
        let end = ptr::addr_of!(__init_array_end).cast::<Constructor>();
        let len = usize::try_from(end.offset_from(start)).unwrap_or(0);
        std::slice::from_raw_parts(start, len)
    }
}

/// Where a process started from `/proc/self/exe` would find code of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// In the program's executable: starting it again starts this code.
    Executable,
    /// In a shared library the program loaded (a plugin, a Python extension): starting the
    /// executable again runs the host program's `main`.
    SharedLibrary,
    /// The program was started through its dynamic loader (`ld.so program`), which is what
    /// `/proc/self/exe` names: started again, the loader runs no program.
    Loader,
}

/// A segment of the running program, as its program header describes it: where the loader
/// put it (`start`, the object's base plus the header's `p_vaddr`) and how long it is.
struct Segment {
    kind: u32,
    start: usize,
    len: usize,
}

/// A program header, as `dl_phdr_info` points to them on this architecture.
#[cfg(target_pointer_width = "64")]
type ProgramHeader = libc::Elf64_Phdr;
#[cfg(target_pointer_width = "32")]
type ProgramHeader = libc::Elf32_Phdr;

/// `dl_iterate_phdr`'s callback: copies the segments of the first object it reports (the
/// program itself) into `data`, then stops.
unsafe extern "C" fn copy_program_segments(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: `dl_iterate_phdr` passes a valid `info` for this call, whose `dlpi_phdr` (when
    // not null) points to `dlpi_phnum` program headers; `data` is the `Vec<Segment>` that
    // `program_segments` passed.
    unsafe {
        let info = &*info;
        let segments = &mut *data.cast::<Vec<Segment>>();
        let headers: &[ProgramHeader] = if info.dlpi_phdr.is_null() {
            &[]
        } else {
            std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum))
        };
        let base = usize::try_from(info.dlpi_addr).unwrap_or(0);
        segments.extend(headers.iter().map(|header| Segment {
            kind: header.p_type,
            start: base.wrapping_add(usize::try_from(header.p_vaddr).unwrap_or(0)),
            len: usize::try_from(header.p_memsz).unwrap_or(0),
        }));
    }
    1
}

/// The segments of the running program; `None` if the C library reports no object (a static
/// program without the interface).
fn program_segments() -> Option<Vec<Segment>> {
    let mut segments = Vec::new();
    // SAFETY: the callback only reads what `dl_iterate_phdr` passes it and writes `segments`,
    // which outlives the call.
    let seen = unsafe {
        libc::dl_iterate_phdr(Some(copy_program_segments), ptr::addr_of_mut!(segments).cast())
    };
    (seen != 0).then_some(segments)
}

/// Whether the code at `address` (a function of this crate) is in the program's executable,
/// and whether `/proc/self/exe` names that executable.
pub(crate) fn placement_of(address: usize) -> Placement {
    let Some(segments) = program_segments() else {
        // Nothing reported: nothing to tell.
        return Placement::Executable;
    };
    let holds_address = segments.iter().any(|segment| {
        segment.kind == libc::PT_LOAD
            && (segment.start..segment.start.saturating_add(segment.len)).contains(&address)
    });
    if !holds_address {
        return Placement::SharedLibrary;
    }
    // The kernel names the interpreter it loaded in AT_BASE; a program that asks for one and
    // has none was loaded by it as a plain argument.
    let has_interpreter = segments.iter().any(|segment| segment.kind == libc::PT_INTERP);
    // SAFETY: getauxval only reads the auxiliary vector.
    if has_interpreter && unsafe { libc::getauxval(libc::AT_BASE) } == 0 {
        return Placement::Loader;
    }
    Placement::Executable
}

/// The ELF notes of the running program, as the loader mapped them (so read even where the
/// executable's file cannot be: one its user may run but not read), one segment each; none
/// if it has none or the C library reports no program.
pub(crate) fn program_notes() -> Vec<Vec<u8>> {
    let segments = program_segments().unwrap_or_default();
    let notes = segments.iter().filter(|segment| segment.kind == libc::PT_NOTE);
    notes
        .filter(|note| note.len > 0 && note.len <= 1 << 16 && note.start != 0)
        // SAFETY: a `PT_NOTE` header describes bytes that the loader mapped readable at the
        // object's base plus its `p_vaddr`, `p_memsz` long (notes are part of a loaded
        // segment), and the program's own segments stay mapped for as long as it runs.
        .map(|note| unsafe { std::slice::from_raw_parts(note.start as *const u8, note.len) })
        .map(<[u8]>::to_vec)
        .collect()
}

/// The CPUs the calling thread may run on (`None` if the kernel does not say, as on a machine
/// of more than 1024 CPUs).
pub(crate) fn thread_cpus() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is a plain bit set, valid zeroed.
    let mut cpus: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpus` is valid for writes of its size; pid 0 is the calling thread.
    let ret = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&cpus), &mut cpus) };
    (ret == 0).then_some(cpus)
}

/// Lets the calling thread run on `cpus`, as far as the kernel allows (best effort: a thread
/// may widen its own set to any CPU of its process's cpuset).
pub(crate) fn set_thread_cpus(cpus: &libc::cpu_set_t) {
    // SAFETY: `cpus` is valid for reads of its size; pid 0 is the calling thread.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(cpus), cpus) };
}

/// Puts `/dev/null` on descriptors 0, 1 and 2, whatever they were: for a process that
/// prints nothing and must not keep the program's output open after the program ended (a
/// shell waits for the end of a program's output).
pub(crate) fn null_standard_fds() {
    // SAFETY: opens /dev/null (a NUL-terminated path); the new descriptor is ours.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
    if null < 0 {
        return;
    }
    for fd in 0..=2 {
        if fd != null {
            // SAFETY: dup2 puts a copy of `null`, which is open, on `fd`, closing what was
            // there (standard descriptors, which this process no longer uses).
            unsafe { libc::dup2(null, fd) };
        }
    }
    if null > 2 {
        // SAFETY: `null` is the descriptor opened above, now copied where it is needed.
        unsafe { libc::close(null) };
    }
}

/// Opens `/dev/null` on each of descriptors 0, 1 and 2 that is closed, as the Rust runtime
/// does before `main` (which a worker never reaches): otherwise the next file, pipe or
/// shared memory the process opens takes that number, and prints land in it.
pub(crate) fn open_standard_fds() {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only reads a descriptor's flags; a closed one makes it fail.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            continue;
        }
        // SAFETY: opens /dev/null (a NUL-terminated path); the new descriptor is ours.
        let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        if null >= 0 && null != fd {
            // SAFETY: `null` is the descriptor just opened; dup2 puts a copy on `fd`, which
            // is closed, and the original is closed after.
            unsafe {
                libc::dup2(null, fd);
                libc::close(null);
            }
        }
    }
}

/// Ignores SIGPIPE, as a Rust `main` does, so a write to a closed pipe returns an error.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: setting a signal to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Keeps the terminal's job control from stopping this process: blocks SIGTTOU and SIGTTIN
/// on the calling thread, and so on every thread it starts later (each inherits its creator's
/// mask). A worker leads a process group of its own, which is not the terminal's foreground
/// group. Where the terminal stops background writers (`stty tostop`), a task's first line of
/// output would stop its worker for good, and so would any read from the terminal
/// (`/dev/tty`). The kernel lets a writer that blocks SIGTTOU write as the foreground does,
/// and fails the read of one that blocks SIGTTIN with `EIO`. Programs a task starts get an
/// empty signal mask (both of std's ways of starting one set it), so the terminal's rules
/// apply to them as to any background job.
pub(crate) fn ignore_terminal_stops() {
    // SAFETY: sigemptyset and sigaddset fill the set, which is ours; pthread_sigmask only
    // reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTTOU);
        libc::sigaddset(&mut set, libc::SIGTTIN);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, ptr::null_mut());
    }
}

extern "C" fn on_interrupt(_: libc::c_int) {}

/// Makes this process survive SIGINT, which a terminal's Ctrl-C sends to the whole process
/// group: a worker's fate is its parent's to decide. A handler that does nothing (rather than
/// `SIG_IGN`) keeps the default for programs a task starts, since exec resets handlers, and
/// `SA_RESTART` resumes most calls the signal interrupts.
pub(crate) fn survive_interrupts() {
    // SAFETY: `action` is fully initialized (zeroed, then the handler, flags and an empty
    // mask); the handler does nothing.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, ptr::null_mut());
    }
}

/// Whether `fd` is an open pipe.
pub(crate) fn is_pipe(fd: RawFd) -> bool {
    // SAFETY: `stat` is a plain struct that fstat fills; a closed fd only makes fstat fail.
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut stat) == 0 && stat.st_mode & libc::S_IFMT == libc::S_IFIFO
    }
}

/// Borrows one of the worker's fixed descriptors.
///
/// Only call in a worker, after [`is_pipe`] confirmed `fd` is open; the descriptor stays open
/// for the life of the process.
pub(crate) fn fixed_fd(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: the worker checked the descriptor is open and never closes it.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// Runs `f` with every signal blocked on this thread, then restores the mask: nothing runs a
/// handler of this process on this thread meanwhile, and a thread or child `f` starts begins
/// with every signal blocked (each inherits its creator's mask).
pub(crate) fn with_signals_blocked<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: sigset_t is a plain struct that sigfillset fills and pthread_sigmask reads and
    // writes; both sets are ours.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    let result = f();
    // SAFETY: `old` is the mask pthread_sigmask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut()) };
    result
}

/// Runs `f` (which starts one of the crate's threads in the program) with every signal
/// blocked on this thread but those a thread raises on itself (the faults SIGSEGV, SIGBUS,
/// SIGILL, SIGFPE, SIGTRAP and SIGSYS, and SIGABRT) and SIGPROF (a profiler's timer samples
/// the thread that runs), then restores the mask. A thread `f` starts inherits that mask, so
/// the kernel never gives it a signal sent to the whole process: those go to the program's
/// own threads, as they would without the pool. A program that waits for its signals
/// (`sigwait`, `signalfd`) blocks them in its threads, and a thread of the crate's that did
/// not would take them instead, at their default action (SIGTERM and SIGINT end the
/// program, SIGCHLD is lost), whenever it was started: the launcher and the releasing thread
/// live as long as the process, from the first pool, one-off or shared bytes on.
pub(crate) fn with_program_signals_blocked<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: sigset_t is a plain struct that sigfillset fills, sigdelset changes and
    // pthread_sigmask reads and writes; both sets are ours.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for own in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGILL,
            libc::SIGFPE,
            libc::SIGTRAP,
            libc::SIGSYS,
            libc::SIGABRT,
            libc::SIGPROF,
        ] {
            libc::sigdelset(&mut set, own);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, &mut old);
    }
    let result = f();
    // SAFETY: `old` is the mask pthread_sigmask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut()) };
    result
}

// The C library's standard streams, and how many bytes one holds unwritten (glibc and musl
// both have `__fpending`).
unsafe extern "C" {
    static mut stdout: *mut libc::FILE;
    static mut stderr: *mut libc::FILE;
    fn __fpending(stream: *mut libc::FILE) -> libc::size_t;
}

/// Writes out what the C library holds unwritten for standard output and error: what a
/// task's native code printed with `printf` and the like, which the C library buffers by
/// blocks on a pipe or a file. A stream with nothing pending costs a read of two pointers,
/// and no lock.
pub(crate) fn flush_c_output() {
    // SAFETY: `stdout` and `stderr` are the C library's own variables, which it sets before
    // any code of the process runs; they are read by value (a task may point them at other
    // streams, which is why they are read each time). `__fpending` only reads a stream's
    // buffer pointers, and `fflush` flushes a stream under its lock; both accept any stream
    // the C library made, which these are.
    unsafe {
        for stream in [ptr::addr_of!(stdout).read(), ptr::addr_of!(stderr).read()] {
            if !stream.is_null() && __fpending(stream) > 0 {
                libc::fflush(stream);
            }
        }
    }
}

/// Ends the process at once, without running destructors or exit handlers.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Clears an environment variable.
///
/// Only call while this process runs a single thread (before `main`, in a worker).
pub(crate) fn unset_env(name: &CStr) {
    // SAFETY: the caller guarantees no other thread reads or writes the environment now.
    unsafe { libc::unsetenv(name.as_ptr()) };
}

/// Whether this process runs in secure-execution mode (set-user-ID and the like), where an
/// inherited environment must not be trusted.
pub(crate) fn is_secure_execution() -> bool {
    // SAFETY: getauxval only reads the auxiliary vector.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// The cap [`limit_memory`] set on this process's address space, if it set one.
pub(crate) fn memory_limit() -> Option<u64> {
    Some(MEMORY_LIMIT.load(Ordering::Acquire)).filter(|&bytes| bytes != 0)
}

/// Caps this process's address space at `bytes` (`RLIMIT_AS`, soft and hard, so a task
/// cannot lift it), and tells the crash handlers (see [`arm_crash_flush`]).
pub(crate) fn limit_memory(bytes: u64) -> io::Result<()> {
    let limit = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
    // SAFETY: `limit` is a valid rlimit for setrlimit to read.
    check(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) })?;
    MEMORY_LIMIT.store(bytes, Ordering::Release);
    Ok(())
}

/// Sets the soft CPU-time limit (`RLIMIT_CPU`) of this process to `seconds` in all, but never
/// past the hard limit: the kernel sends SIGXCPU when the process's CPU time reaches it.
pub(crate) fn limit_cpu_time(seconds: u64) -> io::Result<()> {
    // SAFETY: rlimit is a plain struct that getrlimit fills.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `limit` is a valid rlimit for getrlimit to fill.
    check(unsafe { libc::getrlimit(libc::RLIMIT_CPU, &mut limit) })?;
    limit.rlim_cur = seconds.min(limit.rlim_max);
    // SAFETY: `limit` is a valid rlimit for setrlimit to read.
    check(unsafe { libc::setrlimit(libc::RLIMIT_CPU, &limit) }).map(drop)
}

/// What this process has used so far (`getrusage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ResourceUsage {
    /// CPU time in user mode, in nanoseconds.
    pub(crate) user_ns: u64,
    /// CPU time in the kernel on its behalf, in nanoseconds.
    pub(crate) system_ns: u64,
    /// The largest resident set it had, in bytes.
    pub(crate) peak_rss: u64,
}

impl ResourceUsage {
    /// CPU time, user plus system, in nanoseconds.
    pub(crate) fn cpu_ns(&self) -> u64 {
        self.user_ns.saturating_add(self.system_ns)
    }
}

/// This process's own peak resident memory in bytes (`VmHWM` in `/proc/self/status`), which
/// unlike `getrusage`'s does not count what the program that exec'd it had.
pub(crate) fn own_peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// What this process has used so far, or zeros if the kernel will not say.
pub(crate) fn resource_usage() -> ResourceUsage {
    let nanos = |t: libc::timeval| {
        let secs = u64::try_from(t.tv_sec).unwrap_or(0);
        let micros = u64::try_from(t.tv_usec).unwrap_or(0);
        secs.saturating_mul(1_000_000_000).saturating_add(micros * 1000)
    };
    // SAFETY: rusage is a plain struct that getrusage fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid rusage for getrusage to fill.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return ResourceUsage::default();
    }
    ResourceUsage {
        user_ns: nanos(usage.ru_utime),
        system_ns: nanos(usage.ru_stime),
        peak_rss: u64::try_from(usage.ru_maxrss).unwrap_or(0).saturating_mul(1024),
    }
}

// Crash-time flushing. A worker buffers results to batch its writes; if a task then crashes
// the process, results of tasks that already finished would be lost and those tasks blamed or
// re-run. So before each task the worker publishes its unwritten results here, and a handler
// for the fatal signals (and an exit handler, for a task that calls `exit`) writes them out
// before the process dies. The published bytes are not touched while a task runs.
//
// The worker also publishes the frames that say the task hit a limit. A task that uses up its
// CPU time gets SIGXCPU; one whose allocation fails under the memory cap aborts (Rust aborts
// on allocation failure, with no stable hook), and the handler tells that abort from others
// by the allocator's `ENOMEM` in `errno`, or the address space being within an eighth of the
// cap (see `memory_refused`). Either way the handler writes the
// matching frame after the results, then the process dies of the signal.
//
// While a task of a frame of single tasks runs, the worker's flusher may write the published
// results to the result ring first (see `flusher.rs`); one atomic state, `TASK`, says who
// writes them, so they go once, and the task's end learns whether they went.

/// Bytes published for a signal handler to write: a pointer and a length, set and cleared by
/// the worker's thread between tasks.
struct Published {
    ptr: AtomicPtr<u8>,
    len: AtomicUsize,
}

impl Published {
    const fn new() -> Self {
        Published { ptr: AtomicPtr::new(ptr::null_mut()), len: AtomicUsize::new(0) }
    }

    #[inline]
    fn publish(&self, bytes: &[u8]) {
        self.len.store(0, Ordering::Release);
        self.ptr.store(bytes.as_ptr().cast_mut(), Ordering::Release);
        self.len.store(bytes.len(), Ordering::Release);
    }

    #[inline]
    fn withdraw(&self) {
        self.len.store(0, Ordering::Release);
    }

    /// Writes the published bytes to the result pipe, once; returns whether any were
    /// published. Async-signal-safe: atomics and write(2) only.
    fn write_out(&self) -> bool {
        let len = self.len.swap(0, Ordering::AcqRel);
        let mut at = self.ptr.load(Ordering::Acquire);
        let mut left = len;
        while left > 0 && !at.is_null() {
            // SAFETY: `at..at+left` lies inside the bytes published, which the worker keeps
            // alive and unchanged until it withdraws them.
            let n = unsafe { libc::write(RESULT_FD, at.cast(), left) };
            if n <= 0 {
                let interrupted = io::Error::last_os_error().kind() == io::ErrorKind::Interrupted;
                if n < 0 && interrupted {
                    continue;
                }
                return true;
            }
            let n = n.unsigned_abs();
            left -= n;
            // SAFETY: `n <= left`, so the pointer stays inside the published bytes.
            at = unsafe { at.add(n) };
        }
        len > 0
    }
}

/// Result frames the worker has not written yet.
static PENDING: Published = Published::new();
/// The frame saying the running task ran out of memory; empty without a memory limit.
static ON_MEMORY: Published = Published::new();
/// The frame saying the running task used up its CPU time; empty without a CPU limit.
static ON_CPU_TIME: Published = Published::new();
/// The frame reporting the running task's panic that ends the process (in a program built
/// with `panic = "abort"`, or a panic that cannot unwind), published as the process is about
/// to abort (see `aborting_panic.rs`).
static ON_PANIC: Published = Published::new();
/// What the worker's thread does, and who may write the published results meanwhile: one
/// of the states below. Whoever writes them first moves it on, so they are written once.
static TASK: AtomicU32 = AtomicU32::new(BETWEEN);
/// Between tasks: nothing to claim.
const BETWEEN: u32 = 0;
/// A task runs: a writer that ends the process (a handler, the CPU-time watchdog) may claim
/// the published results.
const RUNNING: u32 = 1;
/// A task runs whose published results may also be written early, to the result ring, by
/// [`flush_early`] (armed with `early`).
const RUNNING_EARLY: u32 = 2;
/// [`flush_early`] is writing them.
const FLUSHING: u32 = 3;
/// [`flush_early`] wrote them; the task still runs.
const FLUSHED: u32 = 4;
/// A writer that ends the process claimed them.
const CLAIMED: u32 = 5;
/// Whether a thread other than the task's may claim the flush while the task runs (the
/// CPU-time watchdog, see [`let_other_threads_claim`]).
static CLAIMED_ELSEWHERE: AtomicBool = AtomicBool::new(false);
/// The address-space cap set by [`limit_memory`], or 0.
static MEMORY_LIMIT: AtomicU64 = AtomicU64::new(0);
/// The size of a memory page, read when the handlers are installed.
static PAGE_SIZE: AtomicU64 = AtomicU64::new(4096);

/// Publishes what to write if the process dies before [`disarm_crash_flush`]: `pending`
/// results, then `on_memory` if the task ran out of memory or `on_cpu_time` if it used up its
/// CPU time. Each must stay alive and unchanged until then. With `early`, another thread may
/// write `pending` to the result ring while the task runs ([`flush_early`]).
#[inline]
pub(crate) fn arm_crash_flush(pending: &[u8], on_memory: &[u8], on_cpu_time: &[u8], early: bool) {
    PENDING.publish(pending);
    if !on_memory.is_empty() {
        ON_MEMORY.publish(on_memory);
        // What the worker's own calls left in `errno` must not pass for the task's failed
        // allocation (see `memory_refused`).
        // SAFETY: `__errno_location` points to the calling thread's errno, valid for writes.
        unsafe { *libc::__errno_location() = 0 };
    }
    if !on_cpu_time.is_empty() {
        ON_CPU_TIME.publish(on_cpu_time);
    }
    TASK.store(if early { RUNNING_EARLY } else { RUNNING }, Ordering::Release);
}

/// Publishes the frame that reports the running task's panic, for the SIGABRT handler to
/// write after the results (a panic that ends the process, about to abort).
pub(crate) fn publish_on_panic(frame: &'static [u8]) {
    ON_PANIC.publish(frame);
}

/// Whether a task runs: between [`arm_crash_flush`] and [`disarm_crash_flush`], and no writer
/// that ends the process claimed the results. Async-signal-safe: one atomic load.
pub(crate) fn task_running() -> bool {
    !matches!(TASK.load(Ordering::Acquire), BETWEEN | CLAIMED)
}

/// Withdraws what [`arm_crash_flush`] published (`early` as it was armed). Returns whether
/// [`flush_early`] wrote the published results meanwhile: the worker then drops them.
///
/// If another thread claimed the flush while the task ran (see [`flush_for_cpu_time`]), it
/// is writing the published bytes and then kills the process: this thread waits for that
/// and never returns.
#[inline]
pub(crate) fn disarm_crash_flush(early: bool) -> bool {
    let flushed = if early || CLAIMED_ELSEWHERE.load(Ordering::Relaxed) {
        end_claimable_task()
    } else {
        TASK.store(BETWEEN, Ordering::Release);
        false
    };
    PENDING.withdraw();
    ON_MEMORY.withdraw();
    ON_CPU_TIME.withdraw();
    flushed
}

/// [`disarm_crash_flush`] when another thread may have claimed the results: waits while
/// [`flush_early`] writes them, parks for good if a writer that ends the process took them,
/// and returns whether they were written early.
#[inline(never)]
fn end_claimable_task() -> bool {
    let mut state = TASK.load(Ordering::Acquire);
    loop {
        match state {
            FLUSHING => {
                futex_wait(&TASK, FLUSHING, None);
                state = TASK.load(Ordering::Acquire);
            }
            CLAIMED => loop {
                std::thread::park();
            },
            _ => match TASK.compare_exchange(state, BETWEEN, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return state == FLUSHED,
                Err(now) => state = now,
            },
        }
    }
}

/// Makes [`disarm_crash_flush`] check, at each task's end, that no other thread claimed the
/// flush: from now on [`flush_for_cpu_time`] may be called.
pub(crate) fn let_other_threads_claim() {
    CLAIMED_ELSEWHERE.store(true, Ordering::Release);
}

/// For a writer that ends the process: claims the published results, waiting while
/// [`flush_early`] writes them, and returns the state it found. The caller writes them
/// unless that is [`FLUSHED`] (written already); a task ran if it is not [`BETWEEN`] or
/// [`CLAIMED`]. Async-signal-safe: atomics and `sched_yield` only.
fn claim_to_end() -> u32 {
    loop {
        let state = TASK.load(Ordering::Acquire);
        match state {
            // Short: a copy into the ring, or a wait for room the parent is making.
            // SAFETY: sched_yield has no memory effects.
            FLUSHING => unsafe {
                libc::sched_yield();
            },
            BETWEEN | CLAIMED => return state,
            _ => {
                let claimed =
                    TASK.compare_exchange(state, CLAIMED, Ordering::AcqRel, Ordering::Acquire);
                if claimed.is_ok() {
                    return state;
                }
            }
        }
    }
}

/// Writes the published results for a writer that ends the process, unless [`flush_early`]
/// wrote them (`claimed` is what [`claim_to_end`] returned). Async-signal-safe.
fn write_pending(claimed: u32) {
    if claimed == FLUSHED {
        PENDING.withdraw();
    } else {
        PENDING.write_out();
    }
}

/// For the CPU-time watchdog, once the running task has outlived its CPU time with SIGXCPU
/// ignored or blocked: if a task is still running, claims the flush and writes what the
/// SIGXCPU handler would (the pending results, then the frame that says the task used up its
/// CPU time), and returns `true`; the caller then kills the process. Returns `false` between
/// tasks. Only after [`let_other_threads_claim`], so the task's thread cannot go on once it
/// returns.
pub(crate) fn flush_for_cpu_time() -> bool {
    let claimed = claim_to_end();
    if matches!(claimed, BETWEEN | CLAIMED) {
        return false;
    }
    write_pending(claimed);
    ON_CPU_TIME.write_out();
    true
}

/// For the worker's flusher (see `flusher.rs`): if the running task was armed `early` and
/// its published results are not claimed, writes them with `write` (to the result ring) and
/// returns `true`; the worker's thread, at the task's end, learns that they were written.
/// Does nothing otherwise. If `write` fails (the parent is gone), exits the process.
pub(crate) fn flush_early(write: impl FnOnce(&[u8]) -> bool) -> bool {
    let claimed =
        TASK.compare_exchange(RUNNING_EARLY, FLUSHING, Ordering::AcqRel, Ordering::Relaxed);
    if claimed.is_err() {
        return false;
    }
    let len = PENDING.len.load(Ordering::Acquire);
    let at = PENDING.ptr.load(Ordering::Acquire);
    if len > 0 && !at.is_null() {
        // SAFETY: the bytes published for the running task stay alive and unchanged until the
        // worker's thread withdraws them, which it does only once the state has left
        // `FLUSHING` (`end_claimable_task` waits).
        let bytes = unsafe { std::slice::from_raw_parts(at.cast_const(), len) };
        if !write(bytes) {
            exit_now(0);
        }
    }
    TASK.store(FLUSHED, Ordering::Release);
    futex_wake(&TASK, 1);
    true
}

/// Whether a task's abort is an allocation that the memory cap refused: the allocator's last
/// request to the kernel (`mmap`, `mremap`, `brk`) failed with `ENOMEM`, which the aborting
/// thread's `errno` (read on entry to the handler) still says, or the address space is within
/// an eighth of the cap. The first catches a request larger than what is left of the cap,
/// however far below it the process is (a vector that doubles its capacity). Async-signal-safe.
fn memory_refused(errno: libc::c_int) -> bool {
    MEMORY_LIMIT.load(Ordering::Acquire) != 0 && (errno == libc::ENOMEM || near_memory_limit())
}

/// Whether this process's address space is within an eighth of the memory cap, read from
/// `/proc/self/statm` with raw system calls. Async-signal-safe.
fn near_memory_limit() -> bool {
    let limit = MEMORY_LIMIT.load(Ordering::Acquire);
    if limit == 0 {
        return false;
    }
    // SAFETY: the path is a NUL-terminated string; open has no other memory effects.
    let fd = unsafe { libc::open(c"/proc/self/statm".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return false;
    }
    let mut buf = [0u8; 64];
    // SAFETY: `buf` is valid for writes of its length; `fd` was just opened and is closed
    // right after.
    let n = unsafe {
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    let read = usize::try_from(n).unwrap_or(0).min(buf.len());
    // The first field is the size of the address space, in pages.
    let mut pages: u64 = 0;
    for &b in buf[..read].iter().take_while(|b| b.is_ascii_digit()) {
        pages = pages.saturating_mul(10).saturating_add(u64::from(b - b'0'));
    }
    let size = pages.saturating_mul(PAGE_SIZE.load(Ordering::Acquire));
    size >= limit - limit / 8
}

/// The lowest address of the stack of the worker's thread, which runs the tasks (0 if not
/// known): a fault in the page below it is a task overflowing its stack.
static STACK_LOW: AtomicUsize = AtomicUsize::new(0);

/// What the worker says on its standard error when a task overflowed its stack, as a Rust
/// program's own runtime does (the worker's handler replaces the runtime's).
const OVERFLOWED: &[u8] = b"taskpool worker: the task has overflowed its stack (SIGSEGV follows)\n";

/// Notes where the calling thread's stack ends, for [`overflowed`].
fn note_stack() {
    if let Some((low, _)) = this_stack() {
        STACK_LOW.store(low, Ordering::Release);
    }
}

/// The lowest address and the size in bytes of the calling thread's stack, as the C library
/// reports them (for the main thread: its limit, `ulimit -s`), or `None` if it cannot tell.
fn query_stack() -> Option<(usize, usize)> {
    // SAFETY: `attr` is filled by pthread_getattr_np before it is read, and destroyed once
    // (only if it was filled); `addr` and `size` are valid out-pointers.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let (mut addr, mut size) = (ptr::null_mut(), 0);
        let found = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        (found && !addr.is_null()).then_some((addr as usize, size))
    }
}

thread_local! {
    /// The calling thread's stack, as [`query_stack`] found it on first use: `Some(None)`
    /// when it could not tell.
    static STACK: std::cell::Cell<Option<Option<(usize, usize)>>> =
        const { std::cell::Cell::new(None) };
}

/// How many bytes of stack the calling thread has left below `here` (the address of a local
/// of the caller), and the stack's whole size; `None` if the thread's stack is not known, or
/// `here` is not in it (the caller runs on a stack a library made, as coroutines and
/// `stacker` do).
pub(crate) fn stack_left(here: usize) -> Option<(usize, usize)> {
    let (low, size) = this_stack()?;
    (low..low.saturating_add(size)).contains(&here).then(|| (here - low, size))
}

/// [`query_stack`], asked once per thread.
fn this_stack() -> Option<(usize, usize)> {
    STACK
        .try_with(|stack| match stack.get() {
            Some(known) => known,
            None => {
                let found = query_stack();
                stack.set(Some(found));
                found
            }
        })
        .ok()
        .flatten()
}

/// Whether the fault `info` describes is in the guard page below the worker thread's stack.
/// Async-signal-safe: reads only.
fn overflowed(info: *const libc::siginfo_t) -> bool {
    let low = STACK_LOW.load(Ordering::Acquire);
    if low == 0 || info.is_null() {
        return false;
    }
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler; for SIGSEGV and
    // SIGBUS its address field is set.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = usize::try_from(PAGE_SIZE.load(Ordering::Acquire)).unwrap_or(4096);
    (low.saturating_sub(page)..low).contains(&addr)
}

/// Whether the kernel itself raised the signal `info` describes, as it raises SIGXCPU for
/// the CPU-time limit, rather than a process with `kill` or `raise`. Async-signal-safe: reads
/// only.
fn sent_by_kernel(info: *const libc::siginfo_t) -> bool {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    !info.is_null() && unsafe { (*info).si_code } == libc::SI_KERNEL
}

extern "C" fn on_fatal_signal(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    // SAFETY: reads the calling thread's errno, which `__errno_location` points to; it is
    // async-signal-safe. Read first, before any call of this handler can change it.
    let errno = unsafe { *libc::__errno_location() };
    if matches!(signal, libc::SIGSEGV | libc::SIGBUS) && !forked() && overflowed(info) {
        // SAFETY: writes a constant to standard error; write is async-signal-safe.
        unsafe { libc::write(libc::STDERR_FILENO, OVERFLOWED.as_ptr().cast(), OVERFLOWED.len()) };
    }
    if signal == libc::SIGXCPU && !task_running() {
        // Between tasks, the worker's own work reached the soft limit just before it would
        // have been raised for the next task: no task's fault, and nothing to report. Or the
        // CPU-time watchdog claimed the flush, and is killing the process.
        return;
    }
    // A copy of the worker that a task forked holds a copy of the worker's results, which
    // the worker sends itself: the copy sends nothing (and claims nothing: its state is a
    // copy too).
    if !forked() {
        let claimed = claim_to_end();
        let in_task = !matches!(claimed, BETWEEN | CLAIMED);
        write_pending(claimed);
        if in_task && signal == libc::SIGXCPU {
            // The kernel's, for the CPU-time limit; one another process (or the task) sent
            // is a crash like any other signal.
            if sent_by_kernel(info) {
                ON_CPU_TIME.write_out();
            }
        } else if in_task && signal == libc::SIGABRT {
            // A task's panic that ends the process published its report; else an
            // allocation that the memory cap refused aborts.
            if !ON_PANIC.write_out() && memory_refused(errno) {
                ON_MEMORY.write_out();
            }
        }
    }
    // Die of this signal: with the default action back, the raised signal (blocked while
    // this handler runs) ends the process once the handler returns, and a fault re-faults.
    // SAFETY: `action` is zeroed (SIG_DFL, no flags, an empty mask); sigaction and raise are
    // async-signal-safe.
    unsafe {
        let action: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, &action, ptr::null_mut());
        libc::raise(signal);
    }
}

extern "C" fn on_exit() {
    // As in `on_fatal_signal`: a forked copy sends nothing.
    if !forked() {
        write_pending(claim_to_end());
    }
}

/// Installs the crash-time flush: handlers for the fatal signals and SIGXCPU, on an
/// alternate stack so a stack overflow is handled too, and an exit handler.
pub(crate) fn install_crash_flush() {
    const ALT_STACK: usize = 64 * 1024;
    // SAFETY: sysconf only reads a system setting.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if let Ok(page) = u64::try_from(page) {
        PAGE_SIZE.store(page, Ordering::Release);
    }
    note_stack();
    // The stack must outlive every signal: leak it, once per worker process, and keep its
    // address in a static, so that a leak checker (LeakSanitizer, which otherwise reports it
    // at every worker's exit and changes its exit code) finds it reachable. `#[used]`: a
    // static that nothing reads would be optimized away, with the store.
    #[used]
    static ALT_STACK_AT: AtomicPtr<u8> = AtomicPtr::new(ptr::null_mut());
    let stack: &'static mut [u8] = Vec::leak(vec![0u8; ALT_STACK]);
    ALT_STACK_AT.store(stack.as_mut_ptr(), Ordering::Release);
    let alt = libc::stack_t { ss_sp: stack.as_mut_ptr().cast(), ss_flags: 0, ss_size: ALT_STACK };
    // SAFETY: `alt` describes a leaked buffer that lives for the rest of the process.
    unsafe { libc::sigaltstack(&alt, ptr::null_mut()) };
    for signal in [
        libc::SIGSEGV,
        libc::SIGBUS,
        libc::SIGILL,
        libc::SIGFPE,
        libc::SIGABRT,
        libc::SIGTRAP,
        libc::SIGSYS,
        libc::SIGXCPU,
    ] {
        // SAFETY: `action` is fully initialized (zeroed, then the handler, flags and an empty
        // mask); the handler only calls async-signal-safe functions.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_fatal_signal
                as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                as libc::sighandler_t;
            action.sa_flags = libc::SA_ONSTACK | libc::SA_SIGINFO;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, ptr::null_mut());
        }
    }
    // SAFETY: `on_exit` is a plain function that lives for the whole process.
    unsafe { libc::atexit(on_exit) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits until `child` has ended, leaving it unreaped (a zombie, whose `/proc` entry
    /// stays).
    fn wait_ended_unreaped(child: &std::process::Child) {
        // SAFETY: siginfo_t is a plain struct that waitid fills.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOWAIT;
        // SAFETY: `info` is a valid siginfo_t for waitid to fill; P_PID names that one child.
        retry(|| unsafe { libc::waitid(libc::P_PID, child.id(), &mut info, flags) }).unwrap();
    }

    #[test]
    fn a_child_dying_of_a_signal_is_told_from_one_that_exits() {
        let pid = |child: &std::process::Child| libc::pid_t::try_from(child.id()).unwrap();
        let mut killed = std::process::Command::new("sleep").arg("1000").spawn().unwrap();
        let mut exited = std::process::Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
        assert!(!is_dying_of_signal(pid(&killed)), "it runs");
        killed.kill().unwrap();
        wait_ended_unreaped(&killed);
        wait_ended_unreaped(&exited);
        assert!(is_dying_of_signal(pid(&killed)), "killed");
        assert!(!is_dying_of_signal(pid(&exited)), "exited");
        killed.wait().unwrap();
        exited.wait().unwrap();
    }

    #[test]
    fn a_stack_is_known_only_where_the_thread_runs_on_its_own() {
        let size = 512 << 10;
        let (here, outside) = std::thread::Builder::new()
            .stack_size(size)
            .spawn(|| {
                let heap = Box::new(0u8);
                (stack_left(crate::codec::stack_here()), stack_left(&raw const *heap as usize))
            })
            .unwrap()
            .join()
            .unwrap();
        let (left, whole) = here.expect("a thread's own stack is known");
        assert!(whole >= size && left > 0 && left <= whole, "{left} of {whole}");
        // An address on a stack of its own (a coroutine's, in the heap) is not in the thread's.
        assert_eq!(outside, None);
        assert_eq!(stack_left(0), None);
    }

    /// Starts `exe` (with no arguments, stdin at end of file) on one of the two paths.
    fn start(exe: &CStr, with_clone3: bool) -> io::Result<ChildProcess> {
        let (request_r, _request_w) = pipe()?;
        let (_result_r, result_w) = pipe()?;
        let (_memory, memory_fd) = SharedMemory::create(c"taskpool-test", 4096)?;
        let fds = [request_r.as_raw_fd(), result_w.as_raw_fd(), memory_fd.as_raw_fd()];
        let high: Vec<OwnedFd> = fds
            .iter()
            // SAFETY: each descriptor is open for the duration of this call.
            .map(|&fd| dup_at_least(unsafe { BorrowedFd::borrow_raw(fd) }, 10))
            .collect::<io::Result<_>>()?;
        let sources: Vec<RawFd> = high.iter().map(AsRawFd::as_raw_fd).collect();
        let sources = &sources[..];
        let argv = [exe.as_ptr(), ptr::null()];
        let envp = [ptr::null()];
        if with_clone3 {
            spawn_clone3(exe, &argv, &envp, sources)
        } else {
            spawn_posix(exe, &argv, &envp, sources)
        }
    }

    #[test]
    fn both_paths_start_a_program_with_a_pidfd_and_report_how_it_ended() {
        for with_clone3 in [true, false] {
            let child = start(c"/bin/sh", with_clone3).unwrap();
            assert!(child.pidfd.is_some(), "clone3: {with_clone3}");
            assert_eq!(wait_child(&child, true).unwrap(), Some(Exit::Code(0)));
            assert!(has_ended(&child), "reaped");
        }
    }

    /// Sealing that the kernel refuses with `EBUSY` (pages it still holds for a moment) is
    /// asked again, up to the number of tries; any other failure, at once, is returned.
    #[test]
    fn a_busy_refusal_is_tried_again_and_other_failures_are_not() {
        let busy = || io::Error::from_raw_os_error(libc::EBUSY);
        let mut calls = 0;
        let sealed = retry_busy(5, || {
            calls += 1;
            if calls < 3 { Err(busy()) } else { Ok(calls) }
        });
        assert_eq!(sealed.unwrap(), 3);
        let mut calls = 0;
        let refused = retry_busy(5, || -> io::Result<()> {
            calls += 1;
            Err(busy())
        });
        assert_eq!((refused.unwrap_err().raw_os_error(), calls), (Some(libc::EBUSY), 5));
        let mut calls = 0;
        let other = retry_busy(5, || -> io::Result<()> {
            calls += 1;
            Err(io::Error::from_raw_os_error(libc::EPERM))
        });
        assert_eq!((other.unwrap_err().raw_os_error(), calls), (Some(libc::EPERM), 1));
    }

    /// A child the program reaped behind the crate's back (SIGCHLD set to `SIG_IGN`, or a
    /// `waitpid(-1)` of its own), where the kernel keeps no exit status for its pidfd (before
    /// Linux 6.15, or without pidfds): its exit is unknown, but it is reaped, so it is no
    /// longer listed. Before, it stayed listed (and with the undertaker) for good: one more
    /// pid per worker or one-off, whose group the exit handler and the undertaker killed
    /// although the id may name another process's group by then.
    #[test]
    fn a_child_reaped_elsewhere_is_forgotten_even_without_its_exit_status() {
        let started = start(c"/bin/sh", true).unwrap();
        at_exit::started(started.pid);
        // SAFETY: waits for our own child, as a program's `waitpid` would.
        let reaped = unsafe { libc::waitpid(started.pid, ptr::null_mut(), 0) };
        assert_eq!(reaped, started.pid);
        let without_pidfd = ChildProcess { pid: started.pid, pidfd: None };
        assert!(wait_child(&without_pidfd, true).is_err(), "no exit status to be had");
        assert!(!at_exit::listed(started.pid), "a reaped child is no longer listed");
    }

    #[test]
    fn a_held_descriptor_whose_number_was_reused_is_not_closed_again() {
        let (_a, a) = SharedMemory::create(c"taskpool-test", 4096).unwrap();
        let held = HeldFd::new(a).unwrap();
        assert!(held.is_intact());
        let (_b, b) = SharedMemory::create(c"taskpool-test", 4096).unwrap();
        // A task's doing, in one step: the number now names another file.
        // SAFETY: dup2 onto a number this test holds; it closes the file the number named.
        let number = unsafe { libc::dup2(b.as_raw_fd(), held.number()) };
        assert_eq!(number, held.number());
        assert!(!held.is_intact());
        drop(held);
        assert_eq!(identity(number), identity(b.as_raw_fd()), "the reused number is left open");
        // SAFETY: the number is open (checked above) and nothing else owns it.
        drop(unsafe { OwnedFd::from_raw_fd(number) });
    }

    /// The only test of the crash-time flush's state (a process-wide static): the flusher
    /// takes the published results once, only from a task armed `early`; the task's end
    /// waits while it writes and learns that it did; a writer that ends the process then
    /// finds them written.
    #[test]
    fn results_flushed_early_are_taken_once_and_the_task_end_learns_it() {
        use std::sync::mpsc;
        arm_crash_flush(b"abc", &[], &[], false);
        assert!(!flush_early(|_| unreachable!("not armed early")));
        assert!(!disarm_crash_flush(false));

        arm_crash_flush(b"abc", &[], &[], true);
        let mut written = Vec::new();
        assert!(flush_early(|bytes| {
            written.extend_from_slice(bytes);
            true
        }));
        assert_eq!(written, b"abc");
        assert!(!flush_early(|_| unreachable!("taken twice")));
        assert!(disarm_crash_flush(true), "the task's end learns they were written");
        assert!(!flush_early(|_| unreachable!("between tasks")));
        assert_eq!(claim_to_end(), BETWEEN, "nothing for a writer that ends the process");

        // The task ends while the flusher writes: its end waits for the write.
        arm_crash_flush(b"xyz", &[], &[], true);
        let (writing, wrote) = (mpsc::channel(), mpsc::channel::<()>());
        let flusher = std::thread::spawn(move || {
            flush_early(|bytes| {
                writing.0.send(bytes.to_vec()).unwrap();
                wrote.1.recv().unwrap();
                true
            })
        });
        assert_eq!(writing.1.recv().unwrap(), b"xyz");
        let (ended_tx, ended) = mpsc::channel();
        let (tid_tx, tid) = mpsc::channel();
        let task = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            ended_tx.send(disarm_crash_flush(true)).unwrap();
        });
        // The task's end waits while the flusher writes: its thread goes to sleep (in the
        // futex wait) without ending.
        let stat = format!("/proc/self/task/{}/stat", tid.recv().unwrap());
        let asleep = || {
            let state = std::fs::read_to_string(&stat).unwrap_or_default();
            state.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('S'))
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !asleep() {
            assert!(ended.try_recv().is_err(), "the task's end did not wait for the flusher");
            assert!(std::time::Instant::now() < deadline, "the task's end never went to sleep");
            std::thread::yield_now();
        }
        assert!(ended.try_recv().is_err(), "the task's end waits while the flusher writes");
        wrote.0.send(()).unwrap();
        assert!(flusher.join().unwrap());
        assert!(ended.recv().unwrap(), "then learns that they were written");
        task.join().unwrap();

        // Written early, then the task crashes: the handler finds them written.
        arm_crash_flush(b"abc", &[], &[], true);
        assert!(flush_early(|_| true));
        assert_eq!(claim_to_end(), FLUSHED);
        assert!(!flush_early(|_| unreachable!("claimed to end the process")));
        TASK.store(BETWEEN, Ordering::Release);
        PENDING.withdraw();
    }

    #[test]
    fn a_program_that_cannot_be_executed_is_an_error_on_the_clone3_path() {
        let err = start(c"/nonexistent/taskpool", true).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{err}");
    }
}

/// `count` words of a [`SharedMemory`] from a byte offset, checked to lie inside once, when
/// made, and then read without a check: for words read or written on every item.
#[derive(Debug)]
pub(crate) struct SharedWords {
    /// Kept so that the mapping stays while the words are read.
    _memory: std::sync::Arc<SharedMemory>,
    /// The address of the first word.
    first: usize,
    count: usize,
}

impl SharedWords {
    /// The `count` words at byte `offset` of `memory`.
    ///
    /// # Panics
    ///
    /// If they do not lie inside, 8-aligned: a layout error of this crate.
    pub(crate) fn new(memory: std::sync::Arc<SharedMemory>, offset: usize, count: usize) -> Self {
        let first = memory.words(offset, count).as_ptr() as usize;
        SharedWords { _memory: memory, first, count }
    }

    /// The words.
    #[inline]
    pub(crate) fn get(&self) -> &[AtomicU64] {
        // SAFETY: `new` checked (with `SharedMemory::words`) that the words lie inside the
        // mapping, 8-aligned; the mapping stays where it is while `self._memory` keeps it.
        unsafe { std::slice::from_raw_parts(self.first as *const AtomicU64, self.count) }
    }
}
