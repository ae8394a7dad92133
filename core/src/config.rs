//! The settings every pool shares, with sensible defaults.

use std::fmt;
use std::num::NonZeroUsize;
use std::time::Duration;

use crate::error::TaskError;

/// The most workers a pool may have: more is a mistake (`usize::MAX` from a computation, say)
/// that would otherwise fail late, as the operating system runs out of threads or descriptors.
const MAX_WORKERS: usize = 1 << 16;

/// How a pool is set up: the settings every backend shares, with sensible defaults.
///
/// Setters take and return the config, so settings chain; each has a getter of the same name
/// with a `get_` prefix. Settings that only one backend understands live in that backend's
/// own configuration (the process backend's `ProcessConfig` wraps this one).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// # use taskpool_core::Config;
///
/// fn warm_up() {}
///
/// let config = Config::new()
///     .workers(4)
///     .timeout(Duration::from_secs(30))
///     .max_tasks_per_worker(1000)
///     .initializer(warm_up)
///     .name_prefix("solver");
/// assert_eq!(config.get_workers(), 4);
/// assert_eq!(config.get_timeout(), Some(Duration::from_secs(30)));
/// ```
///
/// A setter whose result is left unused warns, as the setting it made is lost
/// (`#[deny(unused_must_use)]` makes that an error):
///
/// ```compile_fail
/// # #![deny(unused_must_use)]
/// # use taskpool_core::Config;
/// let config = Config::new();
/// config.clone().workers(4); // `config` still has its default workers
/// # drop(config);
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
    shutdown_grace: Duration,
    start_attempts: u32,
}

impl Config {
    /// The defaults: one worker per available CPU, no timeout, workers never recycled,
    /// automatic chunks, no initializer, no backtraces, one second of grace on drop, 3 start
    /// attempts.
    pub fn new() -> Self {
        Config {
            workers: std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
            timeout: None,
            max_tasks_per_worker: None,
            chunk_size: None,
            initializer: None,
            name_prefix: "taskpool".to_owned(),
            backtraces: false,
            shutdown_grace: Duration::from_secs(1),
            start_attempts: 3,
        }
    }

    /// Sets the number of workers (threads or processes): from 1 to 65,536.
    ///
    /// A worker runs one task at a time, whether the task computes or waits. For tasks that
    /// keep a CPU busy, one worker per CPU (the default) is the most that helps: more take
    /// turns on the same CPUs and finish no sooner. Tasks that mostly wait (a socket, a
    /// database, a sleep) need a worker each while they wait but no CPU, so a pool for them
    /// may have many more workers than CPUs: 64 workers finish 256 tasks that each wait
    /// 10 ms in about 40 ms on any machine (the `io_sleep` example of `taskpool-bench`). On
    /// processes each worker is a process of its own, which costs more memory and start-up
    /// than a thread (see the README's numbers), and tasks of microseconds pay for workers
    /// beyond the CPUs: each idle worker the pool hands one is woken, with the thread that
    /// serves it, unless the pool holds them for the few workers already awake (the process
    /// pool does so from 8 workers per CPU, for functions none of whose recent calls took a
    /// millisecond or more: on 2 CPUs, bursts of 1,000 no-op `submit`s on a kept pool went at
    /// 1.2–1.8 M tasks/s on 2 workers, 0.9–1.5 M/s on 8 and 0.6–0.7 M/s on 64, where they
    /// went at 0.2–0.35 M/s before).
    #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Sets a time limit for every task, counted from when it starts running. A process
    /// backend kills and replaces the worker of a task that exceeds it; a thread backend
    /// reports the timeout but cannot stop the thread, and runs the other tasks on a relief
    /// thread until it returns. Zero is refused (see [`Config::validate`]); a limit too long
    /// to be a point in time, such as `Duration::MAX`, is none.
    ///
    /// A process backend keeps the time in the program, not in the worker: a task's clock
    /// starts when the pool sends it to an idle worker, or, for a task the worker took while
    /// it ran the one before, when the pool reads the result of that one, and the program
    /// checks it on a thread of its own. Where the program is slow to run (a machine with
    /// more runnable threads than CPUs, a CPU quota), both come late, and a task may run past
    /// its limit by that delay: one that returns meanwhile succeeds. A task its worker has not
    /// started when the limit would run out (the worker is stopped, by `SIGSTOP` or a
    /// debugger, or given no CPU) is not killed: its clock starts again when the pool sees
    /// it start, which it checks for at a sixteenth of the limit (1 to 20 ms).
    ///
    /// A thread backend starts a task's clock as a pool thread starts the task, or, for a task
    /// the thread takes right after another timed task returned (and settled, with nothing of
    /// the user's run in between), when that one returned: its time then includes the pool's
    /// handling between the two: well under a microsecond, a few if it wakes a thread asleep in
    /// `join`, more if the thread is preempted there.
    ///
    /// A limit is precise only to the delays of the clock and threads that check it: it is
    /// for stopping a task that hangs or runs far too long, not a measure of one. A task that
    /// takes about as long as its limit may succeed on one run and time out on the next: it
    /// fails if the check comes first, and also if its result came first but it was measured
    /// to run past its limit (on threads the pool's thread reads the clock as the task
    /// returns; on processes the worker measures the task, its own handling of it included,
    /// about a microsecond). So a limit of microseconds is chance, not a bound: of 2,000
    /// tasks that returned at once, under a 1 µs limit on a busy 2-CPU machine, from 0.1 % to
    /// over half timed out, varying with the load from one run to the next, on both backends
    /// (under 1 % at 10 µs). Give a limit a margin well above the time its tasks take.
    ///
    /// The limit counts the time that passes, not the CPU a task gets: on a machine with more
    /// runnable threads than CPUs, the time a task waits for a CPU counts too. On threads, on
    /// 2 CPUs at a load average of about 8, tasks that spin for 9 ms under a 10 ms limit
    /// timed out 25 to 30 times in 30, and 2 to 27 % of 0.8 ms tasks under a 1 ms limit did.
    /// Where the machine may be that busy, give a limit several times its tasks' time.
    #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Replaces a worker after it has run `n` tasks, like Python's `maxtasksperchild`: a cure
    /// for leaks in the code a task calls. Each item of a `map` counts as a task, where
    /// Python counts a chunk of items as one. Must be at least 1. (Threads have nothing to
    /// replace: the thread backend ignores it.)
    #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
    pub fn max_tasks_per_worker(mut self, n: u64) -> Self {
        self.max_tasks_per_worker = Some(n);
        self
    }

