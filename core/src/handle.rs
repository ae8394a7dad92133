//! The handle to one submitted task, and the backend's side of it.
//!
//! [`promise`] makes a pair: the [`TaskHandle`] that the caller keeps and the [`Completer`] that
//! the backend fills in. Whichever settles the task first wins (the result, a timeout, a
//! cancellation), and a completer dropped unfilled settles the task as shut down, so no handle
//! can wait forever on work a backend dropped.
//!
//! A handle is waited on by a blocking `join` (a short spin, then a condition variable) or
//! awaited as a [`Future`] (a stored [`Waker`]). Settling wakes whichever waits; the waker is
//! taken under the lock that settling holds anyway, so the blocking path pays next to nothing
//! for the async one (a few nanoseconds per task).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::error::TaskError;

/// What runs when the owner of a handle cancels its task.
enum CancelHook {
    /// A closure, boxed.
    Once(Box<dyn FnOnce() + Send>),
    /// A backend's record of the task, which it already allocated: no allocation more.
    Of(Weak<dyn Cancel>),
    /// The record of [`CancelHook::Of`], held by the cancellation that settled the task: a
    /// backend that finishes the task meanwhile and lets go of its record leaves the
    /// cancellation its hook.
    Held(Arc<dyn Cancel>),
}

impl CancelHook {
    fn run(self) {
        match self {
            CancelHook::Once(hook) => hook(),
            CancelHook::Of(target) => {
                if let Some(target) = target.upgrade() {
                    target.cancel();
                }
            }
            CancelHook::Held(target) => target.cancel(),
        }
    }
}

/// A backend's record of one task that knows how to stop it, for
/// [`Completer::on_cancel_of`]: a cancellation hook that costs no allocation of its own. It
/// may also help a thread that waits for the task ([`Cancel::help_wait`]).
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
///
/// use taskpool_core::backend::{Cancel, promise};
///
/// /// A queued task of some backend.
/// struct Queued {
///     cancelled: AtomicBool,
/// }
///
/// impl Cancel for Queued {
///     fn cancel(&self) {
///         self.cancelled.store(true, Ordering::Release);
///     }
/// }
///
/// let (completer, handle) = promise::<u32>();
/// let task = Arc::new(Queued { cancelled: AtomicBool::new(false) });
/// let weak: std::sync::Weak<Queued> = Arc::downgrade(&task);
/// completer.on_cancel_of(weak);
/// assert!(handle.cancel());
/// assert!(task.cancelled.load(Ordering::Acquire));
/// ```
pub trait Cancel: Send + Sync {
    /// Stops the task (the handle is settled as cancelled already): drops it from a queue,
    /// or stops whatever runs it.
    fn cancel(&self);

    /// Called by a thread about to wait for the task's outcome ([`TaskHandle::join`],
    /// [`TaskHandle::join_timeout`]), before it spins or sleeps, unless the task is settled
    /// already. A backend may use the thread to move the task along until `done()` says it is
    /// settled or `deadline` passes: a thread that reads its result itself has it sooner than
    /// one woken by the thread that read it.
    ///
    /// Returns an error if the task can never be settled where the caller waits (a copy of
    /// the process made by `fork()`, which has the backend's memory but not its threads):
    /// the handle settles with it, rather than wait forever.
    ///
    /// Does nothing by default.
    ///
    /// # Errors
    ///
    /// The error the handle settles with, as above.
    fn help_wait(
        &self,
        deadline: Option<Instant>,
        done: &dyn Fn() -> bool,
    ) -> Result<(), TaskError> {
        let _ = (deadline, done);
        Ok(())
    }

    /// The error the handle must settle with because nothing where its owner is can ever
    /// settle it (a copy of the process made by `fork()`), if so. Asked, without blocking,
    /// by a handle polled as a future, which never waits in [`Cancel::help_wait`].
    ///
    /// `None` by default.
    fn forsaken(&self) -> Option<TaskError> {
        None
    }
}

/// Where the outcome of one task goes, and how its handle waits for it: what a
/// [`TaskHandle`] and its [`Completer`] share.
///
/// [`promise`] and its kin allocate one for the task. A backend that keeps a record of each
/// task (its queue's entry) may hold the slot in that record instead, and make the handle
/// with [`handle_of`]: one allocation for both, where a promise and a record are two. Such
/// a backend settles the slot itself ([`Slot::complete`]); no [`Completer`] settles it
/// as shut down if the backend drops the task unrun.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
///
/// use taskpool_core::backend::{Cancel, Holds, Slot, handle_of};
///
/// /// A queued task of some backend, holding its handle's slot.
/// struct Queued {
///     slot: Slot<u32>,
///     input: u32,
/// }
///
/// impl Cancel for Queued {
///     fn cancel(&self) {}
/// }
///
/// impl Holds<u32> for Queued {
///     fn slot(&self, _index: usize) -> &Slot<u32> {
///         &self.slot
///     }
/// }
///
/// let task = Arc::new(Queued { slot: Slot::new(), input: 6 });
/// let handle = handle_of(task.clone(), 0);
/// assert!(task.slot.complete(Ok(task.input * 7)));
/// assert_eq!(handle.join().unwrap(), 42);
/// ```
pub struct Slot<R> {
    state: Mutex<State<R>>,
    ready: Condvar,
    /// Set once the task is settled (and never cleared), so a joiner can spin on it before
    /// sleeping, and anyone can ask whether it is settled without the lock.
    settled: AtomicBool,
    /// Joiners asleep on `ready`. Changed and read only under `state`'s lock, so a settler
    /// that sees zero cannot miss a joiner about to sleep: waking nobody costs a system call,
    /// and most joins never sleep.
    sleepers: AtomicUsize,
}

