//! The outcomes of a batch on their way back to its caller: in input order, or as they come.

use std::collections::BTreeMap;
use std::vec;

/// The outcomes of a batch's items (a `map`, an `imap`) as they come back from the workers,
/// handed on in input order (`ordered`) or as they come, with a count of the items still
/// out.
///
/// A backend that sends items in groups and receives their outcomes in groups keeps one per
/// batch: it counts what it [`sent`](Reorder::sent), hands over what comes back
/// ([`received`](Reorder::received)), and yields what [`pop`](Reorder::pop) gives.
///
/// # Examples
///
/// ```
/// use taskpool_core::backend::Reorder;
///
/// let mut order = Reorder::new(true);
/// order.sent(4);
/// order.received(2, vec!['c', 'd']);
/// assert_eq!(order.pop(), None, "item 0 comes first");
/// order.received(0, vec!['a', 'b']);
/// let yielded: Vec<char> = std::iter::from_fn(|| order.pop()).collect();
/// assert_eq!(yielded, ['a', 'b', 'c', 'd']);
/// assert_eq!(order.out(), 0);
/// ```
#[derive(Debug)]
pub struct Reorder<T> {
    ordered: bool,
    /// The index of the next outcome to yield, when ordered.
    next: usize,
    /// When ordered, the first index from `next` on whose outcome is not here: the outcomes
    /// from `next` up to it can be yielded, those after it wait.
    gap: usize,
    /// When ordered, the runs of outcomes here past `gap`, by first index: how many each
    /// holds (so the gap moves past a run at once, not outcome by outcome).
    early: BTreeMap<usize, usize>,
    /// Items sent and not back yet.
    out: usize,
    /// The run being yielded: the index of its next outcome, and the outcomes left.
    current: Option<(usize, vec::IntoIter<T>)>,
    /// The other runs of outcomes here, as they came back, by first index (one entry per
    /// group of outcomes, not per outcome: a batch of a million no-ops spends its time
    /// running, not ordering).
    runs: BTreeMap<usize, vec::IntoIter<T>>,
    /// Outcomes here, in `current` and `runs`.
    here: usize,
}

impl<T> Reorder<T> {
    /// An empty batch whose outcomes are yielded in input order if `ordered`, else as they
    /// come (group by group as received, the group of the lowest index first among those
    /// here).
    pub fn new(ordered: bool) -> Self {
        Reorder {
            ordered,
            next: 0,
            gap: 0,
            early: BTreeMap::new(),
            out: 0,
            current: None,
            runs: BTreeMap::new(),
            here: 0,
        }
    }

    /// Counts `n` more items sent to the workers.
    pub fn sent(&mut self, n: usize) {
        self.out += n;
    }

    /// Item `index`'s outcome, known without sending the item (it could not be encoded, for
    /// example).
    pub fn settled(&mut self, index: usize, outcome: T) {
        self.keep(index, vec![outcome]);
    }

    /// The outcomes of consecutive sent items, from item `first` on.
    pub fn received(&mut self, first: usize, outcomes: Vec<T>) {
        self.out = self.out.saturating_sub(outcomes.len());
        self.keep(first, outcomes);
    }

    /// Keeps the outcomes of consecutive items from `first` on until they are yielded.
    fn keep(&mut self, first: usize, outcomes: Vec<T>) {
        let n = outcomes.len();
        if n == 0 {
            return;
        }
        self.here += n;
        self.runs.insert(first, outcomes.into_iter());
        self.arrived(first, n);
    }

    /// Notes `n` outcomes here from `first` on: they fill the gap, and then it moves past the
    /// runs that came before them and follow, or they wait behind it.
    fn arrived(&mut self, first: usize, n: usize) {
        if !self.ordered {
            return;
        }
        if first != self.gap {
            self.early.insert(first, n);
            return;
        }
        self.gap += n;
        while let Some(n) = self.early.remove(&self.gap) {
            self.gap += n;
        }
    }

    /// The next outcome to yield, if it is here.
    pub fn pop(&mut self) -> Option<T> {
        let (index, mut run) = match self.current.take() {
            Some(current) => current,
            None if self.ordered => (self.next, self.runs.remove(&self.next)?),
            None => self.runs.pop_first()?,
        };
        let outcome = run.next()?;
        self.here -= 1;
        self.next = index + 1;
        if run.len() > 0 {
            self.current = Some((index + 1, run));
        }
        Some(outcome)
    }

