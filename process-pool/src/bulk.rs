//! Buffers for large values (megabytes): where their memory comes from, and when it goes.
//!
//! A value of tens of megabytes crosses a worker's transport through a few buffers (its
//! encoding, the frame that carries it, the value decoded at the other end). Copying into
//! memory that was written before costs what the copy costs; copying into fresh memory costs
//! a page fault and a clearing per 4 KiB page on top, several times the copy itself (on a
//! 2-core virtual machine, 64 MiB: 3.5 ms into written memory, 27 ms into fresh memory, 6 ms
//! into fresh memory backed by huge pages, once the kernel has them at hand). Allocators hand
//! out fresh memory for every value this large (glibc maps each allocation over 32 MiB anew).
//! So a buffer for a large value:
//!
//! - is reserved once, at the size it needs, where that size is known ([`reserve`], [`copy`]);
//! - from [`HUGE`] on, asks for transparent huge pages ([`sys::advise_huge_pages`]) for its
//!   unwritten part;
//! - if it is one of the transport's own (a frame reader's, an outbox, a worker's result
//!   buffers), is kept, written and warm, while large values keep coming, and given back
//!   ([`release`]) once its owner has had nothing to do for [`KEEP_IDLE`]: a pool that once
//!   moved a large value does not keep its memory in every worker for good, and one that
//!   moves them one after another does not fault its buffers in anew for each. A worker
//!   then has the allocator give back what it keeps free ([`sys::trim_heap`]): the values
//!   it freed, and its buffers, where the allocator kept them on its heap.
//!
//! The vector of a `map`'s results, which goes to the caller, asks for huge pages from
//! [`LARGE`] on ([`results_with_capacity`]).
//!
//! A large argument is not copied into its worker's outbox at all: the batch's inputs are
//! written to the transport straight from the buffer they were encoded in (`outlet.rs`).
//! A large value that is one byte string travels in a bulk frame of its own (`wire.rs`),
//! which the reader puts straight into a vector of exactly its size ([`try_with_capacity`]):
//! the vector the decoded value takes over, so that neither frame reader ever holds it.
//! Both start well below [`LARGE`], at [`APART`].
//!
//! Measured on that machine (a 64 MiB `serde_bytes::ByteBuf` echoed by a worker): with every
//! buffer kept but none on huge pages, 150–260 ms, most of it in the page faults of the three
//! fresh buffers (the argument encoded, the argument decoded, the result decoded); with huge
//! pages but the transport's buffers given back after each value, no faster (each of them is
//! fresh again); with both, 50–120 ms.

use std::time::Duration;

use crate::sys;

/// From this many bytes, a value's buffer is reserved at once, a worker writes a result from
/// its own buffer, and a transport buffer is given back once idle.
pub(crate) const LARGE: usize = 4 << 20;

/// From this many bytes, on the rings, a value takes the short way across (on pipes, where
/// each part written costs a system call, from [`LARGE`]): a batch's inputs are written to
/// the worker from the buffer they were encoded in, a result from the worker's own buffer,
/// and a value that is one byte string travels in a bulk frame of its own, read into a vector
/// made at its size. A value under it is copied into the outbox or the results pending, and
/// out of the frame reader, as many small values share those writes and reads: the bytes of
/// a 32 KiB `ByteBuf` echoed that way were copied five times in the worker and five times in
/// the parent (a profile of its copies). Measured on a 2-core virtual machine (an echo on a
/// pool of 2, two sets of 5 rounds with the code before interleaved, medians), from 4 MiB
/// down to this, the time of an echo became 0.56–0.87 of what it was at 4 KiB (8.5 µs to
/// 4.8 in the quieter set), 0.28–0.51 at 32 KiB (33 to 9.3), 0.37–0.41 at 256 KiB and
/// 0.35–0.62 at 1 MiB (473 to 295); 1 KiB values, a `map` of 1M no-ops and 1,000 tasks in
/// flight did not change.
pub(crate) const APART: usize = 4 << 10;

