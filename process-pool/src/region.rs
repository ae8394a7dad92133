//! The memory a worker shares with its parent: one sealed `memfd` per worker, holding its
//! status page and its two rings, of which the start is pre-faulted.
//!
//! | offset | what |
//! |---|---|
//! | 0 | the status page (`status.rs`) |
//! | 4096 | the request ring, parent → worker (`ring.rs`: a header, then its data) |
//! | 4096 + 256 + its data | the result ring, worker → parent, as large |
//!
//! Each ring has [`RING_BYTES`] of data unless the pool asks for another size
//! ([`Region::with_ring_bytes`]); the worker learns the size from the region's length.
//!
//! A new region is made for every worker and dropped with it: whatever a worker did to its
//! rings dies with it. The parent maps it first, which allocates and zeroes the pages it
//! pre-faults ([`PREFAULT`]); the worker maps the same pages. The rest of each ring is
//! allocated when first written, once. Where the kernel has no `memfd` (or
//! `TASKPOOL_TRANSPORT=pipes` asks for the fallback), there is no region: no status page,
//! and the pipes carry everything.

use std::os::fd::{OwnedFd, RawFd};
use std::sync::Arc;

use crate::ring::{Consumer, HEADER, Producer, RingLayout};
use crate::status::{self, StatusPage};
use crate::sys::SharedMemory;

/// Bytes of data in each ring by default. Measured side by side with 64 KiB to 2 MiB, no
/// size changes the no-op round trip, 1,000 tasks in flight or a `map` of no-ops; a 1 MiB
/// payload takes four hand-overs instead of one (about 0.1 ms more), while each worker's
/// shared memory shrinks from 2 MiB to 0.5 MiB.
pub(crate) const RING_BYTES: usize = 256 << 10;
/// Bytes at the start of each ring's data that are pre-faulted (with the status page and the
/// headers): the first 64 KiB of traffic each way takes no page fault, and a region costs
/// neither the time to fault nor the memory of the rest until a large payload or a long run
/// reaches it; each further page then faults once, on the ring's first lap, and stays.
/// Pre-faulting whole rings made a pool's start-up take 2.4 ms more with 1 MiB rings,
/// nearly all of it spent faulting pages.
const PREFAULT: usize = 64 << 10;
/// The fewest bytes of data a ring may have: one page.
pub(crate) const MIN_RING_BYTES: usize = PAGE;
/// The most bytes of data a ring may have.
pub(crate) const MAX_RING_BYTES: usize = 1 << 30;
const PAGE: usize = 4096;
const _: () = assert!(status::WORDS * 8 <= PAGE);

/// Where the status page and the rings lie, for rings of one size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    requests: RingLayout,
    results: RingLayout,
    len: usize,
}

impl Layout {
    /// The layout for rings of `capacity` bytes of data each.
    const fn of(capacity: usize) -> Layout {
        let requests = RingLayout { offset: PAGE, capacity };
        let results = RingLayout { offset: requests.offset + requests.size(), capacity };
        let len = (results.offset + results.size()).next_multiple_of(PAGE);
        Layout { requests, results, len }
    }

    /// The layout of a region of `len` bytes, if `len` is one this module makes.
    fn of_len(len: usize) -> Option<Layout> {
        let capacity = len.checked_sub(2 * PAGE)? / 2;
        let layout = Layout::of(capacity);
        (valid_ring_bytes(capacity) && layout.len == len).then_some(layout)
    }

    /// Whether [`Layout::prefault`] covers it all.
    fn wholly_prefaulted(&self) -> bool {
        self.requests.capacity <= PREFAULT
    }

    /// What is pre-faulted: the status page, the rings' headers and the first [`PREFAULT`]
    /// bytes of each ring's data.
    fn prefault(&self) -> [std::ops::Range<usize>; 2] {
        let first =
            |ring: RingLayout| ring.offset..ring.offset + HEADER + PREFAULT.min(ring.capacity);
        [0..first(self.requests).end, first(self.results)]
    }
}

/// Whether rings of `bytes` of data each can be made: a power of two, from
/// [`MIN_RING_BYTES`] to [`MAX_RING_BYTES`].
pub(crate) fn valid_ring_bytes(bytes: usize) -> bool {
    bytes.is_power_of_two() && (MIN_RING_BYTES..=MAX_RING_BYTES).contains(&bytes)
}

/// One worker's shared memory.
#[derive(Debug, Clone)]
pub(crate) struct Region {
    memory: Arc<SharedMemory>,
    layout: Layout,
}

impl Region {
    /// A new region with rings of [`RING_BYTES`], and the descriptor to hand the worker.
    ///
    /// # Errors
    ///
    /// The kernel has no `memfd`, or refused the memory.
    #[cfg_attr(not(test), allow(dead_code, reason = "the pool sizes its rings by its config"))]
    pub(crate) fn create() -> std::io::Result<(Region, OwnedFd)> {
        Region::with_ring_bytes(RING_BYTES)
    }