/// How long a joiner spins on [`Slot::settled`] before it sleeps on the condition variable.
/// Most tasks of a pool answer within a few tens of microseconds; waking a sleeping thread
/// costs about as much again, so a short spin halves a round trip. Longer waits sleep.
const SPIN: Duration = Duration::from_micros(50);

enum State<R> {
    Pending(Pending),
    /// The outcome, and the backend's record of the task if it was the cancellation hook
    /// (see [`Completer::on_cancel_of`]): let go with the outcome, by whoever takes it or
    /// drops the handle last, usually the thread that submitted the task. A record freed by
    /// the thread that allocated it costs no lock in a thread-caching allocator, where one
    /// freed by the backend's thread contends with the submitter's next allocations.
    Ready(Result<R, TaskError>, Option<Weak<dyn Cancel>>),
    Joined,
}

/// Who to tell when a pending task settles.
#[derive(Default)]
struct Pending {
    on_cancel: Option<CancelHook>,
    notify: Option<(Sender<usize>, usize)>,
    /// The waker of the task that awaits the handle, if one does.
    waker: Option<Waker>,
}

impl Pending {
    /// Tells the unordered iterator and the awaiting task, if any. Called after the lock is
    /// released.
    fn wake(self) {
        if let Some((tx, index)) = self.notify {
            // The receiver may be gone (an abandoned iterator); nobody is waiting then.
            let _ = tx.send(index);
        }
        if let Some(waker) = self.waker {
            waker.wake();
        }
    }
}

impl<R> Default for Slot<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R> Slot<R> {
    /// A slot whose task is pending.
    pub fn new() -> Self {
        Self::with(Pending::default())
    }

    /// A slot whose task is pending, and sends `index` on `tx` once it is settled, as one
    /// made by [`promise_notify`] does.
    pub fn notifying(tx: Sender<usize>, index: usize) -> Self {
        Self::with(Pending { notify: Some((tx, index)), ..Pending::default() })
    }

    fn with(pending: Pending) -> Self {
        Slot {
            state: Mutex::new(State::Pending(pending)),
            ready: Condvar::new(),
            settled: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
        }
    }

    /// Delivers the outcome, as [`Completer::complete`] does.
    pub fn complete(&self, result: Result<R, TaskError>) -> bool {
        self.complete_then(result, || {})
    }

    /// Delivers the outcome and runs `first` if it is the task's, as
    /// [`Completer::complete_then`] does.
    pub fn complete_then(&self, result: Result<R, TaskError>, first: impl FnOnce()) -> bool {
        match self.settle(result, true, first) {
            Some(pending) => {
                pending.wake();
                true
            }
            None => false,
        }
    }

    /// Whether the task is already settled, as [`Completer::is_settled`] says.
    pub fn is_settled(&self) -> bool {
        self.settled.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, State<R>> {
        #[cfg(test)]
        tests::LOCKS.set(tests::LOCKS.get() + 1);
        // A panic while holding this lock cannot leave the state half-written: every
        // transition is a single assignment, so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Settles the task if it is still pending, runs `first` (before anyone can see the
    /// outcome), and wakes joiners asleep on the condition variable. Returns who else to tell
    /// (see [`Pending::wake`]) and the cancellation hook, unless the hook is the backend's
    /// record and `keep_record` (see [`State::Ready`]), else with that record held; or `None`
    /// if the task was already settled.
    fn settle(
        &self,
        result: Result<R, TaskError>,
        keep_record: bool,
        first: impl FnOnce(),
    ) -> Option<Pending> {
        let mut state = self.lock();
        let State::Pending(pending) = &mut *state else {
            drop(state);
            discard(result);
            return None;
        };
        first();
        let mut pending = std::mem::take(pending);
        let record = match pending.on_cancel.take() {
            Some(CancelHook::Of(record)) if keep_record => Some(record),
            Some(CancelHook::Of(record)) => {
                // Held before the outcome shows, while the backend still holds it too.
                pending.on_cancel = record.upgrade().map(CancelHook::Held);
                None
            }
            hook => {
                pending.on_cancel = hook;
                None
            }
        };
        *state = State::Ready(result, record);
        self.settled.store(true, Ordering::Release);
        let sleepers = self.sleepers.load(Ordering::Relaxed);
        drop(state);
        if sleepers > 0 {
            self.ready.notify_all();
        }
        Some(pending)
    }
}

impl<R> fmt::Debug for Slot<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot").field("settled", &self.is_settled()).finish()
    }
}

/// A backend's record of one task, or of a group of tasks, that holds their handles'
/// [`Slot`]s, so that the handles ([`handle_of`]) and the record are one allocation. The
/// record's [`Cancel`] methods serve each handle as a record registered with
/// [`Completer::on_cancel_of`] would.
pub trait Holds<R>: Cancel {
    /// The slot of the handle made with `index` ([`handle_of`]): a record of one task may
    /// ignore it.
    fn slot(&self, index: usize) -> &Slot<R>;
}

