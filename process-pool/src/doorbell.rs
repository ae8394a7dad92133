//! Doorbells: how one side of a shared-memory channel wakes the other, and only when it sleeps;
//! and how long a waiter spins before it sleeps.
//!
//! A [`Doorbell`] is two 32-bit words in shared memory: `seq`, bumped by every ring that
//! wakes someone, and `armed`, set by the waiter just before it sleeps. The contract, on
//! which every ring of `ring.rs` relies and any other channel built on [`SharedMemory`] can:
//!
//! - **Ringer.** Publish the new state (a ring's tail, say), then call [`Doorbell::take`]: if
//!   the waiter armed the bell, it disarms it, bumps `seq` and says so, and the ringer wakes
//!   the waiter: [`Doorbell::ring`] does it with a futex wake on `seq`; a waiter that sleeps
//!   in `poll` is woken through a descriptor it polls instead. While the waiter is awake,
//!   ringing costs no system call, and a waiter that slept is woken once however many times
//!   the bell is rung meanwhile.
//! - **Waiter.** Spin a while if that pays ([`Spin`]), then [`Doorbell::arm`] (which returns a
//!   ticket), check the condition again, and only then sleep: [`Doorbell::sleep`] with the
//!   ticket (a futex wait, which returns at once if the bell was rung since the ticket), or
//!   `poll`. Once awake, [`Doorbell::disarm`].
//!
//! Both sides store, then issue a sequentially consistent fence, then load (the ringer its
//! state then `armed`, the waiter `armed` then the state), so either the ringer sees the bell
//! armed or the waiter sees the new state: a wake-up is never lost. The words may be
//! overwritten by a peer that breaks the protocol; that costs spurious or missed wake-ups of
//! the channel it breaks, never memory safety, and a waiter that must not hang on a broken
//! peer sleeps with a timeout or watches the peer's process.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicU32, fence};
use std::time::{Duration, Instant};

use crate::sys::{self, SharedMemory};

/// Bytes a doorbell takes in shared memory (two 32-bit words).
pub(crate) const BELL_BYTES: usize = 8;

/// A doorbell at a fixed place of a [`SharedMemory`]; see the module's contract.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Doorbell<'a> {
    seq: &'a AtomicU32,
    armed: &'a AtomicU32,
}

impl<'a> Doorbell<'a> {
    /// The doorbell whose words are at byte `offset` of `memory` (4-aligned).
    pub(crate) fn at(memory: &'a SharedMemory, offset: usize) -> Self {
        Doorbell { seq: memory.word32(offset), armed: memory.word32(offset + 4) }
    }

    /// Waiter: says that it is about to sleep. Returns the ticket for [`Doorbell::sleep`].
    /// The caller checks its condition again after this, before it sleeps.
    pub(crate) fn arm(&self) -> u32 {
        let ticket = self.seq.load(SeqCst);
        self.armed.store(1, SeqCst);
        fence(SeqCst);
        ticket
    }

    /// Waiter: awake again (or never slept); the bell need not be rung.
    pub(crate) fn disarm(&self) {
        self.armed.store(0, Relaxed);
    }

    /// Waiter: sleeps until the bell is rung after `ticket` was taken, or `timeout` passes.
    /// May return early (a signal); the caller checks its condition and waits again.
    pub(crate) fn sleep(&self, ticket: u32, timeout: Option<Duration>) {
        sys::futex_wait(self.seq, ticket, timeout);
    }

    /// A third party that will watch the state itself (a thread that reads a ring its
    /// waiter also reads) takes the bell over: disarms it, and returns whether it was armed.
    /// It must then [`Doorbell::give_back`] the bell, and wake the waiter itself if the state
    /// changed meanwhile.
    pub(crate) fn borrow(&self) -> bool {
        self.armed.swap(0, SeqCst) != 0
    }

    /// Gives a borrowed bell back, armed; the caller then checks the state again and wakes
    /// the waiter if it changed.
    pub(crate) fn give_back(&self) {
        self.armed.store(1, SeqCst);
        fence(SeqCst);
    }

    /// Ringer, after publishing its state: whether the waiter armed the bell (it is then
    /// disarmed, and `seq` bumped). The caller wakes the waiter if so.
    pub(crate) fn take(&self) -> bool {
        fence(SeqCst);
        if self.armed.load(Relaxed) == 0 || self.armed.swap(0, SeqCst) == 0 {
            return false;
        }
        self.seq.fetch_add(1, SeqCst);
        true
    }

    /// Ringer: [`Doorbell::take`], and a futex wake of a waiter that armed the bell.
    pub(crate) fn ring(&self) {
        if self.take() {
            sys::futex_wake(self.seq, i32::MAX);
        }
    }
}