/// From how many bytes a value takes the short way across (see [`APART`]), on a ring or not.
#[inline]
pub(crate) fn apart_from(on_ring: bool) -> usize {
    if on_ring { APART } else { LARGE }
}

/// From this many bytes, a buffer asks for huge pages. Allocators map an allocation this
/// large anew each time (glibc: every one over 32 MiB), so it is always fresh memory; a
/// smaller one mostly reuses memory freed before, faulted in already. Measured: a 16 MiB echo
/// with the advice took several round trips longer to settle, and gained little after.
const HUGE: usize = 32 << 20;

/// How long a transport buffer of [`LARGE`] or more is kept while its owner has nothing to do.
/// A program that sends a large value every few hundred milliseconds (the comparison
/// report's 64 MiB row does: its other columns run in between) finds the buffers warm;
/// measured with 250 ms there, most round trips found them given back and took 3–5 times as
/// long (146–925 ms against 46 ms), nearly all of it clearing fresh pages.
pub(crate) const KEEP_IDLE: Duration = Duration::from_secs(1);

/// For a value of [`LARGE`] or more, makes room for `additional` more bytes in `buf` (as
/// [`Vec::reserve`] does) and, from [`HUGE`] on, asks for huge pages for the room that was
/// not written yet; a smaller value is left to the vector's own growth.
#[inline]
pub(crate) fn reserve(buf: &mut Vec<u8>, additional: usize) {
    if additional < LARGE {
        return;
    }
    let before = buf.capacity();
    buf.reserve(additional);
    advise_new_room(buf, before, additional);
}

/// Makes room for exactly `additional` more bytes in `buf` (as [`Vec::reserve_exact`] does);
/// from [`HUGE`] on, asks for huge pages for the room that was not written yet.
pub(crate) fn reserve_exact(buf: &mut Vec<u8>, additional: usize) {
    let before = buf.capacity();
    buf.reserve_exact(additional);
    advise_new_room(buf, before, additional);
}

/// [`reserve_exact`], or `false` if the allocator refuses the room.
pub(crate) fn try_reserve_exact(buf: &mut Vec<u8>, additional: usize) -> bool {
    let before = buf.capacity();
    if buf.try_reserve_exact(additional).is_err() {
        return false;
    }
    advise_new_room(buf, before, additional);
    true
}

/// Asks for huge pages for the unwritten room of `buf`, for a reservation of `additional`
/// bytes from [`HUGE`] on that moved or grew it (from `before` bytes): a kept buffer that had
/// the room already has its pages, and is not advised again.
fn advise_new_room(buf: &mut Vec<u8>, before: usize, additional: usize) {
    if additional >= HUGE && buf.capacity() != before {
        sys::advise_huge_pages(buf.spare_capacity_mut());
    }
}

/// An empty vector with room for exactly `len` bytes, on huge pages from [`HUGE`] on, or
/// `None` if the allocator refuses it (the room is address space until it is written).
pub(crate) fn try_with_capacity(len: usize) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    buf.try_reserve_exact(len).ok()?;
    if len >= HUGE {
        sys::advise_huge_pages(buf.spare_capacity_mut());
    }
    Some(buf)
}

/// A copy of `bytes` in a vector of exactly its length, on huge pages from [`HUGE`] on.
pub(crate) fn copy(bytes: &[u8]) -> Vec<u8> {
    if bytes.len() < HUGE {
        return bytes.to_vec();
    }
    let mut buf = Vec::with_capacity(bytes.len());
    sys::advise_huge_pages(buf.spare_capacity_mut());
    buf.extend_from_slice(bytes);
    buf
}

/// An empty vector with room for `len` values of `T` (as [`Vec::with_capacity`]), for the
/// results of a `map`: from [`LARGE`] bytes on, it asks for huge pages. The vector goes to
/// the caller, so unlike the transport's buffers it cannot be kept; in a program that
/// allocates and frees other large blocks meanwhile it is mostly fresh memory, faulted in
/// page by page as the results arrive. Measured in the comparison report (process column
/// only, `map` of 1M no-ops, an 8 MB result, medians of 5): 35.3 M items/s before, 41.3 with
/// the advice (40.5 with glibc told never to give memory back); a program that reuses the
/// same memory for every `map` did not change (47.3 and 47.7, 6 rounds interleaved).
pub(crate) fn results_with_capacity<T>(len: usize) -> Vec<T> {
    let mut results = Vec::with_capacity(len);
    if len.saturating_mul(size_of::<T>()) >= LARGE {
        sys::advise_huge_pages(results.spare_capacity_mut());
    }
    results
}

