//! The copy floor of a payload round trip: the copies of its bytes that any transport of an
//! owned buffer (a `serde_bytes::ByteBuf` sent to a worker process that returns it) cannot
//! avoid, made one after another in this process, with no second process, no framing and no
//! wake-up.
//!
//! The argument's bytes must be written into memory the worker can read (shared memory, a
//! pipe's buffer), and the worker's argument is a vector of its own, which the allocator
//! hands out fresh; the result takes the same way back. So one round trip is four copies:
//!
//! 1. the sender's buffer into warm memory (what stands for the request side's shared memory,
//!    kept from one round trip to the next, as a transport keeps its own);
//! 2. from there into a new vector (the worker's argument);
//! 3. that into warm memory again (the result side);
//! 4. from there into a new vector (the caller's result), which is returned; the one sent and
//!    the worker's argument are dropped, as the pool drops them.
//!
//! A new vector of 32 MiB or more asks for transparent huge pages (`MADV_HUGEPAGE`) before it
//! is written, as the process backend asks for its own (`bulk.rs` there): copying into fresh
//! memory costs a page fault and a clearing per page on top of the copy, and huge pages make
//! that several times cheaper. What a process pool adds to this floor is its transport: the
//! other copies it makes, the hand-overs between the processes, the wake-ups.
#![allow(unsafe_code)]

use std::cell::RefCell;

use serde_bytes::ByteBuf;

use super::{PoolSpec, Running};

/// From this many bytes a new vector asks for huge pages (the process backend's threshold).
const HUGE: usize = 32 << 20;

/// The bytes of a huge page on x86-64 and aarch64 with 4 KiB pages.
const HUGE_PAGE: usize = 2 << 20;

/// The two warm buffers, one per direction, kept between round trips.
struct CopyFloor {
    warm: RefCell<[Vec<u8>; 2]>,
}

/// The floor; `spec` is ignored.
pub(crate) fn start(spec: &PoolSpec) -> Result<Box<dyn Running>, String> {
    let _ = spec;
    Ok(Box::new(CopyFloor { warm: RefCell::new([Vec::new(), Vec::new()]) }))
}

impl Running for CopyFloor {
    fn noop(&self) -> Result<(), String> {
        Ok(())
    }

    fn echo(&self, payload: ByteBuf) -> Result<ByteBuf, String> {
        let mut warm = self.warm.borrow_mut();
        let [there, back] = &mut *warm;
        overwrite(there, &payload);
        drop(payload);
        let argument = fresh_copy(there);
        overwrite(back, &argument);
        drop(argument);
        Ok(ByteBuf::from(fresh_copy(back)))
    }
}

/// Copies `bytes` into `warm`, which keeps its memory for the next time.
fn overwrite(warm: &mut Vec<u8>, bytes: &[u8]) {
    warm.clear();
    warm.extend_from_slice(bytes);
}

/// A new vector holding `bytes`, on huge pages from [`HUGE`] on.
fn fresh_copy(bytes: &[u8]) -> Vec<u8> {
    let mut copy = Vec::with_capacity(bytes.len());
    if bytes.len() >= HUGE {
        advise_huge_pages(copy.spare_capacity_mut());
    }
    copy.extend_from_slice(bytes);
    copy
}

/// Asks for transparent huge pages for the whole huge pages inside `memory`.
fn advise_huge_pages(memory: &mut [std::mem::MaybeUninit<u8>]) {
    let start = memory.as_mut_ptr() as usize;
    let first = start.next_multiple_of(HUGE_PAGE);
    let end = (start + memory.len()) / HUGE_PAGE * HUGE_PAGE;
    if end > first {
        // SAFETY: the range lies within `memory`, which this process owns (an exclusive
        // borrow); the advice changes how its pages are backed, never their bytes.
        unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_echo_gives_the_bytes_back_in_a_vector_of_their_own() {
        let floor = start(&PoolSpec::workers(1)).unwrap();
        for len in [0, 5, HUGE + 3] {
            let sent: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let back = floor.echo(ByteBuf::from(sent.clone())).unwrap();
            assert!(back.as_slice() == sent.as_slice(), "{len} bytes differ");
        }
    }
}