/// The longest a waiter spins before it sleeps.
const MAX_SPIN: Duration = Duration::from_micros(50);
/// The shortest spin worth making; a shorter budget is no spin at all.
const MIN_SPIN: Duration = Duration::from_micros(4);
/// Checks made in a tight loop before the spinner starts yielding its CPU between checks.
const TIGHT_CHECKS: u32 = 64;
/// A pause this long between two checks means the spinner lost its CPU: the machine is busy.
const PREEMPTED: Duration = Duration::from_micros(30);
/// A yield this long ran another thread on the spinner's CPU.
const GAVE_CPU: Duration = Duration::from_micros(2);
/// While spinning is off, every this many waits spin a little, to learn whether it pays again.
const PROBE_EVERY: u32 = 32;

/// How long a waiter spins before it sleeps, adapted to whether spinning paid.
///
/// A spin pays when the peer answers within it: waking a sleeping process costs several
/// microseconds on a virtual machine, more than most answers take. Each spin that ends in
/// time keeps the budget at its maximum; each that runs out halves it, down to none: a peer
/// that does not answer soon (an idle pool) costs no CPU. A spinner that loses its CPU while
/// spinning (the machine is busy: other threads are waiting for it) stops at once and halves
/// its budget too, so a machine that stays busy turns spinning off after a few waits. (Turning
/// it off at the first loss made a pool's threads settle, about every other pool, into waking
/// each other for every few tasks: a spinner that sleeps makes its peer wait longer, whose
/// spin then runs out too. Measured with 1,000 no-ops in flight on a pool of 2 on 2 shared
/// cores, 10 pools each, medians of 300 rounds: 1.0–1.9 M tasks/s, half the pools near 1.0,
/// against 1.75–1.9 M tasks/s with every pool; the no-op round trip did not change.) With
/// spinning off, every [`PROBE_EVERY`]th wait spins briefly, to learn whether it pays again.
/// After a few tight checks the spinner yields its CPU between checks, so on a crowded
/// machine the peer it waits for can run.
#[derive(Debug, Clone)]
pub(crate) struct Spin {
    budget: Duration,
    waits: u32,
    /// The last spin became ready right after a yield in which another thread ran here.
    handed: bool,
}

impl Default for Spin {
    fn default() -> Self {
        Spin { budget: MAX_SPIN, waits: 0, handed: false }
    }
}

impl Spin {
    /// Spins until `ready` says so or the budget is spent. Returns whether it became ready.
    pub(crate) fn spin(&mut self, ready: impl FnMut() -> bool) -> bool {
        self.spin_within(None, ready)
    }

    /// Like [`Spin::spin`], never past `deadline`.
    pub(crate) fn spin_until(&mut self, deadline: Instant, ready: impl FnMut() -> bool) -> bool {
        self.spin_within(Some(deadline), ready)
    }

    fn spin_within(&mut self, deadline: Option<Instant>, mut ready: impl FnMut() -> bool) -> bool {
        self.waits = self.waits.wrapping_add(1);
        self.handed = false;
        let mut budget = if self.budget.is_zero() && self.waits.is_multiple_of(PROBE_EVERY) {
            MIN_SPIN
        } else {
            self.budget
        };
        if let Some(deadline) = deadline {
            budget = budget.min(deadline.saturating_duration_since(Instant::now()));
        }
        if budget.is_zero() {
            return ready();
        }
        let start = Instant::now();
        let mut last = start;
        let mut checks = 0u32;
        loop {
            if ready() {
                self.budget = MAX_SPIN;
                // Past the tight checks, `last` is when it last yielded. A yield as long as
                // a preemption is a busy machine, not a peer's turn.
                let gave = last.elapsed();
                self.handed = checks >= TIGHT_CHECKS && gave > GAVE_CPU && gave <= PREEMPTED;
                return true;
            }
            checks += 1;
            if checks < TIGHT_CHECKS {
                std::hint::spin_loop();
                continue;
            }
            let now = Instant::now();
            if now - last > PREEMPTED {
                self.shrink();
                return ready();
            }
            if now - start >= budget {
                self.shrink();
                return false;
            }
            last = now;
            std::thread::yield_now();
        }
    }

    /// Whether the last spin became ready right after a yield in which another thread ran
    /// on this CPU for a short turn (the yield took over [`GAVE_CPU`], and not as long as a
    /// preemption, [`PREEMPTED`]): the peer it waited for may share the CPU (see
    /// `crowding.rs`).
    pub(crate) fn handed_cpu(&self) -> bool {
        self.handed
    }

