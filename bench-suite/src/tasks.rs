//! The tasks the benchmarks run: no-ops, payload echoes, kernels and faults.
//!
//! They are plain functions, so every backend runs them as they are.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_bytes::ByteBuf;

use crate::kernels;

/// Returns its input: the no-op whose cost is pure overhead.
pub fn noop(x: u64) -> u64 {
    x
}

/// Returns its payload (a byte buffer that serde moves in one piece).
pub fn echo(payload: ByteBuf) -> ByteBuf {
    payload
}

/// Returns its payload as a plain `Vec<u8>` (which serde moves byte by byte).
pub fn echo_vec(payload: Vec<u8>) -> Vec<u8> {
    payload
}

/// Reads the last byte of its payload where it lies (in shared memory, mapped by the process
/// the task runs in) and returns the payload: bytes that cross without a copy.
#[cfg(feature = "process-pool")]
pub fn echo_shared(payload: taskpool_process::SharedBytes) -> taskpool_process::SharedBytes {
    std::hint::black_box(payload.last());
    payload
}

/// Counts primes in `start..start + len`: the first CPU-bound kernel.
pub fn primes(start: u64, len: u64) -> u64 {
    kernels::count_primes(start, len)
}

/// Sums Mandelbrot escape counts of some rows: the second CPU-bound kernel.
pub fn mandel(first_row: u32, rows: u32, width: u32, height: u32, max_iter: u32) -> u64 {
    kernels::mandel_rows(first_row, rows, width, height, max_iter)
}

/// The id of the process running the task.
pub fn pid(_: u64) -> u32 {
    std::process::id()
}

/// Sleeps `ms` milliseconds.
pub fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Panics.
pub fn panic(_: u64) -> u64 {
    panic!("this task panics on purpose")
}

/// Calls `abort()`.
pub fn abort(_: u64) -> u64 {
    std::process::abort()
}

/// Sleeps for an hour: a hang, for timeout measurements.
pub fn hang(_: u64) -> u64 {
    sleep_ms(3_600_000)
}

/// Allocates and touches memory 64 MiB at a time until `cap_mib` MiB, then frees it and
/// returns how many MiB it held. Under a memory limit the allocation fails first: a memory
/// bomb with a safety cap, so it cannot take the machine.
pub fn memory_bomb(cap_mib: u64) -> u64 {
    let mut held: Vec<Vec<u8>> = Vec::new();
    while (held.len() as u64) * 64 < cap_mib {
        held.push(vec![1u8; 64 << 20]);
    }
    std::hint::black_box(&held);
    held.len() as u64 * 64
}

pub use crate::crash::segfault;

/// Sleeps `micros` microseconds and returns the id of the process it ran in: the simplest
/// I/O-bound task, one that only waits.
pub fn nap(micros: u64) -> u32 {
    std::thread::sleep(Duration::from_micros(micros));
    std::process::id()
}

/// Asks the bench's slow local service called `service` for an answer after `delay_us`
/// microseconds and blocks on the socket until it comes, as a task blocks on a slow database
/// or web service; returns the id of the process it ran in.
///
/// # Errors
///
/// The service cannot be reached or answered something else, in words.
pub fn ask(service: String, delay_us: u64) -> Result<u32, String> {
    crate::slow_service::ask(&service, delay_us)
        .map(|_| std::process::id())
        .map_err(|e| format!("asking the slow service: {e}"))
}

/// The global counter that [`write_global`] writes to, one per process.
static WRITES: AtomicU64 = AtomicU64::new(0);

/// Writes to the memory of the process it runs in: adds one to a global counter and returns
/// the counter's new value there. Whether the caller sees the write is what threads and
/// processes differ in (see [`global_writes`]).
pub fn write_global(_: u64) -> u64 {
    WRITES.fetch_add(1, Ordering::SeqCst) + 1
}

/// The global counter of [`write_global`] as this process sees it.
pub fn global_writes() -> u64 {
    WRITES.load(Ordering::SeqCst)
}
