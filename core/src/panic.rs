//! Turning a task's panic into a [`PanicReport`] with its message and location.
//!
//! `catch_unwind` gives the message but not where the panic happened; only a panic hook sees
//! the location. [`catch_panic`] installs, once per process, a hook that records the location
//! (and a backtrace, when asked) for panics inside a task and stays silent for them, since the
//! report reaches the caller as a typed error. Panics anywhere else go to the hook that was
//! installed before, so a program's own panic output is unchanged.
//!
//! A task or a program may replace the hook later (`std::panic::set_hook`). The next panic in
//! a task then reaches their hook, not this one, and its report has no location. Seeing that,
//! [`PanicScope::catch`] puts this hook back in front of theirs, so later panics in tasks have
//! their location again and every other panic still goes to the hook they set.
//!
//! In a program built with `panic = "abort"` nothing unwinds: the process aborts right after
//! the hook. The hook then hands the report to the backend's reporter, if one is set
//! ([`report_aborting_panics_with`]: a process worker sends it to the caller before it dies),
//! and otherwise to the hook before it, so the panic is printed rather than lost.
//!
//! A panic can end the process in an unwinding build too: one that reaches an `extern "C"`
//! function (a callback handed to a C library), or one raised by a `Drop` while the task
//! unwinds from another. The runtime then raises a last panic that cannot unwind, from its
//! own `core/src/panicking.rs` ("panic in a function that cannot unwind", "panic in a
//! destructor during cleanup"), and aborts after the hook. The panics before it were
//! recorded silently, for a `catch` that never comes: the hook hands the latest of them to
//! the reporter, or prints them and then lets the hook before it print the last one, as the
//! standard hook would have printed each.

use std::any::Any;
use std::backtrace::Backtrace;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe, PanicHookInfo};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock, PoisonError};

use crate::error::PanicReport;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Capture {
    Off,
    Location,
    WithBacktrace,
}

thread_local! {
    static CAPTURE: Cell<Capture> = const { Cell::new(Capture::Off) };
    /// The panics the hook recorded on this thread that no `catch` has taken yet, the latest
    /// last: the one a `catch` reports, and while a task unwinds, the ones before it (at most
    /// [`RECORDED`]), should a panic that cannot unwind follow.
    static CAUGHT: RefCell<Vec<PanicReport>> = const { RefCell::new(Vec::new()) };
}

/// How many panics a thread keeps recorded: a task's panic and one raised while it unwinds.
const RECORDED: usize = 2;

static HOOK: Once = Once::new();

/// The address of the hook installed last by [`install_around`]: a hook found at another
/// address was set by someone else since.
static OURS: AtomicUsize = AtomicUsize::new(0);

/// Held while the hook is taken and set again, so that two threads that both found it missing
/// do not each put one back.
static RESTORING: Mutex<()> = Mutex::new(());

/// What reports a panic in a task of a program built with `panic = "abort"` (see
/// [`report_aborting_panics_with`]).
static ABORT_REPORTER: OnceLock<fn(&PanicReport) -> bool> = OnceLock::new();

/// Sets how a panic inside a task ([`catch_panic`], [`PanicScope`]) that ends the process is
/// reported: any panic in a program built with `panic = "abort"`, and in any build a panic
/// that reaches an `extern "C"` function or one that a `Drop` raises while the task unwinds
/// (for these, `report` gets that panic, not the runtime's "cannot unwind" one after it).
/// The process aborts as soon as `report` returns. `report` says whether it reported the
/// panic; if not (or with no reporter set), the panic goes to the hook that was installed
/// before, whose output says why the program died. Panics that unwind never reach it. The
/// first call sets it; later calls change nothing.
///
/// A process backend sets one in its workers, so that such a panic reaches the caller as the
/// task's `Panicked` error before the worker dies.
pub fn report_aborting_panics_with(report: fn(&PanicReport) -> bool) {
    let _ = ABORT_REPORTER.set(report);
}

/// A panic hook, as `std::panic::set_hook` takes it.
type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Runs `f`, turning a panic into a [`PanicReport`] instead of unwinding further.
///
/// With `backtraces`, the report carries a rendered backtrace (this costs time on each panic,
/// nothing otherwise).
///
/// # Errors
///
/// The report of the panic, if `f` panicked.
///
/// # Examples
///
/// ```
/// let report = taskpool_core::backend::catch_panic(false, || -> u8 { panic!("boom") }).unwrap_err();
/// assert_eq!(report.message, "boom");
/// assert!(report.location.unwrap().contains(".rs:"));
/// ```
pub fn catch_panic<R>(backtraces: bool, f: impl FnOnce() -> R) -> Result<R, PanicReport> {
    PanicScope::enter(backtraces).catch(f)
}