    /// Halves the budget after a spin that did not pay, down to none.
    fn shrink(&mut self) {
        self.budget /= 2;
        if self.budget < MIN_SPIN {
            self.budget = Duration::ZERO;
        }
    }

    /// Whether spinning is off for now.
    #[cfg(test)]
    pub(crate) fn is_off(&self) -> bool {
        self.budget.is_zero()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::*;

    #[test]
    fn a_rung_bell_wakes_its_sleeper_once_and_an_unarmed_one_costs_nothing() {
        let (memory, _fd) = SharedMemory::create(c"taskpool-test", 64).unwrap();
        let bell = Doorbell::at(&memory, 8);
        assert!(!bell.take(), "nobody sleeps: nothing to wake");
        let ticket = bell.arm();
        assert!(bell.take(), "armed: the ringer must wake it");
        assert!(!bell.take(), "woken once");
        // The ring came after the ticket: the sleep returns at once.
        bell.sleep(ticket, None);

        let memory = Arc::new(memory);
        let done = Arc::new(AtomicBool::new(false));
        let sleeper = {
            let (memory, done) = (memory.clone(), done.clone());
            std::thread::spawn(move || {
                let bell = Doorbell::at(&memory, 8);
                while !done.load(SeqCst) {
                    let ticket = bell.arm();
                    if done.load(SeqCst) {
                        bell.disarm();
                        break;
                    }
                    bell.sleep(ticket, None);
                    bell.disarm();
                }
            })
        };
        done.store(true, SeqCst);
        Doorbell::at(&memory, 8).ring();
        sleeper.join().unwrap();
    }

    #[test]
    fn spinning_stops_when_it_does_not_pay_and_resumes_when_it_does() {
        let mut spin = Spin::default();
        let mut calls = 0;
        assert!(spin.spin(|| {
            calls += 1;
            calls > 3
        }));
        for _ in 0..8 {
            assert!(!spin.spin(|| false));
        }
        assert!(spin.is_off(), "an idle peer: no more spinning");
        // Off, it probes now and then; a probe that pays turns spinning back on.
        let mut paid = false;
        for _ in 0..PROBE_EVERY {
            let mut calls = 0;
            paid |= spin.spin(|| {
                calls += 1;
                calls > 2
            });
        }
        assert!(paid && !spin.is_off());
    }

    /// A spin that becomes ready right after a yield that took over [`GAVE_CPU`] (here: the
    /// check after the first yield takes that long, as if the peer ran meanwhile) says
    /// that it handed its CPU over; one that became ready without a yield does not. (On a
    /// busy machine an attempt may lose its CPU for longer than [`PREEMPTED`] inside the
    /// spin, which is then no hand-over: of many attempts, one runs without losing it.)
    #[test]
    fn a_spin_that_became_ready_after_a_long_yield_says_it_handed_its_cpu_over() {
        let handed_once = (0..1000).any(|_| {
            let mut spin = Spin::default();
            let mut calls = 0;
            let ready = spin.spin(|| {
                calls += 1;
                if calls == TIGHT_CHECKS + 1 {
                    let start = Instant::now();
                    while start.elapsed() < 2 * GAVE_CPU {
                        std::hint::spin_loop();
                    }
                    return true;
                }
                false
            });
            ready && spin.handed_cpu()
        });
        assert!(handed_once, "no attempt said that it handed its CPU over");

        let mut spin = Spin::default();
        let mut calls = 0;
        assert!(spin.spin(|| {
            calls += 1;
            calls == TIGHT_CHECKS / 2
        }));
        assert!(!spin.handed_cpu(), "ready within the tight checks");
        assert!(spin.spin(|| true));
        assert!(!spin.handed_cpu(), "ready at once");
    }

    /// A spinner that loses its CPU (here: it is put to sleep past [`PREEMPTED`] between two
    /// checks) stops that spin at once, and turns spinning off only once it keeps losing it.
    #[test]
    fn a_spinner_that_keeps_losing_its_cpu_stops_spinning() {
        let mut spin = Spin::default();
        let mut losses = 0;
        while !spin.is_off() {
            let mut calls = 0;
            let ready = spin.spin(|| {
                calls += 1;
                if calls == TIGHT_CHECKS + 1 {
                    std::thread::sleep(2 * PREEMPTED);
                }
                false
            });
            assert!(!ready);
            assert!(calls <= TIGHT_CHECKS + 2, "went on after the loss: {calls} checks");
            losses += 1;
        }
        // 50 µs halved: 25, 12.5, 6.25, then under the 4 µs worth spinning.
        assert_eq!(losses, 4);
    }
}
