//! Starting a worker process: spawn, settings, and the wait for its hello.
//!
//! Every worker of the process is spawned from one long-lived launcher thread. A worker asks
//! the kernel to kill it when the thread that spawned it ends (`PR_SET_PDEATHSIG` follows the
//! spawning *thread*), so spawning from a thread that lives as long as the process means
//! workers die with the process and never with some short-lived caller thread. Where that
//! thread cannot be started (no thread can), a pool's supervisor, which outlives its worker,
//! spawns it itself, and the main thread spawns its one-offs itself; a one-off asked for by
//! another thread fails to start, as that thread may end first. What else a
//! process inherits from the thread that spawns it, the launcher takes from the thread that
//! asks before each spawn: the CPUs it may run on.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread;

use crate::entry::{self, MARKER};
use crate::protocol::{Init, RINGS};
use crate::region::{self, Region};
use crate::scheduler::StartFailure;
use crate::ship::ImageId;
use crate::sys::{self, ChildProcess, Placement};

/// Kernel buffer asked for each pipe, so bursts and large values need fewer wake-ups.
const PIPE_BYTES: usize = 1 << 20;

/// A started worker process, before or after its hello.
#[derive(Debug)]
pub(crate) struct Launched {
    pub(crate) child: ChildProcess,
    /// The memory it shares with this process (its status page and rings), where the
    /// kernel has `memfd`; without it, the pipes carry everything.
    pub(crate) region: Option<Region>,
    /// Write end of the worker's request pipe.
    pub(crate) request: OwnedFd,
    /// Read end of the worker's result pipe.
    pub(crate) result: OwnedFd,
}

/// Who spawns a worker when the launcher thread cannot be started (the program can start
/// no more threads, or has no address space left for their stacks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoLauncher {
    /// The calling thread, which outlives the process it starts: a pool's supervisor, which
    /// reaps its worker before it ends, or the program's main thread.
    SpawnHere,
    /// Nobody: the start fails, saying why. For a caller that may end before its process
    /// does (the thread that starts a one-off), whose end would kill it.
    Fail,
}

/// Spawns a worker and sends it `init`. With `shared`, where the kernel has `memfd`, the worker
/// gets shared memory and serves through its rings ([`RINGS`] is set in `init`); otherwise
/// the pipes carry everything. Does not wait for its hello (the supervisor does).
pub(crate) fn launch(
    init: &Init,
    shared: bool,
    no_launcher: NoLauncher,
) -> Result<Launched, StartFailure> {
    launch_with(init, shared.then_some(region::RING_BYTES), no_launcher)
}

/// As [`launch`], with rings of `ring_bytes` of data each (`None`: the pipes alone).
pub(crate) fn launch_with(
    init: &Init,
    ring_bytes: Option<usize>,
    no_launcher: NoLauncher,
) -> Result<Launched, StartFailure> {
    entry::ensure_linked();
    check_executable()?;
    let os = |e: std::io::Error| StartFailure::Os(e.to_string());
    let image = ImageId::current().ok_or_else(|| {
        StartFailure::Os(format!(
            "cannot identify the running executable (/proc/self/exe){}",
            if Path::new("/proc/self").exists() { "" } else { NO_PROC }
        ))
    })?;
    let (request_r, request_w) = sys::pipe().map_err(os)?;
    let (result_r, result_w) = sys::pipe().map_err(os)?;
    sys::grow_pipe(request_w.as_fd(), PIPE_BYTES);
    sys::grow_pipe(result_w.as_fd(), PIPE_BYTES);

    let env = environment(&entry::marker_value(image));
    let name = CString::new(init.name.replace('\0', "")).unwrap_or_default();

    // Shared memory where the kernel has it, the file-size limit allows it and the address
    // space has room for it (`RLIMIT_AS`); the pipes alone otherwise, as for a one-off.
    let (region, region_fd) = match ring_bytes.filter(|_| sys::has_memfd()) {
        Some(bytes) => match Region::with_ring_bytes(bytes) {
            Ok((region, fd)) => (Some(region), Some(fd)),
            Err(e)
                if !sys::has_memfd()
                    || matches!(
                        e.kind(),
                        std::io::ErrorKind::FileTooLarge | std::io::ErrorKind::OutOfMemory
                    ) =>
            {
                (None, None)
            }
            Err(e) => return Err(os(e)),
        },
        None => (None, None),
    };
    let child = on_launcher(no_launcher, move || {
        let mut fds = vec![request_r.as_fd(), result_w.as_fd()];
        fds.extend(region_fd.as_ref().map(AsFd::as_fd));
        sys::spawn(executable(), &name, &env, &fds)
    })
    .map_err(|e| StartFailure::Os(not_started(executable(), &e)))?;

    let mut frame = Vec::new();
    let mut init = init.clone();
    if region.is_some() {
        init.flags |= RINGS;
    }
    init.encode(&mut frame);
    // The pipe is empty and larger than an init frame, so this write does not block. A
    // worker that died as it started (a constructor of the program that aborts in it, say)
    // has closed its end: the OS refused nothing there, and the supervisor, which reaps it,
    // tells how it ended.
    match sys::write_all_to_child(request_w.as_fd(), &frame) {
        Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {}
        written => written.map_err(os)?,
    }
    Ok(Launched { child, region, request: request_w, result: result_r })
}

