//! The settings every pool shares, with sensible defaults.

use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use crate::error::TaskError;

/// How a pool is set up. Every backend reads the same settings; a setting a backend cannot
/// honour is documented on that backend.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use taskpool_core::Config;
///
/// fn warm_up() {}
///
/// let config = Config::new()
///     .workers(4)
///     .timeout(Duration::from_secs(30))
///     .max_tasks_per_worker(1000)
///     .initializer(warm_up)
///     .name_prefix("solver");
/// assert_eq!(config.worker_count(), 4);
/// ```
#[derive(Clone)]
pub struct Config {
    workers: usize,
    timeout: Option<Duration>,
    max_tasks_per_worker: Option<u64>,
    chunk_size: Option<NonZeroUsize>,
    initializer: Option<fn()>,
    name_prefix: String,
    backtraces: bool,
    max_frame_bytes: usize,
    in_flight: usize,
    shutdown_grace: Duration,
    start_attempts: u32,
    memory_limit: Option<u64>,
    cpu_time_limit: Option<Duration>,
}

impl Config {
    /// The defaults: one worker per available CPU, no timeout, workers never recycled,
    /// automatic chunks, no initializer, 1 GiB frame limit, 2 tasks in flight per worker,
    /// one second of grace on drop, 3 start attempts, no memory or CPU-time limit.
    pub fn new() -> Self {
        Config {
            workers: std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            timeout: None,
            max_tasks_per_worker: None,
            chunk_size: None,
            initializer: None,
            name_prefix: "taskpool".to_owned(),
            backtraces: false,
            max_frame_bytes: 1 << 30,
            in_flight: 2,
            shutdown_grace: Duration::from_secs(1),
            start_attempts: 3,
            memory_limit: None,
            cpu_time_limit: None,
        }
    }

    /// Sets the number of workers (threads or processes). Must be at least 1.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Sets a time limit for every task, counted from when it starts running. A process
    /// backend kills and replaces the worker of a task that exceeds it; a thread backend
    /// reports the timeout but cannot stop the thread.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Replaces a worker after it has run `n` tasks, like Python's `maxtasksperchild`: a cure
    /// for leaks in the code a task calls. Must be at least 1.
    pub fn max_tasks_per_worker(mut self, n: u64) -> Self {
        self.max_tasks_per_worker = Some(n);
        self
    }

    /// Sets how many items of a `map` travel together. By default the size is chosen from the
    /// number of items and workers.
    pub fn chunk_size(mut self, n: usize) -> Self {
        self.chunk_size = NonZeroUsize::new(n);
        self
    }

    /// Runs `init` once in every worker before its first task, like Python's `initializer`.
    /// A worker whose initializer panics is not used; see [`Config::start_attempts`].
    pub fn initializer(mut self, init: fn()) -> Self {
        self.initializer = Some(init);
        self
    }

