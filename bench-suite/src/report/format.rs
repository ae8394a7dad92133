//! Quantities as people read them: a value in its unit, scaled to a human magnitude
//! ("450 ns", "12.3 µs", "1.87 ms", "15.2 k/s", "2.25 MiB", "1.87×").
//!
//! Shared by the Markdown table and the charts so that both print a value the same way.

use super::Unit;

/// `value`, measured in `unit`, with three significant digits in a unit chosen by its
/// magnitude. Not a number or infinite values read "n/a".
pub(super) fn quantity(value: f64, unit: Unit) -> String {
    if !value.is_finite() {
        return "n/a".to_owned();
    }
    match unit {
        Unit::Micros | Unit::Millis => time_from_micros(to_micros(value, unit)),
        Unit::PerSecond => scaled(value, 1e3, &["/s", " k/s", " M/s", " G/s", " T/s"]),
        Unit::KiB => scaled(value, 1024.0, &[" KiB", " MiB", " GiB", " TiB"]),
        Unit::Factor => format!("{}×", significant(value)),
    }
}

/// Whether values in `unit` are durations.
pub(super) fn is_time(unit: Unit) -> bool {
    matches!(unit, Unit::Micros | Unit::Millis)
}

/// `value` in microseconds, given its `unit`; values in other units are returned unchanged.
pub(super) fn to_micros(value: f64, unit: Unit) -> f64 {
    match unit {
        Unit::Millis => value * 1e3,
        _ => value,
    }
}

/// A duration in microseconds, in ns, µs, ms or s, whichever reads best.
fn time_from_micros(micros: f64) -> String {
    // Past seconds, keep seconds: "5400 s" is clearer than minutes with decimals.
    scaled(micros * 1e3, 1e3, &[" ns", " µs", " ms", " s"])
}

/// `value` divided by the largest power of `step` that keeps it at or above 1 (after rounding
/// to three significant digits), with the matching suffix from `suffixes`.
fn scaled(value: f64, step: f64, suffixes: &[&str]) -> String {
    let mut scaled = value;
    let mut index = 0;
    // A value that would round up to `step` moves to the next unit: "1.00 ms", not "1000 µs".
    while scaled.abs() >= step - 0.5 && index + 1 < suffixes.len() {
        scaled /= step;
        index += 1;
    }
    let suffix = suffixes.get(index).copied().unwrap_or_default();
    format!("{}{suffix}", significant(scaled))
}

/// `value` with three significant digits for values below 1000 (and no decimals above);
/// zero is plain "0".
pub(super) fn significant(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude == 0.0 {
        "0".to_owned()
    } else if magnitude >= 99.95 {
        format!("{value:.0}")
    } else if magnitude >= 9.995 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_pick_their_unit_by_magnitude() {
        assert_eq!(quantity(0.45, Unit::Micros), "450 ns");
        assert_eq!(quantity(12.34, Unit::Micros), "12.3 µs");
        assert_eq!(quantity(999.7, Unit::Micros), "1.00 ms");
        assert_eq!(quantity(1.87, Unit::Millis), "1.87 ms");
        assert_eq!(quantity(0.21, Unit::Millis), "210 µs");
        assert_eq!(quantity(2500.0, Unit::Millis), "2.50 s");
        assert_eq!(quantity(5_400_000.0, Unit::Millis), "5400 s");
    }

    #[test]
    fn rates_sizes_and_factors() {
        assert_eq!(quantity(850.0, Unit::PerSecond), "850/s");
        assert_eq!(quantity(15_200.0, Unit::PerSecond), "15.2 k/s");
        assert_eq!(quantity(5_100_000.0, Unit::PerSecond), "5.10 M/s");
        assert_eq!(quantity(900.0, Unit::KiB), "900 KiB");
        assert_eq!(quantity(2304.0, Unit::KiB), "2.25 MiB");
        assert_eq!(quantity(1.874, Unit::Factor), "1.87×");
    }

    #[test]
    fn odd_values_do_not_panic() {
        assert_eq!(quantity(f64::NAN, Unit::Micros), "n/a");
        assert_eq!(quantity(f64::INFINITY, Unit::KiB), "n/a");
        assert_eq!(quantity(-12.34, Unit::Micros), "-12.3 µs");
        assert_eq!(quantity(0.0, Unit::PerSecond), "0/s");
        assert!(quantity(f64::MAX, Unit::KiB).ends_with(" TiB"));
    }
}
