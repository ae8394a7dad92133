//! [`Queue`]: the pool's own queue of submitted tasks, and the rule for how many of rayon's
//! threads drain it.
//!
//! A rayon `spawn` per task boxes the task, and the pool thread that runs it frees the box:
//! memory one thread allocates and another frees, for every task. A thread-caching allocator
//! (glibc's) then finds the submitter's cache always empty and the pool threads' caches
//! always full, and sends both through the arena's lock; rayon also counts every spawn on a
//! line all its threads write. Here a submit pushes onto this queue, and a rayon job, a
//! *drainer*, is spawned only while fewer drainers run than the pool has threads. A drainer
//! runs tasks until the queue stays empty for [`LINGER`], so a burst of submits costs a push
//! each and a rayon spawn for the first few.
//!
//! No task is left behind: a submitter pushes and then looks at the count of drainers, and a
//! drainer that leaves lowers the count and then looks at the queue (both sequentially
//! consistent). So either the submitter sees the lowered count and starts a drainer, or the
//! leaving drainer sees the task and stays.
//!
//! A drainer that found the queue empty waits for the next task yielding its CPU. While the
//! submitter waits for each task (`apply`), a drainer on another CPU first checks for a few
//! microseconds without yielding: a round trip's next task is then taken without a system
//! call (in a burst it would take each task the moment it is queued, reading every slot while
//! the submitter writes the next one on the same line). A drainer that keeps waiting for tasks
//! submitted from its own CPU moves to another (`cpu.rs`): a submit records the CPU it ran on.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::sync::{Mutex, PoisonError};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_deque::{Injector, Steal};

use crate::cpu::{self, Crowding};

/// How long a drainer that found the queue empty keeps looking before it leaves: long
/// enough to bridge the gaps between a caller's submits and a round trip's next task (a
/// drainer that left costs the next submit a rayon spawn and, if its thread slept, a
/// wake-up), short enough that an idle pool stops spending CPU at once.
const LINGER: Duration = Duration::from_micros(20);

/// Checks of the queue a drainer that found it empty makes without yielding while the
/// submitter waits for each task, ever further apart (2⁸ spin hints in all): a round trip's
/// next task comes within them when the submitter runs on another CPU.
const TIGHT_CHECKS: u32 = 8;

/// Tasks waiting for a pool thread, and how many drainers run.
pub(crate) struct Queue<T> {
    tasks: Injector<T>,
    drainers: AtomicUsize,
    /// The most drainers at once: the pool's threads.
    most: usize,
    /// The CPU the last submit ran on, `usize::MAX` if not known.
    submitted_on: AtomicUsize,
    /// Whether the last submitter waits for its task at once (`apply`).
    awaited: AtomicBool,
    /// Relief threads (see `relief.rs`), which sleep while the queue is empty and are woken
    /// by every push while any is registered. Kept apart: a push only reads its count, and
    /// the fields above are on the lines every task's push and pop touch.
    relief: Box<Relievers>,
}

/// The relief threads registered with a queue: how many, and which.
#[derive(Default)]
struct Relievers {
    count: AtomicUsize,
    threads: Mutex<Vec<Thread>>,
}

impl<T> Queue<T> {
    /// An empty queue drained by at most `most` drainers at once.
    pub(crate) fn new(most: usize) -> Self {
        Queue {
            tasks: Injector::new(),
            drainers: AtomicUsize::new(0),
            most: most.max(1),
            submitted_on: AtomicUsize::new(usize::MAX),
            awaited: AtomicBool::new(false),
            relief: Box::default(),
        }
    }

    /// The most drainers at once: the pool's threads.
    pub(crate) fn most(&self) -> usize {
        self.most
    }

    /// Queues `task`, which its submitter waits for at once if `awaited`. Returns whether the
    /// caller must start a drainer, which then calls [`Queue::drain`]: fewer than the most
    /// were running, and this call counted the new one.
    #[must_use]
    pub(crate) fn push(&self, task: T, awaited: bool) -> bool {
        self.submitted_on.store(cpu::current().unwrap_or(usize::MAX), Ordering::Relaxed);
        self.awaited.store(awaited, Ordering::Relaxed);
        self.tasks.push(task);
        // The push before the count's load: see the module's notes.
        fence(Ordering::SeqCst);
        if self.relieved() {
            // After the fence: a relief thread that registered before it sees the task or
            // is woken (see `wait_as_relief`).
            self.wake_relief();
        }
        self.claim()
    }

