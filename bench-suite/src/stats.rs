//! Repeated measurements, the one place that summarises them: medians and spread, with
//! variants interleaved so that drift of a shared machine hits them all alike, and the
//! samples criterion takes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A summary of repeated samples of one quantity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The median sample.
    pub median: f64,
    /// The smallest sample.
    pub min: f64,
    /// The largest sample.
    pub max: f64,
    /// Every sample, in the order taken.
    pub samples: Vec<f64>,
}

impl Summary {
    /// Summarizes `samples`; `None` if there are none (or any is not a number).
    pub fn of(samples: Vec<f64>) -> Option<Summary> {
        if samples.is_empty() || samples.iter().any(|s| s.is_nan()) {
            return None;
        }
        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let mid = sorted.len() / 2;
        let median =
            if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 };
        Some(Summary { median, min: sorted[0], max: sorted[sorted.len() - 1], samples })
    }

    /// A summary of one value.
    pub fn single(value: f64) -> Summary {
        Summary { median: value, min: value, max: value, samples: vec![value] }
    }

    /// The spread of the samples relative to the median: (max − min) / median.
    pub fn spread(&self) -> f64 {
        if self.median == 0.0 { 0.0 } else { (self.max - self.min) / self.median }
    }
}

/// One variant of a measurement: a key naming it and what takes one sample.
pub(crate) struct Variant<'a, K> {
    key: K,
    measure: Box<dyn FnMut() -> Result<f64, String> + 'a>,
}

impl<'a, K> Variant<'a, K> {
    /// A variant named `key` whose sample is what `measure` returns.
    pub(crate) fn new(key: K, measure: impl FnMut() -> Result<f64, String> + 'a) -> Self {
        Variant { key, measure: Box::new(measure) }
    }

    /// The same variant under the key `f` makes of its key.
    pub(crate) fn map_key<L>(self, f: impl FnOnce(K) -> L) -> Variant<'a, L> {
        Variant { key: f(self.key), measure: self.measure }
    }
}

impl<K: std::fmt::Debug> std::fmt::Debug for Variant<'_, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Variant").field("key", &self.key).finish_non_exhaustive()
    }
}

/// Takes `repeats` samples of every variant, interleaved: each round measures every variant
/// once, starting one variant further along than the round before (A B C, B C A, C A B, ...),
/// so that no variant always runs right after the same one. With `warm_up`, a first round is
/// measured and not kept: what a variant's first use costs (a pool's buffers growing to the
/// size, memory the allocator maps for the first time) is not a sample of a pool in use. A
/// variant that fails, in the warm-up too, is not sampled again; its result is the error.
pub(crate) fn interleave<K>(
    repeats: usize,
    warm_up: bool,
    mut variants: Vec<Variant<'_, K>>,
) -> Vec<(K, Result<Summary, String>)> {
    let mut samples: Vec<Result<Vec<f64>, String>> =
        variants.iter().map(|_| Ok(Vec::new())).collect();
    let count = variants.len();
    for round in 0..repeats + usize::from(warm_up) {
        let kept = !(warm_up && round == 0);
        for i in (0..count).map(|k| (round + k) % count) {
            let Ok(list) = &mut samples[i] else { continue };
            match (variants[i].measure)() {
                Ok(sample) if kept => list.push(sample),
                Ok(_) => {}
                Err(e) => samples[i] = Err(e),
            }
        }
    }
    variants
        .into_iter()
        .zip(samples)
        .map(|(v, s)| {
            let summary =
                s.and_then(|list| Summary::of(list).ok_or_else(|| "no samples".to_owned()));
            (v.key, summary)
        })
        .collect()
}

