//! A lock in shared memory that survives the death of its holder: the lock word of a
//! [`Channel`](crate::channel) shared by many processes.
//!
//! The word is `0` when free, else the holder's process id, with [`WAITERS`] set once someone
//! sleeps on it. Taking it is one compare-and-swap; releasing it is one swap, plus a futex
//! wake only if someone sleeps. A waiter sleeps in slices of [`SLICE`]; each time a slice
//! passes with the same holder, it checks that the holder's process still lives (it reads
//! `/proc/PID/stat`, so a zombie counts as dead), and takes the lock over from a dead one.
//! The taker learns that it did ([`Guard::took_over`]) and repairs what the dead holder may
//! have left half-done before it relies on it.
//!
//! The word may be overwritten by a peer that breaks the protocol; that costs the waits of
//! the channel it breaks (a holder that names no live process is taken over), never memory
//! safety. Process ids are reused by the kernel only after a process is reaped; a reused id
//! held by a live process makes the lock wait for that process (up to a slice at a time).

use std::sync::OnceLock;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::{Duration, Instant};

use crate::sys;

/// Set in the lock word while someone sleeps on it.
const WAITERS: u32 = 1 << 31;
/// How long a waiter sleeps before it checks on the holder.
const SLICE: Duration = Duration::from_millis(2);
/// Attempts in a tight loop before a taker sleeps.
const SPINS: u32 = 200;

/// The lock at `word`, held until the guard drops.
#[derive(Debug)]
pub(crate) struct Guard<'a> {
    word: &'a AtomicU32,
    took_over: bool,
}

impl Guard<'_> {
    /// Whether the lock was taken from a holder that died holding it: what it guards may be
    /// half-updated.
    pub(crate) fn took_over(&self) -> bool {
        self.took_over
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if self.word.swap(0, Release) & WAITERS != 0 {
            sys::futex_wake(self.word, 1);
        }
    }
}

/// This process's id, asked of the kernel once (a copy made by `fork()` asks again).
pub(crate) fn my_pid() -> u32 {
    static PID: OnceLock<u32> = OnceLock::new();
    if sys::forked() { sys::pid() } else { *PID.get_or_init(sys::pid) }
}

/// This process's mark in a lock word.
fn me() -> u32 {
    my_pid() & !WAITERS
}

/// Whether the process `pid` is gone (or exiting, or a zombie): its lock may be taken over.
pub(crate) fn is_gone(pid: u32) -> bool {
    if pid == my_pid() {
        return false;
    }
    match libc::pid_t::try_from(pid) {
        Ok(pid) if pid > 0 => sys::is_exiting(pid),
        _ => true,
    }
}

/// Takes the lock at `word`, waiting as long as a live process holds it.
pub(crate) fn lock(word: &AtomicU32) -> Guard<'_> {
    let me = me();
    for _ in 0..SPINS {
        if word.compare_exchange_weak(0, me, Acquire, Relaxed).is_ok() {
            return Guard { word, took_over: false };
        }
        std::hint::spin_loop();
    }
    loop {
        let seen = word.load(Relaxed);
        if seen == 0 {
            // Others may sleep too: keep the mark so that this holder wakes one.
            if word.compare_exchange(0, me | WAITERS, Acquire, Relaxed).is_ok() {
                return Guard { word, took_over: false };
            }
            continue;
        }
        let marked = seen | WAITERS;
        if seen != marked && word.compare_exchange(seen, marked, Relaxed, Relaxed).is_err() {
            continue;
        }
        let start = Instant::now();
        sys::futex_wait(word, marked, Some(SLICE));
        if start.elapsed() >= SLICE
            && word.load(Relaxed) == marked
            && is_gone(marked & !WAITERS)
            && word.compare_exchange(marked, me | WAITERS, Acquire, Relaxed).is_ok()
        {
            return Guard { word, took_over: true };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_lock_is_taken_at_once_and_a_dead_holders_is_taken_over() {
        let word = AtomicU32::new(0);
        {
            let guard = lock(&word);
            assert!(!guard.took_over());
            assert_eq!(word.load(Relaxed), me());
        }
        assert_eq!(word.load(Relaxed), 0, "released on drop");
        // A holder that is no process at all (the kernel's pids stay below 2^22).
        word.store((1 << 30) + 7, Relaxed);
        let guard = lock(&word);
        assert!(guard.took_over());
        drop(guard);
        assert_eq!(word.load(Relaxed), 0);
    }

    #[test]
    fn threads_of_one_process_exclude_each_other() {
        let word = AtomicU32::new(0);
        let counter = AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..2000 {
                        let _guard = lock(&word);
                        let v = counter.load(Relaxed);
                        std::hint::spin_loop();
                        counter.store(v + 1, Relaxed);
                    }
                });
            }
        });
        assert_eq!(counter.load(Relaxed), 8000);
    }
}