    /// Names workers `{prefix}-{index}` (thread names; process backends pass it as the
    /// worker's first argument, which is what `ps` shows).
    pub fn name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.name_prefix = prefix.into();
        self
    }

    /// Captures a backtrace for every panicking task. Off by default: it costs time on every
    /// panic.
    pub fn backtraces(mut self, on: bool) -> Self {
        self.backtraces = on;
        self
    }

    /// Sets the largest encoded argument or result, in bytes, that may cross a process
    /// boundary. Larger values fail their task with [`TaskError::TooLarge`].
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        self.max_frame_bytes = bytes;
        self
    }

    /// Sets how many batches a process worker may hold at once (1 to 4), so that it never
    /// idles for a round trip.
    pub fn in_flight(mut self, n: usize) -> Self {
        self.in_flight = n;
        self
    }

    /// Sets how long dropping a pool waits for running tasks before killing its workers.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Sets how many times in a row a worker may fail to start (or its initializer may fail)
    /// before the pool gives up and fails the waiting tasks with [`TaskError::WorkerStart`].
    pub fn start_attempts(mut self, n: u32) -> Self {
        self.start_attempts = n;
        self
    }

    /// Caps the memory of each worker process at `bytes` of address space, from after the
    /// initializer on. A task whose allocation fails under the cap fails with
    /// [`TaskError::ResourceLimit`] (`Resource::Memory`), and its worker is replaced; the pool
    /// goes on.
    ///
    /// This is address space (`RLIMIT_AS`), not resident memory: the worker's own code,
    /// buffers and stacks count, and so do the stacks and allocator arenas of threads a task
    /// starts, so leave room (tens of MiB) above what tasks need. A failed allocation is
    /// recognized when the worker aborts with its address space within an eighth of the cap;
    /// a single allocation far larger than what is left can be reported as a crash
    /// (`SIGABRT`) instead.
    ///
    /// Process backends only: a thread backend ignores it (threads share one address space).
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Caps the CPU time (user plus system) each task may use in its worker process. A task
    /// that uses more is stopped with its worker and fails with [`TaskError::ResourceLimit`]
    /// (`Resource::CpuTime`); the pool replaces the worker and goes on.
    ///
    /// The kernel enforces it (`RLIMIT_CPU`, armed again before each task) and counts whole
    /// seconds: the limit is rounded up to a whole second, and a task may run up to one second
    /// past it. Unlike [`Config::timeout`], which counts wall-clock time, it does not fire on a
    /// task that waits or that a busy machine does not schedule.
    ///
    /// Process backends only: a thread backend ignores it (a thread cannot be stopped).
    pub fn cpu_time_limit(mut self, limit: Duration) -> Self {
        self.cpu_time_limit = Some(limit);
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`TaskError::InvalidConfig`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), TaskError> {
        let bad = |reason: &str| Err(TaskError::InvalidConfig { reason: reason.to_owned() });
        if self.workers == 0 {
            return bad("a pool needs at least one worker");
        }
        if self.max_tasks_per_worker == Some(0) {
            return bad("max_tasks_per_worker must be at least 1");
        }
        if !(1..=4).contains(&self.in_flight) {
            return bad("in_flight must be between 1 and 4");
        }
        if self.max_frame_bytes < 64 {
            return bad("max_frame_bytes must be at least 64");
        }
        if self.start_attempts == 0 {
            return bad("start_attempts must be at least 1");
        }
        if self.timeout == Some(Duration::ZERO) {
            return bad("a timeout must be longer than zero");
        }
        if self.memory_limit == Some(0) {
            return bad("a memory limit must be more than zero bytes");
        }
        if self.cpu_time_limit == Some(Duration::ZERO) {
            return bad("a cpu time limit must be longer than zero");
        }
        Ok(())
    }

    /// The number of workers.
    pub fn worker_count(&self) -> usize {
        self.workers
    }

    /// The per-task time limit, if any.
    pub fn task_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// After how many tasks a worker is replaced, if ever.
    pub fn tasks_per_worker(&self) -> Option<u64> {
        self.max_tasks_per_worker
    }

    /// The chunk size for `n` items: the configured one, or automatic.
    ///
    /// Automatic follows Python's `Pool.map`: about four chunks per worker, so that uneven
    /// tasks still balance, capped so one chunk never holds more than 4096 items.
    pub fn chunk_for(&self, n: usize) -> usize {
        match self.chunk_size {
            Some(size) => size.get(),
            None => n.div_ceil(4 * self.workers.max(1)).clamp(1, 4096),
        }
    }

    /// The chunk size set with [`Config::chunk_size`], if one was.
    pub fn fixed_chunk_size(&self) -> Option<usize> {
        self.chunk_size.map(NonZeroUsize::get)
    }

    /// The per-worker initializer, if any.
    pub fn init_fn(&self) -> Option<fn()> {
        self.initializer
    }

    /// The worker name prefix.
    pub fn prefix(&self) -> &str {
        &self.name_prefix
    }

    /// Whether panics capture backtraces.
    pub fn captures_backtraces(&self) -> bool {
        self.backtraces
    }

    /// The frame size limit in bytes.
    pub fn frame_limit(&self) -> usize {
        self.max_frame_bytes
    }

    /// How many batches a process worker may hold at once.
    pub fn in_flight_per_worker(&self) -> usize {
        self.in_flight
    }

    /// How long a drop waits for running tasks.
    pub fn grace(&self) -> Duration {
        self.shutdown_grace
    }

    /// How many failed starts in a row a pool tolerates.
    pub fn attempts(&self) -> u32 {
        self.start_attempts
    }

    /// The cap on each worker's address space in bytes, if any.
    pub fn worker_memory_limit(&self) -> Option<u64> {
        self.memory_limit
    }

    /// The cap on each task's CPU time, if any.
    pub fn worker_cpu_time_limit(&self) -> Option<Duration> {
        self.cpu_time_limit
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("workers", &self.workers)
            .field("timeout", &self.timeout)
            .field("max_tasks_per_worker", &self.max_tasks_per_worker)
            .field("chunk_size", &self.chunk_size)
            .field("initializer", &self.initializer.is_some())
            .field("name_prefix", &self.name_prefix)
            .field("backtraces", &self.backtraces)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("in_flight", &self.in_flight)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("start_attempts", &self.start_attempts)
            .field("memory_limit", &self.memory_limit)
            .field("cpu_time_limit", &self.cpu_time_limit)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = Config::new();
        assert!(c.validate().is_ok());
        assert!(c.worker_count() >= 1);
    }

    #[test]
    fn bad_settings_are_named() {
        let err = Config::new().workers(0).validate().unwrap_err();
        assert!(err.to_string().contains("at least one worker"), "{err}");
        assert!(Config::new().in_flight(9).validate().is_err());
        assert!(Config::new().timeout(Duration::ZERO).validate().is_err());
        assert!(Config::new().max_tasks_per_worker(0).validate().is_err());
        assert!(Config::new().memory_limit(0).validate().is_err());
        assert!(Config::new().cpu_time_limit(Duration::ZERO).validate().is_err());
    }

    #[test]
    fn limits_are_off_by_default() {
        let c = Config::new();
        assert_eq!((c.worker_memory_limit(), c.worker_cpu_time_limit()), (None, None));
        let c = c.memory_limit(1 << 28).cpu_time_limit(Duration::from_secs(2));
        assert_eq!(c.worker_memory_limit(), Some(1 << 28));
        assert_eq!(c.worker_cpu_time_limit(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn automatic_chunks_follow_items_and_workers() {
        let c = Config::new().workers(2);
        assert_eq!(c.chunk_for(0), 1);
        assert_eq!(c.chunk_for(80), 10);
        assert_eq!(c.chunk_for(10_000_000), 4096);
        assert_eq!(c.chunk_size(7).chunk_for(80), 7);
    }
}
