//! The memory a worker shares with its parent: one sealed, pre-faulted `memfd` per worker,
//! holding its status page and its two rings.
//!
//! | offset | what |
//! |---|---|
//! | 0 | the status page (`status.rs`) |
//! | 4096 | the request ring, parent → worker (`ring.rs`: a header, then [`RING_BYTES`]) |
//! | 4096 + 256 + [`RING_BYTES`] | the result ring, worker → parent |
//!
//! A new region is made for every worker and dropped with it: whatever a worker did to its
//! rings dies with it. The parent maps it first, which allocates and zeroes its pages; the
//! worker maps the same pages. Where the kernel has no `memfd` (or
//! `TASKPOOL_TRANSPORT=pipes` asks for the fallback), there is no region: no status page,
//! and the pipes carry everything.

use std::os::fd::{OwnedFd, RawFd};
use std::sync::Arc;

use crate::ring::{Consumer, Producer, RingLayout};
use crate::status::{self, StatusPage};
use crate::sys::SharedMemory;

/// Bytes of data in each ring: a 1 MiB argument and its frame fit with one hand-over.
pub(crate) const RING_BYTES: usize = 1 << 20;
const PAGE: usize = 4096;
const REQUEST_RING: RingLayout = RingLayout { offset: PAGE, capacity: RING_BYTES };
const RESULT_RING: RingLayout =
    RingLayout { offset: REQUEST_RING.offset + REQUEST_RING.size(), capacity: RING_BYTES };
/// Bytes of a region: whole pages.
pub(crate) const LEN: usize = (RESULT_RING.offset + RESULT_RING.size()).next_multiple_of(PAGE);
const _: () = assert!(status::WORDS * 8 <= REQUEST_RING.offset);

/// One worker's shared memory.
#[derive(Debug, Clone)]
pub(crate) struct Region {
    memory: Arc<SharedMemory>,
}

impl Region {
    /// A new region, and the descriptor to hand the worker.
    ///
    /// # Errors
    ///
    /// The kernel has no `memfd`, or refused the memory.
    pub(crate) fn create() -> std::io::Result<(Region, OwnedFd)> {
        let (memory, fd) = SharedMemory::create(c"taskpool-worker", LEN)?;
        Ok((Region { memory: Arc::new(memory) }, fd))
    }

    /// The region its parent passed on descriptor `fd` (in a worker), if it is one.
    pub(crate) fn adopt(fd: RawFd) -> Option<Region> {
        SharedMemory::adopt(fd, LEN).map(|memory| Region { memory: Arc::new(memory) })
    }

    /// The status page.
    pub(crate) fn status_page(&self) -> StatusPage {
        StatusPage::new(self.memory.clone(), 0)
    }

    /// The parent's end of the request ring.
    pub(crate) fn requests_out(&self) -> Producer {
        Producer::new(self.memory.clone(), REQUEST_RING).unwrap_or_else(|| unreachable!())
    }

    /// The worker's end of the request ring.
    pub(crate) fn requests_in(&self) -> Consumer {
        Consumer::new(self.memory.clone(), REQUEST_RING).unwrap_or_else(|| unreachable!())
    }

    /// The worker's end of the result ring.
    pub(crate) fn results_out(&self) -> Producer {
        Producer::new(self.memory.clone(), RESULT_RING).unwrap_or_else(|| unreachable!())
    }

    /// The parent's end of the result ring.
    pub(crate) fn results_in(&self) -> Consumer {
        Consumer::new(self.memory.clone(), RESULT_RING).unwrap_or_else(|| unreachable!())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_fits_and_the_rings_are_apart() {
        let (region, fd) = Region::create().unwrap();
        let other = Region::adopt(std::os::fd::AsRawFd::as_raw_fd(&fd)).unwrap();
        let (mut out, mut back) = (region.requests_out(), region.results_in());
        let (mut worker_in, mut worker_out) = (other.requests_in(), other.results_out());
        assert_eq!(out.write(b"request").unwrap(), 7);
        assert_eq!(worker_out.write(b"result").unwrap(), 6);
        let mut buf = [0; 16];
        assert_eq!(worker_in.read(&mut buf).unwrap(), 7);
        assert_eq!(&buf[..7], b"request");
        assert_eq!(back.read(&mut buf).unwrap(), 6);
        assert_eq!(&buf[..6], b"result");
        assert!(Region::adopt(-1).is_none());
    }
}