/// The slot of a handle made by [`promise`] and its kin, with no record around it.
struct Plain<R>(Slot<R>);

impl<R: Send> Cancel for Plain<R> {
    fn cancel(&self) {}
}

impl<R: Send> Holds<R> for Plain<R> {
    #[inline]
    fn slot(&self, _: usize) -> &Slot<R> {
        &self.0
    }
}

/// The handle of the task whose slot `record` holds at `index` ([`Holds::slot`]).
pub fn handle_of<R, X: Holds<R> + 'static>(record: Arc<X>, index: usize) -> TaskHandle<R> {
    TaskHandle { record, index }
}

impl<R> Drop for Slot<R> {
    /// Drops an outcome nobody took (its handle was dropped unjoined) as [`discard`] does:
    /// the last of handle and completer may be a pool's thread.
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let State::Ready(..) = state {
            discard(std::mem::replace(state, State::Joined));
        }
    }
}

/// Drops a value nobody will take, such as a task's result that came after its timeout or
/// cancellation, where a panic in its `Drop` cannot unwind into the caller that should see
/// it: on a pool's thread, where it would end the program (rayon aborts) or a supervisor.
/// The panic is printed, as any panic outside a task is (also on a thread that runs tasks),
/// and goes no further.
///
/// # Examples
///
/// ```
/// struct Bomb;
/// impl Drop for Bomb {
///     fn drop(&mut self) {
///         panic!("dropped");
///     }
/// }
/// taskpool_core::backend::discard(Bomb); // printed, not propagated
/// ```
#[inline]
pub fn discard<T>(value: T) {
    if std::mem::needs_drop::<T>() {
        crate::panic::print_and_stop(move || drop(value));
    }
}

/// Makes a handle and the completer that fills it in.
///
/// Backends call this; users get handles from `Pool::submit`.
///
/// # Examples
///
/// ```
/// let (completer, handle) = taskpool_core::backend::promise::<u32>();
/// std::thread::spawn(move || completer.complete(Ok(7)));
/// assert_eq!(handle.join().unwrap(), 7);
/// ```
pub fn promise<R: Send + 'static>() -> (Completer<R>, TaskHandle<R>) {
    promise_with(None, None)
}

/// Like [`promise`], and sends `index` on `tx` once the task is settled.
///
/// This is how an unordered iterator learns which of many handles finished first.
pub fn promise_notify<R: Send + 'static>(
    tx: Sender<usize>,
    index: usize,
) -> (Completer<R>, TaskHandle<R>) {
    promise_with(Some((tx, index)), None)
}

/// Like [`promise`], with `record` as the task's record from the start, as
/// [`Completer::on_cancel_of`] sets it (without taking the new handle's lock to do it).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
///
/// use taskpool_core::TaskError;
/// use taskpool_core::backend::{Cancel, promise_of};
///
/// /// A backend whose threads stayed in another copy of the process.
/// struct Elsewhere;
///
/// impl Cancel for Elsewhere {
///     fn cancel(&self) {}
///
///     fn help_wait(
///         &self,
///         _deadline: Option<std::time::Instant>,
///         _done: &dyn Fn() -> bool,
///     ) -> Result<(), TaskError> {
///         Err(TaskError::ShutDown)
///     }
/// }
///
/// let record: Arc<dyn Cancel> = Arc::new(Elsewhere);
/// let (_completer, handle) = promise_of::<u32>(Arc::downgrade(&record));
/// assert!(matches!(handle.join(), Err(TaskError::ShutDown)));
/// ```
pub fn promise_of<R: Send + 'static>(record: Weak<dyn Cancel>) -> (Completer<R>, TaskHandle<R>) {
    promise_with(None, Some(CancelHook::Of(record)))
}

fn promise_with<R: Send + 'static>(
    notify: Option<(Sender<usize>, usize)>,
    on_cancel: Option<CancelHook>,
) -> (Completer<R>, TaskHandle<R>) {
    let record: Arc<dyn Holds<R>> =
        Arc::new(Plain(Slot::with(Pending { notify, on_cancel, waker: None })));
    (Completer { record: record.clone() }, TaskHandle { record, index: 0 })
}

/// The backend's side of a [`TaskHandle`]: where the outcome of one task goes.
///
/// Dropping a completer without calling [`Completer::complete`] settles its task with
/// [`TaskError::ShutDown`].
pub struct Completer<R> {
    /// The slot alone (see [`Plain`]).
    record: Arc<dyn Holds<R>>,
}

impl<R> Completer<R> {
    /// Delivers the outcome. Returns `false` if the task was already settled (cancelled or
    /// timed out), in which case `result` is dropped as [`discard`] drops it. Only the first
    /// settlement counts, so a backend may share a completer between the task and a watchdog
    /// that times it out.
    pub fn complete(&self, result: Result<R, TaskError>) -> bool {
        self.complete_then(result, || {})
    }

