//! How many items an `imap` keeps in flight and hands a backend at once: fixed, or, for a
//! backend that takes items in groups ([`ImapPace`]), growing while the items prove fast, so
//! that a job of tiny items pays a wake-up per large group while one of slow or large items
//! keeps the small window it started with.

use std::time::{Duration, Instant};

/// How an `imap` starts handing items to a backend that takes them in groups (see
/// [`Execute::execute_group`](crate::backend::Execute::execute_group)).
///
/// The iterator starts with groups of `group` items and at most `window` in flight. While
/// its items prove fast (a window's worth yielded in under 10 µs an item) it doubles both,
/// up to [`Pool::imap_window`](crate::Pool::imap_window) items in flight (and groups of a
/// quarter of that at most); once they take over a millisecond each it goes back to these.
///
/// # Examples
///
/// ```
/// use taskpool_core::backend::ImapPace;
///
/// let pace = ImapPace { group: 8, window: 32 };
/// assert!(pace.group <= pace.window);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImapPace {
    /// How many items are handed over at once, at first.
    pub group: usize,
    /// How many items are in flight at most, at first.
    pub window: usize,
}

/// Items that take less than this each, on average over a window, are fast: the window and
/// the groups grow.
const FAST: Duration = Duration::from_micros(10);

/// Items that take more than this each, on average over a window, are slow: the window and
/// the groups go back to their first sizes.
const SLOW: Duration = Duration::from_millis(1);

/// One iterator's window and group size, and what it measures to change them.
#[derive(Debug)]
pub(crate) struct Pace {
    group: usize,
    window: usize,
    first: ImapPace,
    /// The window's bound, the pool's `imap_window`, if the pace grows; none if it is fixed.
    most: Option<usize>,
    /// Outcomes yielded since `since`.
    yielded: usize,
    /// When the current measure began; none before the first window was yielded (whose
    /// time holds the start of the job).
    since: Option<Instant>,
}

impl Pace {
    /// The pace of an iterator whose window is at most `most`: fixed at `most`, one item at a
    /// time, without `start`; growing from `start` with it.
    pub(crate) fn new(most: usize, start: Option<ImapPace>) -> Pace {
        let most = most.max(1);
        let first = match start {
            None => ImapPace { group: 1, window: most },
            Some(start) => {
                let window = start.window.clamp(1, most);
                ImapPace { group: start.group.clamp(1, window), window }
            }
        };
        // A pace that starts where it would end is fixed, and never measures.
        let most = (start.is_some() && first.window < most).then_some(most);
        Pace { group: first.group, window: first.window, first, most, yielded: 0, since: None }
    }

    /// How many items may be in flight now.
    pub(crate) fn window(&self) -> usize {
        self.window
    }

    /// How many items may be in flight at most, ever: what the window grows to.
    pub(crate) fn most(&self) -> usize {
        self.most.unwrap_or(self.window)
    }

    /// How many items to hand over at once now.
    pub(crate) fn group(&self) -> usize {
        self.group
    }

    /// Counts an outcome yielded; after each window's worth, resizes by how fast they came.
    pub(crate) fn yielded(&mut self) {
        let Some(most) = self.most else { return };
        self.yielded += 1;
        if self.yielded < self.window {
            return;
        }
        let now = Instant::now();
        if let Some(since) = self.since {
            let each = now.duration_since(since).as_nanos() / self.yielded as u128;
            if each < FAST.as_nanos() && self.window < most {
                self.window = (self.window * 2).min(most);
                self.group = (self.group * 2).min((self.window / 4).max(self.first.group));
            } else if each > SLOW.as_nanos() {
                (self.group, self.window) = (self.first.group, self.first.window);
            }
        }
        (self.since, self.yielded) = (Some(now), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_start_the_window_is_fixed_at_the_most() {
        let mut pace = Pace::new(8, None);
        (0..100).for_each(|_| pace.yielded());
        assert_eq!((pace.group(), pace.window()), (1, 8));
    }

    #[test]
    fn fast_items_grow_the_window_to_the_most_and_slow_ones_bring_it_back() {
        let mut pace = Pace::new(512, Some(ImapPace { group: 8, window: 32 }));
        assert_eq!((pace.group(), pace.window()), (8, 32));
        // Yielded at once: as fast as items come.
        (0..10_000).for_each(|_| pace.yielded());
        assert_eq!((pace.group(), pace.window()), (128, 512));
        // A window's worth that took over a millisecond each.
        pace.yielded = 0;
        pace.since = Instant::now().checked_sub(SLOW * 2 * 512);
        (0..512).for_each(|_| pace.yielded());
        assert_eq!((pace.group(), pace.window()), (8, 32));
    }
}
