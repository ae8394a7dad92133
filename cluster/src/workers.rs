//! An agent's local process pools: its own, and one for each initializer its callers' tasks
//! carry, so that a caller's `Config::initializer` runs once in every worker that runs its
//! tasks, before the first, as on one machine (and a failing one fails them with
//! `WorkerStart`).
//!
//! A pool for an initializer has the agent's settings with the caller's initializer in place
//! of the agent's own. It is started by the first task that needs it and stopped once no
//! task has run on it for [`IDLE`]; at most [`MAX_INITIALIZERS`] run at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use taskpool_core::{Pool, TaskError};
use taskpool_process::{ProcessConfig, ProcessPool, remote};

/// How long a pool for an initializer is kept without a task.
pub(crate) const IDLE: Duration = Duration::from_secs(60);
/// The most pools for initializers an agent runs at once.
pub(crate) const MAX_INITIALIZERS: usize = 8;

/// The agent's pools.
pub(crate) struct Workers {
    config: ProcessConfig,
    own: Arc<ProcessPool>,
    /// The offset of the agent's own initializer, whose tasks its own pool runs.
    own_initializer: Option<i64>,
    by_initializer: Mutex<HashMap<i64, Kept>>,
}

/// A pool for one initializer, and when a task last asked for it.
struct Kept {
    pool: Arc<ProcessPool>,
    used: Instant,
}

impl Workers {
    /// Starts the agent's own pool.
    pub(crate) fn new(config: ProcessConfig) -> Result<Self, TaskError> {
        let own = Arc::new(ProcessPool::with_config(remote::for_other_machines(config.clone()))?);
        let own_initializer = config.get_config().get_initializer().map(remote::initializer_offset);
        Ok(Workers { config, own, own_initializer, by_initializer: Mutex::new(HashMap::new()) })
    }

    fn kept(&self) -> MutexGuard<'_, HashMap<i64, Kept>> {
        // Each change is one insert or remove: a poisoned lock is still consistent.
        self.by_initializer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The workers of the agent's own pool.
    pub(crate) fn workers(&self) -> usize {
        self.own.workers()
    }

    /// The pool for tasks whose caller's initializer is at `initializer` (an offset into
    /// this executable image), started now if there is none. Whoever runs a task on it holds
    /// the `Arc` until the task ends, so that it is not stopped meanwhile.
    ///
    /// # Errors
    ///
    /// [`TaskError::WorkerStart`] if the pool cannot start, or if [`MAX_INITIALIZERS`] pools
    /// for other initializers are busy.
    pub(crate) fn pool(&self, initializer: Option<i64>) -> Result<Arc<ProcessPool>, TaskError> {
        let Some(offset) = initializer.filter(|&o| Some(o) != self.own_initializer) else {
            return Ok(self.own.clone());
        };
        let mut kept = self.kept();
        if let Some(found) = kept.get_mut(&offset) {
            found.used = Instant::now();
            return Ok(found.pool.clone());
        }
        let mut evicted = None;
        if kept.len() >= MAX_INITIALIZERS {
            // Make room: the pool unused the longest, if no task runs on it.
            let idle = kept
                .iter()
                .filter(|(_, k)| Arc::strong_count(&k.pool) == 1)
                .min_by_key(|(_, k)| k.used)
                .map(|(&offset, _)| offset);
            match idle {
                Some(oldest) => evicted = kept.remove(&oldest),
                None => {
                    return Err(TaskError::WorkerStart {
                        reason: format!(
                            "the agent runs tasks for {MAX_INITIALIZERS} other initializers"
                        ),
                    });
                }
            }
        }
        // SAFETY: the offset came in a task message on this image's subject, from a caller
        // that computed it with `initializer_offset` in a process of the same executable image
        // (the agents' consumer takes only that image's tasks, as for the tasks' entry points).
        // Whoever can publish there can run any function of the image: the NATS account is
        // the trust boundary (see the crate's documentation).
        let init = unsafe { remote::initializer_at(offset) };
        let shared = self.config.get_config().clone().initializer(init);
        let pool = Arc::new(ProcessPool::with_config(remote::for_other_machines(
            self.config.clone().config(shared),
        ))?);
        kept.insert(offset, Kept { pool: pool.clone(), used: Instant::now() });
        drop(kept);
        // Its workers exit once it is dropped; outside the lock.
        drop(evicted);
        Ok(pool)
    }

    /// Takes out the pools for initializers that no task has used for [`IDLE`] and none
    /// runs on; the caller drops them (which waits for their workers to exit).
    pub(crate) fn take_idle(&self, now: Instant) -> Vec<Arc<ProcessPool>> {
        let mut kept = self.kept();
        let idle: Vec<i64> = kept
            .iter()
            .filter(|(_, k)| {
                Arc::strong_count(&k.pool) == 1 && now.saturating_duration_since(k.used) >= IDLE
            })
            .map(|(&offset, _)| offset)
            .collect();
        idle.into_iter().filter_map(|offset| kept.remove(&offset)).map(|k| k.pool).collect()
    }

    /// Waits for every task on every pool to finish.
    pub(crate) fn shutdown(&self) {
        let pools: Vec<Arc<ProcessPool>> = self.kept().values().map(|k| k.pool.clone()).collect();
        for pool in pools.iter().chain([&self.own]) {
            pool.shutdown();
        }
    }
}