    /// Like [`Completer::complete`], and runs `first` if this outcome is the task's, before
    /// anyone can see it: a backend that counts its tasks counts this one there, exactly once
    /// whatever races with it, and before its caller has the outcome. `first` runs under the
    /// handle's lock: it must not block.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    ///
    /// let completed = AtomicU64::new(0);
    /// let (completer, handle) = taskpool_core::backend::promise::<u32>();
    /// let count = || drop(completed.fetch_add(1, Ordering::Relaxed));
    /// assert!(completer.complete_then(Ok(7), count));
    /// assert!(!completer.complete_then(Ok(8), count), "settled already: not counted");
    /// assert_eq!(completed.load(Ordering::Relaxed), 1);
    /// assert_eq!(handle.join().unwrap(), 7);
    /// ```
    pub fn complete_then(&self, result: Result<R, TaskError>, first: impl FnOnce()) -> bool {
        self.slot().complete_then(result, first)
    }

    /// Whether the task is already settled, so running it would be wasted work. Takes no
    /// lock: a backend may ask it of every task it is about to run.
    pub fn is_settled(&self) -> bool {
        self.slot().is_settled()
    }

    #[inline]
    fn slot(&self) -> &Slot<R> {
        self.record.slot(0)
    }

    /// Registers what to do when the handle's owner cancels the task, such as removing it
    /// from a queue or killing the worker that runs it. If the task is already settled the
    /// hook is dropped unrun.
    pub fn on_cancel(&self, hook: impl FnOnce() + Send + 'static) {
        self.set_on_cancel(CancelHook::Once(Box::new(hook)));
    }

    /// Like [`Completer::on_cancel`], with the backend's own record of the task as the hook:
    /// [`Cancel::cancel`] runs on it if it is still alive. The completer holds it weakly, so
    /// the record may own the completer. Unlike a closure, it takes no allocation. Once the
    /// task completes, the weak reference stays with the outcome until the handle's owner
    /// takes it (or the last of handle and completer is dropped): a record whose last strong
    /// reference is gone is freed then, usually by the thread that allocated it.
    pub fn on_cancel_of(&self, target: Weak<dyn Cancel>) {
        self.set_on_cancel(CancelHook::Of(target));
    }

    fn set_on_cancel(&self, hook: CancelHook) {
        if let State::Pending(pending) = &mut *self.slot().lock() {
            pending.on_cancel = Some(hook);
        }
    }
}

impl<R> Drop for Completer<R> {
    fn drop(&mut self) {
        // Settled already, as nearly every completer is when dropped: no lock to take.
        if !self.is_settled() {
            self.complete(Err(TaskError::ShutDown));
        }
    }
}

impl<R> fmt::Debug for Completer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completer").field("settled", &self.is_settled()).finish()
    }
}

/// A handle to one submitted task, like Python's `AsyncResult`.
///
/// Handles may be joined in any order and from any thread, or awaited: a handle is a
/// [`Future`] of the same result, on any async runtime. Dropping a handle (or a future that
/// awaits it) does not stop its task; the result is discarded. Call [`TaskHandle::cancel`] for
/// that.
///
/// # Examples
///
/// With `pool` any backend's pool (`ProcessPool::new(2)?` or `ThreadPool::new(2)?`):
///
/// ```
/// # use taskpool_core::{Pool, TaskError};
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// # let pool = taskpool_thread::ThreadPool::new(2)?;
///
/// let a = pool.submit(square, 3);
/// let b = pool.submit(square, 4);
/// assert_eq!(b.join()?, 16); // any order
/// assert_eq!(a.join()?, 9);
/// # Ok::<(), TaskError>(())
/// ```
///
/// Awaiting, here on `futures`' executor (tokio, smol and the others work the same way): the
/// task runs on the pool, and the async task that awaits it sleeps until it is done.
///
/// ```
/// # use taskpool_core::{Pool, TaskError};
/// # fn square(x: u64) -> u64 {
/// #     x * x
/// # }
/// # let pool = taskpool_thread::ThreadPool::new(2)?;
/// let handle = pool.submit(square, 5);
/// let value = futures_executor::block_on(async { handle.await })?;
/// assert_eq!(value, 25);
/// # Ok::<(), TaskError>(())
/// ```
pub struct TaskHandle<R> {
    /// What holds the slot: the backend's record of the task ([`handle_of`]), or the slot
    /// alone.
    record: Arc<dyn Holds<R>>,
    /// Which of the record's slots is this handle's.
    index: usize,
}

impl<R> TaskHandle<R> {
    /// Waits for the task and returns its result.
    ///
    /// # Errors
    ///
    /// The task's failure, typed: see [`TaskError`].
    pub fn join(mut self) -> Result<R, TaskError> {
        self.wait_until(None).unwrap_or(Err(TaskError::AlreadyJoined))
    }

    /// Waits at most `limit` for the task. If it is not finished by then, returns
    /// [`TaskError::TimedOut`] with `still_running: true`: the task keeps running and this
    /// handle can be joined again later.
    ///
    /// A task's own time limit ([`Pool::submit_timeout`](crate::Pool::submit_timeout),
    /// [`Config::timeout`](crate::Config::timeout)) ends in a `TimedOut` too, with
    /// `still_running: true` on threads, which cannot stop it: that one is the task's
    /// outcome, and the handle is joined. A loop that waits in steps should not join again
    /// on every `TimedOut`: wait with [`TaskHandle::wait_timeout`], which takes nothing, and
    /// join once it returns `true` (or ask [`TaskHandle::is_finished`] after the timeout).
    ///
    /// # Errors
    ///
    /// The task's failure, a timeout, or [`TaskError::AlreadyJoined`] if the result was
    /// already taken.
    pub fn join_timeout(&mut self, limit: Duration) -> Result<R, TaskError> {
        match self.wait_until(Instant::now().checked_add(limit)) {
            Some(result) => result,
            None => Err(TaskError::TimedOut { limit, still_running: true }),
        }
    }