/// The file to start a worker from: `/proc/self/exe`, the program's executable. But where
/// the file `/proc/self/exe` opens is not the one it names, something that runs the program
/// inside its own process shows the program there: Valgrind, whose tool the link names (and
/// which refuses to run on its own), while opening it, or reading the link, gives the
/// program. There a worker starts from that path, and runs the program (natively, or under
/// Valgrind too with `--trace-children=yes`).
fn executable() -> &'static CStr {
    static EXECUTABLE: OnceLock<CString> = OnceLock::new();
    EXECUTABLE.get_or_init(|| {
        let named = std::fs::metadata("/proc/self/exe").ok();
        let shown = ImageId::current()
            .zip(named)
            .is_some_and(|(opened, named)| !opened.is_file(named.dev(), named.ino()));
        let path = shown
            .then(|| std::fs::read_link("/proc/self/exe").ok())
            .flatten()
            .and_then(|path| CString::new(path.into_os_string().into_vec()).ok());
        path.unwrap_or_else(|| c"/proc/self/exe".to_owned())
    })
}

/// What a start failure says where `/proc` is missing.
const NO_PROC: &str = ": /proc is not mounted where this process looks for it (it moved into \
     a chroot, say): workers and one-offs are the program's executable started again \
     through /proc/self/exe, and queues and shared bytes cross through /proc too";

/// Why `exe` could not be started: the OS's words, with the file where the exec failed.
fn not_started(exe: &CStr, error: &std::io::Error) -> String {
    let exec = [libc::ENOENT, libc::EACCES, libc::ENOEXEC, libc::ENOTDIR, libc::ELOOP];
    if !error.raw_os_error().is_some_and(|code| exec.contains(&code)) {
        return error.to_string();
    }
    let path = String::from_utf8_lossy(exe.to_bytes()).into_owned();
    let gone = path.starts_with("/proc/") && !Path::new("/proc/self").exists();
    format!("{path}: {error}{}", if gone { NO_PROC } else { "" })
}

/// Refuses to start workers where `/proc/self/exe`, started again, would not run this code:
/// in a shared library the program loaded, starting it would run the host program's `main`,
/// and so would a set-user-ID program, whose workers ignore the marker (anyone could set it).
fn check_executable() -> Result<(), StartFailure> {
    if sys::is_secure_execution() {
        return Err(StartFailure::Os(
            "the program runs set-user-ID (or set-group-ID, or with file capabilities), and \
             its workers would not trust the marker that makes them workers: they would run \
             the program's main again"
                .into(),
        ));
    }
    static PLACEMENT: OnceLock<Placement> = OnceLock::new();
    let here = check_executable as fn() -> Result<(), StartFailure> as usize;
    match *PLACEMENT.get_or_init(|| sys::placement_of(here)) {
        Placement::Executable => Ok(()),
        Placement::SharedLibrary => Err(StartFailure::Os(
            "taskpool-process was loaded from a shared library (a plugin or an extension \
             module), and workers are the program's executable started again, which would \
             run the host program instead: link taskpool-process into the executable"
                .into(),
        )),
        Placement::Loader => Err(StartFailure::Os(
            "the program was started through its dynamic loader, which is what \
             /proc/self/exe names: run the program itself"
                .into(),
        )),
    }
}

