//! Any taskpool backend: one adapter for every pool that implements `taskpool_core::Pool`.
//!
//! Tasks are named by their function item, as a user names them (a process pool ships a
//! function by its type, so a task cannot be passed around as a pointer): hence the matches
//! on the kernel and the fault.

use serde_bytes::ByteBuf;
use taskpool_core::{Pool, Spawned, TaskError};

use super::{Running, text};
use crate::scenarios::{Fault, Kernel, KernelKind, Wait};
use crate::tasks;

/// A started taskpool pool.
pub(crate) struct Taskpool<P>(pub(crate) P);

/// `started` as a running backend, or its error as text.
pub(crate) fn boxed<P: Pool + 'static>(
    started: Result<P, TaskError>,
) -> Result<Box<dyn Running>, String> {
    Ok(Box::new(Taskpool(started.map_err(text)?)))
}

/// Joins a one-off spawn of a no-op.
pub(crate) fn joined(spawned: Result<Spawned<u64>, TaskError>) -> Result<(), String> {
    spawned.and_then(Spawned::join).map(drop).map_err(text)
}

impl<P: Pool> Running for Taskpool<P> {
    fn noop(&self) -> Result<(), String> {
        self.0.apply(tasks::noop, 1).map(drop).map_err(text)
    }

    fn in_flight(&self, n: usize) -> Result<(), String> {
        let handles: Vec<_> = (0..n as u64).map(|i| self.0.submit(tasks::noop, i)).collect();
        handles.into_iter().try_for_each(|h| h.join().map(drop)).map_err(text)
    }

    fn map_noop(&self, items: Vec<u64>) -> Result<(), String> {
        let out = self.0.map(tasks::noop, items).map_err(text)?;
        drop(std::hint::black_box(out));
        Ok(())
    }

    fn imap_noop(&self, items: Vec<u64>) -> Result<(), String> {
        let expected = items.len();
        let mut taken = 0;
        for result in self.0.imap(tasks::noop, items) {
            std::hint::black_box(result.map_err(text)?);
            taken += 1;
        }
        imapped(taken, expected)
    }

    fn echo(&self, payload: ByteBuf) -> Result<ByteBuf, String> {
        self.0.apply(tasks::echo, payload).map_err(text)
    }

    fn echo_vec(&self, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        self.0.apply(tasks::echo_vec, payload).map_err(text)
    }

    #[cfg(feature = "process-pool")]
    fn echo_shared(
        &self,
        payload: taskpool_process::SharedBytes,
    ) -> Result<taskpool_process::SharedBytes, String> {
        self.0.apply(tasks::echo_shared, payload).map_err(text)
    }

    fn kernel(&self, kernel: &Kernel) -> Result<u64, String> {
        let sums = match kernel.kind {
            KernelKind::Primes => self.0.map(tasks::primes, kernel.primes_inputs()),
            KernelKind::Mandel => self.0.map(tasks::mandel, kernel.mandel_inputs()),
        };
        sums.map(|v| v.into_iter().sum()).map_err(text)
    }

    fn fault(&self, fault: Fault) -> Result<u64, String> {
        let arg = fault.argument();
        let result = match fault {
            Fault::Panic => self.0.apply(tasks::panic, arg),
            Fault::Segfault => self.0.apply(tasks::segfault, arg),
            Fault::Abort => self.0.apply(tasks::abort, arg),
            Fault::Hang => self.0.apply(tasks::hang, arg),
            Fault::Bomb => self.0.apply(tasks::memory_bomb, arg),
        };
        result.map_err(|e| describe(&e))
    }

    fn waits(&self, wait: &Wait, n: usize) -> Result<Vec<u32>, String> {
        match wait {
            Wait::Sleep { micros } => {
                let handles: Vec<_> = (0..n).map(|_| self.0.submit(tasks::nap, *micros)).collect();
                handles.into_iter().map(|h| h.join().map_err(text)).collect()
            }
            Wait::Ask { service, delay_us } => {
                let handles: Vec<_> = (0..n)
                    .map(|_| self.0.submit(tasks::ask, (service.clone(), *delay_us)))
                    .collect();
                handles.into_iter().map(|h| h.join().map_err(text)?).collect()
            }
        }
    }

    fn writes(&self, n: usize) -> Result<Vec<u64>, String> {
        let handles: Vec<_> =
            (0..n as u64).map(|i| self.0.submit(tasks::write_global, i)).collect();
        handles.into_iter().map(|h| h.join().map_err(text)).collect()
    }
}

/// Checks that an `imap` yielded a result for each of its `expected` items.
fn imapped(taken: usize, expected: usize) -> Result<(), String> {
    if taken == expected {
        Ok(())
    } else {
        Err(format!("imap yielded {taken} results for {expected} items"))
    }
}

/// A task error in a few words.
fn describe(e: &TaskError) -> String {
    match e {
        TaskError::Panicked(_) => "task failed: panicked (message and location)".into(),
        TaskError::Crashed(exit) => format!("task failed: worker {exit}; replaced"),
        TaskError::TimedOut { still_running: false, .. } => {
            "task timed out: worker killed and replaced".into()
        }
        TaskError::TimedOut { still_running: true, .. } => {
            "task timed out; its thread stays busy (cannot be killed), a relief thread in its place"
                .into()
        }
        TaskError::ResourceLimit { .. } => format!("task failed: {e}; worker replaced"),
        other => format!("task failed: {other}"),
    }
}