    /// Waits at most `limit` for the task to settle, without taking its result, like
    /// Python's `AsyncResult.wait(timeout)` followed by `ready()`. Returns whether it has
    /// settled ([`TaskHandle::is_finished`]); the outcome, a value or a failure, stays in the
    /// handle for [`TaskHandle::join`] or [`TaskHandle::try_join`]. A task that outlasts the
    /// wait keeps running. A `limit` too long to be a point in time, such as `Duration::MAX`,
    /// waits for as long as the task takes.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use taskpool_core::{Pool, TaskError};
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    /// # let pool = taskpool_thread::ThreadPool::new(2)?;
    ///
    /// let handle = pool.submit(square, 9);
    /// while !handle.wait_timeout(Duration::from_millis(100)) {
    ///     println!("still waiting");
    /// }
    /// assert!(handle.is_finished());
    /// assert_eq!(handle.join()?, 81); // the result is still there
    /// # Ok::<(), TaskError>(())
    /// ```
    pub fn wait_timeout(&self, limit: Duration) -> bool {
        self.settled_by(Instant::now().checked_add(limit))
    }

    /// Returns the result if the task has finished, without waiting.
    pub fn try_join(&mut self) -> Option<Result<R, TaskError>> {
        let mut state = self.slot().lock();
        match &*state {
            State::Pending(_) => None,
            State::Joined => Some(Err(TaskError::AlreadyJoined)),
            State::Ready(..) => take(&mut state),
        }
    }

    /// Whether the task has settled: its result (or failure) is ready.
    pub fn is_finished(&self) -> bool {
        self.slot().settled.load(Ordering::Acquire)
    }

    /// Cancels the task. A task still waiting in the queue never runs. A running task is
    /// stopped where the backend can stop it: a process backend kills its worker, a thread
    /// backend cannot stop a thread and lets it finish, discarding the result.
    ///
    /// Returns `true` if this call settled the handle as [`TaskError::Cancelled`], `false` if
    /// it was settled already: the task had finished or failed (past its own time limit
    /// too), or an earlier `cancel` had settled it.
    pub fn cancel(&self) -> bool {
        let Some(mut pending) = self.slot().settle(Err(TaskError::Cancelled), false, || {}) else {
            return false;
        };
        if let Some(hook) = pending.on_cancel.take() {
            hook.run();
        }
        self.record.cancel();
        pending.wake();
        true
    }

    #[inline]
    fn slot(&self) -> &Slot<R> {
        self.record.slot(self.index)
    }

    fn wait_until(&mut self, deadline: Option<Instant>) -> Option<Result<R, TaskError>> {
        if !self.settled_by(deadline) {
            return None;
        }
        let mut state = self.slot().lock();
        match &*state {
            State::Joined => Some(Err(TaskError::AlreadyJoined)),
            _ => take(&mut state),
        }
    }

    /// Has the task send `index` on `tx` when it settles, as one made by [`promise_notify`]
    /// does, instead of wherever it noted its end before; sends it at once if the task is
    /// settled already.
    pub(crate) fn note_to(&self, tx: &Sender<usize>, index: usize) {
        let mut state = self.slot().lock();
        match &mut *state {
            State::Pending(pending) => pending.notify = Some((tx.clone(), index)),
            _ => {
                drop(state);
                let _ = tx.send(index);
            }
        }
    }

    /// Waits until the task is settled or `deadline` (none: for ever) has passed, and
    /// returns whether it is settled; takes nothing.
    pub(crate) fn settled_by(&self, deadline: Option<Instant>) -> bool {
        self.help(deadline);
        self.spin(deadline);
        // Settled, as most tasks are by now: no lock to take to say so (the caller of `join`
        // takes it once, for the outcome).
        self.is_finished() || self.sleep_until(deadline)
    }

    /// As [`TaskHandle::settled_by`], waiting `limit` from now at most, and without the
    /// backend's help (see [`TaskHandle::help`]).
    pub(crate) fn settled_within(&self, limit: Duration, deadline: Option<Instant>) -> bool {
        self.spin(deadline);
        if self.is_finished() {
            return true;
        }
        let until = Instant::now() + limit;
        self.sleep_until(Some(deadline.map_or(until, |d| d.min(until))))
    }

