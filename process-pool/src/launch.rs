//! Starting a worker process: spawn, settings, and the wait for its hello.
//!
//! Every worker of the process is spawned from one long-lived launcher thread. A worker asks
//! the kernel to kill it when the thread that spawned it ends (`PR_SET_PDEATHSIG` follows the
//! spawning *thread*), so spawning from a thread that lives as long as the process means
//! workers die with the process and never with some short-lived caller thread.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::mpsc::{self, Sender};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use taskpool_core::Exit;

use crate::entry::{self, MARKER};
use crate::protocol::Init;
use crate::scheduler::StartFailure;
use crate::ship::ImageId;
use crate::sys;
use crate::wire::{FrameReader, Kind};

/// Kernel buffer asked for each pipe, so bursts and large values need fewer wake-ups.
const PIPE_BYTES: usize = 1 << 20;

/// A started worker process, before or after its hello.
#[derive(Debug)]
pub(crate) struct Launched {
    pub(crate) pid: libc::pid_t,
    /// Write end of the worker's request pipe.
    pub(crate) request: OwnedFd,
    /// Read end of the worker's result pipe.
    pub(crate) result: OwnedFd,
}

/// Spawns a worker and sends it `init`. Does not wait for it to be ready: see [`handshake`].
pub(crate) fn launch(init: &Init) -> Result<Launched, StartFailure> {
    entry::ensure_linked();
    let os = |e: std::io::Error| StartFailure::Os(e.to_string());
    let image = ImageId::current().ok_or_else(|| {
        StartFailure::Os("cannot identify the running executable (/proc/self/exe)".into())
    })?;
    let (request_r, request_w) = sys::pipe().map_err(os)?;
    let (result_r, result_w) = sys::pipe().map_err(os)?;
    sys::grow_pipe(request_w.as_fd(), PIPE_BYTES);
    sys::grow_pipe(result_w.as_fd(), PIPE_BYTES);

    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != MARKER)
        .filter_map(|(k, v)| {
            let mut entry = k.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(v.as_bytes());
            CString::new(entry).ok()
        })
        .collect();
    env.extend(CString::new(format!("{MARKER}={}", entry::marker_value(image))));
    let name = CString::new(init.name.replace('\0', "")).unwrap_or_default();

    let pid = on_launcher(move || {
        sys::spawn(c"/proc/self/exe", &name, &env, request_r.as_fd(), result_w.as_fd())
    })
    .map_err(os)?;

    let mut frame = Vec::new();
    init.encode(&mut frame);
    // The pipe is empty and larger than an init frame, so this write does not block.
    sys::write_all(request_w.as_fd(), &frame).map_err(os)?;
    Ok(Launched { pid, request: request_w, result: result_r })
}

/// Waits up to `limit` for the worker's hello.
///
/// # Errors
///
/// Why the worker is not ready: it refused (its reason), ended (the caller reaps it for its
/// exit status), or said nothing in time. The caller kills and reaps it.
pub(crate) fn handshake(
    result: BorrowedFd<'_>,
    reader: &mut FrameReader,
    limit: Duration,
) -> Result<(), StartFailure> {
    let deadline = Instant::now() + limit;
    let refused = StartFailure::Refused;
    loop {
        match reader.next_frame() {
            Ok(Some((Kind::Hello, _))) => return Ok(()),
            Ok(Some((Kind::InitFailed, body))) => {
                return Err(refused(String::from_utf8_lossy(reader.bytes(body)).into_owned()));
            }
            Ok(Some((kind, _))) => {
                return Err(refused(format!("the worker sent {kind:?} before its hello")));
            }
            Ok(None) => {}
            Err(e) => return Err(refused(format!("the worker sent a malformed frame: {e}"))),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(StartFailure::NotReady(limit));
        }
        let interest = sys::Interest { fd: result, read: true, write: false };
        let [ready] =
            sys::poll([interest], Some(left)).map_err(|e| StartFailure::Os(e.to_string()))?;
        if ready.read && reader.fill(result).map_err(|e| refused(e.to_string()))? == 0 {
            return Err(StartFailure::Died(Exit::Code(-1)));
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs `spawn` on the launcher thread (or, if that thread cannot exist, on this one).
fn on_launcher(
    spawn: impl FnOnce() -> std::io::Result<libc::pid_t> + Send + 'static,
) -> std::io::Result<libc::pid_t> {
    static LAUNCHER: OnceLock<Option<Mutex<Sender<Job>>>> = OnceLock::new();
    let launcher = LAUNCHER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("taskpool-launcher".into())
            .spawn(move || rx.into_iter().for_each(|job| job()))
            .ok()
            .map(|_| Mutex::new(tx))
    });
    let Some(launcher) = launcher else { return spawn() };
    let (reply_tx, reply_rx) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = reply_tx.send(spawn());
    });
    if let Err(mpsc::SendError(job)) =
        launcher.lock().unwrap_or_else(PoisonError::into_inner).send(job)
    {
        job();
    }
    reply_rx
        .recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("the worker launcher thread stopped")))
}
