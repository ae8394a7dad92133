//! [`ProcessConfig`]: the shared settings plus those only worker processes have.

use std::fmt;
use std::time::Duration;

use taskpool_core::{Config, TaskError};

/// The smallest memory limit accepted: a smaller one is a unit mistake (it is in bytes), and
/// no worker fits in it.
const MIN_MEMORY_LIMIT: u64 = 1 << 20;

/// The longest name prefix accepted: a worker's name is its first argument, which the kernel
/// refuses past 128 KiB (`E2BIG`), and shows in `ps` and `/proc` in full.
const MAX_NAME_PREFIX: usize = 4096;

/// The largest `max_frame_bytes` accepted: a frame's length is 32 bits, and a value's frame
/// holds a little more than the value (its item's header), so 1 MiB is kept for that.
const MOST_FRAME_BYTES: usize = (4 << 30) - (1 << 20);

/// How long a new worker may take to start, its initializer included, by default.
const DEFAULT_START_LIMIT: Duration = Duration::from_secs(30);

/// How a [`crate::ProcessPool`] is set up: the shared [`Config`] and the settings that only
/// worker processes have (a frame limit, batches in flight, memory and CPU-time limits, the
/// size of the shared-memory rings).
///
/// `ProcessPool::with_config` takes either: a plain [`Config`] gets the defaults below for
/// the process settings.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use taskpool_process::{Config, Pool, ProcessConfig, ProcessPool, TaskError};
///
/// fn double(x: u64) -> u64 {
///     x * 2
/// }
///
/// let config = ProcessConfig::new(Config::new().workers(2).timeout(Duration::from_secs(10)))
///     .memory_limit(512 << 20)
///     .cpu_time_limit(Duration::from_secs(5));
/// assert_eq!(config.get_config().get_workers(), 2);
/// let pool = ProcessPool::with_config(config)?;
/// assert_eq!(pool.map(double, 1..=3)?, [2, 4, 6]);
/// # Ok::<(), TaskError>(())
/// ```
#[derive(Clone)]
pub struct ProcessConfig {
    config: Config,
    max_frame_bytes: usize,
    in_flight: usize,
    memory_limit: Option<u64>,
    cpu_time_limit: Option<Duration>,
    ring_bytes: usize,
    start_limit: Duration,
    /// Whether the results of the pool's tasks go on to another machine
    /// (`remote::for_other_machines`).
    off_machine: bool,
}

impl ProcessConfig {
    /// `config` with the process defaults: a 1 GiB frame limit, 2 batches in flight per
    /// worker, no memory or CPU-time limit, rings of 256 KiB, 30 s for a worker to start.
    pub fn new(config: Config) -> Self {
        ProcessConfig {
            config,
            max_frame_bytes: 1 << 30,
            in_flight: 2,
            memory_limit: None,
            cpu_time_limit: None,
            ring_bytes: crate::region::RING_BYTES,
            start_limit: DEFAULT_START_LIMIT,
            off_machine: false,
        }
    }

    /// Marks the results of the pool's tasks as going on to another machine.
    pub(crate) fn off_machine(mut self) -> Self {
        self.off_machine = true;
        self
    }

    /// Whether the results of the pool's tasks go on to another machine.
    pub(crate) fn get_off_machine(&self) -> bool {
        self.off_machine
    }