/// Records the samples of benchmarks timed with criterion's `iter_custom`, so that a bench
/// can compute figures criterion does not print (a speed-up, say) from the very same
/// measurements.
///
/// Criterion calls an `iter_custom` routine during warm-up first and then once per sample;
/// [`Samples::median`] therefore looks only at the last `sample_size` calls.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use taskpool_bench::Samples;
///
/// let samples = Samples::default();
/// samples.record("a", 1, Duration::from_millis(50)); // warm-up
/// samples.record("a", 2, Duration::from_millis(4));
/// samples.record("a", 2, Duration::from_millis(6));
/// samples.record("a", 2, Duration::from_millis(2));
/// assert_eq!(samples.median("a", 3), Some(Duration::from_millis(2)));
/// assert_eq!(samples.median("b", 3), None);
/// ```
#[derive(Debug, Clone, Default)]
pub struct Samples {
    by_id: Arc<Mutex<BTreeMap<String, Vec<Call>>>>,
}

/// One recorded call of an `iter_custom` routine: its iteration count and total time.
type Call = (u64, Duration);

impl Samples {
    /// Records that `iters` iterations of benchmark `id` took `elapsed` in all, and returns
    /// `elapsed` (what an `iter_custom` routine returns to criterion).
    pub fn record(&self, id: &str, iters: u64, elapsed: Duration) -> Duration {
        let mut by_id = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        by_id.entry(id.to_owned()).or_default().push((iters, elapsed));
        elapsed
    }

    /// The median time per iteration over the last `last` calls recorded for `id` (the
    /// samples criterion analysed, when `last` is the group's sample size), or `None` if
    /// nothing was recorded.
    pub fn median(&self, id: &str, last: usize) -> Option<Duration> {
        let by_id = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        let calls = by_id.get(id)?;
        let per_iter: Vec<f64> = calls[calls.len().saturating_sub(last)..]
            .iter()
            .filter(|(iters, _)| *iters > 0)
            .map(|&(iters, elapsed)| elapsed.as_secs_f64() / iters as f64)
            .collect();
        Summary::of(per_iter).map(|s| Duration::from_secs_f64(s.median))
    }

    /// How many calls were recorded for `id`.
    pub fn calls(&self, id: &str) -> usize {
        let by_id = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        by_id.get(id).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_spread() {
        let s = Summary::of(vec![3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(s.spread(), 1.0);
        assert_eq!(Summary::of(vec![1.0, 2.0, 3.0, 10.0]).unwrap().median, 2.5);
        assert!(Summary::of(Vec::new()).is_none());
    }

    #[test]
    fn variants_interleave_and_failures_stop() {
        let order = std::cell::RefCell::new(String::new());
        let results = interleave(
            3,
            false,
            vec![
                Variant::new("a", || {
                    order.borrow_mut().push('a');
                    Ok(1.0)
                }),
                Variant::new("b", || {
                    order.borrow_mut().push('b');
                    Err("broken".into())
                }),
            ],
        );
        assert_eq!(order.into_inner(), "abaa");
        assert_eq!(results[0].1.as_ref().unwrap().samples.len(), 3);
        assert_eq!(results[1].1.as_ref().unwrap_err(), "broken");
    }

    #[test]
    fn each_round_starts_one_variant_further_and_a_warm_up_round_is_not_kept() {
        let order = std::cell::RefCell::new(String::new());
        let taken = std::cell::Cell::new(0.0);
        let variant = |name: char| {
            let (order, taken) = (&order, &taken);
            Variant::new(name, move || {
                order.borrow_mut().push(name);
                taken.set(taken.get() + 1.0);
                Ok(taken.get())
            })
        };
        let results = interleave(2, true, vec![variant('a'), variant('b'), variant('c')]);
        assert_eq!(order.into_inner(), "abcbcacab", "a warm-up round, then two rotated rounds");
        let samples = |i: usize| results[i].1.as_ref().unwrap().samples.clone();
        // The warm-up's samples (1, 2 and 3) are not kept.
        assert_eq!(samples(0), [6.0, 8.0]);
        assert_eq!(samples(1), [4.0, 9.0]);
        assert_eq!(samples(2), [5.0, 7.0]);
    }

    #[test]
    fn recorded_medians_of_even_counts_average_the_middle() {
        let s = Samples::default();
        for ms in [1, 2, 3, 10] {
            s.record("x", 1, Duration::from_millis(ms));
        }
        assert_eq!(s.median("x", 4), Some(Duration::from_micros(2500)));
        assert_eq!(s.calls("x"), 4);
    }
}