    /// Counts one more drainer, unless the most already run.
    fn claim(&self) -> bool {
        let mut running = self.drainers.load(Ordering::SeqCst);
        while running < self.most {
            match self.drainers.compare_exchange_weak(
                running,
                running + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(now) => running = now,
            }
        }
        false
    }

    /// What a drainer does: runs queued tasks with `run` until the queue stays empty for
    /// [`LINGER`], then leaves (returns), unless a task came in as it left. Calls `idle`
    /// each time it finds the queue empty, before it waits.
    pub(crate) fn drain(&self, mut run: impl FnMut(T), mut idle: impl FnMut()) {
        let mut crowding = Crowding::default();
        loop {
            while let Some(task) = self.pop() {
                run(task);
            }
            idle();
            if self.linger() {
                let from = self.submitted_on.load(Ordering::Relaxed);
                crowding.note((from != usize::MAX).then_some(from), self.most);
                continue;
            }
            self.drainers.fetch_sub(1, Ordering::SeqCst);
            // The count's change before the queue's load: see the module's notes.
            fence(Ordering::SeqCst);
            if self.tasks.is_empty() || !self.claim() {
                return;
            }
        }
    }

    /// Runs the queued tasks on the calling thread until the queue is empty, outside the
    /// drainers' count: for a thread that waits for the pool's tasks from inside one of them
    /// (`shutdown` in a task), where every thread of the pool may be waiting so.
    pub(crate) fn help(&self, mut run: impl FnMut(T)) {
        while let Some(task) = self.pop() {
            run(task);
        }
    }

    /// The next task, if one waits: for a thread that gives queued tasks a turn between the
    /// items of a batch (see `pool.rs`, `Turns`), which looks often and mostly finds none.
    /// The look reads the queue's two ends and writes nothing.
    #[inline]
    pub(crate) fn next_waiting(&self) -> Option<T> {
        if self.tasks.is_empty() { None } else { self.pop() }
    }

    /// Sleeps the calling relief thread until a push or an unpark wakes it, unless the queue
    /// has a task. The first wake-up comes when it is registered ([`Queue::register_relief`]).
    pub(crate) fn wait_as_relief(&self) {
        // Registered before this load (the fence, as a push's), a push after it wakes this
        // thread; one before it left its task for this load to see. A wake-up that comes
        // before the park leaves the thread's token, so the park returns at once.
        fence(Ordering::SeqCst);
        if self.tasks.is_empty() {
            std::thread::park();
        }
    }

    /// Registers `thread` as a relief thread, woken by every push from now on, and wakes it
    /// once: it may have looked at the queue and gone to sleep before it was registered.
    pub(crate) fn register_relief(&self, thread: &Thread) {
        self.relief_list().push(thread.clone());
        self.relief.count.fetch_add(1, Ordering::SeqCst);
        thread.unpark();
    }

    /// Whether a relief thread is registered: some task is past its time limit and still
    /// holds a thread.
    #[inline]
    pub(crate) fn relieved(&self) -> bool {
        // Sequentially consistent (a plain load on x86-64): after a timed task's end is
        // stored, this load either sees a relief thread counted, or the count's increase
        // comes later and the relief thread, woken after it, sees the end (see `relief.rs`).
        self.relief.count.load(Ordering::SeqCst) > 0
    }

    /// Waits until the calling thread is registered as a relief thread (by the thread that
    /// started it), so that it never leaves before it is counted.
    pub(crate) fn await_relief_registration(&self) {
        let me = std::thread::current().id();
        while !self.relief_list().iter().any(|t| t.id() == me) {
            std::thread::park();
        }
    }

    /// Takes the calling thread off the relief threads.
    pub(crate) fn unregister_relief(&self) {
        let me = std::thread::current().id();
        self.relief_list().retain(|t| t.id() != me);
        self.relief.count.fetch_sub(1, Ordering::SeqCst);
    }