    /// Replaces the shared settings.
    #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Sets the largest encoded argument or result, in bytes, that may cross a process
    /// boundary. Larger values fail their task with [`TaskError::TooLarge`]. At least 64, and
    /// at most 4 GiB less 1 MiB (a frame's length is 32 bits).
    #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        self.max_frame_bytes = bytes;
        self
    }

    /// Sets how many batches a worker may hold at once (1 to 4, 2 by default), so that it
    /// never idles for a round trip.
    ///
    /// A worker runs what it holds in order, and takes more than one batch only while no
    /// other worker is idle or starting, and while its running task has not run far past
    /// what its function's tasks were measured to take (10 ms at least). Tasks that wait for
    /// each other, such as a task that blocks on a [`crate::Queue`] fed by a task submitted
    /// after it, therefore run side by side when workers are free, but can wait forever when
    /// every worker was busy and both land on one. `in_flight(1)` sends a busy worker less;
    /// only running the two sides in different pools (or one with [`crate::spawn`]) rules
    /// it out. What a worker took in the first moments of a task that then runs long is
    /// taken back, batch by batch, by a worker with nothing to do, once that task is overdue;
    /// the other items of the task's own batch wait for it. Where workers have no shared
    /// memory (the kernel refuses `memfd`, or the file-size limit is below a worker's
    /// shared memory; the pipes then carry everything), nothing is taken back: what a
    /// worker took waits for its task, or for the task's time limit
    /// ([`Config::timeout`]).
    #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
    pub fn in_flight(mut self, n: usize) -> Self {
        self.in_flight = n;
        self
    }

    /// Caps the memory of each worker process at `bytes` of address space, from after the
    /// initializer on. A task whose allocation fails under the cap fails with
    /// [`TaskError::ResourceLimit`] (`Resource::Memory`), and its worker is replaced; the pool
    /// goes on. That is Rust's allocations, which abort when they fail. A C library's `malloc`
    /// returns NULL under the cap instead, and what follows is the library's own: an error it
    /// reports, or [`TaskError::Crashed`] by SIGSEGV where it writes through the NULL
    /// unchecked.
    ///
    /// This is address space (`RLIMIT_AS`), not resident memory: the worker's own code,
    /// buffers and stacks count, and so do the stacks and allocator arenas of threads a task
    /// starts, so leave room (tens of MiB) above what tasks need. [`crate::SharedBytes`] a
    /// worker maps count too, whole: an argument of shared bytes that does not fit fails
    /// with [`TaskError::Serialization`] saying so, and [`crate::SharedBytes::new`] in a task
    /// returns an `OutOfMemory` error. A failed allocation is
    /// recognized when the worker aborts, by the allocator's `ENOMEM` or by its address space
    /// within an eighth of the cap. Where Rust prints a backtrace for the failure
    /// (`RUST_BACKTRACE` set in the worker's environment), printing it hides the `ENOMEM`:
    /// there one allocation larger than what is left of the cap (a 2 GiB buffer under a
    /// 512 MiB cap, a vector doubling its capacity) is reported as a crash (`SIGABRT`)
    /// instead, after the backtrace of the failed allocation. An argument that encodes to the cap
    /// or more, which no worker could hold, fails the same way without being sent; one
    /// smaller that leaves a worker no room to receive it (a worker holds what it receives,
    /// and most values a second time as it decodes them) fails the same way once three
    /// workers in a row had no room for it.
    ///
    /// A cap below 1 MiB is [`TaskError::InvalidConfig`] (the cap is in bytes: `512` is a
    /// mistake for `512 << 20`). Under a cap too small for the worker itself (below about
    /// 8 MiB with the default ring size) workers die before they start any task, aborting as
    /// their own allocation fails (each prints `memory allocation of N bytes failed`). A task
    /// that three such workers in a row held fails with [`TaskError::Crashed`] by `SIGABRT`,
    /// as a task that kills every worker it is sent to does, with nothing that names the cap:
    /// so the first task given to such a pool, a lone `apply` among them, fails so. After
    /// `start_attempts` times three such deaths in a row the pool fails what is queued, and
    /// what is given to it later, with [`TaskError::WorkerStart`], saying so, rather than
    /// start workers for ever.
    ///
    /// A program a task starts (`std::process::Command`) inherits the cap for its own address
    /// space, as any child inherits resource limits; what it uses does not count toward the
    /// worker's.
    #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
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
    /// past it. A limit of 2³² seconds (about 136 years) or more, such as `Duration::MAX`, is
    /// no limit. Unlike [`Config::timeout`], which counts wall-clock time, it does not fire on a
    /// task that waits or that a busy machine does not schedule.
    ///
    /// The count is the worker process's, all its threads together: a task whose C library
    /// computes on several threads (OpenMP, a BLAS) uses the limit up that many times faster,
    /// and a thread that a task left running (see the crate's docs on native code) spends the
    /// budget of whichever task runs after it, which then fails with this error however
    /// little it computed itself.
    ///
    /// The kernel says so with SIGXCPU. A task that ignores or blocks that signal (as some C
    /// libraries do) is stopped all the same, one second of CPU time later, with the same
    /// error: a worker with this limit keeps one more thread, asleep on the process's CPU
    /// clock, for that.
    ///
    /// The CPU time of programs a task starts (`std::process::Command`) does not count: the
    /// kernel counts each process apart. Such a program inherits the worker's soft limit as
    /// it stands, which is the worker's own CPU time so far plus this limit, in whole
    /// seconds: it dies of SIGXCPU once it has used that much CPU time of its own, more the
    /// older its worker. A task that runs long programs removes the limit for them
    /// (`setrlimit(RLIMIT_CPU)` in `CommandExt::pre_exec`), or runs them with a limit of its
    /// own.
    #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
    pub fn cpu_time_limit(mut self, limit: Duration) -> Self {
        self.cpu_time_limit = Some(limit);
        self
    }

    /// Sets the bytes of data in each of a worker's two shared-memory rings (one for
    /// arguments, one for results): a power of two from 4 KiB to 1 GiB, 256 KiB by default.
    /// A bad size fails pool creation with [`TaskError::InvalidConfig`].
    ///
    /// Each worker's shared memory is about twice this, of which only the first 64 KiB of
    /// each ring is allocated at start; the rest is allocated once a large payload or a long
    /// run reaches it. Any argument or result crosses whatever the size: a larger one takes
    /// several hand-overs. Rings of 1 MiB move a 1 MiB payload about a third faster (one
    /// hand-over instead of four); small tasks go as fast through 64 KiB, which suits many
    /// workers with small tasks. Where the kernel has no `memfd`, there are no rings and this
    /// is unused; where the program's address space (`RLIMIT_AS`) has no room left for a
    /// worker's rings, that worker has none, and its pipes carry everything.
    ///
    /// ```
    /// use taskpool_process::{Config, Pool, ProcessConfig, ProcessPool, TaskError};
    ///
    /// fn len(bytes: Vec<u8>) -> usize {
    ///     bytes.len()
    /// }
    ///
    /// let config = ProcessConfig::new(Config::new().workers(1)).ring_bytes(64 << 10);
    /// let pool = ProcessPool::with_config(config)?;
    /// assert_eq!(pool.apply(len, vec![0; 200_000])?, 200_000);
    /// let bad = ProcessConfig::new(Config::new().workers(1)).ring_bytes(1000);
    /// assert!(matches!(ProcessPool::with_config(bad), Err(TaskError::InvalidConfig { .. })));
    /// # Ok::<(), TaskError>(())
    /// ```
    #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
    pub fn ring_bytes(mut self, bytes: usize) -> Self {
        self.ring_bytes = bytes;
        self
    }

    /// Sets how long a new worker may take to start, the pool's initializer
    /// ([`Config::initializer`]) included: 30 s by default. A worker not ready by then is
    /// killed and counts as a failed start (see [`Config::start_attempts`]); once its pool
    /// gives up, its tasks fail with [`TaskError::WorkerStart`] saying so. Raise it for an
    /// initializer that takes long by design (loading a large model, say); a limit of 2³²
    /// seconds (about 136 years) or more, such as `Duration::MAX`, is no limit, and a worker
    /// whose initializer never returns then holds its tasks for ever, as on threads. Zero is
    /// [`TaskError::InvalidConfig`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use taskpool_process::{Config, Pool, ProcessConfig, ProcessPool, TaskError};
    ///
    /// fn double(x: u64) -> u64 {
    ///     x * 2
    /// }
    ///
    /// let config = ProcessConfig::new(Config::new().workers(1))
    ///     .start_limit(Duration::from_secs(600));
    /// let pool = ProcessPool::with_config(config)?;
    /// assert_eq!(pool.apply(double, 21)?, 42);
    /// # Ok::<(), TaskError>(())
    /// ```
    #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
    pub fn start_limit(mut self, limit: Duration) -> Self {
        self.start_limit = limit;
        self
    }

    /// Checks the settings, the shared ones included.
    ///
    /// # Errors
    ///
    /// [`TaskError::InvalidConfig`] naming the first bad setting.
    pub fn validate(&self) -> Result<(), TaskError> {
        self.config.validate()?;
        let bad = |reason: &str| Err(TaskError::InvalidConfig { reason: reason.to_owned() });
        let prefix = self.config.get_name_prefix().len();
        if prefix > MAX_NAME_PREFIX {
            return bad(&format!(
                "name_prefix must be at most {MAX_NAME_PREFIX} bytes ({prefix} given): it names \
                 each worker process on its command line"
            ));
        }
        if !(1..=4).contains(&self.in_flight) {
            return bad(&format!("in_flight must be between 1 and 4 ({} given)", self.in_flight));
        }
        if self.max_frame_bytes < 64 {
            return bad(&format!(
                "max_frame_bytes must be at least 64 ({} given)",
                self.max_frame_bytes
            ));
        }
        if self.max_frame_bytes > MOST_FRAME_BYTES {
            return bad(&format!(
                "max_frame_bytes must be at most {MOST_FRAME_BYTES} (4 GiB less 1 MiB; {} \
                 given): a frame's length is 32 bits",
                self.max_frame_bytes
            ));
        }
        if let Some(bytes) = self.memory_limit.filter(|&b| b < MIN_MEMORY_LIMIT) {
            return bad(&format!(
                "memory_limit is in bytes, and below 1 MiB ({bytes} given) it leaves a worker \
                 no room for itself"
            ));
        }
        if self.cpu_time_limit == Some(Duration::ZERO) {
            return bad("cpu_time_limit must be longer than zero");
        }
        if self.start_limit == Duration::ZERO {
            return bad("start_limit must be longer than zero");
        }
        if !crate::region::valid_ring_bytes(self.ring_bytes) {
            return bad(&format!(
                "ring_bytes must be a power of two from 4 KiB to 1 GiB ({} given)",
                self.ring_bytes
            ));
        }
        Ok(())
    }

    /// The shared settings.
    pub fn get_config(&self) -> &Config {
        &self.config
    }

    /// The frame size limit in bytes.
    pub fn get_max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// How many batches a worker may hold at once.
    pub fn get_in_flight(&self) -> usize {
        self.in_flight
    }

    /// The cap on each worker's address space in bytes, if any.
    pub fn get_memory_limit(&self) -> Option<u64> {
        self.memory_limit
    }

    /// The cap on each task's CPU time, if any.
    pub fn get_cpu_time_limit(&self) -> Option<Duration> {
        self.cpu_time_limit
    }

    /// Bytes of data in each of a worker's shared-memory rings.
    pub fn get_ring_bytes(&self) -> usize {
        self.ring_bytes
    }

    /// How long a new worker may take to start, its initializer included.
    pub fn get_start_limit(&self) -> Duration {
        self.start_limit
    }
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig::new(Config::default())
    }
}