    /// Sets how many items of a `map` travel together. By default the backend sizes them from
    /// the time its items are measured to take, from one item to a chunk until they are
    /// measured (on processes, up to [`Config::chunk_for`]); a size of 0 asks for that
    /// default back. (The thread backend leaves a `map` to rayon, which splits it by itself:
    /// it ignores this.)
    #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
    pub fn chunk_size(mut self, n: usize) -> Self {
        self.chunk_size = NonZeroUsize::new(n);
        self
    }

    /// Runs `init` once in every worker before its first task, like Python's `initializer`.
    /// A worker whose initializer panics is not used; see [`Config::start_attempts`].
    ///
    /// On processes a worker's start, its initializer included, may take 30 s by default
    /// (the process backend's `ProcessConfig::start_limit` sets it): a worker not ready by
    /// then is killed and counts as a failed start, so a pool whose initializer always takes
    /// longer (loading a large model, say) never serves, and its tasks fail with
    /// [`TaskError::WorkerStart`] (threads have no such limit). Raise that limit, or do such
    /// set-up in the tasks on first use instead (a `static` `OnceLock` that the first task a
    /// worker runs fills), where the tasks' time limit, if any, governs it.
    #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
    pub fn initializer(mut self, init: fn()) -> Self {
        self.initializer = Some(init);
        self
    }

