//! rayon as its users write it. rayon has no handle to join a single task, so a task that
//! must answer is `spawn`ed with a `crossbeam-channel` sender (the channel rayon users reach
//! for: its receiver spins briefly before it parks, where `std::sync::mpsc`'s parks at once);
//! many tasks at once run in a `scope`, each writing its result into its own slot; maps,
//! kernels and waiting tasks are `par_iter` inside `install`; faults run in `install`, which
//! hands the task's panic back to the caller (a panic in a `spawn`ed job would abort the
//! program), but for the hang: rayon has no time limit, so a caller that must not wait for
//! ever `spawn`s the task and waits for its answer on a channel for as long as the row's
//! limit, as Python's threads wait on `Future.result(timeout)`. The hung task keeps its
//! thread for good.
//!
//! Waiting tasks run as rayon runs any batch, a `par_iter` on a pool of as many threads as
//! asked for: rayon is built for CPU-bound work on as many threads as CPUs, and a thread
//! blocked in a task runs and steals nothing else meanwhile.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crossbeam_channel::{Receiver, Sender};
use rayon::prelude::*;
use serde_bytes::ByteBuf;

use super::{PoolSpec, Running, text};
use crate::scenarios::{Fault, HANG_LIMIT, Kernel, KernelKind, Wait};
use crate::tasks;

/// A rayon pool and the channel its single tasks answer on.
struct Rayon {
    pool: rayon::ThreadPool,
    tx: Sender<u64>,
    rx: Receiver<u64>,
}

/// Builds a rayon pool of `spec.workers` threads (rayon has no time or memory limits).
pub(crate) fn start(spec: &PoolSpec) -> Result<Box<dyn Running>, String> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(spec.workers).build().map_err(text)?;
    let (tx, rx) = crossbeam_channel::unbounded();
    Ok(Box::new(Rayon { pool, tx, rx }))
}

impl Running for Rayon {
    fn noop(&self) -> Result<(), String> {
        let tx = self.tx.clone();
        self.pool.spawn(move || {
            let _ = tx.send(tasks::noop(1));
        });
        self.rx.recv().map(drop).map_err(text)
    }

    fn in_flight(&self, n: usize) -> Result<(), String> {
        let mut out = vec![0u64; n];
        self.pool.scope(|s| {
            for (i, slot) in out.iter_mut().enumerate() {
                s.spawn(move |_| *slot = tasks::noop(i as u64));
            }
        });
        drop(std::hint::black_box(out));
        Ok(())
    }

    fn map_noop(&self, items: Vec<u64>) -> Result<(), String> {
        let out: Vec<u64> = self.pool.install(|| items.into_par_iter().map(tasks::noop).collect());
        drop(std::hint::black_box(out));
        Ok(())
    }

    fn echo(&self, payload: ByteBuf) -> Result<ByteBuf, String> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.pool.spawn(move || {
            let _ = tx.send(tasks::echo(payload));
        });
        rx.recv().map_err(text)
    }

    fn kernel(&self, kernel: &Kernel) -> Result<u64, String> {
        Ok(self.pool.install(|| match kernel.kind {
            KernelKind::Primes => (0..kernel.tasks)
                .into_par_iter()
                .map(|i| kernel.primes_input(i))
                .map(|(start, len)| tasks::primes(start, len))
                .sum(),
            KernelKind::Mandel => (0..kernel.tasks)
                .into_par_iter()
                .map(|i| kernel.mandel_input(i))
                .map(|(a, b, c, d, e)| tasks::mandel(a, b, c, d, e))
                .sum(),
        }))
    }

    fn waits(&self, wait: &Wait, n: usize) -> Result<Vec<u32>, String> {
        self.pool.install(|| (0..n).into_par_iter().map(|_| wait.run()).collect())
    }

    fn writes(&self, n: usize) -> Result<Vec<u64>, String> {
        Ok(self.pool.install(|| (0..n as u64).into_par_iter().map(tasks::write_global).collect()))
    }

    fn fault(&self, fault: Fault) -> Result<u64, String> {
        let (task, arg) = fault.task();
        if fault == Fault::Hang {
            let (tx, rx) = crossbeam_channel::bounded(1);
            self.pool.spawn(move || {
                let _ = tx.send(task(arg));
            });
            return rx.recv_timeout(HANG_LIMIT).map_err(|_| {
                format!(
                    "task hung: no answer within the caller's {} ms wait (rayon has no time \
                     limit: the task keeps its thread)",
                    HANG_LIMIT.as_millis()
                )
            });
        }
        catch_unwind(AssertUnwindSafe(|| self.pool.install(|| task(arg))))
            .map_err(|_| "the panic propagated to the caller (catch_unwind needed)".to_owned())
    }

    fn hang_keeps_its_worker(&self) -> bool {
        true
    }
}