    /// Sleeps until the task is settled or `deadline` (none: for ever) has passed; returns
    /// whether it is settled.
    fn sleep_until(&self, deadline: Option<Instant>) -> bool {
        let mut state = self.slot().lock();
        loop {
            if !matches!(&*state, State::Pending(_)) {
                return true;
            }
            let left = match deadline {
                None => None,
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) => Some(left),
                    None => return false,
                },
            };
            self.slot().sleepers.fetch_add(1, Ordering::Relaxed);
            state = match left {
                None => self.slot().ready.wait(state).unwrap_or_else(PoisonError::into_inner),
                Some(left) => {
                    self.slot()
                        .ready
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
            self.slot().sleepers.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl<R> TaskHandle<R> {
    /// Lets the backend's record of the task, if it registered one, help this thread wait
    /// ([`Cancel::help_wait`]); settles the task with the error it returns.
    pub(crate) fn help(&self, deadline: Option<Instant>) {
        if self.is_finished() {
            return;
        }
        let done = || self.slot().settled.load(Ordering::Acquire);
        // The record that holds the slot, if a backend's, then one registered as the hook.
        let helped = match self.record.help_wait(deadline, &done) {
            Ok(()) => self.hook().map_or(Ok(()), |record| record.help_wait(deadline, &done)),
            failed => failed,
        };
        if let Err(error) = helped {
            self.fail(error);
        }
    }

    /// The error the handle must settle with because nothing here can settle it (see
    /// [`Cancel::forsaken`]), if so and the task is pending.
    fn forsaken(&self) -> Option<TaskError> {
        if self.is_finished() {
            return None;
        }
        self.record.forsaken().or_else(|| self.hook()?.forsaken())
    }

    /// The backend's record of the task registered as the hook, if any and the task is
    /// pending.
    fn hook(&self) -> Option<Arc<dyn Cancel>> {
        if self.slot().settled.load(Ordering::Acquire) {
            return None;
        }
        match &*self.slot().lock() {
            State::Pending(Pending { on_cancel: Some(CancelHook::Of(record)), .. }) => {
                record.upgrade()
            }
            _ => None,
        }
    }

    /// Settles the task with `error`, unless it is settled already.
    fn fail(&self, error: TaskError) {
        if let Some(pending) = self.slot().settle(Err(error), true, || {}) {
            pending.wake();
        }
    }

    /// Spins briefly (at most [`SPIN`], never past `deadline`) until the task is settled.
    ///
    /// After a few pure spins it yields its CPU on every turn: on a busy machine the thread
    /// that must finish the task may be waiting for exactly this CPU.
    fn spin(&self, deadline: Option<Instant>) {
        if self.slot().settled.load(Ordering::Acquire) {
            // Settled already: no clock to read.
            return;
        }
        let start = Instant::now();
        let until = deadline.map_or(start + SPIN, |d| d.min(start + SPIN));
        let mut turns = 0u32;
        while !self.slot().settled.load(Ordering::Acquire) {
            turns += 1;
            if turns < 64 {
                std::hint::spin_loop();
                continue;
            }
            if Instant::now() >= until {
                return;
            }
            std::thread::yield_now();
        }
    }
}

fn take<R>(state: &mut State<R>) -> Option<Result<R, TaskError>> {
    match std::mem::replace(state, State::Joined) {
        State::Ready(result, _record) => Some(result),
        other => {
            *state = other;
            None
        }
    }
}

/// Resolves to the task's result, like [`TaskHandle::join`], without blocking a thread.
///
/// Polling after the result was taken (by a previous poll or a `try_join`) gives
/// [`TaskError::AlreadyJoined`].
impl<R> Future for TaskHandle<R> {
    type Output = Result<R, TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // A copy of the process made by `fork()` would wait for ever, as a join would.
        if let Some(error) = self.forsaken() {
            self.fail(error);
        }
        let mut state = self.slot().lock();
        match &mut *state {
            State::Pending(pending) => {
                match &mut pending.waker {
                    Some(waker) => waker.clone_from(cx.waker()),
                    none => *none = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            State::Joined => Poll::Ready(Err(TaskError::AlreadyJoined)),
            State::Ready(..) => {
                Poll::Ready(take(&mut state).unwrap_or(Err(TaskError::AlreadyJoined)))
            }
        }
    }
}

impl<R> fmt::Debug for TaskHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle").field("finished", &self.is_finished()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    thread_local! {
        /// How many times this thread took a slot's lock.
        pub(super) static LOCKS: Cell<usize> = const { Cell::new(0) };
    }

    /// A join of a task settled already takes its outcome under one lock of its slot: the
    /// common case of a pool's handles, whose tasks ran while the caller submitted more.
    /// Before, it locked the slot a first time to find it settled, and a second to take it.
    #[test]
    fn a_join_of_a_settled_task_locks_its_slot_once() {
        let (completer, handle) = promise::<u8>();
        assert!(completer.complete(Ok(4)));
        let before = LOCKS.get();
        assert_eq!(handle.join().unwrap(), 4);
        assert_eq!(LOCKS.get() - before, 1);
        // So does a join with a deadline.
        let (completer, mut handle) = promise::<u8>();
        assert!(completer.complete(Ok(5)));
        let before = LOCKS.get();
        assert_eq!(handle.join_timeout(Duration::from_secs(60)).unwrap(), 5);
        assert_eq!(LOCKS.get() - before, 1);
    }

    #[test]
    fn first_settlement_wins() {
        let (c, h) = promise::<u8>();
        assert!(h.cancel());
        assert!(!c.complete(Ok(1)));
        assert!(matches!(h.join(), Err(TaskError::Cancelled)));
    }

    #[test]
    fn dropped_completer_settles_as_shut_down() {
        let (c, h) = promise::<u8>();
        drop(c);
        assert!(matches!(h.join(), Err(TaskError::ShutDown)));
    }

    #[test]
    fn join_timeout_leaves_the_handle_usable() {
        let (c, mut h) = promise::<u8>();
        let err = h.join_timeout(Duration::from_millis(1)).unwrap_err();
        assert!(matches!(err, TaskError::TimedOut { still_running: true, .. }));
        assert!(h.try_join().is_none());
        c.complete(Ok(5));
        assert_eq!(h.join_timeout(Duration::from_secs(60)).unwrap(), 5);
        assert!(matches!(h.try_join(), Some(Err(TaskError::AlreadyJoined))));
    }

    #[test]
    fn cancel_runs_the_hook_once_and_notifies() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (c, h) = promise_notify::<u8>(tx, 4);
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        c.on_cancel(move || flag.store(true, Ordering::SeqCst));
        assert!(h.cancel());
        assert!(!h.cancel());
        assert!(ran.load(Ordering::SeqCst));
        assert_eq!(rx.try_recv(), Ok(4));
        assert!(c.is_settled());
    }

    /// A backend's record that counts its cancellations.
    #[derive(Default)]
    struct Record(AtomicUsize);

    impl Cancel for Record {
        fn cancel(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_completed_tasks_record_is_let_go_with_its_outcome_and_a_cancelled_ones_at_once() {
        let record = Arc::new(Record::default());
        let (c, h) = promise::<u8>();
        let weak: Weak<Record> = Arc::downgrade(&record);
        c.on_cancel_of(weak);
        assert!(std::thread::spawn(move || c.complete(Ok(3))).join().unwrap());
        assert_eq!(Arc::weak_count(&record), 1, "kept with the outcome, completer gone");
        assert!(!h.cancel(), "settled: the hook does not run");
        assert_eq!(h.join().unwrap(), 3);
        assert_eq!(Arc::weak_count(&record), 0, "let go by the joiner");
        // A cancellation runs the hook and lets it go.
        let (c, h) = promise::<u8>();
        let weak: Weak<Record> = Arc::downgrade(&record);
        c.on_cancel_of(weak);
        assert!(h.cancel());
        assert_eq!((record.0.load(Ordering::SeqCst), Arc::weak_count(&record)), (1, 0));
        drop(c);
        assert!(matches!(h.join(), Err(TaskError::Cancelled)));
    }

    /// A backend's record that helps a waiter: it settles the task itself (as a thread
    /// that reads its result would) or, as a copy of the process would, says it never can.
    struct Helper {
        completer: Mutex<Option<Completer<u8>>>,
        refuse: bool,
        /// The deadline of every call, in order.
        calls: Mutex<Vec<Option<Instant>>>,
    }

    impl Helper {
        fn of(refuse: bool) -> (Arc<Helper>, TaskHandle<u8>) {
            let (completer, handle) = promise::<u8>();
            let helper = Arc::new(Helper {
                completer: Mutex::new(None),
                refuse,
                calls: Mutex::new(Vec::new()),
            });
            let weak: Weak<Helper> = Arc::downgrade(&helper);
            completer.on_cancel_of(weak);
            *helper.completer.lock().unwrap() = Some(completer);
            (helper, handle)
        }

        fn calls(&self) -> Vec<Option<Instant>> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl Cancel for Helper {
        fn cancel(&self) {}

        fn help_wait(
            &self,
            deadline: Option<Instant>,
            done: &dyn Fn() -> bool,
        ) -> Result<(), TaskError> {
            self.calls.lock().unwrap().push(deadline);
            assert!(!done(), "asked to help with a task settled already");
            if self.refuse {
                return Err(TaskError::ShutDown);
            }
            if let Some(completer) = self.completer.lock().unwrap().take() {
                completer.complete(Ok(7));
            }
            assert!(done(), "settled by the help");
            Ok(())
        }
    }

    /// `handle.join()` on another thread, failing the test if it waits a minute (without
    /// the help, nothing would settle the tasks of these tests).
    fn joined<R: Send + 'static>(handle: TaskHandle<R>) -> Result<R, TaskError> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(handle.join()));
        rx.recv_timeout(Duration::from_secs(60)).expect("join waited a minute")
    }

    #[test]
    fn a_joiner_lets_the_record_help_and_the_help_may_settle_the_task() {
        let (helper, handle) = Helper::of(false);
        assert_eq!(joined(handle).unwrap(), 7, "no other thread settles it");
        assert_eq!(helper.calls(), [None], "once, with no deadline");

        let (helper, mut handle) = Helper::of(false);
        let before = Instant::now();
        assert_eq!(handle.join_timeout(Duration::from_secs(60)).unwrap(), 7);
        let calls = helper.calls();
        let deadline = calls[0].expect("join_timeout's deadline");
        assert!(calls.len() == 1 && deadline >= before + Duration::from_secs(60));
        assert!(deadline <= Instant::now() + Duration::from_secs(60));
    }

    #[test]
    fn a_record_that_says_the_task_can_never_settle_here_settles_it_with_its_error() {
        let (helper, handle) = Helper::of(true);
        assert!(matches!(joined(handle), Err(TaskError::ShutDown)));
        let completer = helper.completer.lock().unwrap().take().unwrap();
        assert!(!completer.complete(Ok(1)), "settled already");
        assert_eq!(Arc::weak_count(&helper), 0, "the record let go with the outcome");

        let (helper, mut handle) = Helper::of(true);
        let error = handle.join_timeout(Duration::from_secs(60)).unwrap_err();
        assert!(matches!(error, TaskError::ShutDown));
        assert_eq!(helper.calls().len(), 1);
    }

    #[test]
    fn a_settled_task_needs_no_help() {
        let (helper, handle) = Helper::of(true);
        let completer = helper.completer.lock().unwrap().take().unwrap();
        assert!(completer.complete(Ok(2)));
        assert_eq!(handle.join().unwrap(), 2);
        assert!(helper.calls().is_empty(), "never asked");
        let (helper, handle) = Helper::of(true);
        assert!(handle.cancel());
        assert!(matches!(handle.join(), Err(TaskError::Cancelled)));
        assert!(helper.calls().is_empty(), "never asked");
    }

    /// A backend's record that holds its handle's slot: the help settles the task, or says
    /// it never can here; it counts its cancellations and helps.
    struct Holder {
        slot: Slot<u8>,
        refuse: bool,
        cancels: AtomicUsize,
        helps: AtomicUsize,
    }

    impl Holder {
        fn of(refuse: bool) -> (Arc<Holder>, TaskHandle<u8>) {
            let zero = || AtomicUsize::new(0);
            let holder =
                Arc::new(Holder { slot: Slot::new(), refuse, cancels: zero(), helps: zero() });
            (holder.clone(), handle_of(holder, 0))
        }

        fn counts(&self) -> (usize, usize) {
            (self.cancels.load(Ordering::SeqCst), self.helps.load(Ordering::SeqCst))
        }
    }

    impl Cancel for Holder {
        fn cancel(&self) {
            self.cancels.fetch_add(1, Ordering::SeqCst);
        }

        fn help_wait(
            &self,
            _deadline: Option<Instant>,
            done: &dyn Fn() -> bool,
        ) -> Result<(), TaskError> {
            self.helps.fetch_add(1, Ordering::SeqCst);
            if self.refuse {
                return Err(TaskError::ShutDown);
            }
            assert!(self.slot.complete(Ok(9)));
            assert!(done(), "settled by the help");
            Ok(())
        }

        fn forsaken(&self) -> Option<TaskError> {
            self.refuse.then_some(TaskError::ShutDown)
        }
    }

    impl Holds<u8> for Holder {
        fn slot(&self, _: usize) -> &Slot<u8> {
            &self.slot
        }
    }

    #[test]
    fn a_record_that_holds_the_slot_serves_its_handle_as_a_hook_would() {
        let (holder, handle) = Holder::of(false);
        assert_eq!(joined(handle).unwrap(), 9, "no other thread settles it");
        assert_eq!(holder.counts(), (0, 1), "helped once");

        let (holder, handle) = Holder::of(false);
        assert!(handle.cancel());
        assert!(!handle.cancel(), "settled already");
        assert!(!holder.slot.complete(Ok(1)), "the cancellation settled it");
        assert!(matches!(handle.join(), Err(TaskError::Cancelled)));
        assert_eq!(holder.counts(), (1, 0), "cancelled once, a settled task needs no help");

        let (holder, handle) = Holder::of(true);
        assert!(matches!(joined(handle), Err(TaskError::ShutDown)));
        assert_eq!(holder.counts(), (0, 1));
        let (_, mut handle) = Holder::of(true);
        let wakes = Arc::new(CountWakes::default());
        assert!(matches!(poll(&mut handle, &wakes), Poll::Ready(Err(TaskError::ShutDown))));
    }

    /// Counts the wake-ups of the task that polls with it.
    #[derive(Default)]
    struct CountWakes(AtomicUsize);

    impl std::task::Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll<R>(handle: &mut TaskHandle<R>, wakes: &Arc<CountWakes>) -> Poll<Result<R, TaskError>> {
        let waker = Waker::from(wakes.clone());
        Pin::new(handle).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn completion_wakes_the_awaiting_task_once() {
        let wakes = Arc::new(CountWakes::default());
        let (c, mut h) = promise::<u8>();
        assert!(poll(&mut h, &wakes).is_pending());
        assert!(poll(&mut h, &wakes).is_pending(), "a second poll only replaces the waker");
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
        c.complete(Ok(3));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert!(matches!(poll(&mut h, &wakes), Poll::Ready(Ok(3))));
        assert!(matches!(poll(&mut h, &wakes), Poll::Ready(Err(TaskError::AlreadyJoined))));
    }

    #[test]
    fn cancel_and_a_dropped_completer_wake_the_awaiting_task() {
        let wakes = Arc::new(CountWakes::default());
        let (_c, mut h) = promise::<u8>();
        assert!(poll(&mut h, &wakes).is_pending());
        assert!(h.cancel());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert!(matches!(poll(&mut h, &wakes), Poll::Ready(Err(TaskError::Cancelled))));

        let (c, mut h) = promise::<u8>();
        assert!(poll(&mut h, &wakes).is_pending());
        drop(c);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2);
        assert!(matches!(poll(&mut h, &wakes), Poll::Ready(Err(TaskError::ShutDown))));
    }

    #[test]
    fn a_settled_handle_is_ready_at_the_first_poll() {
        let wakes = Arc::new(CountWakes::default());
        let (c, mut h) = promise::<&str>();
        c.complete(Ok("early"));
        assert!(matches!(poll(&mut h, &wakes), Poll::Ready(Ok("early"))));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn completion_wakes_a_joiner_on_another_thread() {
        let (c, h) = promise::<String>();
        let joiner = std::thread::spawn(move || h.join());
        c.complete(Ok("done".into()));
        assert_eq!(joiner.join().unwrap().unwrap(), "done");
    }
}
