//! Where `/proc/self/exe` started again would not run this crate's code, pools and one-offs
//! refuse to start workers, with `TaskError::WorkerStart` saying why, and start no process:
//! in a shared library the program loaded (the host program's `main` would run again), and in
//! a program started through its dynamic loader (which is what `/proc/self/exe` names).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, PoisonError};

use common::*;
use taskpool_process::{Pool, ProcessPool, TaskError, spawn};

/// Held by each test while it runs: one counts this process's zombie children, and the
/// other's child (this binary started through its loader) is one for a moment as it ends.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The shared library that the `in_a_library` example builds beside this test binary.
fn library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples").join("libin_a_library.so")
}

#[test]
fn a_pool_in_a_shared_library_refuses_to_start_the_host_program() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let path = library();
    if !path.exists() {
        // `cargo test` builds examples; a test run without them cannot check this.
        println!("skipped: {} not built", path.display());
        return;
    }
    let name = std::ffi::CString::new(path.to_string_lossy().into_owned()).unwrap();
    // SAFETY: loads a library built from this crate's example, whose only constructor is
    // this crate's worker hook (which does nothing without a worker marker), and calls its
    // exported function, which takes nothing and returns an int.
    let refused = unsafe {
        let handle = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        assert!(!handle.is_null(), "cannot load {}", path.display());
        let symbol = libc::dlsym(handle, c"start_in_a_library".as_ptr());
        assert!(!symbol.is_null());
        let start: extern "C" fn() -> i32 = std::mem::transmute(symbol);
        within("a pool and a one-off in a shared library", move || start())
    };
    assert_eq!(refused, 0, "the library's pool or one-off was not refused");
    assert!(zombie_children().is_empty());
}

/// Set in the copy of this binary started through its dynamic loader.
const THROUGH_THE_LOADER: &str = "TASKPOOL_TEST_THROUGH_THE_LOADER";

fn square(x: u64) -> u64 {
    x * x
}

/// The dynamic loader this process runs with: the file mapped where the kernel loaded it.
fn loader() -> Option<String> {
    // SAFETY: getauxval only reads the auxiliary vector.
    let base = usize::try_from(unsafe { libc::getauxval(libc::AT_BASE) }).ok()?;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines().find_map(|line| {
        let start = usize::from_str_radix(line.split('-').next()?, 16).ok()?;
        (start == base).then(|| line.split_whitespace().nth(5).map(str::to_string))?
    })
}

#[test]
fn a_program_started_through_its_loader_refuses_to_start_the_loader() {
    let name = "a_program_started_through_its_loader_refuses_to_start_the_loader";
    if std::env::var_os(THROUGH_THE_LOADER).is_some() {
        let reason = |result: Result<u64, TaskError>| match result {
            Err(TaskError::WorkerStart { reason }) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let pool = ProcessPool::new(1).and_then(|pool| pool.apply(square, 3));
        assert!(reason(pool).contains("dynamic loader"));
        assert!(reason(spawn(square, 4).and_then(|child| child.join())).contains("loader"));
        return;
    }
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(loader) = loader() else {
        println!("skipped: this test binary has no dynamic loader");
        return;
    };
    let mut command = Command::new(loader);
    command.arg(std::env::current_exe().unwrap()).env(THROUGH_THE_LOADER, "1");
    run_test_in(command, name, "through the dynamic loader").unwrap();
}