/// Puts the hook that records panics in tasks back in front of whatever hook is installed,
/// if code run since (a pool's initializer that sets up a logger, say) replaced it with
/// `std::panic::set_hook`; the hook found there still gets every panic outside tasks.
///
/// A backend calls it after running code of the program's that may set a hook and before
/// running tasks: otherwise the first panic in a task would reach that hook alone, and its
/// report would have no location, or, in a program built with `panic = "abort"`, would not
/// be made at all (the process aborts after the hook).
///
/// # Examples
///
/// ```
/// use taskpool_core::backend::{catch_panic, keep_hook_in_front};
///
/// std::panic::set_hook(Box::new(|info| eprintln!("logged: {info}")));
/// keep_hook_in_front();
/// let report = catch_panic(false, || -> u8 { panic!("boom") }).unwrap_err();
/// assert!(report.location.unwrap().contains(".rs:"));
/// ```
pub fn keep_hook_in_front() {
    HOOK.call_once(install_hook);
    restore_hook();
}

/// Panic capture for many calls on one thread: [`catch_panic`] without the per-call set-up.
///
/// While a scope is alive, panics on its thread are recorded silently instead of printed;
/// dropping it restores what was there before. A backend that runs a batch of tasks on one
/// thread enters one scope and catches each task with [`PanicScope::catch`].
///
/// # Examples
///
/// ```
/// let scope = taskpool_core::backend::PanicScope::enter(false);
/// let results: Vec<_> = [1, 0, 2].iter().map(|&d| scope.catch(|| 6 / d)).collect();
/// assert_eq!(results[0], Ok(6));
/// assert!(results[1].as_ref().unwrap_err().message.contains("divide by zero"));
/// ```
#[derive(Debug)]
pub struct PanicScope {
    outer: Capture,
}

impl PanicScope {
    /// Starts capturing panics on this thread, with backtraces if `backtraces`.
    pub fn enter(backtraces: bool) -> PanicScope {
        HOOK.call_once(install_hook);
        let mode = if backtraces { Capture::WithBacktrace } else { Capture::Location };
        PanicScope { outer: CAPTURE.with(|c| c.replace(mode)) }
    }

    /// Runs `f`, turning a panic into a [`PanicReport`].
    ///
    /// # Errors
    ///
    /// The report of the panic, if `f` panicked.
    #[inline]
    pub fn catch<R>(&self, f: impl FnOnce() -> R) -> Result<R, PanicReport> {
        panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
            let (location, backtrace) =
                take_recorded().map(|r| (r.location.unwrap_or_default(), r.backtrace)).unzip();
            // The hook did not see this panic: it was replaced, or the task resumed an unwind
            // (which skips every hook). Not while this thread unwinds from another panic:
            // the hook cannot be taken then.
            if location.is_none() && !std::thread::panicking() {
                restore_hook();
            }
            let message = payload_text(payload.as_ref());
            drop_payload(payload);
            PanicReport { message, location, backtrace: backtrace.flatten() }
        })
    }
}

impl Drop for PanicScope {
    fn drop(&mut self) {
        CAPTURE.with(|c| c.set(self.outer));
    }
}

fn install_hook() {
    install_around(panic::take_hook());
}

/// Installs the hook that records panics in tasks, in front of `previous`, which gets every
/// other panic.
fn install_around(previous: Hook) {
    let hook: Hook = Box::new(move |info: &PanicHookInfo<'_>| {
        let mode = CAPTURE.with(Cell::get);
        if mode == Capture::Off {
            return previous(info);
        }
        let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
        let backtrace =
            (mode == Capture::WithBacktrace).then(|| Backtrace::force_capture().to_string());
        let report = PanicReport { message: payload_text(info.payload()), location, backtrace };
        if cfg!(panic = "abort") {
            // Built with `panic = "abort"`: the process aborts once this hook returns, and no
            // `catch` ever sees the panic. The backend may still report it; if it does not,
            // the hook before this one prints why the program died.
            if !ABORT_REPORTER.get().is_some_and(|report_it| report_it(&report)) {
                previous(info);
            }
            return;
        }
        if cannot_unwind(info) {
            // The runtime's own panic before it aborts: the task's panics before it, which
            // no `catch` will take, say why.
            let before = CAUGHT.with(|c| std::mem::take(&mut *c.borrow_mut()));
            let blamed = before.last().unwrap_or(&report);
            if !ABORT_REPORTER.get().is_some_and(|report_it| report_it(blamed)) {
                before.iter().for_each(print_recorded);
                previous(info);
            }
            return;
        }
        CAUGHT.with(|c| {
            let mut recorded = c.borrow_mut();
            if recorded.len() >= RECORDED {
                recorded.remove(0);
            }
            recorded.push(report);
        });
    });
    OURS.store(address(&hook), Ordering::Relaxed);
    panic::set_hook(hook);
}

/// Where a hook lives: it stays there for as long as it is installed.
fn address(hook: &Hook) -> usize {
    std::ptr::from_ref(&**hook).cast::<()>() as usize
}

/// After a panic in a task that the hook did not see: if a task or the program replaced the
/// hook, installs it again in front of theirs. (For an unwind resumed by the task, the hook
/// is still in place and is set back as it was.) A panic on another thread between the two
/// calls goes to the standard hook.
#[cold]
#[inline(never)]
fn restore_hook() {
    let _one_at_a_time = RESTORING.lock().unwrap_or_else(PoisonError::into_inner);
    let current = panic::take_hook();
    if address(&current) == OURS.load(Ordering::Relaxed) {
        panic::set_hook(current);
    } else {
        install_around(current);
    }
}