    /// Outcomes here that cannot be yielded yet: when ordered, those behind an earlier item
    /// still out (none when unordered). They count against an `imap` window as memory, not as
    /// the consumer's: the consumer waits for the earlier one.
    pub fn waiting(&self) -> usize {
        if !self.ordered {
            return 0;
        }
        self.here - (self.gap - self.next)
    }

    /// Items sent and not back yet: with none, every outcome is here.
    pub fn out(&self) -> usize {
        self.out
    }

    /// Items sent or back and not yet yielded: what counts against an `imap` window.
    pub fn held(&self) -> usize {
        self.out + self.here
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unordered_yields_what_is_here_and_counts_what_is_out() {
        let mut order = Reorder::new(false);
        order.sent(3);
        order.settled(3, "failed locally");
        assert_eq!(order.held(), 4);
        order.received(1, vec!["b", "c"]);
        assert_eq!(order.out(), 1);
        assert_eq!(order.pop(), Some("b"));
        assert_eq!(order.pop(), Some("c"));
        assert_eq!(order.pop(), Some("failed locally"));
        assert_eq!(order.pop(), None);
        assert_eq!(order.held(), 1);
        order.received(0, vec!["a"]);
        assert_eq!((order.pop(), order.out(), order.held()), (Some("a"), 0, 0));
    }

    #[test]
    fn ordered_waits_for_the_next_index() {
        let mut order = Reorder::new(true);
        order.sent(2);
        order.settled(2, 'c');
        order.received(1, vec!['b']);
        assert_eq!(order.pop(), None);
        assert_eq!(order.waiting(), 2, "b and c wait for a");
        order.received(0, vec!['a']);
        assert_eq!(order.waiting(), 0);
        assert_eq!(
            [order.pop(), order.pop(), order.pop(), order.pop()],
            [Some('a'), Some('b'), Some('c'), None]
        );
    }

    #[test]
    fn groups_in_any_order_popped_between_arrivals_yield_every_outcome_once() {
        for ordered in [true, false] {
            // Groups of 1 to 7 items over 0..200, received in a scrambled order, with pops
            // between arrivals.
            let mut groups = Vec::new();
            let (mut first, mut seed) = (0usize, 7u64);
            while first < 200 {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let n = (1 + (seed >> 33) % 7) as usize;
                groups.push((first, (first..(first + n).min(200)).collect::<Vec<_>>()));
                first += n;
            }
            let mut order = Reorder::new(ordered);
            order.sent(200);
            let mut yielded = Vec::new();
            while !groups.is_empty() {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let (first, outcomes) = groups.swap_remove((seed >> 33) as usize % groups.len());
                order.received(first, outcomes);
                for _ in 0..(seed >> 40) % 5 {
                    yielded.extend(order.pop());
                }
                assert_eq!(order.held(), 200 - yielded.len());
            }
            yielded.extend(std::iter::from_fn(|| order.pop()));
            assert_eq!((order.held(), order.waiting()), (0, 0));
            if !ordered {
                yielded.sort_unstable();
            }
            assert_eq!(yielded, (0..200).collect::<Vec<_>>(), "ordered: {ordered}");
        }
    }

    #[test]
    fn outcomes_behind_one_still_out_wait() {
        let mut order = Reorder::new(true);
        order.sent(5);
        order.received(0, vec![0, 1]);
        order.received(3, vec![3, 4]);
        assert_eq!((order.held(), order.waiting()), (5, 2));
        assert_eq!(order.pop(), Some(0));
        assert_eq!((order.held(), order.waiting()), (4, 2));
        assert_eq!(order.pop(), Some(1));
        assert_eq!(order.pop(), None, "item 2 is still out");
        order.received(2, vec![2]);
        assert_eq!((order.held(), order.waiting()), (3, 0));
        let mut unordered = Reorder::new(false);
        unordered.sent(2);
        unordered.received(1, vec![1]);
        assert_eq!(unordered.waiting(), 0, "unordered outcomes never wait");
    }
}
