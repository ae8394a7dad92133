//! Every operating-system call of the crate, and nothing else.
//!
//! The rest of the crate relies on this contract:
//!
//! - Every descriptor this module creates is close-on-exec. The only descriptors a worker
//!   inherits are the two it is given at [`REQUEST_FD`] and [`RESULT_FD`] (plus 0, 1, 2).
//! - Reads and writes retry on `EINTR`. A write to a non-blocking descriptor that would block
//!   returns `Ok(0)`.
//! - A child is reaped exactly once, by [`wait`] or [`try_wait`]; until then its pid cannot be
//!   reused, which is what makes [`kill`] safe to call on a pid this crate has not reaped.
//!
//! Linux only.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use taskpool_core::Exit;

/// The descriptor on which a worker reads requests.
pub(crate) const REQUEST_FD: RawFd = 3;
/// The descriptor on which a worker writes results.
pub(crate) const RESULT_FD: RawFd = 4;

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
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Grows a pipe's kernel buffer (best effort: the system limit may refuse it).
pub(crate) fn grow_pipe(fd: BorrowedFd<'_>, bytes: usize) {
    let bytes = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: F_SETPIPE_SZ takes an int and only changes the pipe's capacity.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, bytes) };
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
    let new = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) })?;
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

/// Writes all of `buf` to a blocking descriptor.
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
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
    let ms = timeout.map_or(-1, |t| {
        // Round up so a deadline is never polled as already passed.
        libc::c_int::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(libc::c_int::MAX)
    });
    let nfds = libc::nfds_t::try_from(N).unwrap_or(libc::nfds_t::MAX);
    // SAFETY: `fds` is an array of N initialized pollfd structs that poll may write.
    retry(|| unsafe { libc::poll(fds.as_mut_ptr(), nfds, ms) })?;
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
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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

/// Starts `exe` as a worker: `request` becomes its [`REQUEST_FD`], `result` its [`RESULT_FD`],
/// stdin is `/dev/null`, stdout and stderr are shared with this process, and its signal mask
/// is empty. Uses `posix_spawn`, which never runs code in a forked copy of this process.
pub(crate) fn spawn(
    exe: &CStr,
    argv0: &CStr,
    env: &[CString],
    request: BorrowedFd<'_>,
    result: BorrowedFd<'_>,
) -> io::Result<libc::pid_t> {
    // Move the ends above the target numbers so that no dup2 below clobbers a source.
    let request = dup_at_least(request, 10)?;
    let result = dup_at_least(result, 10)?;
    let argv = [argv0.as_ptr(), ptr::null()];
    let envp: Vec<*const libc::c_char> =
        env.iter().map(|v| v.as_ptr()).chain(std::iter::once(ptr::null())).collect();
    let dev_null = c"/dev/null";

    let mut actions = std::mem::MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
    let mut attr = std::mem::MaybeUninit::<libc::posix_spawnattr_t>::uninit();
    // SAFETY: the init calls fill the uninitialized structs before any other use, each is
    // destroyed exactly once below, and every pointer passed to posix_spawn (paths, argv,
    // envp) points to NUL-terminated data that outlives the call.
    unsafe {
        check_spawn(libc::posix_spawn_file_actions_init(actions.as_mut_ptr()))?;
        let actions = SpawnActions(actions.assume_init_mut());
        check_spawn(libc::posix_spawnattr_init(attr.as_mut_ptr()))?;
        let attr = SpawnAttr(attr.assume_init_mut());

        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        check_spawn(libc::posix_spawnattr_setsigmask(attr.0, &empty))?;
        let flags = libc::c_short::try_from(libc::POSIX_SPAWN_SETSIGMASK).unwrap_or_default();
        check_spawn(libc::posix_spawnattr_setflags(attr.0, flags))?;

        check_spawn(libc::posix_spawn_file_actions_adddup2(
            actions.0,
            request.as_raw_fd(),
            REQUEST_FD,
        ))?;
        check_spawn(libc::posix_spawn_file_actions_adddup2(
            actions.0,
            result.as_raw_fd(),
            RESULT_FD,
        ))?;
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
        Ok(pid)
    }
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

/// Waits for the child `pid` to end and reaps it.
pub(crate) fn wait(pid: libc::pid_t) -> io::Result<Exit> {
    let mut status = 0;
    // SAFETY: `status` is a valid int for waitpid to fill.
    retry(|| unsafe { libc::waitpid(pid, &mut status, 0) })?;
    Ok(exit_of(status))
}

/// Reaps the child `pid` if it has ended, without waiting.
pub(crate) fn try_wait(pid: libc::pid_t) -> io::Result<Option<Exit>> {
    let mut status = 0;
    // SAFETY: `status` is a valid int for waitpid to fill.
    let reaped = retry(|| unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) })?;
    Ok((reaped == pid).then(|| exit_of(status)))
}

