//! Runs taskpool tasks in persistent OS worker processes, with crash isolation.
//!
//! [`ProcessPool`] implements the shared [`Pool`] trait, so code written for
//! `taskpool-thread` runs here unchanged, and [`spawn`] starts a one-off process like
//! Python's `multiprocessing.Process`. A task that segfaults, aborts or hangs costs that one
//! task, never the program:
//!
//! ```
//! use taskpool_process::{Exit, Pool, ProcessPool, TaskError};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn write_through_null(_: u64) -> u64 {
//!     let p: *mut u64 = std::hint::black_box(std::ptr::null_mut());
//!     // SAFETY: none; this writes through a null pointer on purpose, to crash the worker.
//!     unsafe { p.write_volatile(1) };
//!     0
//! }
//!
//! # fn main() -> Result<(), TaskError> {
//! let pool = ProcessPool::new(4)?;
//! assert_eq!(pool.map(square, 1..=5)?, [1, 4, 9, 16, 25]);
//!
//! let err = pool.apply(write_through_null, 0).unwrap_err();
//! assert!(matches!(err, TaskError::Crashed(Exit::Signal(11))), "{err}"); // SIGSEGV
//! assert_eq!(pool.map(square, 1..=3)?, [1, 4, 9]); // a fresh worker took over
//! # Ok(())
//! # }
//! ```
//!
//! A panic fails its task with [`TaskError::Panicked`], its message and location, also where
//! nothing can catch it: in a program built with `panic = "abort"` (the `panic_abort` example
//! shows it), and in any build a panic that reaches an `extern "C"` function (a callback a C
//! library calls) or one a `Drop` raises while the task unwinds from another (the error then
//! names that second panic). The worker reports it as it aborts, and a new worker takes
//! over. That report comes from the pool's panic hook: a hook the pool's initializer installs
//! is put behind it, but after a task replaced the hook (`std::panic::set_hook`), the next
//! panic in that worker reaches the task's hook alone, and fails with
//! [`TaskError::Crashed`] by SIGABRT under `panic = "abort"` (unwinding, with its message but
//! no location). A stack overflow is `Crashed` by SIGSEGV, and the worker says on standard error that
//! the task overflowed its stack. A worker runs tasks on its main thread, so a task has a main
//! thread's stack (`ulimit -s`, 8 MiB by default), not a spawned thread's 2 MiB: recursion
//! that fits in the program's `main` fits in a task.
//!
//! A task is a function item, a closure that captures nothing, or a struct that implements
//! [`Task`]: a worker rebuilds a function from its type alone. A fn pointer or a closure that
//! captures data fails the build at the line that passes it, with the fix in the message:
//!
//! ```compile_fail,E0080
//! use taskpool_process::{Pool, ProcessPool};
//!
//! let pool = ProcessPool::new(2).unwrap();
//! let offset = 10;
//! pool.map(move |x: u64| x + offset, 1..=3); // captures `offset`
//! ```
//!
//! # Queues and pipes between processes
//!
//! [`Queue`] is a typed, bounded queue that the parent, pool workers and spawned processes
//! put into and get from at the same time, like Python's `multiprocessing.Queue`; [`Pipe`]
//! makes two connected [`End`]s, like `multiprocessing.Pipe()`. Both live in shared memory
//! and are passed to tasks as ordinary arguments. A process that dies holding one (even
//! killed in the middle of a put) corrupts nothing; the others see [`GetError::Disconnected`]
//! or [`PutError::Disconnected`] once nobody is left on the other side.
//!
//! ```
//! use taskpool_process::{Pool, ProcessPool, Producer, Queue};
//!
//! fn report(queue: Producer<String>) -> u32 {
//!     queue.put(format!("hello from {}", std::process::id())).unwrap();
//!     std::process::id()
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = ProcessPool::new(2)?;
//! let queue = Queue::<String>::new()?;
//! let pid = pool.apply(report, queue.producer()?)?;
//! assert_eq!(queue.get()?, format!("hello from {pid}"));
//! # Ok(())
//! # }
//! ```
//!
//! Large arguments and results cross without a copy as [`SharedBytes`]: written once into
//! shared memory, sealed, and read in place by the worker (and back).
//!
//! Queues, pipes and shared bytes live in one machine's memory: on `taskpool-cluster`,
//! whose tasks cross to other machines, a task that holds one fails with
//! [`TaskError::Serialization`] instead ([`remote::off_machine`]).
//!
//! # Coming from Python's `multiprocessing`
//!
//! The example of Python's `multiprocessing.Pool` documentation, ported:
//!
//! ```
//! use std::time::Duration;
//! use taskpool_process::{NextTimeout, Pool, ProcessPool, TaskError};
//!
//! fn f(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn getpid(_: ()) -> u32 {
//!     std::process::id()
//! }
//!
//! fn sleep(seconds: u64) {
//!     std::thread::sleep(Duration::from_secs(seconds));
//! }
//!
//! # fn main() -> Result<(), TaskError> {
//! let pool = ProcessPool::new(4)?; // with Pool(processes=4) as pool:
//! println!("{:?}", pool.map(f, 0..10)?);
//! for i in pool.imap_unordered(f, 0..10) {
//!     println!("{}", i?);
//! }
//! let mut it = pool.imap(f, 0..10);
//! println!("{}", it.next().unwrap()?); // prints "0"
//! println!("{}", it.next().unwrap()?); // prints "1"
//! if let Ok(Some(four)) = it.next_timeout(Duration::from_secs(1)) { // it.next(timeout=1)
//!     println!("{}", four?); // prints "4" unless your computer is *very* slow
//! }
//! let mut res = pool.submit(f, 20); // apply_async(f, (20,))
//! println!("{}", res.join_timeout(Duration::from_secs(1))?); // get(timeout=1)
//! let pids: Vec<_> = (0..4).map(|_| pool.submit(getpid, ())).collect();
//! for pid in pids {
//!     println!("{}", pid.join()?);
//! }
//! let mut res = pool.submit(sleep, 10);
//! match res.join_timeout(Duration::from_millis(100)) {
//!     Err(TaskError::TimedOut { still_running: true, .. }) => println!("we lacked patience"),
//!     other => panic!("unexpected {other:?}"),
//! }
//! res.cancel(); // kills that worker; a new one takes over
//! # Ok(())
//! # }
//! ```
//!
//! What each name of Python's is here (the [`Pool`] trait's methods run on threads too):
//!
//! | Python | `taskpool-process` |
//! |---|---|
//! | `Pool()`, `Pool(processes=n)` | `ProcessPool::with_config(Config::new())` (one worker per CPU), [`ProcessPool::new(n)`](ProcessPool::new) |
//! | `initializer=f` | [`Config::initializer`]: a `fn()`, run once in each worker. There is no `initargs`: pass what the tasks need in their argument or a [`Task`] struct |
//! | `maxtasksperchild=n` | [`Config::max_tasks_per_worker`]; it counts items, where Python counts a `map`'s chunks |
//! | `map(f, items, chunksize=c)` | [`Pool::map`]; the chunk size is the pool's, [`Config::chunk_size`] |
//! | `starmap(f, pairs)` | [`Pool::starmap`] (or `map`) with a function of several arguments |
//! | `imap`, `imap_unordered` | [`Pool::imap`], [`Pool::imap_unordered`]; [`Pool::imap_stream`] for input that arrives over time |
//! | `it.next(timeout=t)`, `multiprocessing.TimeoutError` | [`NextTimeout::next_timeout`] on the iterator of any `imap` → `Err(`[`Timeout`]`)`, which takes nothing: the item comes at a later call, in order. To stop a stuck item rather than wait for it, give every item a time limit ([`Config::timeout`]: a worker past it is killed and that item fails with `TimedOut`) |
//! | `tqdm(pool.imap_unordered(...))` | [`Pool::map_with_progress`], or count the items of `imap_unordered` |
//! | `apply(f, args)` | [`Pool::apply`] |
//! | `apply_async(f, args)` → `AsyncResult` | [`Pool::submit`] → [`TaskHandle`] |
//! | `get()`, `get(timeout)` | [`TaskHandle::join`], [`TaskHandle::join_timeout`] (a `TimedOut` with `still_running: true`, Python's `TimeoutError`) |
//! | `ready()`, `wait(timeout)`, `successful()` | [`TaskHandle::is_finished`], [`TaskHandle::wait_timeout`]; whether it succeeded is the `Result` that `join` returns |
//! | `callback=`, `error_callback=` | none: the caller joins (or `.await`s) each handle and acts on its `Result`, on a thread of its choosing |
//! | `close()` then `join()` | [`Pool::shutdown`]: runs everything submitted, then stops the workers |
//! | `terminate()`, leaving `with Pool() as pool:` | dropping the pool: queued tasks fail with [`TaskError::ShutDown`], running ones get [`Config::shutdown_grace`] (1 s) and are then killed and fail so too; `shutdown_grace(Duration::ZERO)` kills them at once, as `terminate()` does |
//! | a worker that dies: the pool hangs (`multiprocessing`), `BrokenProcessPool` (`concurrent.futures`), `ProcessExpired` (pebble) | that task fails with [`TaskError::Crashed`], [`Exit::Signal`] or [`Exit::Code`]; a new worker takes over and every other task runs |
//! | pebble's `schedule(f, args, timeout=t)` | [`Pool::submit_timeout`]: past `t` the worker is killed and replaced, and the task fails with `TimedOut { still_running: false, .. }` |
//! | `concurrent.futures`' `submit`, `result(timeout)`, `cancel()` | [`Pool::submit`], [`TaskHandle::join_timeout`], [`TaskHandle::cancel`] (a running task's worker is killed) |
//! | `as_completed(futures)`, `wait(futures, return_when=FIRST_COMPLETED)` | a handle is a `Future`: `futures`' `FuturesUnordered` (blocking: `futures::executor::block_on_stream`) and `select_all`; see below |
//! | `Process(target=f, args=(x,))`, `start()` | [`spawn(f, x)`](spawn) → [`Spawned`]; unlike Python's process, it is killed when its handle is dropped unjoined, so keep the handle |
//! | `join()`, `join(timeout)`, `is_alive()`, `kill()`, `terminate()`, `pid` | [`Spawned::join`], [`Spawned::join_timeout`] (with no time to wait, a poll), [`Spawned::is_alive`], [`Spawned::kill`] (SIGKILL; `join` then fails with [`TaskError::Cancelled`]), [`Spawned::id`] |
//! | `exitcode` | `join` returns the task's value, or [`TaskError::Crashed`] with the exit code or signal |
//! | `Queue()`, `put`, `get(timeout=t)`, `queue.Empty` | [`Queue::new`], `put`, `get_timeout` → [`GetError::Timeout`]; a task gets [`Queue::producer`] or [`Queue::consumer`] as its argument |
//! | `Pipe()`, `send`, `recv`, `EOFError` | [`Pipe::new`] → two [`End`]s, [`End::send`], [`End::recv`] → [`GetError::Disconnected`] once the other end is gone |
//! | `Value`, `Array`, `Manager`, `Lock`, `Event`, `Semaphore` | none: return results, or send them through a [`Queue`] or [`Pipe`] (a value put once serves as an `Event`); [`SharedBytes`] for large read-only bytes |
//! | start methods (`fork`, `spawn`, `forkserver`) | none to choose: a worker is the program's executable started again, like `spawn`, but its `main` never runs |
//!
//! Three differences a ported program may meet. A worker takes the next task while it runs
//! one (see [`ProcessConfig::in_flight`]), so with `apply_async`-style submissions of very
//! different lengths, a short task can wait behind a long one while another worker is
//! idle; `ProcessConfig::in_flight(1)` hands out tasks one at a time, as Python's pool
//! does. Python's pool also runs work in the order it was given, so an `apply_async` waits
//! behind every chunk of a `map_async` given before it; here the waiting jobs (each `map`
//! and `imap`, and the single tasks together) take turns a batch at a time, so a task
//! submitted while a long `map` runs waits for what the workers hold and a batch of the
//! `map`, not for all of it (the crate's README has the details). And a worker is your
//! program started again, whose `main` never runs: see "What runs in a worker" in the
//! workspace README (the README of `taskpool-core` and `taskpool-thread`).
//!
//! `as_completed` and `wait(FIRST_COMPLETED)`, without an async runtime:
//!
//! ```
//! use std::time::Duration;
//! use futures_util::future::select_all;
//! use futures_util::stream::FuturesUnordered;
//! use taskpool_process::{Pool, ProcessPool, TaskError};
//!
//! fn sleep_ms(ms: u64) -> u64 {
//!     std::thread::sleep(Duration::from_millis(ms));
//!     ms
//! }
//!
//! # fn main() -> Result<(), TaskError> {
//! let pool = ProcessPool::new(2)?;
//!
//! // for f in as_completed(fs): print(f.result())
//! let handles: FuturesUnordered<_> =
//!     [30, 10].into_iter().map(|ms| pool.submit(sleep_ms, ms)).collect();
//! for result in futures_executor::block_on_stream(handles) {
//!     println!("{}", result?);
//! }
//!
//! // done, not_done = wait(fs, return_when=FIRST_COMPLETED)
//! let handles = vec![pool.submit(sleep_ms, 20), pool.submit(sleep_ms, 0)];
//! let (first, index, rest) = futures_executor::block_on(select_all(handles));
//! println!("task {index} finished first: {}", first?);
//! for handle in rest {
//!     handle.join()?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Limits and costs
//!
//! [`ProcessConfig::memory_limit`] and [`ProcessConfig::cpu_time_limit`] cap what a task may use in its
//! worker; a task over a cap fails alone with [`TaskError::ResourceLimit`], and a new worker
//! takes over. [`ProcessPool::submit_with_usage`] returns with a task's value what it cost
//! ([`Usage`]: CPU time, wall-clock time, the worker's peak memory), and
//! [`ProcessPool::stats`] sums it for the whole pool.
//!
//! A worker is persistent, as in Python's `multiprocessing.Pool`: what a task changes in its
//! process (the current directory, environment variables, the umask, signal dispositions or
//! mask, resource limits, globals, descriptors it opened or redirected with `dup2`, as onto
//! standard output, threads it left running) stays for the later tasks that worker runs, and
//! no other worker sees it. Set up what every task needs with `Config::initializer`, and undo what
//! one task changes for itself (or set `max_tasks_per_worker(1)` for a fresh process per
//! task). A worker keeps its own process group: `setsid()` in a task fails with `EPERM`.
//!
//! # Native code that crashes, hangs or leaks
//!
//! What a task that calls into a C library (through `extern "C"`) gets, for what that code
//! does. Where the task fails, its worker is replaced and the pool goes on:
//!
//! | the C code | the task gets |
//! |---|---|
//! | dereferences NULL, overflows its stack (deep recursion) | [`TaskError::Crashed`] with [`Exit::Signal`]`(11)` (SIGSEGV; an overflow of the task's own stack is also said on standard error) |
//! | divides an integer by zero (on x86-64: ARM's division gives 0); touches a mapped file past its end; `__builtin_trap()` | `Exit::Signal(8)` (SIGFPE); `Exit::Signal(7)` (SIGBUS); `Exit::Signal(4)` (SIGILL) |
//! | calls `abort()`, fails an `assert`, frees memory twice (the C library aborts) | `Exit::Signal(6)` (SIGABRT) |
//! | calls `exit(n)` or `_exit(n)`, `0` included | [`Exit::Code`]`(n)` |
//! | installs its own handler for a fault, which exits with `n` | `Exit::Code(n)`; a handler that `longjmp`s back lets the task return as it chooses, with no error. The handler stays for the worker's later tasks: one left installed after its task returned jumps into a frame that is gone at the next fault, which can turn another task's crash into a wrong value. Put the previous handler back before the task returns (the old action `sigaction` gives), or run such tasks in a pool with `max_tasks_per_worker(1)` |
//! | runs past [`Config::timeout`] or the limit of [`Pool::submit_timeout`] | [`TaskError::TimedOut`] `{ still_running: false, .. }`: the worker is killed |
//! | spins past [`ProcessConfig::cpu_time_limit`] | [`TaskError::ResourceLimit`] with [`Resource::CpuTime`], even with every signal blocked |
//! | leaks memory | nothing, until the worker runs out: recycle workers with [`Config::max_tasks_per_worker`], cap them with [`ProcessConfig::memory_limit`]. Under the cap `malloc` returns NULL to the C code, and what follows is its own: an error it returns, or `Exit::Signal(11)` where it writes through the NULL unchecked ([`TaskError::ResourceLimit`] is for the allocations of Rust code, which abort) |
//! | calls `alarm(n)` (or starts a timer) and returns | nothing yet: the signal comes later in the worker. A handler the task installed stays and runs then; at SIGALRM's default action the worker dies, which fails the task it runs then with `Exit::Signal(14)`, or costs nothing if it is idle |
//! | leaves a thread running, which crashes later | the same: the task the worker runs then fails with that signal (and under [`ProcessConfig::cpu_time_limit`] the thread's CPU time counts toward the tasks after it) |
//!
//! Signal dispositions, a signal mask, resource limits (`setrlimit`) and the globals of the
//! library stay with the worker, as above. Each worker has its own copy of the library's
//! globals and runs its tasks one at a time, on one thread, so a library that is not
//! thread-safe gets right results here, where a [`Pool`] of threads corrupts its state (and a
//! crash there ends the program).
//!
//! The other items of a `map` run once when the worker's crash-time flush sends the results
//! it held: on exit, and on the fault signals (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT,
//! SIGTRAP, SIGSYS) while the worker's own handler for them is installed and they are not
//! blocked. Where the process ends without it (`_exit`, from a signal handler of the task's
//! too; SIGKILL; a fault whose signal the task blocked or set back to its default action),
//! items it had finished but not reported yet run again on another worker: the failed item
//! never does.
//!
//! What the C code writes to descriptors 1 and 2 (`write(2)`) goes out at once. What it
//! prints through the C library (`printf`), which buffers standard output by blocks on a pipe
//! or a file, the worker writes out as each task returns, before the task's result goes
//! back: it is out by the time the caller has the result, and a later crash of the worker
//! does not lose it. The crashing task's own unflushed output is lost with it, as in a C
//! program.
//!
//! # Debuggers, profilers and coverage
//!
//! A pool's workers are children of the program: [`ProcessPool::pids`] gives their ids, and
//! `ps --ppid PID` lists them as `taskpool-0`, `taskpool-1`... ([`Config::name_prefix`]);
//! a one-off is `taskpool-spawn`. The program's undertaker (see the crate's README) is no
//! child of it: `ps` shows it as `taskpool-undertaker`, a child of init, one per program.
//!
//! - `strace -f` and `perf record --inherit` follow the workers as they follow any child;
//!   a worker runs the program's own executable, so its samples resolve to the program's
//!   symbols.
//! - `gdb -p PID` attaches to a worker. A task stopped at a breakpoint is neither hung nor
//!   dead to the pool: with no time limit, its caller waits as long as it is stopped (a task
//!   sent to the worker and not started yet goes to another worker once one is idle). Past
//!   its limit ([`Config::timeout`], [`Pool::submit_timeout`]) the pool kills the worker, but
//!   the kernel tells the pool of a traced process's death only once the debugger lets go of
//!   it (detaches or quits): the task fails with [`TaskError::TimedOut`] then. Dropping the
//!   pool waits for that too: a worker a debugger holds is reaped, and `drop` returns, only
//!   once the debugger lets go, however short [`Config::shutdown_grace`] is.
//! - Under Valgrind, which runs the program inside its tool's process, workers and one-offs
//!   start from the program's file (`/proc/self/exe` is the tool there): they run natively,
//!   or under Valgrind too with `--trace-children=yes`. So there, unlike elsewhere, a deploy
//!   that puts a new build at the program's path while it runs stops it from starting
//!   workers: they would run the new build, and each start fails with
//!   [`TaskError::WorkerStart`] saying that the file was replaced. (Valgrind may warn that
//!   it does not handle syscall 434, `pidfd_open`: the pool then checks on its workers every
//!   20 ms.)
//! - In a build with `-C instrument-coverage`, each worker writes the coverage of the tasks
//!   it ran when it exits (recycled, or its pool shut down or dropped), to the file
//!   `LLVM_PROFILE_FILE` names: keep its `%p` (the process id, as the default name does), so
//!   that each process writes a file of its own. A worker that is killed (a crash, a time
//!   limit, a [`TaskHandle::cancel`] of a running task, a dropped pool's grace running out)
//!   writes none, and neither do the workers of a pool kept in a `static`, which the
//!   program's exit kills: call [`Pool::shutdown`] on it before `main` returns to keep theirs.
//!
//! # How it works
//!
//! Workers are the running executable started again (`/proc/self/exe`) with a private marker
//! that a constructor recognizes before `main`, so nothing changes in a program's `main`, its
//! tests or its benches. A plain function travels as its offset in the executable image, a
//! struct task as its serialized state; arguments and results are encoded with serde in a
//! self-describing binary format (any value that round-trips through `serde_json` comes back
//! unchanged, and a `Vec<u8>` or `String` crosses in one copy) and sent in length-prefixed
//! frames through two rings per worker in a sealed, anonymous shared-memory file (`memfd`): a
//! message costs a copy, and a system call only when the peer sleeps (after a short spin that
//! stops when it does not pay). Every position and length a worker publishes there is checked,
//! and the memory dies with its worker. Where `memfd` is unavailable, a pair of pipes per
//! worker carries the frames instead. The worker protocol, its lifecycle, the transport, the
//! codec and the failure paths are described in this crate's `README.md`.
//!
//! Workers start from the program's executable, so this crate must be linked into it: from a
//! shared library (a plugin, a Python extension module), in a program started through its
//! dynamic loader (`ld.so program`), or in one that runs set-user-ID (whose workers could not
//! trust what makes them workers), pools and one-offs fail with [`TaskError::WorkerStart`]
//! saying so, and start no process.
//!
//! Linux only.
#![deny(unsafe_code)]