impl From<Config> for ProcessConfig {
    fn from(config: Config) -> Self {
        ProcessConfig::new(config)
    }
}

impl fmt::Debug for ProcessConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessConfig")
            .field("config", &self.config)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("in_flight", &self.in_flight)
            .field("memory_limit", &self.memory_limit)
            .field("cpu_time_limit", &self.cpu_time_limit)
            .field("ring_bytes", &self.ring_bytes)
            .field("start_limit", &self.start_limit)
            .field("off_machine", &self.off_machine)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_limits_off() {
        let c = ProcessConfig::default();
        assert!(c.validate().is_ok());
        assert_eq!((c.get_memory_limit(), c.get_cpu_time_limit()), (None, None));
        assert_eq!(c.get_in_flight(), 2);
        assert_eq!(c.get_max_frame_bytes(), 1 << 30);
        assert_eq!(c.get_start_limit(), Duration::from_secs(30));
    }

    #[test]
    fn bad_settings_are_named() {
        let bad = |c: ProcessConfig| c.validate().unwrap_err().to_string();
        assert!(bad(ProcessConfig::default().in_flight(9)).contains("in_flight"));
        assert!(bad(ProcessConfig::default().max_frame_bytes(8)).contains("max_frame_bytes"));
        let over = bad(ProcessConfig::default().max_frame_bytes(5 << 30));
        assert!(over.contains("max_frame_bytes must be at most"), "{over}");
        let most = ProcessConfig::default().max_frame_bytes(MOST_FRAME_BYTES);
        assert!(most.validate().is_ok());
        assert!(bad(ProcessConfig::default().memory_limit(0)).contains("memory_limit is in"));
        assert!(bad(ProcessConfig::default().memory_limit(512)).contains("(512 given)"));
        assert!(ProcessConfig::default().memory_limit(MIN_MEMORY_LIMIT).validate().is_ok());
        let cpu = bad(ProcessConfig::default().cpu_time_limit(Duration::ZERO));
        assert!(cpu.contains("cpu_time_limit must be longer than zero"), "{cpu}");
        let start = bad(ProcessConfig::default().start_limit(Duration::ZERO));
        assert!(start.contains("start_limit must be longer than zero"), "{start}");
        assert!(ProcessConfig::default().start_limit(Duration::MAX).validate().is_ok());
        for bytes in [0, 4095, 3 << 12, 2 << 30] {
            let ring = bad(ProcessConfig::default().ring_bytes(bytes));
            assert!(ring.contains("ring_bytes must be a power of two"), "{ring}");
            assert!(ring.contains(&format!("({bytes} given)")), "{ring}");
        }
        let in_flight = bad(ProcessConfig::default().in_flight(9));
        assert!(in_flight.contains("in_flight must be between 1 and 4 (9 given)"), "{in_flight}");
        let small = bad(ProcessConfig::default().max_frame_bytes(10));
        assert!(small.contains("max_frame_bytes must be at least 64 (10 given)"), "{small}");
        assert!(bad(Config::new().workers(0).into()).contains("at least one worker"));
        let long = Config::new().name_prefix("x".repeat(MAX_NAME_PREFIX + 1));
        let long = bad(long.into());
        let given = format!("at most {MAX_NAME_PREFIX} bytes ({} given)", MAX_NAME_PREFIX + 1);
        assert!(long.contains(&given), "{long}");
        let longest = Config::new().name_prefix("x".repeat(MAX_NAME_PREFIX));
        assert!(ProcessConfig::from(longest).validate().is_ok());
    }

    #[test]
    fn getters_return_what_setters_set() {
        let c = ProcessConfig::new(Config::new().workers(3))
            .max_frame_bytes(4096)
            .in_flight(3)
            .memory_limit(1 << 28)
            .cpu_time_limit(Duration::from_secs(2))
            .start_limit(Duration::from_secs(90));
        assert_eq!(c.get_config().get_workers(), 3);
        assert_eq!(c.get_start_limit(), Duration::from_secs(90));
        assert_eq!(c.get_max_frame_bytes(), 4096);
        assert_eq!(c.get_in_flight(), 3);
        assert_eq!(c.get_memory_limit(), Some(1 << 28));
        assert_eq!(c.get_cpu_time_limit(), Some(Duration::from_secs(2)));
        let c = c.config(Config::new().workers(1));
        assert_eq!(c.get_config().get_workers(), 1);
        assert_eq!(c.get_in_flight(), 3);
    }
}
