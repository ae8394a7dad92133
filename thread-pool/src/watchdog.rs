//! A timer thread that fires alarms at deadlines: how a thread pool reports timeouts.
//!
//! A thread cannot be stopped, so a timeout here only settles the task's handle early; the
//! alarm runs on the watchdog's own thread. The thread starts with the first alarm, so pools
//! without timeouts never pay for it. Where it cannot start (no thread or process more
//! allowed: a pids limit), nothing is armed, and the task whose alarm it was fails with
//! `WorkerStart` without running: run, it could outlast its limit with nothing to end its
//! caller's wait.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{self, JoinHandle};
use std::time::Instant;

/// What rings at a deadline: a timed task's own record, so that arming one allocates nothing
/// (the watchdog's slots are reused while alarms come and go).
pub(crate) trait Alarm: Send + Sync {
    /// The deadline passed before the alarm was disarmed. Runs on the watchdog's thread.
    fn ring(self: Arc<Self>);
}

/// An alarm as the watchdog holds it: weakly, as the task's record outlives it while the task
/// runs, and a record gone rings nothing.
type Held = Weak<dyn Alarm>;

/// An armed alarm: its slot, and the number that tells it from the alarms the slot held
/// before or holds after it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Armed {
    slot: usize,
    id: u64,
}

/// An alarm in its slot.
struct Entry {
    at: Instant,
    id: u64,
    alarm: Held,
}

#[derive(Default)]
struct State {
    /// The alarms neither rung nor disarmed, each in a slot of its own, and free slots. A
    /// disarmed alarm leaves nothing behind (a pool with a time limit of minutes arms and
    /// disarms one per task), and the next alarm armed takes its slot: there are as many
    /// slots as alarms were armed at once at most (as many as the tasks that ran at once),
    /// so that arming and disarming, a few stores under the lock, allocate nothing and
    /// search nothing. The thread looks at every slot when it wakes.
    slots: Vec<Option<Entry>>,
    /// The slots free in `slots`.
    free: Vec<usize>,
    next_id: u64,
    stopped: bool,
    /// How long the thread sleeps, for `arm` to wake it only for an alarm due sooner.
    sleep: Sleep,
    /// How many times `arm` woke the thread.
    #[cfg(test)]
    woken: usize,
}

/// What the watchdog's thread does, as far as `arm` needs to know.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum Sleep {
    /// It has not slept yet, or woke and looks at the alarms before it sleeps again: it sees
    /// any alarm armed meanwhile.
    #[default]
    Looking,
    /// It sleeps until this instant, and then looks at the alarms again.
    Until(Instant),
    /// It sleeps until woken: there was no alarm.
    Forever,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
pub(crate) struct Watchdog {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Whether `thread` holds the started thread, so that arming does not take its lock.
    started: AtomicBool,
}

impl Watchdog {
    /// Rings `alarm` at `at` unless disarmed first (or gone by then). Returns what to disarm
    /// it with, or why the watchdog's thread cannot be started (out of threads or processes:
    /// `EAGAIN`), in which case nothing is armed.
    ///
    /// Wakes the thread only if it would otherwise look too late: a pool that arms and
    /// disarms an alarm per task arms each one later than the last, which the thread, asleep
    /// until the earlier deadline, finds when it wakes for that one. (Woken for every alarm
    /// armed while none waited, the thread cost every such task a wake-up and two switches
    /// between threads.)
    pub(crate) fn arm(&self, at: Instant, alarm: Held) -> io::Result<Armed> {
        self.start()?;
        let mut state = self.shared.lock();
        let id = state.next_id;
        state.next_id += 1;
        let entry = Some(Entry { at, id, alarm });
        let slot = match state.free.pop() {
            Some(slot) => {
                state.slots[slot] = entry;
                slot
            }
            None => {
                state.slots.push(entry);
                state.slots.len() - 1
            }
        };
        let wake = match state.sleep {
            Sleep::Looking => false,
            Sleep::Until(until) => at < until,
            Sleep::Forever => true,
        };
        if wake {
            // Looking from now on: a second alarm armed before the thread wakes needs no
            // second wake-up.
            state.sleep = Sleep::Looking;
            #[cfg(test)]
            {
                state.woken += 1;
            }
        }
        drop(state);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(Armed { slot, id })
    }

    /// Drops the alarm `armed` if it has not fired.
    pub(crate) fn disarm(&self, armed: Armed) {
        let mut state = self.shared.lock();
        let alarm = match &state.slots[armed.slot] {
            // Its own: not rung, and the slot not taken since by another alarm.
            Some(entry) if entry.id == armed.id => state.slots[armed.slot].take(),
            _ => None,
        };
        if alarm.is_some() {
            state.free.push(armed.slot);
        }
        drop(state);
        drop(alarm);
    }