mod aborting_panic;
mod at_exit;
mod batching;
mod bulk;
mod channel;
#[allow(unsafe_code)]
mod codec;
mod config;
#[allow(unsafe_code)]
mod cpu_watch;
mod crowding;
mod deliveries;
mod doorbell;
#[allow(unsafe_code)]
mod entry;
mod flusher;
#[cfg(test)]
mod fuzz;
mod handoff;
mod inbox;
mod launch;
mod oom;
mod orphans;
mod outlet;
mod pipe;
mod pool;
mod protocol;
mod queue;
mod queue_error;
mod reception;
mod region;
#[doc(hidden)]
#[allow(unsafe_code)]
pub mod remote;
mod ring;
mod run;
mod scheduler;
mod shared_bytes;
mod shared_lock;
#[allow(unsafe_code)]
mod ship;
mod sink;
mod spawn;
mod status;
mod supervisor;
#[allow(unsafe_code)]
mod sys;
mod undertaker;
mod usage;
mod waiting;
mod wire;
mod worker;

pub use crate::config::ProcessConfig;
pub use crate::pipe::{End, Pipe};
pub use crate::pool::{PoolStats, ProcessPool};
pub use crate::queue::{Consumer, Producer, Queue};
pub use crate::queue_error::{GetError, PutError};
pub use crate::shared_bytes::SharedBytes;
pub use crate::spawn::spawn;
pub use crate::usage::Usage;
pub use taskpool_core::{
    Config, Direction, Exit, IntoTask, NextTimeout, PanicReport, Pool, Resource, Side, Spawned,
    Task, TaskError, TaskHandle, Timeout, TryError,
};
