//! A task writes to the program's terminal as the program does, also where the terminal stops
//! the writes of background processes (`stty tostop`), and its read from the terminal fails:
//! a worker leads a process group of its own, in the terminal's background, and neither may
//! stop it.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use rustix::fs::{Mode, OFlags};
use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
use taskpool_process::{Config, Pool, ProcessPool, spawn};

/// Set in this test binary started again on a terminal of its own.
const ON_TERMINAL: &str = "TERMINAL_TEST_ON_TERMINAL";

/// Long enough to call a task that did not return stopped.
const LIMIT: Duration = Duration::from_secs(20);

fn say_hello(n: u64) -> u64 {
    println!("hello from task {n}");
    n
}

/// The OS error of a read from the process's terminal, if it fails.
fn read_the_terminal(_: ()) -> Option<i32> {
    let mut terminal = std::fs::File::open("/dev/tty").unwrap();
    terminal.read(&mut [0]).err().and_then(|e| e.raw_os_error())
}

/// The program's side: a session of its own, with the terminal on its standard output and
/// error as its controlling terminal (so it is the terminal's foreground process group), a
/// pool and a one-off whose tasks write to it. A no-op unless started by
/// `a_task_writes_to_a_terminal_that_stops_background_writers`.
#[test]
fn tasks_write_to_the_terminal() {
    if std::env::var_os(ON_TERMINAL).is_none() {
        return;
    }
    rustix::process::setsid().expect("a session of its own");
    rustix::process::ioctl_tiocsctty(std::io::stdout()).expect("the terminal as its own");
    let pool = ProcessPool::with_config(Config::new().workers(1).timeout(LIMIT)).unwrap();
    assert_eq!(pool.apply(say_hello, 1).unwrap(), 1);
    assert_eq!(spawn(say_hello, 2).unwrap().join().unwrap(), 2);
    let eio = rustix::io::Errno::IO.raw_os_error();
    assert_eq!(pool.apply(read_the_terminal, ()).unwrap(), Some(eio), "a background read");
}

#[test]
fn a_task_writes_to_a_terminal_that_stops_background_writers() {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let terminal = rustix::fs::open(name.as_c_str(), OFlags::RDWR | OFlags::NOCTTY, Mode::empty());
    let terminal = terminal.unwrap();
    let mut modes = tcgetattr(&terminal).unwrap();
    modes.local_modes |= LocalModes::TOSTOP;
    tcsetattr(&terminal, OptionalActions::Now, &modes).unwrap();

    let mut program = Command::new(std::env::current_exe().unwrap());
    program
        .args(["--exact", "tasks_write_to_the_terminal", "--nocapture", "--test-threads=1"])
        .env(ON_TERMINAL, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(terminal.try_clone().unwrap()))
        .stderr(Stdio::from(terminal));
    let mut child = program.spawn().unwrap();
    drop(program);
    // Everything written to the terminal, until every process that held it has ended.
    let reader = std::thread::spawn(move || {
        let mut master = std::fs::File::from(master);
        let mut said = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = master.read(&mut buf) {
            said.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&said).into_owned()
    });
    let status = child.wait().unwrap();
    let said = reader.join().unwrap();
    assert!(status.success(), "{status:?}; the terminal said:\n{said}");
    assert!(said.contains("hello from task 1"), "{said}");
    assert!(said.contains("hello from task 2"), "{said}");
}
