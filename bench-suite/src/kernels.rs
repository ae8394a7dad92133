//! The CPU-bound kernels every variant runs, defined exactly like the Python peers'
//! (`python/peers.py`), so the same arguments mean the same work everywhere.

/// Whether `n` is prime, by trial division by odd numbers up to its square root.
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// Counts the primes in `start..start + len`.
///
/// # Examples
///
/// ```
/// assert_eq!(taskpool_bench::kernels::count_primes(0, 30), 10);
/// ```
pub fn count_primes(start: u64, len: u64) -> u64 {
    (start..start + len).filter(|&n| is_prime(n)).count() as u64
}

/// Sums the escape iteration counts of rows `first_row..first_row + rows` of a
/// `width` × `height` Mandelbrot image over [-2, 1] × [-1.5, 1.5], at most `max_iter`
/// iterations per point.
///
/// # Examples
///
/// ```
/// // The same check value as the Python peer script.
/// assert_eq!(taskpool_bench::kernels::mandel_rows(0, 2, 3, 2, 50), 155);
/// ```
pub fn mandel_rows(first_row: u32, rows: u32, width: u32, height: u32, max_iter: u32) -> u64 {
    let mut total = 0u64;
    for y in first_row..first_row + rows {
        let ci = -1.5 + 3.0 * f64::from(y) / f64::from(height);
        for x in 0..width {
            let cr = -2.0 + 3.0 * f64::from(x) / f64::from(width);
            let (mut zr, mut zi, mut n) = (0.0f64, 0.0f64, 0u32);
            while n < max_iter && zr * zr + zi * zi <= 4.0 {
                let t = zr * zr - zi * zi + cr;
                zi = 2.0 * zr * zi + ci;
                zr = t;
                n += 1;
            }
            total += u64::from(n);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes_are_counted() {
        assert_eq!(count_primes(0, 100), 25);
        assert_eq!(count_primes(1_000_000, 2000), 152); // as python/peers.py computes
        assert!(is_prime(2) && is_prime(1_000_003) && !is_prime(1) && !is_prime(1_000_001));
    }

    #[test]
    fn mandel_matches_the_python_check_value() {
        assert_eq!(mandel_rows(0, 2, 3, 2, 50), 155);
    }
}
