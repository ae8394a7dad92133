//! The CPU-time limit's backstop: a task that ignores or blocks SIGXCPU is stopped all the
//! same.
//!
//! The kernel enforces [`crate::ProcessConfig::cpu_time_limit`] with the soft `RLIMIT_CPU`: it
//! sends SIGXCPU, and the worker's handler reports the task and lets the signal end the
//! process (see `sys.rs`). A task may set SIGXCPU to be ignored, or block every signal (as
//! some C libraries do on their threads), and then run on: the hard limit is unlimited, and
//! an unprivileged process could not raise it again for the next task if it lowered it.
//!
//! So a worker with a CPU-time limit keeps one more thread, with every signal blocked, asleep
//! on the process's CPU clock (`clock_nanosleep` on `CLOCK_PROCESS_CPUTIME_ID`) until
//! [`GRACE`] past the soft limit: it costs no CPU until then, and by then SIGXCPU has had its
//! chance. If a task still runs, the thread writes what the handler would have (the pending
//! results, then the task's `ResourceLimit` frame) and kills the process with SIGKILL, which
//! nothing can block.

use std::io;
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, Thread};
use std::time::Duration;

use crate::sys;

/// How long past the soft limit, in CPU time, a task runs before this thread stops it.
const GRACE: Duration = Duration::from_secs(1);

/// The process CPU time, in nanoseconds, at which this thread acts: [`GRACE`] past the soft
/// limit that the worker set last; 0 before the first task.
static DEADLINE_NS: AtomicU64 = AtomicU64::new(0);

/// The watchdog thread, to wake when the deadline moves while it waits for that.
static WATCHDOG: OnceLock<Thread> = OnceLock::new();

/// Starts the watchdog. Call once, in a worker with a CPU-time limit, before the first task.
pub(crate) fn start() -> io::Result<()> {
    let handle = sys::with_signals_blocked(|| {
        thread::Builder::new().name("taskpool-cpu".into()).stack_size(64 << 10).spawn(watch)
    })?;
    let _ = WATCHDOG.set(handle.thread().clone());
    sys::let_other_threads_claim();
    Ok(())
}

/// Records that the soft limit now stands at `seconds` of the process's CPU time (it moves
/// at most about once per second of CPU time: unparking the watchdog then costs nothing
/// that counts).
pub(crate) fn soft_limit_set(seconds: u64) {
    let deadline = seconds
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(GRACE.as_nanos()).unwrap_or(u64::MAX));
    DEADLINE_NS.store(deadline, Ordering::Release);
    if let Some(watchdog) = WATCHDOG.get() {
        watchdog.unpark();
    }
}

/// The watchdog's life: sleep until the deadline; if it has not moved since and a task runs,
/// that task outlived SIGXCPU.
fn watch() {
    loop {
        let deadline = DEADLINE_NS.load(Ordering::Acquire);
        if deadline == 0 {
            thread::park();
            continue;
        }
        sleep_until(deadline);
        if DEADLINE_NS.load(Ordering::Acquire) != deadline || cpu_ns() < deadline {
            // A later task raised it, or the sleep was cut short.
            continue;
        }
        if sys::flush_for_cpu_time() {
            // SAFETY: kill has no memory effects; SIGKILL ends this process.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        // Between tasks the worker's own work reached it, which is no task's fault: wait,
        // without a CPU clock to sleep on, until a task moves the deadline.
        while DEADLINE_NS.load(Ordering::Acquire) == deadline {
            thread::park();
        }
    }
}

/// Sleeps until this process has used `deadline_ns` of CPU time, or a signal cuts it short.
fn sleep_until(deadline_ns: u64) {
    let at = libc::timespec {
        tv_sec: libc::time_t::try_from(deadline_ns / 1_000_000_000).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::try_from(deadline_ns % 1_000_000_000).unwrap_or(0),
    };
    // SAFETY: `at` is a valid timespec; the remaining time is not asked for with an absolute
    // deadline.
    let err = unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_PROCESS_CPUTIME_ID,
            libc::TIMER_ABSTIME,
            &at,
            ptr::null_mut(),
        )
    };
    if err != 0 && err != libc::EINTR {
        // No CPU clock to sleep on (not seen on Linux): look again a little later.
        thread::sleep(Duration::from_millis(100));
    }
}

/// The CPU time this process has used, in nanoseconds.
fn cpu_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is a valid timespec for clock_gettime to fill.
    if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) } != 0 {
        return 0;
    }
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}
