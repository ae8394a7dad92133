//! The hook that turns a re-executed copy of the program into a worker, before `main`.
//!
//! A worker is started as `/proc/self/exe` with the [`MARKER`] variable in its environment.
//! A constructor in `.init_array` runs before `main` in every program that links this crate;
//! when it finds a valid marker it removes it (so a task that starts the same program does not
//! start a worker by accident) and serves as a worker, never returning to `main`. Users change
//! nothing in their `main`, test harness or bench.
//!
//! A marker is valid only if this process's parent is the pid it names, descriptors 3 and 4
//! are pipes, and the process is not running set-user-ID. Otherwise it is ignored and `main`
//! runs as usual, so the marker cannot make an unrelated program a worker. One exception: a
//! process with the marker's pipes, running the marker's executable file, whose parent is
//! not the one named, is a worker whose parent died while it started; it exits at once rather
//! than run the program's `main` a second time. The image check (same executable, same
//! layout) comes after, and a mismatch is reported to the parent.

use std::hint::black_box;

use crate::ship::ImageId;
use crate::sys::{self, REQUEST_FD, RESULT_FD};
use crate::{undertaker, worker};

/// The environment variable that marks a worker.
pub(crate) const MARKER: &str = "TASKPOOL_WORKER";
const MARKER_C: &std::ffi::CStr = c"TASKPOOL_WORKER";
const VERSION: &str = "taskpool-worker-1";

/// Proof that this worker runs the same executable image as its parent, so function offsets
/// the parent sends are valid here.
#[derive(Debug)]
pub(crate) struct ImageVerified(());

/// The value of [`MARKER`] for a worker of this process.
pub(crate) fn marker_value(image: ImageId) -> String {
    format!("{VERSION};{};{}", sys::pid(), image.to_marker())
}

/// A constructor's signature as the C library calls it: `argc`, `argv`, `envp`.
type Entry = extern "C" fn(libc::c_int, *const *const libc::c_char, *const *const libc::c_char);

#[used]
#[unsafe(link_section = ".init_array")]
static WORKER_ENTRY: Entry = enter;

/// Keeps the constructor in the final program: the linker only pulls this crate's objects
/// that something refers to, so every way of starting a worker calls this.
pub(crate) fn ensure_linked() {
    black_box(&WORKER_ENTRY);
}

extern "C" fn enter(
    argc: libc::c_int,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
) {
    if is_undertaker() {
        undertaker::serve();
    }
    if let Some(image) = check_marker() {
        // The program's constructors after this one (a C or C++ library's, the coverage
        // runtime's, which the linker put last) run in the worker too, once it has set up
        // its descriptors, as they would before `main`.
        let slot = std::ptr::addr_of!(WORKER_ENTRY) as usize;
        let later = sys::LaterConstructors::after(slot, argc, argv, envp);
        worker::serve(image, later);
    }
}

/// Whether this process was started as a program's undertaker (`undertaker.rs`): the marker
/// says so, descriptor 3 is a pipe, and the program the marker names is this process's
/// parent, or has ended already (it died while this started: there is still its list to
/// read, and its groups to kill). The marker is removed.
fn is_undertaker() -> bool {
    let Some(value) = std::env::var_os(MARKER) else { return false };
    let Some((version, parent)) = value.to_str().and_then(|v| v.split_once(';')) else {
        return false;
    };
    if version != undertaker::VERSION {
        return false;
    }
    // Before `main`, the program runs one thread: nothing else touches the environment.
    sys::unset_env(MARKER_C);
    let Ok(parent) = parent.parse::<u32>() else { return false };
    !sys::is_secure_execution()
        && sys::is_pipe(REQUEST_FD)
        && (parent == sys::parent_pid() || libc::pid_t::try_from(parent).is_ok_and(sys::is_exiting))
}

/// `None`: not a worker (no marker, or one that is not ours). `Some(Err)`: our worker, but
/// its image differs from the parent's.
fn check_marker() -> Option<Result<ImageVerified, String>> {
    let value = std::env::var_os(MARKER)?;
    // Before `main`, the program runs one thread: nothing else touches the environment.
    sys::unset_env(MARKER_C);
    if sys::is_secure_execution() {
        return None;
    }
    let mut parts = value.to_str()?.splitn(3, ';');
    if parts.next()? != VERSION {
        return None;
    }
    let parent: u32 = parts.next()?.parse().ok()?;
    let image = ImageId::from_marker(parts.next()?);
    if !sys::is_pipe(REQUEST_FD) || !sys::is_pipe(RESULT_FD) {
        return None;
    }
    if parent != sys::parent_pid() {
        if image.zip(ImageId::current()).is_some_and(|(theirs, ours)| theirs.same_file(ours)) {
            // A worker of this very program whose parent died while it started, and another
            // process adopted it: nobody to serve, and `main` must not run a second time.
            sys::exit_now(0);
        }
        return None;
    }
    if sys::die_with_parent().is_err() || sys::parent_pid() != parent {
        // The parent died before the death signal was armed: nobody to serve.
        sys::exit_now(0);
    }
    Some(match (image, ImageId::current()) {
        (Some(theirs), Some(ours)) if theirs == ours => Ok(ImageVerified(())),
        // Workers start from `/proc/self/exe`, which stays the running build's whatever
        // happens to its path; only a start from the path (under Valgrind) meets another
        // file.
        (Some(theirs), Some(ours)) if !theirs.same_file(ours) => {
            Err("the worker started from another file than the one its parent runs: the file at \
             the program's path was replaced since the program started (workers start from \
             that path where /proc/self/exe names another program, as under Valgrind)"
                .into())
        }
        _ => Err("the worker runs a different executable image than its parent".into()),
    })
}
