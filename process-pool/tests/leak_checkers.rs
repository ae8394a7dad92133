//! A leak checker (LeakSanitizer, in a build with `-Z sanitizer=address`) reports memory that
//! no global, stack or register points to when a process exits, and then changes its exit
//! code. A worker keeps the alternate signal stack it leaks for good (for its crash-time
//! flush) referenced from a global, so its exit reports nothing and keeps its code (a task's
//! `exit(3)` stays `Exit::Code(3)`). Checked as the checker checks: the address of the
//! worker's alternate stack must be found in the program's writable globals.

mod common;

use common::*;
use taskpool_process::{Pool, ProcessPool};

/// Whether the address of this worker's alternate signal stack is stored in the program's
/// writable data (its `.data` and `.bss`, where a leak checker looks for pointers).
fn alternate_stack_is_referenced(_: ()) -> bool {
    // SAFETY: a zeroed stack_t is valid; sigaltstack with no new stack only reads the current.
    let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: `current` is valid for writes.
    assert_eq!(unsafe { libc::sigaltstack(std::ptr::null(), &mut current) }, 0);
    let address = (current.ss_sp as usize).to_ne_bytes();
    assert_ne!(current.ss_sp, std::ptr::null_mut(), "the worker has no alternate stack");
    let exe = std::fs::read_link("/proc/self/exe").unwrap();
    let exe = exe.to_string_lossy().into_owned();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mut after_program = false;
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let of_program = fields.get(5).is_some_and(|path| exe.starts_with(path));
        // The program's writable segments, and the anonymous mapping right after them (the
        // rest of its `.bss`).
        let looked_at =
            fields[1].starts_with("rw") && (of_program || (after_program && fields.len() == 5));
        after_program = of_program;
        if !looked_at {
            continue;
        }
        let (start, end) = fields[0].split_once('-').unwrap();
        let start = usize::from_str_radix(start, 16).unwrap();
        let end = usize::from_str_radix(end, 16).unwrap();
        // SAFETY: a readable and writable mapping of this process, `end - start` bytes long,
        // read only.
        let bytes = unsafe { std::slice::from_raw_parts(start as *const u8, end - start) };
        if bytes.chunks_exact(address.len()).any(|word| word == address) {
            return true;
        }
    }
    false
}

#[test]
fn a_worker_keeps_its_alternate_signal_stack_referenced_from_a_global() {
    let pool = ProcessPool::new(1).unwrap();
    assert!(pool.apply(alternate_stack_is_referenced, ()).unwrap());
    assert_eq!(crashed(pool.apply(exit_3, 0)), taskpool_process::Exit::Code(3));
}