fn exit_of(status: libc::c_int) -> Exit {
    if libc::WIFSIGNALED(status) {
        Exit::Signal(libc::WTERMSIG(status))
    } else {
        Exit::Code(libc::WEXITSTATUS(status))
    }
}

/// This process's id.
pub(crate) fn pid() -> u32 {
    std::process::id()
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

/// Ignores SIGPIPE, as a Rust `main` does, so a write to a closed pipe returns an error.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: setting a signal to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
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
// by the address space being within an eighth of the cap. Either way the handler writes the
// matching frame after the results, then the process dies of the signal.

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

    fn publish(&self, bytes: &[u8]) {
        self.len.store(0, Ordering::Release);
        self.ptr.store(bytes.as_ptr().cast_mut(), Ordering::Release);
        self.len.store(bytes.len(), Ordering::Release);
    }

    fn withdraw(&self) {
        self.len.store(0, Ordering::Release);
    }

    /// Writes the published bytes to the result pipe, once. Async-signal-safe: atomics and
    /// write(2) only.
    fn write_out(&self) {
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
                return;
            }
            let n = n.unsigned_abs();
            left -= n;
            // SAFETY: `n <= left`, so the pointer stays inside the published bytes.
            at = unsafe { at.add(n) };
        }
    }
}

/// Result frames the worker has not written yet.
static PENDING: Published = Published::new();
/// The frame saying the running task ran out of memory; empty without a memory limit.
static ON_MEMORY: Published = Published::new();
/// The frame saying the running task used up its CPU time; empty without a CPU limit.
static ON_CPU_TIME: Published = Published::new();
/// Whether a task is running.
static IN_TASK: AtomicBool = AtomicBool::new(false);
/// The address-space cap set by [`limit_memory`], or 0.
static MEMORY_LIMIT: AtomicU64 = AtomicU64::new(0);
/// The size of a memory page, read when the handlers are installed.
static PAGE_SIZE: AtomicU64 = AtomicU64::new(4096);

/// Publishes what to write if the process dies before [`disarm_crash_flush`]: `pending`
/// results, then `on_memory` if the task ran out of memory or `on_cpu_time` if it used up its
/// CPU time. Each must stay alive and unchanged until then.
pub(crate) fn arm_crash_flush(pending: &[u8], on_memory: &[u8], on_cpu_time: &[u8]) {
    PENDING.publish(pending);
    if !on_memory.is_empty() {
        ON_MEMORY.publish(on_memory);
    }
    if !on_cpu_time.is_empty() {
        ON_CPU_TIME.publish(on_cpu_time);
    }
    IN_TASK.store(true, Ordering::Release);
}

/// Withdraws what [`arm_crash_flush`] published.
pub(crate) fn disarm_crash_flush() {
    IN_TASK.store(false, Ordering::Release);
    PENDING.withdraw();
    ON_MEMORY.withdraw();
    ON_CPU_TIME.withdraw();
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

extern "C" fn on_fatal_signal(signal: libc::c_int) {
    if signal == libc::SIGXCPU && !IN_TASK.load(Ordering::Acquire) {
        // Between tasks, the worker's own work reached the soft limit just before it would
        // have been raised for the next task: no task's fault, and nothing to report.
        return;
    }
    let in_task = IN_TASK.swap(false, Ordering::AcqRel);
    PENDING.write_out();
    if in_task && signal == libc::SIGXCPU {
        ON_CPU_TIME.write_out();
    } else if in_task && signal == libc::SIGABRT && near_memory_limit() {
        ON_MEMORY.write_out();
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
    PENDING.write_out();
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
    // The stack must outlive every signal: leak it, once per worker process.
    let stack: &'static mut [u8] = Vec::leak(vec![0u8; ALT_STACK]);
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
            action.sa_sigaction =
                on_fatal_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, ptr::null_mut());
        }
    }
    // SAFETY: `on_exit` is a plain function that lives for the whole process.
    unsafe { libc::atexit(on_exit) };
}