    /// Wakes every relief thread (a push, or the pool dropped).
    pub(crate) fn wake_relief(&self) {
        self.relief_list().iter().for_each(Thread::unpark);
    }

    fn relief_list(&self) -> std::sync::MutexGuard<'_, Vec<Thread>> {
        self.relief.threads.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next task, if any.
    fn pop(&self) -> Option<T> {
        loop {
            match self.tasks.steal() {
                Steal::Success(task) => return Some(task),
                Steal::Empty => return None,
                Steal::Retry => std::hint::spin_loop(),
            }
        }
    }

    /// Waits up to [`LINGER`] for a task; returns whether one came. Yields the CPU while it
    /// waits: on a machine with as many threads as CPUs, the submitter may need this one.
    fn linger(&self) -> bool {
        // Without yielding only while the submitter waits for each task, and not on its CPU,
        // which it would keep from submitting (see the module's notes).
        let tight = self.awaited.load(Ordering::Relaxed)
            && cpu::current() != Some(self.submitted_on.load(Ordering::Relaxed));
        for check in 0..if tight { TIGHT_CHECKS } else { 0 } {
            if !self.tasks.is_empty() {
                return true;
            }
            // Ever longer between checks: each reads the line the submitter writes.
            for _ in 0..1u32 << check {
                std::hint::spin_loop();
            }
        }
        let start = Instant::now();
        loop {
            if !self.tasks.is_empty() {
                return true;
            }
            if start.elapsed() >= LINGER {
                return false;
            }
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn only_as_many_drainers_start_as_the_queue_allows() {
        let queue = Queue::new(2);
        assert!(queue.push(1, false));
        assert!(queue.push(2, false));
        assert!(!queue.push(3, false), "a third drainer while two run");
        let mut ran = Vec::new();
        queue.drain(|t| ran.push(t), || {});
        assert_eq!(ran, [1, 2, 3]);
        // One drainer left; one is still counted, so one more may start.
        assert!(queue.push(4, false));
        assert!(!queue.push(5, false));
    }

    #[test]
    fn a_drainer_that_leaves_lets_the_next_push_start_another() {
        let queue = Queue::new(1);
        assert!(queue.push(1, false));
        let mut ran = Vec::new();
        queue.drain(|t| ran.push(t), || {});
        assert!(queue.push(2, false), "the drainer left: the next push must start one");
        queue.drain(|t| ran.push(t), || {});
        assert_eq!(ran, [1, 2]);
    }

    /// Many submitters and drainers that come and go: every task runs exactly once, and
    /// whenever a push says no drainer is needed, one that runs then sees the task.
    #[test]
    fn every_task_pushed_while_drainers_come_and_go_runs_exactly_once() {
        const PER_THREAD: u64 = 20_000;
        let queue = Arc::new(Queue::new(2));
        let sum = Arc::new(AtomicU64::new(0));
        let count = Arc::new(AtomicU64::new(0));
        let drainers = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for t in 0..3u64 {
                let (queue, sum, count, drainers) = (&queue, &sum, &count, &drainers);
                s.spawn(move || {
                    for i in 0..PER_THREAD {
                        if queue.push(t * PER_THREAD + i, i % 3 == 0) {
                            let (queue, sum, count) = (queue.clone(), sum.clone(), count.clone());
                            let drainer = std::thread::spawn(move || {
                                let run = |task| {
                                    sum.fetch_add(task, Ordering::Relaxed);
                                    count.fetch_add(1, Ordering::Relaxed);
                                };
                                queue.drain(run, || {});
                            });
                            drainers.lock().unwrap().push(drainer);
                        }
                    }
                });
            }
        });
        for drainer in drainers.into_inner().unwrap() {
            drainer.join().unwrap();
        }
        let n = 3 * PER_THREAD;
        assert_eq!(count.load(Ordering::Relaxed), n, "tasks run");
        assert_eq!(sum.load(Ordering::Relaxed), n * (n - 1) / 2, "each task once");
        assert!(queue.tasks.is_empty());
        assert_eq!(queue.drainers.load(Ordering::Relaxed), 0);
    }
}
