//! An agent cut off the network (alive, its connection silent) loses no task: the server
//! gives its tasks to another agent once their ack wait passes without a progress report.
//!
//! The agent runs in a network namespace of its own, made by this test, whose only way out is
//! a relay: a listener on the namespace's loopback that forwards to the server on the host's
//! loopback. The cut takes the namespace's loopback down, so the agent's packets go nowhere
//! while it keeps running. Where network namespaces cannot be made (no privilege), the test
//! is skipped with a printed reason, under CI too.

mod common;

use std::fs::File;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use common::Agent;
use taskpool_cluster::{ClusterConfig, ClusterPool, Config, Pool};

/// A network namespace of this test: its handle, and a listener on its loopback.
struct Namespace {
    handle: File,
}

impl Namespace {
    /// Makes a namespace with its loopback up, and a listener on it.
    fn new() -> io::Result<(Namespace, TcpListener)> {
        std::thread::spawn(|| {
            // SAFETY: unshare affects only this thread, which ends right after.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            set_loopback(true)?;
            let listener = TcpListener::bind("127.0.0.1:0")?;
            let handle = File::open("/proc/thread-self/ns/net")?;
            Ok((Namespace { handle }, listener))
        })
        .join()
        .expect("the namespace thread does not panic")
    }

    /// Takes the namespace's loopback up or down.
    fn set_loopback(&self, up: bool) -> io::Result<()> {
        let fd = self.handle.as_raw_fd();
        std::thread::spawn(move || {
            // SAFETY: setns affects only this thread, which ends right after; `fd` is open.
            if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            set_loopback(up)
        })
        .join()
        .expect("the namespace thread does not panic")
    }
}

/// Sets the `lo` interface of the calling thread's namespace up or down.
fn set_loopback(up: bool) -> io::Result<()> {
    // SAFETY: a plain socket call; the descriptor is closed below.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    if sock < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write the ifreq we own.
    let result = unsafe {
        let mut r = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut request);
        if r == 0 {
            let flags = &mut request.ifr_ifru.ifru_flags;
            if up {
                *flags |= libc::IFF_UP as libc::c_short;
            } else {
                *flags &= !(libc::IFF_UP as libc::c_short);
            }
            r = libc::ioctl(sock, libc::SIOCSIFFLAGS, &request);
        }
        r
    };
    let error = io::Error::last_os_error();
    // SAFETY: `sock` is ours and open.
    unsafe { libc::close(sock) };
    if result == 0 { Ok(()) } else { Err(error) }
}

/// Forwards every connection made to `listener` to `port` on the host's loopback.
fn relay(listener: TcpListener, port: u16) {
    std::thread::spawn(move || {
        for inbound in listener.incoming() {
            let Ok(inbound) = inbound else { return };
            let Ok(outbound) = TcpStream::connect(("127.0.0.1", port)) else { continue };
            let (Ok(mut in_read), Ok(mut out_read)) = (inbound.try_clone(), outbound.try_clone())
            else {
                continue;
            };
            let (mut in_write, mut out_write) = (inbound, outbound);
            std::thread::spawn(move || io::copy(&mut in_read, &mut out_write));
            std::thread::spawn(move || io::copy(&mut out_read, &mut in_write));
        }
    });
}

/// Returns the item and the pid of the agent whose worker ran it, after 20 ms of work.
fn item_and_agent(item: u64) -> (u64, u32) {
    std::thread::sleep(Duration::from_millis(20));
    (item, std::os::unix::process::parent_id())
}

#[test]
fn an_agent_cut_off_the_network_loses_no_task() {
    let Some(server) = common::server("network_cut") else { return };
    let (namespace, listener) = match Namespace::new() {
        Ok(made) => made,
        Err(e) => {
            eprintln!("skipping network_cut: cannot make a network namespace here ({e})");
            return;
        }
    };
    let relay_port = listener.local_addr().unwrap().port();
    relay(listener, server.port());
    let vars = [("TASKPOOL_AGENT_ACK_WAIT_MS", "1000")];
    let healthy = common::agent(&server.url(), 2, &vars);

    // The victim: this test binary as an agent, inside the namespace.
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .env("TASKPOOL_AGENT", format!("nats://127.0.0.1:{relay_port}"))
        .env("TASKPOOL_AGENT_WORKERS", "2")
        .env("TASKPOOL_AGENT_ACK_WAIT_MS", "1000");
    let fd = namespace.handle.as_raw_fd();
    // SAFETY: the closure makes one system call (setns) on a descriptor that stays open.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut victim = Agent::start_command(command).expect("the victim serves");

    let config = ClusterConfig::new(server.url())
        .config(Config::new().workers(4))
        .agent_wait(Duration::from_secs(60));
    let pool = ClusterPool::with_config(config).unwrap();
    assert!(pool.wait_for_agents(2, Duration::from_secs(30)));
    let handles: Vec<_> = (0..400).map(|i| pool.submit(item_and_agent, i)).collect();
    let mut handles = handles.into_iter().enumerate();
    // Wait until the victim has run tasks: then it holds more.
    let mut victim_ran = false;
    for (i, h) in handles.by_ref() {
        let (item, agent) = h.join().unwrap();
        assert_eq!(item, i as u64);
        if agent == victim.pid() {
            victim_ran = true;
            break;
        }
    }
    assert!(victim_ran, "the victim took tasks before the cut");
    namespace.set_loopback(false).unwrap();
    let mut by_healthy = 0;
    for (i, h) in handles {
        let (item, agent) = h.join().unwrap();
        assert_eq!(item, i as u64, "item {i}");
        by_healthy += usize::from(agent == healthy.pid());
    }
    assert!(victim.is_alive(), "the victim was cut off, not killed");
    assert!(by_healthy > 0);
    assert_eq!(pool.stats().settled, 400, "every task settled once");
    victim.kill();
}