/// Runs `f`, and stops a panic there from unwinding further; the panic is printed by the hook
/// installed before this module's, as if outside any task, even on a thread inside a
/// [`PanicScope`] (which would record it silently for a `catch` that never comes).
pub(crate) fn print_and_stop(f: impl FnOnce()) {
    let outer = CAPTURE.with(|c| c.replace(Capture::Off));
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(f)) {
        drop_payload(payload);
    }
    CAPTURE.with(|c| c.set(outer));
}

/// Drops a panic payload whose own `Drop` may panic: that panic is caught too, and its
/// payload leaked rather than dropped (its drop could panic again, without end).
fn drop_payload(payload: Box<dyn Any + Send>) {
    if let Err(again) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
    // The hook recorded where that second panic happened: not the task's.
    drop(take_recorded());
}

/// Takes the panic the hook recorded last on this thread, forgetting the ones before it.
fn take_recorded() -> Option<PanicReport> {
    CAUGHT.with(|c| {
        let mut recorded = c.borrow_mut();
        let last = recorded.pop();
        recorded.clear();
        last
    })
}

/// Whether the panic the hook sees is the runtime's last one before it aborts: raised by
/// core's panicking module itself, where only the panics that cannot unwind start (a panic
/// that reached a function that cannot unwind, one in a destructor during cleanup, a broken
/// precondition of an unsafe function). Every other panic names the code that raised it.
fn cannot_unwind(info: &PanicHookInfo<'_>) -> bool {
    info.location().is_some_and(|l| {
        let file = l.file().replace('\\', "/");
        file.ends_with("/core/src/panicking.rs")
    })
}

/// Prints a panic the hook recorded without printing, as the standard hook prints one, for a
/// process about to abort.
fn print_recorded(report: &PanicReport) {
    use std::io::Write as _;
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("<unnamed>");
    let at = report.location.as_deref().unwrap_or("an unknown location");
    let mut text = format!("\nthread '{name}' panicked at {at}:\n{}\n", report.message);
    if let Some(backtrace) = &report.backtrace {
        text.push_str(&format!("stack backtrace:\n{backtrace}\n"));
    }
    // Nothing to do if standard error is gone: the process aborts either way.
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// The message a panic's payload carries: its text if it is a `&str` or a `String`, else
/// "non-string panic payload".
///
/// # Examples
///
/// ```
/// let payload = std::panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
/// assert_eq!(taskpool_core::backend::payload_text(&*payload), "boom 1");
/// ```
pub fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// The reason a worker whose initializer panicked cannot start, for
/// [`TaskError::WorkerStart`](crate::TaskError::WorkerStart): the panic's message and
/// location, said of the initializer (a [`PanicReport`]'s own text says a task panicked).
///
/// ```
/// # use taskpool_core::PanicReport;
/// let report = PanicReport {
///     message: "no database".into(),
///     location: Some("src/main.rs:3:5".into()),
///     backtrace: None,
/// };
/// assert_eq!(
///     taskpool_core::backend::initializer_panicked(&report),
///     "the initializer panicked at src/main.rs:3:5: no database"
/// );
/// ```
pub fn initializer_panicked(report: &PanicReport) -> String {
    match &report.location {
        Some(at) => format!("the initializer panicked at {at}: {}", report.message),
        None => format!("the initializer panicked: {}", report.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_message_and_location() {
        let line = line!() + 1;
        let report = catch_panic(false, || -> () { panic!("bad input {}", 7) }).unwrap_err();
        assert_eq!(report.message, "bad input 7");
        let location = report.location.unwrap();
        assert!(location.contains(&format!("panic.rs:{line}:")), "{location}");
        assert!(report.backtrace.is_none());
    }

    #[test]
    fn backtraces_are_opt_in() {
        let report = catch_panic(true, || -> () { panic!("x") }).unwrap_err();
        assert!(report.backtrace.is_some());
    }

    #[test]
    fn values_pass_through() {
        assert_eq!(catch_panic(false, || 5).unwrap(), 5);
    }

    /// A payload whose drop panics.
    struct Bomb;

    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("the payload's drop panics too");
        }
    }

    #[test]
    fn a_payload_whose_drop_panics_is_contained() {
        let scope = PanicScope::enter(false);
        let report = scope.catch(|| std::panic::panic_any(Bomb)).unwrap_err();
        assert_eq!(report.message, "non-string panic payload");
        assert!(report.location.unwrap().contains("panic.rs:"));
        assert_eq!(scope.catch(|| 3).unwrap(), 3, "the scope goes on");
    }

    #[test]
    fn odd_payloads_still_report() {
        let report = catch_panic(false, || std::panic::panic_any(42_u8)).unwrap_err();
        assert_eq!(report.message, "non-string panic payload");
    }
}