    /// A new region with rings of `ring_bytes` of data each, and the descriptor to hand the
    /// worker. Only its start is pre-faulted (see [`PREFAULT`]).
    ///
    /// # Errors
    ///
    /// The kernel has no `memfd`, or refused the memory; `InvalidInput` if `ring_bytes` is
    /// not [valid](valid_ring_bytes).
    pub(crate) fn with_ring_bytes(ring_bytes: usize) -> std::io::Result<(Region, OwnedFd)> {
        if !valid_ring_bytes(ring_bytes) {
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        let layout = Layout::of(ring_bytes);
        let name = c"taskpool-worker";
        let (memory, fd) = if layout.wholly_prefaulted() {
            SharedMemory::create(name, layout.len)?
        } else {
            SharedMemory::create_populated(name, layout.len, &layout.prefault())?
        };
        Ok((Region { memory: Arc::new(memory), layout }, fd))
    }

    /// The region its parent passed on descriptor `fd` (in a worker), if it is one, with
    /// rings of any size this module makes (read from its length); the same start of it is
    /// pre-faulted as in the parent.
    pub(crate) fn adopt(fd: RawFd) -> Option<Region> {
        let layout = Layout::of_len(SharedMemory::sealed_len(fd)?)?;
        let memory = if layout.wholly_prefaulted() {
            SharedMemory::adopt(fd, layout.len)?
        } else {
            SharedMemory::adopt_populated(fd, layout.len, &layout.prefault())?
        };
        Some(Region { memory: Arc::new(memory), layout })
    }

    /// The status page.
    pub(crate) fn status_page(&self) -> StatusPage {
        StatusPage::new(self.memory.clone(), 0)
    }

    /// The parent's end of the request ring.
    pub(crate) fn requests_out(&self) -> Producer {
        Producer::new(self.memory.clone(), self.layout.requests).unwrap_or_else(|| unreachable!())
    }

    /// The worker's end of the request ring.
    pub(crate) fn requests_in(&self) -> Consumer {
        Consumer::new(self.memory.clone(), self.layout.requests).unwrap_or_else(|| unreachable!())
    }

    /// The worker's end of the result ring.
    pub(crate) fn results_out(&self) -> Producer {
        Producer::new(self.memory.clone(), self.layout.results).unwrap_or_else(|| unreachable!())
    }

    /// The parent's end of the result ring.
    pub(crate) fn results_in(&self) -> Consumer {
        Consumer::new(self.memory.clone(), self.layout.results).unwrap_or_else(|| unreachable!())
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    /// Sends `request` and `result` across `region` and a second mapping of it.
    fn crosses(region: &Region, fd: &OwnedFd) {
        let other = Region::adopt(fd.as_raw_fd()).unwrap();
        assert_eq!(other.layout, region.layout);
        let (mut out, mut back) = (region.requests_out(), region.results_in());
        let (mut worker_in, mut worker_out) = (other.requests_in(), other.results_out());
        assert_eq!(out.write(b"request").unwrap(), 7);
        assert_eq!(worker_out.write(b"result").unwrap(), 6);
        let mut buf = [0; 16];
        assert_eq!(worker_in.read(&mut buf).unwrap(), 7);
        assert_eq!(&buf[..7], b"request");
        assert_eq!(back.read(&mut buf).unwrap(), 6);
        assert_eq!(&buf[..6], b"result");
    }

    #[test]
    fn the_layout_fits_and_the_rings_are_apart() {
        let (region, fd) = Region::create().unwrap();
        assert_eq!(region.layout, Layout::of(RING_BYTES));
        crosses(&region, &fd);
        assert!(Region::adopt(-1).is_none());
    }

    #[test]
    fn every_valid_ring_size_is_made_and_recognised_by_its_length() {
        for bytes in [MIN_RING_BYTES, PREFAULT, PREFAULT * 2, 1 << 20] {
            let (region, fd) = Region::with_ring_bytes(bytes).unwrap();
            assert_eq!(region.layout.requests.capacity, bytes);
            assert_eq!(Layout::of_len(region.layout.len), Some(region.layout));
            crosses(&region, &fd);
        }
    }

    #[test]
    fn a_bad_size_or_length_is_refused() {
        for bytes in [0, 4095, 3 << 12, MAX_RING_BYTES * 2] {
            let err = Region::with_ring_bytes(bytes).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        }
        let len = Layout::of(RING_BYTES).len;
        for wrong in [0, PAGE, len - PAGE, len + PAGE, 3 * PAGE] {
            assert_eq!(Layout::of_len(wrong), None, "{wrong}");
        }
        let (memory, fd) = SharedMemory::create(c"taskpool-test", 3 * PAGE).unwrap();
        drop(memory);
        assert!(Region::adopt(fd.as_raw_fd()).is_none());
    }
}
