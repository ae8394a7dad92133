//! A newcomer's first program: a pool of 4 worker processes squares 1..=5, survives a
//! segfaulting task, and keeps serving.
//!
//! Run with `cargo run -p taskpool-process --example square`.

use taskpool_process::{Pool, ProcessPool, TaskError};

fn square(x: u64) -> (u64, u32) {
    (x * x, std::process::id())
}

fn write_through_null(_: u64) -> u64 {
    let p: *mut u64 = std::hint::black_box(std::ptr::null_mut());
    // SAFETY: none: this writes through a null pointer on purpose, to crash its worker.
    unsafe { p.write_volatile(1) };
    0
}

fn main() -> Result<(), TaskError> {
    let pool = ProcessPool::new(4)?;
    let results = pool.map(square, 1..=5u64)?;
    let squares: Vec<u64> = results.iter().map(|&(s, _)| s).collect();
    let pids: Vec<u32> = results.iter().map(|&(_, pid)| pid).collect();
    println!("squares: {squares:?}");
    println!("parent pid: {}, worker pids: {pids:?}", std::process::id());
    let err = pool.apply(write_through_null, 0).unwrap_err();
    println!("segfaulting task: {err}");
    let again: Vec<u64> = pool.map(square, 1..=3u64)?.into_iter().map(|(s, _)| s).collect();
    println!("after the crash: {again:?}");
    Ok(())
}
