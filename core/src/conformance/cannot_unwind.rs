//! Tasks whose panics cannot unwind, so that the runtime aborts the process that runs them
//! even in an unwinding build: a panic in a callback a C library calls (an `extern "C"`
//! function, which a panic cannot leave), and one a `Drop` raises while the task unwinds from
//! another. Each backend's tests check what its users then see.

use std::cmp::Ordering;

/// A comparator with the C ABI, as a C library's sort (`qsort`) calls it back: it panics
/// when it compares two equal numbers, and a panic cannot leave an `extern "C"` function.
extern "C" fn compare_distinct(a: u64, b: u64) -> i32 {
    match a.cmp(&b) {
        Ordering::Less => -1,
        Ordering::Greater => 1,
        Ordering::Equal => panic!("duplicate {a} in the input"),
    }
}

/// Sorts `[3, x, 1]` with an `extern "C"` comparator that panics on equal numbers: fails (in
/// the comparator) for 1 and 3.
pub fn sort_with_c_comparator(x: u64) -> u64 {
    let mut numbers = [3, x, 1];
    numbers.sort_by(|&a, &b| compare_distinct(a, b).cmp(&0));
    numbers.iter().sum()
}

/// Panics in its `drop`.
struct PanicsWhenDropped(u64);

impl Drop for PanicsWhenDropped {
    fn drop(&mut self) {
        panic!("cleanup of {} failed", self.0);
    }
}

/// Panics for odd `x` while holding a value whose `drop` then panics too.
pub fn panic_twice_on_odd(x: u64) -> u64 {
    let guard = PanicsWhenDropped(x);
    if x % 2 == 1 {
        panic!("odd input {x}");
    }
    std::mem::forget(guard);
    x
}
