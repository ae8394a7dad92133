//! The one task that needs `unsafe`: a real invalid write, which is how a segfault looks in
//! the C libraries people wrap.

/// Writes through a null pointer: the process running it dies with SIGSEGV.
#[allow(unsafe_code)]
pub fn segfault(_: u64) -> u64 {
    let p: *mut u64 = std::hint::black_box(std::ptr::null_mut());
    // SAFETY: not sound, on purpose: the store traps and the process dies with SIGSEGV. The
    // benchmarks only run this in a worker process or in a child started to observe it.
    unsafe { p.write_volatile(1) };
    0
}