/// Starts the undertaker (`undertaker.rs`): this program started again with `marker` as
/// its [`MARKER`], `read` as its descriptor 3, in a process group of its own; returns once
/// it has detached from this process (the child started exits, leaving the undertaker to
/// init), whether it could be started (the program goes without if not).
pub(crate) fn start_undertaker(marker: &str, read: BorrowedFd<'_>) -> bool {
    let env = environment(marker);
    let Ok(child) = sys::spawn_unlisted(executable(), c"taskpool-undertaker", &env, &[read]) else {
        return false;
    };
    sys::reap_unlisted(&child, UNDERTAKER_DETACHES)
}

/// How long the undertaker's first process has to detach (it forks and exits at once).
const UNDERTAKER_DETACHES: std::time::Duration = std::time::Duration::from_secs(5);

/// This process's environment, with [`MARKER`] set to `marker`.
fn environment(marker: &str) -> Vec<CString> {
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != MARKER)
        .filter_map(|(k, v)| {
            let mut entry = k.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(v.as_bytes());
            CString::new(entry).ok()
        })
        .collect();
    env.extend(CString::new(format!("{MARKER}={marker}")));
    env
}

type Job = Box<dyn FnOnce() + Send>;

/// The launcher thread of this process: where to send it work, and which copy of the
/// process started it (a copy made by `fork()` inherits the sender, not the thread).
struct Launcher {
    generation: u64,
    jobs: Sender<Job>,
}

/// Starts a launcher thread: where to send it work.
fn start_launcher() -> std::io::Result<Sender<Job>> {
    let (tx, rx) = mpsc::channel::<Job>();
    sys::with_program_signals_blocked(|| {
        thread::Builder::new().name("taskpool-launcher".into()).spawn(move || {
            sys::block_sigpipe_for_good();
            rx.into_iter().for_each(|job| job());
        })
    })?;
    Ok(tx)
}

/// Runs `spawn` on the launcher thread; if that thread cannot be started, on this one or
/// nowhere, as `no_launcher` says (the launcher is tried again at the next start).
fn on_launcher(
    no_launcher: NoLauncher,
    spawn: impl FnOnce() -> std::io::Result<ChildProcess> + Send + 'static,
) -> std::io::Result<ChildProcess> {
    static LAUNCHER: Mutex<Option<Launcher>> = Mutex::new(None);
    sys::watch_forks();
    let generation = sys::fork_generation();
    let mut launcher = LAUNCHER.lock().unwrap_or_else(PoisonError::into_inner);
    let jobs = match launcher.as_ref() {
        Some(l) if l.generation == generation => l.jobs.clone(),
        _ => match start_launcher() {
            Ok(jobs) => {
                *launcher = Some(Launcher { generation, jobs: jobs.clone() });
                jobs
            }
            Err(e) => {
                *launcher = None;
                drop(launcher);
                return match no_launcher {
                    NoLauncher::SpawnHere => spawn(),
                    NoLauncher::Fail => Err(std::io::Error::new(
                        e.kind(),
                        format!(
                            "the launcher thread, which starts every worker and one-off, \
                             cannot start: {e}"
                        ),
                    )),
                };
            }
        },
    };
    drop(launcher);
    let (reply_tx, reply_rx) = mpsc::sync_channel(1);
    // A process inherits the CPUs its spawning thread may use: those of the thread that asks,
    // not those of whichever thread happened to start the launcher.
    let cpus = sys::thread_cpus();
    let job: Job = Box::new(move || {
        if let Some(cpus) = &cpus {
            sys::set_thread_cpus(cpus);
        }
        let _ = reply_tx.send(spawn());
    });
    // A launcher that stopped gives the job back: run here, or dropped unrun with the
    // reply's sender, which fails the start.
    if let Err(mpsc::SendError(job)) = jobs.send(job) {
        if no_launcher == NoLauncher::SpawnHere {
            job();
        }
    }
    reply_rx
        .recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("the worker launcher thread stopped")))
}
