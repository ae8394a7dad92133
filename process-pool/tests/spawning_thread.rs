//! Workers take what a process inherits from the thread that starts it (the CPUs it may run
//! on) from the thread that asked for them: a pool made on a thread that may use every CPU
//! gets workers that may too, even after a thread limited to one CPU started the first
//! process. Each process starts its workers from one thread of its own, made by whichever
//! thread asked first, so this binary holds a single test, which asks first.

mod common;

use common::*;
use taskpool_process::{Pool, ProcessPool, spawn};

/// The `Cpus_allowed_list` line of the calling thread's status.
fn allowed_cpus(_: u64) -> String {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    status.lines().find(|l| l.starts_with("Cpus_allowed_list")).unwrap().to_string()
}

/// Limits the calling thread to the first CPU it may run on.
fn keep_to_one_cpu() {
    // SAFETY: cpu_set_t is a plain bit set; sched_getaffinity and sched_setaffinity read and
    // write one of its size, for the calling thread (pid 0).
    unsafe {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(libc::sched_getaffinity(0, size, &mut set), 0);
        let first = (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &set)).unwrap();
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(first, &mut one);
        assert_eq!(libc::sched_setaffinity(0, size, &one), 0);
    }
}

#[test]
fn workers_may_use_the_cpus_of_the_thread_that_asked_for_them() {
    within("one-offs and pools from threads with different CPUs", || {
        let everywhere = allowed_cpus(0);
        let (limited, one_off) = std::thread::spawn(|| {
            keep_to_one_cpu();
            (allowed_cpus(0), spawn(allowed_cpus, 0).unwrap().join().unwrap())
        })
        .join()
        .unwrap();
        assert_eq!(one_off, limited, "a one-off of the limited thread");
        let pool = ProcessPool::new(2).unwrap();
        assert_eq!(pool.map(allowed_cpus, 0..2).unwrap(), [everywhere.clone(), everywhere.clone()]);
        assert_eq!(spawn(allowed_cpus, 0).unwrap().join().unwrap(), everywhere);
    });
}