/// Whether `buf` holds memory that [`release`] would give back.
pub(crate) fn is_large(buf: &Vec<u8>) -> bool {
    buf.capacity() >= LARGE
}

/// Gives back the memory of an emptied buffer that grew [`LARGE`] or larger, so that it is
/// not kept at its largest for good; a smaller buffer keeps its memory for reuse.
pub(crate) fn release(buf: &mut Vec<u8>) {
    if buf.is_empty() && is_large(buf) {
        *buf = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_reservation_is_made_at_once_and_a_small_one_left_to_the_vector() {
        let mut buf = vec![1, 2, 3];
        reserve(&mut buf, 10);
        assert_eq!(buf.capacity(), 3, "a small value grows as a vector grows");
        reserve(&mut buf, LARGE);
        assert!(buf.capacity() >= 3 + LARGE);
        assert_eq!(buf, [1, 2, 3]);
        let mut exact = vec![1];
        reserve_exact(&mut exact, LARGE + 1);
        assert_eq!(exact.capacity(), LARGE + 2);
        reserve_exact(&mut exact, 10);
        assert_eq!(exact.capacity(), LARGE + 2, "the room is there already");
    }

    #[test]
    fn a_copy_has_the_bytes_and_no_more_room() {
        for len in [0, 5, LARGE, HUGE + 4097] {
            let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let copied = copy(&bytes);
            assert_eq!(copied, bytes);
            assert_eq!(copied.capacity(), len);
        }
    }

    /// The `VmFlags` of the mapping of this process that holds `address`, from
    /// `/proc/self/smaps`.
    fn flags_at(address: usize) -> Option<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split_whitespace().next().and_then(|r| r.split_once('-'));
            let bounds = range.and_then(|(a, b)| {
                Some((usize::from_str_radix(a, 16).ok()?, usize::from_str_radix(b, 16).ok()?))
            });
            if let Some((start, end)) = bounds {
                inside = (start..end).contains(&address);
            } else if let Some(flags) = line.strip_prefix("VmFlags:").filter(|_| inside) {
                return Some(flags.to_owned());
            }
        }
        None
    }

    #[test]
    fn a_large_result_vector_asks_for_huge_pages() {
        if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists() {
            println!("skipped: this kernel has no transparent huge pages");
            return;
        }
        let small: Vec<u64> = results_with_capacity(1000);
        assert!(small.is_empty() && small.capacity() >= 1000);
        // Any 4 MiB holds a whole huge page: the first from the vector's start on.
        let mut large: Vec<u64> = results_with_capacity(LARGE / 8);
        assert!(large.is_empty() && large.capacity() >= LARGE / 8);
        let page = (large.as_ptr() as usize).next_multiple_of(2 << 20);
        let flags = flags_at(page).expect("the vector's memory is mapped");
        assert!(flags.split_whitespace().any(|f| f == "hg"), "flags {flags}");
        large.extend(0..LARGE as u64 / 8);
        assert!(large.iter().enumerate().all(|(i, &v)| v == i as u64), "the advice keeps bytes");
    }

    #[test]
    fn only_an_empty_large_buffer_is_given_back() {
        let mut small = Vec::with_capacity(LARGE - 1);
        assert!(!is_large(&small));
        release(&mut small);
        assert_eq!(small.capacity(), LARGE - 1);
        let mut full = vec![0; LARGE];
        assert!(is_large(&full));
        release(&mut full);
        assert_eq!(full.len(), LARGE);
        full.clear();
        release(&mut full);
        assert_eq!(full.capacity(), 0);
    }
}
