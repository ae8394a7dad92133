//! A small deterministic random generator for the property tests of the frame reader and the
//! frame decoders. A fixed seed gives the same cases on every run, so a failure reproduces.

/// SplitMix64: tiny, fast, and good enough to pick test cases.
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// One of `items`.
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// `len` random bytes.
    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// A length that is usually small and sometimes up to `max`.
    pub(crate) fn len_up_to(&mut self, max: usize) -> usize {
        match self.below(10) {
            0 => self.below(max + 1),
            1..=3 => self.below(max.min(4096) + 1),
            _ => self.below(max.min(40) + 1),
        }
    }

    /// `bytes` damaged the ways a broken peer damages a stream: cut short, bytes flipped, a
    /// 4-byte field overwritten with an extreme value, garbage put in, or several of these.
    pub(crate) fn damage(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        for _ in 0..1 + self.below(3) {
            let at = self.below(out.len() + 1);
            match self.below(5) {
                0 => out.truncate(at),
                1 if !out.is_empty() => {
                    let at = at.min(out.len() - 1);
                    out[at] ^= 1 << self.below(8);
                }
                2 if out.len() >= 4 => {
                    let at = at.min(out.len() - 4);
                    let value = self.pick(&[0, 1, u32::MAX, u32::MAX / 2, 0x4000_0000]);
                    out[at..at + 4].copy_from_slice(&value.to_le_bytes());
                }
                _ => {
                    let len = self.len_up_to(64);
                    let garbage = self.bytes(len);
                    out.splice(at..at, garbage);
                }
            }
        }
        out
    }
}
