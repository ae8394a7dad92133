//! A program constructor in a crate of its own, for the tests of `taskpool-process`.
//!
//! The linker lays out `.init_array` in the order of its input files, and rustc hands it a
//! crate's objects before those of the crates it uses. A test binary that names this crate
//! before `taskpool_process` puts this constructor after that crate's worker hook, as the
//! linker puts the runtime of `-C instrument-coverage`, or a C library's constructors.
//!
//! With [`ABORT_IN_WORKERS`] set, the constructor aborts in a process whose first argument
//! starts with `taskpool-` (a worker or one-off): a program whose constructor fails in its
//! workers, before they are ready. With [`MARK_IN`] set to a directory, it writes there a file
//! named by its process's id: how a test learns that it ran in a process that runs none of
//! the test's code (a cluster agent).

use std::ffi::{CStr, c_char, c_int};
use std::sync::atomic::{AtomicBool, Ordering};

/// The environment variable that makes the constructor abort in workers and one-offs.
pub const ABORT_IN_WORKERS: &str = "LATE_CONSTRUCTOR_ABORTS_IN_WORKERS";

/// The environment variable naming a directory where the constructor writes a file named by
/// its process's id.
pub const MARK_IN: &str = "LATE_CONSTRUCTOR_MARKS_IN";

static RAN: AtomicBool = AtomicBool::new(false);

extern "C" fn construct(argc: c_int, argv: *const *const c_char, _envp: *const *const c_char) {
    RAN.store(true, Ordering::Relaxed);
    if let Some(dir) = std::env::var_os(MARK_IN) {
        let _ = std::fs::write(std::path::Path::new(&dir).join(std::process::id().to_string()), "");
    }
    if argc < 1 || argv.is_null() || std::env::var_os(ABORT_IN_WORKERS).is_none() {
        return;
    }
    // SAFETY: the C library passes `argc` arguments, NUL-terminated strings, in `argv`.
    let first = unsafe { CStr::from_ptr(*argv) };
    if first.to_bytes().starts_with(b"taskpool-") {
        std::process::abort();
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn(c_int, *const *const c_char, *const *const c_char) = construct;

/// Whether this process ran the constructor (before `main`, or before a worker serves).
pub fn ran() -> bool {
    RAN.load(Ordering::Relaxed)
}