    /// Names workers `{prefix}-{index}` (thread names; process backends pass it as the
    /// worker's first argument, which is what `ps` shows). It must not contain a NUL byte,
    /// which neither a thread's name nor an argument can hold, and a process backend takes
    /// at most 4096 bytes of it.
    #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
    pub fn name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.name_prefix = prefix.into();
        self
    }

    /// Captures a backtrace for every panicking task. Off by default: it costs time on every
    /// panic.
    #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
    pub fn backtraces(mut self, on: bool) -> Self {
        self.backtraces = on;
        self
    }

    /// Sets how long dropping a pool waits for running tasks before killing its workers.
    /// (Threads cannot be killed: the thread backend's drop returns at once and ignores it.)
    #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Sets how many times in a row a worker may fail to start (or its initializer may fail)
    /// before the pool fails the waiting tasks with [`TaskError::WorkerStart`].
    ///
    /// The pool does not give up for good: a process backend goes on starting workers (with
    /// pauses that grow to a second), and a thread backend tries the initializer again for a
    /// task that comes a second or more after its last failure, so a pool serves again once
    /// what its workers need (a service its initializer reaches, free memory) is back.
    #[must_use = "a setter takes the settings and returns them changed: use what it returns"]
    pub fn start_attempts(mut self, n: u32) -> Self {
        self.start_attempts = n;
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
            return bad("workers must be at least 1 (0 given): a pool needs at least one worker");
        }
        if self.workers > MAX_WORKERS {
            return bad(&format!("workers must be at most {MAX_WORKERS} ({} given)", self.workers));
        }
        if self.name_prefix.contains('\0') {
            return bad("name_prefix must not contain a NUL byte");
        }
        if self.max_tasks_per_worker == Some(0) {
            return bad("max_tasks_per_worker must be at least 1");
        }
        if self.start_attempts == 0 {
            return bad("start_attempts must be at least 1");
        }
        if self.timeout == Some(Duration::ZERO) {
            return bad("timeout must be longer than zero");
        }
        Ok(())
    }

    /// The number of workers.
    pub fn get_workers(&self) -> usize {
        self.workers
    }

    /// The per-task time limit, if any.
    pub fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// After how many tasks a worker is replaced, if ever.
    pub fn get_max_tasks_per_worker(&self) -> Option<u64> {
        self.max_tasks_per_worker
    }

    /// The chunk size set with [`Config::chunk_size`], if one was; see [`Config::chunk_for`].
    pub fn get_chunk_size(&self) -> Option<usize> {
        self.chunk_size.map(NonZeroUsize::get)
    }

    /// The chunk size for `n` items: the configured one, or automatic.
    ///
    /// Automatic follows Python's `Pool.map`: about four chunks per worker, so that uneven
    /// tasks still balance, capped so one chunk never holds more than 4096 items. The
    /// process backend takes it as the most a batch holds: its batches hold about 200 µs of
    /// the items' measured time.
    pub fn chunk_for(&self, n: usize) -> usize {
        match self.chunk_size {
            Some(size) => size.get(),
            None => n.div_ceil(self.workers.max(1).saturating_mul(4)).clamp(1, 4096),
        }
    }

    /// The per-worker initializer, if any.
    pub fn get_initializer(&self) -> Option<fn()> {
        self.initializer
    }

    /// The worker name prefix.
    pub fn get_name_prefix(&self) -> &str {
        &self.name_prefix
    }

    /// Whether panics capture backtraces.
    pub fn get_backtraces(&self) -> bool {
        self.backtraces
    }

    /// How long a drop waits for running tasks.
    pub fn get_shutdown_grace(&self) -> Duration {
        self.shutdown_grace
    }

    /// How many failed starts in a row a pool tolerates.
    pub fn get_start_attempts(&self) -> u32 {
        self.start_attempts
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
            .field("shutdown_grace", &self.shutdown_grace)
            .field("start_attempts", &self.start_attempts)
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
        assert!(c.get_workers() >= 1);
        assert_eq!(c.get_timeout(), None);
        assert_eq!(c.get_start_attempts(), 3);
    }

    #[test]
    fn bad_settings_are_named() {
        let err = Config::new().workers(0).validate().unwrap_err();
        assert!(err.to_string().contains("workers must be at least 1 (0 given)"), "{err}");
        let invalid = |c: Config| matches!(c.validate(), Err(TaskError::InvalidConfig { .. }));
        assert!(invalid(Config::new().workers(0)));
        assert!(invalid(Config::new().timeout(Duration::ZERO)));
        assert!(invalid(Config::new().max_tasks_per_worker(0)));
        assert!(invalid(Config::new().start_attempts(0)));
        assert!(invalid(Config::new().name_prefix("a\0b")));
        for workers in [MAX_WORKERS + 1, usize::MAX] {
            let err = Config::new().workers(workers).validate().unwrap_err();
            let text = format!("workers must be at most 65536 ({workers} given)");
            assert!(err.to_string().contains(&text), "{err}");
        }
        let err = Config::new().timeout(Duration::ZERO).validate().unwrap_err();
        assert!(err.to_string().contains("timeout must be longer than zero"), "{err}");
        assert!(Config::new().workers(MAX_WORKERS).validate().is_ok());
        let err = Config::new().name_prefix("a\0b").validate().unwrap_err();
        assert!(err.to_string().contains("NUL"), "{err}");
    }

    #[test]
    fn getters_return_what_setters_set() {
        fn init() {}
        let c = Config::new()
            .workers(3)
            .timeout(Duration::from_secs(2))
            .max_tasks_per_worker(9)
            .chunk_size(5)
            .initializer(init)
            .name_prefix("p")
            .backtraces(true)
            .shutdown_grace(Duration::from_millis(7))
            .start_attempts(4);
        assert_eq!(c.get_workers(), 3);
        assert_eq!(c.get_timeout(), Some(Duration::from_secs(2)));
        assert_eq!(c.get_max_tasks_per_worker(), Some(9));
        assert_eq!(c.get_chunk_size(), Some(5));
        assert!(c.get_initializer().is_some());
        assert_eq!(c.get_name_prefix(), "p");
        assert!(c.get_backtraces());
        assert_eq!(c.get_shutdown_grace(), Duration::from_millis(7));
        assert_eq!(c.get_start_attempts(), 4);
    }

    #[test]
    fn automatic_chunks_follow_items_and_workers() {
        let c = Config::new().workers(2);
        assert_eq!(c.chunk_for(0), 1);
        assert_eq!(c.chunk_for(80), 10);
        assert_eq!(c.chunk_for(10_000_000), 4096);
        assert_eq!(c.clone().chunk_size(7).chunk_for(80), 7);
        assert_eq!(c.chunk_size(7).chunk_size(0).chunk_for(80), 10);
    }

    #[test]
    fn automatic_chunks_of_a_config_not_yet_validated_do_not_overflow() {
        // `validate` refuses these worker counts, but `chunk_for` may be asked first.
        for workers in [usize::MAX, usize::MAX / 2, MAX_WORKERS + 1] {
            let c = Config::new().workers(workers);
            assert_eq!(c.chunk_for(100), 1, "{workers} workers");
            assert!((1..=4096).contains(&c.chunk_for(usize::MAX)), "{workers} workers");
        }
    }
}
