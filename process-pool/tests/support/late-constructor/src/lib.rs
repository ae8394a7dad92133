//! A program constructor in a crate of its own, for the tests of `taskpool-process`.
//!
//! The linker lays out `.init_array` in the order of its input files, and rustc hands it a
//! crate's objects before those of the crates it uses. A test binary that names this crate
//! before `taskpool_process` puts this constructor after that crate's worker hook, as the
//! linker puts the runtime of `-C instrument-coverage`, or a C library's constructors.

use std::sync::atomic::{AtomicBool, Ordering};

static RAN: AtomicBool = AtomicBool::new(false);

extern "C" fn construct() {
    RAN.store(true, Ordering::Relaxed);
}

#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = construct;

/// Whether this process ran the constructor (before `main`, or before a worker serves).
pub fn ran() -> bool {
    RAN.load(Ordering::Relaxed)
}