    /// How many alarms wait to fire.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.shared.lock().slots.iter().flatten().count()
    }

    /// Starts the thread, unless it runs already.
    fn start(&self) -> io::Result<()> {
        // Acquire, as the store below is Release: a thread that sees it set sees the thread
        // stored too (only `Drop` reads it, but the flag says no more than it holds).
        if self.started.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner);
        if thread.is_none() {
            let shared = self.shared.clone();
            *thread = Some(
                thread::Builder::new()
                    .name("taskpool-watchdog".into())
                    .spawn(move || run(&shared))?,
            );
            self.started.store(true, Ordering::Release);
        }
        Ok(())
    }
}

fn run(shared: &Shared) {
    let mut state = shared.lock();
    loop {
        if state.stopped {
            return;
        }
        let now = Instant::now();
        let mut due = Vec::new();
        let mut next = None;
        let State { slots, free, .. } = &mut *state;
        for (slot, held) in slots.iter_mut().enumerate() {
            match held {
                Some(entry) if entry.at <= now => {
                    due.extend(held.take());
                    free.push(slot);
                }
                Some(entry) => next = Some(next.map_or(entry.at, |at: Instant| at.min(entry.at))),
                None => {}
            }
        }
        if !due.is_empty() {
            drop(state);
            due.sort_by_key(|entry| (entry.at, entry.id));
            due.iter().filter_map(|entry| entry.alarm.upgrade()).for_each(Alarm::ring);
            state = shared.lock();
            continue;
        }
        state = match next {
            Some(at) => {
                state.sleep = Sleep::Until(at);
                let wait = at.saturating_duration_since(now);
                shared.wake.wait_timeout(state, wait).unwrap_or_else(PoisonError::into_inner).0
            }
            None => {
                state.sleep = Sleep::Forever;
                shared.wake.wait(state).unwrap_or_else(PoisonError::into_inner)
            }
        };
        // Under the lock again, before it looks at the alarms.
        state.sleep = Sleep::Looking;
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.lock().stopped = true;
        self.shared.wake.notify_one();
        let thread = self.thread.get_mut().unwrap_or_else(PoisonError::into_inner).take();
        // Dropped on its own thread (by an alarm that let go of the pool last), it leaves on
        // its own once the alarm returns: it sees `stopped`.
        if let Some(thread) = thread.filter(|t| t.thread().id() != thread::current().id()) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// An alarm that runs a closure when it rings.
    struct Bell(Mutex<Option<Box<dyn FnOnce() + Send>>>);

    impl Alarm for Bell {
        fn ring(self: Arc<Self>) {
            let rung = self.0.lock().unwrap().take();
            if let Some(rung) = rung {
                rung();
            }
        }
    }

    /// An alarm that runs `rung` when it rings; the watchdog holds it weakly, so the caller
    /// keeps it.
    fn bell(rung: impl FnOnce() + Send + 'static) -> Arc<dyn Alarm> {
        Arc::new(Bell(Mutex::new(Some(Box::new(rung)))))
    }

    /// A pool with a long time limit arms and disarms an alarm per task: a disarmed one
    /// leaves nothing behind. Before, each left its deadline in the queue until that passed:
    /// with a limit of minutes, a pool running millions of quick tasks held tens of bytes
    /// per task for minutes (hundreds of megabytes).
    #[test]
    fn disarmed_alarms_leave_nothing_behind() {
        let dog = Watchdog::default();
        let later = Instant::now() + Duration::from_secs(3600);
        let quiet = bell(|| {});
        for _ in 0..1000 {
            let armed = dog.arm(later, Arc::downgrade(&quiet)).unwrap();
            dog.disarm(armed);
        }
        assert_eq!(dog.waiting(), 0);
        assert_eq!(Arc::weak_count(&quiet), 0, "none held");
    }

    /// A pool with a time limit arms an alarm as each task starts and disarms it as the task
    /// returns, each later than the last. The thread, asleep until the first, is woken for
    /// none of the others: it finds them when it wakes. Before, every alarm armed while none
    /// waited woke it: 1,000 wake-ups here.
    #[test]
    fn alarms_armed_after_the_one_the_thread_sleeps_until_do_not_wake_it() {
        let dog = Watchdog::default();
        let first = Instant::now() + Duration::from_secs(3600);
        let quiet = bell(|| {});
        let armed = dog.arm(first, Arc::downgrade(&quiet)).unwrap();
        // Synchronised on the thread's own record of its sleep. (The first alarm woke it if
        // it had gone to sleep with none before it was armed.)
        while dog.shared.lock().sleep != Sleep::Until(first) {
            std::thread::yield_now();
        }
        let woken = dog.shared.lock().woken;
        dog.disarm(armed);
        for i in 1..=1000 {
            let armed = dog.arm(first + Duration::from_millis(i), Arc::downgrade(&quiet)).unwrap();
            dog.disarm(armed);
        }
        assert_eq!(dog.shared.lock().woken - woken, 0, "woken for none of them");
        // One due sooner than the thread would look wakes it, and fires.
        let (tx, rx) = mpsc::channel();
        let due = bell(move || tx.send(()).unwrap());
        dog.arm(Instant::now(), Arc::downgrade(&due)).unwrap();
        rx.recv().unwrap();
    }

    #[test]
    fn alarms_fire_in_deadline_order_and_disarmed_ones_do_not() {
        let dog = Watchdog::default();
        let (tx, rx) = mpsc::channel();
        let now = Instant::now();
        let mut kept = Vec::new();
        for (id, ms) in [(1, 30), (2, 10), (3, 20)] {
            let tx = tx.clone();
            let alarm = bell(move || tx.send(id).unwrap());
            let armed = dog.arm(now + Duration::from_millis(ms), Arc::downgrade(&alarm)).unwrap();
            if id == 3 {
                dog.disarm(armed);
            }
            kept.push(alarm);
        }
        assert_eq!(rx.recv().unwrap(), 2);
        assert_eq!(rx.recv().unwrap(), 1);
        drop(dog);
        assert!(rx.try_recv().is_err());
    }

    /// An alarm whose record is gone by its deadline rings nothing.
    #[test]
    fn an_alarm_gone_before_its_deadline_does_not_ring() {
        let dog = Watchdog::default();
        let (tx, rx) = mpsc::channel();
        let gone = {
            let tx = tx.clone();
            bell(move || tx.send("gone").unwrap())
        };
        let kept = bell(move || tx.send("kept").unwrap());
        let now = Instant::now();
        let weak = Arc::downgrade(&gone);
        drop(gone);
        dog.arm(now, weak).unwrap();
        dog.arm(now + Duration::from_millis(1), Arc::downgrade(&kept)).unwrap();
        assert_eq!(rx.recv().unwrap(), "kept", "the later one rings, the one gone does not");
        assert!(rx.try_recv().is_err());
    }

    /// An alarm takes the slot of one that rang; disarming the one that rang, late, leaves
    /// the new one armed.
    #[test]
    fn disarming_an_alarm_that_rang_leaves_the_next_in_its_slot_armed() {
        let dog = Watchdog::default();
        let (tx, rx) = mpsc::channel();
        let rung = {
            let tx = tx.clone();
            bell(move || tx.send("first").unwrap())
        };
        let first = dog.arm(Instant::now(), Arc::downgrade(&rung)).unwrap();
        assert_eq!(rx.recv().unwrap(), "first");
        let next = bell(move || tx.send("next").unwrap());
        let soon = Instant::now() + Duration::from_millis(20);
        let armed = dog.arm(soon, Arc::downgrade(&next)).unwrap();
        assert_eq!(armed.slot, first.slot, "the slot freed by the first");
        dog.disarm(first);
        assert_eq!(dog.waiting(), 1);
        assert_eq!(rx.recv().unwrap(), "next");
    }

    /// Tells whether it is dropped while its thread unwinds.
    struct Told(mpsc::Sender<bool>);

    impl Drop for Told {
        fn drop(&mut self) {
            let _ = self.0.send(std::thread::panicking());
        }
    }

    /// An alarm that lets go of the watchdog last, on the watchdog's own thread (as one that
    /// holds the pool the watchdog is part of may), drops it there without a panic: a thread
    /// cannot join itself.
    #[test]
    fn a_watchdog_dropped_on_its_own_thread_does_not_join_itself() {
        let dog = Arc::new(Watchdog::default());
        let (tx, rx) = mpsc::channel();
        let (go, wait) = mpsc::channel();
        let last = Mutex::new(Some(dog.clone()));
        let alarm = bell(move || {
            wait.recv().unwrap();
            let _told = Told(tx);
            drop(last.lock().unwrap().take());
        });
        dog.arm(Instant::now(), Arc::downgrade(&alarm)).unwrap();
        // The alarm's is the last once it rings.
        drop(dog);
        go.send(()).unwrap();
        assert_eq!(rx.recv(), Ok(false), "dropped without a panic");
    }
}
