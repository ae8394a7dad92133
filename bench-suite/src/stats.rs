//! Repeated measurements: medians and spread, with variants interleaved so that drift of a
//! shared machine hits them all alike.

use serde::Serialize;

/// A summary of repeated samples of one quantity.
#[derive(Debug, Clone, PartialEq, Serialize)]
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

/// One variant of a measurement: a name and what takes one sample.
pub struct Variant<'a> {
    name: String,
    measure: Box<dyn FnMut() -> Result<f64, String> + 'a>,
}

impl<'a> Variant<'a> {
    /// A variant called `name` whose sample is what `measure` returns.
    pub fn new(name: impl Into<String>, measure: impl FnMut() -> Result<f64, String> + 'a) -> Self {
        Variant { name: name.into(), measure: Box::new(measure) }
    }
}

impl std::fmt::Debug for Variant<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Variant").field("name", &self.name).finish()
    }
}

/// Takes `repeats` samples of every variant, interleaved (A, B, C, A, B, C, ...). A variant
/// that fails once is not sampled again; its result is the error.
pub fn interleave(
    repeats: usize,
    mut variants: Vec<Variant<'_>>,
) -> Vec<(String, Result<Summary, String>)> {
    let mut samples: Vec<Result<Vec<f64>, String>> =
        variants.iter().map(|_| Ok(Vec::new())).collect();
    for _ in 0..repeats {
        for (variant, taken) in variants.iter_mut().zip(&mut samples) {
            let Ok(list) = taken else { continue };
            match (variant.measure)() {
                Ok(sample) => list.push(sample),
                Err(e) => *taken = Err(e),
            }
        }
    }
    variants
        .into_iter()
        .zip(samples)
        .map(|(v, s)| {
            let summary =
                s.and_then(|list| Summary::of(list).ok_or_else(|| "no samples".to_owned()));
            (v.name, summary)
        })
        .collect()
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
}
