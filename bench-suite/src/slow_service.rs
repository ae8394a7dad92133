//! A slow local service for I/O-bound tasks: one server thread that answers every request
//! after the delay the request names, so that a task blocks on a socket read the way it
//! blocks on a slow database or web service.
//!
//! # Protocol
//!
//! A client connects to the abstract Unix socket named by [`SlowService::name`] (Linux's
//! abstract namespace: no file to clean up, nothing reachable from the network), writes a
//! request of 8 bytes, a little-endian `u64` naming the delay in microseconds (at most
//! [`MAX_DELAY_US`]), and reads the same 8 bytes back once the delay has passed; then the
//! server closes the connection. [`ask`] is that client; the Python peers
//! (`python/peers.py`, `io_ask`) speak the same protocol to the same server.
//!
//! One thread serves every connection with `poll(2)`, so the delays of many clients overlap:
//! the service costs a request an accept, a read, a write and a close, whatever the delay.

use std::io::{self, ErrorKind, Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, atomic::AtomicUsize};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};

/// The longest delay a request may ask for: longer requests are answered after this.
pub(crate) const MAX_DELAY_US: u64 = 60_000_000;

/// A slow local service: a server thread that answers each request after the delay it asks
/// for. [`crate::tasks::ask`] is a task that asks it and blocks until the answer comes.
///
/// Dropping it stops the thread; requests still waiting then get no answer.
///
/// # Examples
///
/// ```
/// use taskpool_bench::{SlowService, tasks};
///
/// let service = SlowService::start()?;
/// // A task that blocks 5 ms on a socket read, here run on the calling thread.
/// let pid = tasks::ask(service.name().to_owned(), 5_000)?;
/// assert_eq!(pid, std::process::id());
/// assert_eq!(service.answered(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SlowService {
    name: String,
    /// Written to (or closed) to stop the thread.
    stop: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
    answered: Arc<AtomicU64>,
}

/// Tells services of one process apart.
static NEXT: AtomicUsize = AtomicUsize::new(0);

impl SlowService {
    /// Binds a fresh abstract socket and starts the server thread.
    ///
    /// # Errors
    ///
    /// The socket could not be bound, or the thread not started.
    pub fn start() -> io::Result<SlowService> {
        let name = format!(
            "taskpool-bench-slow-service-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let listener = UnixListener::bind_addr(&SocketAddr::from_abstract_name(&name)?)?;
        listener.set_nonblocking(true)?;
        let (stop, stopped) = UnixStream::pair()?;
        let answered = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&answered);
        let thread = std::thread::Builder::new()
            .name("slow-service".into())
            .spawn(move || serve(&listener, &stopped, &counter))?;
        Ok(SlowService { name, stop: Some(stop), thread: Some(thread), answered })
    }

    /// The abstract socket's name (without the leading NUL byte).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many requests it has answered.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }
}

impl Drop for SlowService {
    fn drop(&mut self) {
        // Closing our end wakes the thread (its end reads end-of-file).
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The service the scenarios and the Python peers share, started on first use and kept
/// until the program exits.
///
/// # Errors
///
/// Why it could not start (every later call says the same).
pub(crate) fn shared() -> Result<&'static SlowService, String> {
    static SHARED: OnceLock<Result<SlowService, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| SlowService::start().map_err(|e| format!("the slow service: {e}")))
        .as_ref()
        .map_err(Clone::clone)
}

/// The client: asks the service called `name` for an answer after `delay_us` microseconds
/// and waits for it; returns the answer (the delay asked for).
///
/// # Errors
///
/// The service cannot be reached, or it answered something else.
pub(crate) fn ask(name: &str, delay_us: u64) -> io::Result<u64> {
    let mut stream = UnixStream::connect_addr(&SocketAddr::from_abstract_name(name)?)?;
    stream.write_all(&delay_us.to_le_bytes())?;
    let mut answer = [0u8; 8];
    stream.read_exact(&mut answer)?;
    let answer = u64::from_le_bytes(answer);
    if answer == delay_us {
        Ok(answer)
    } else {
        Err(io::Error::new(ErrorKind::InvalidData, format!("answered {answer}, not {delay_us}")))
    }
}

/// One client's connection: its request as read so far, then when it is due.
struct Connection {
    stream: UnixStream,
    request: [u8; 8],
    read: usize,
    due: Option<Instant>,
}

impl Connection {
    /// Reads what the client sent. Returns `false` when the connection is finished (end of
    /// file before a whole request, or an error).
    fn read(&mut self, now: Instant) -> bool {
        loop {
            match self.stream.read(&mut self.request[self.read..]) {
                Ok(0) => return false,
                Ok(n) => {
                    self.read += n;
                    if self.read == self.request.len() {
                        let delay = u64::from_le_bytes(self.request).min(MAX_DELAY_US);
                        self.due = Some(now + Duration::from_micros(delay));
                        return true;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return e.kind() == ErrorKind::WouldBlock,
            }
        }
    }
}

/// The server loop: answers what is due, waits for new connections, requests, or the next
/// answer's time, and returns when `stop` is closed or written to.
fn serve(listener: &UnixListener, stop: &UnixStream, answered: &AtomicU64) {
    let mut connections: Vec<Connection> = Vec::new();
    loop {
        let now = Instant::now();
        connections.retain_mut(|c| {
            if c.due.is_none_or(|due| due > now) {
                return true;
            }
            // Counted first, so that a client that has its answer finds it counted. Eight
            // bytes into an empty socket buffer: a client that left just misses them.
            answered.fetch_add(1, Ordering::Relaxed);
            if c.stream.write_all(&c.request).is_err() {
                answered.fetch_sub(1, Ordering::Relaxed);
            }
            false
        });
        let next = connections.iter().filter_map(|c| c.due).min();
        let timeout =
            next.and_then(|due| Timespec::try_from(due.saturating_duration_since(now)).ok());
        let waiting: Vec<usize> =
            (0..connections.len()).filter(|&i| connections[i].due.is_none()).collect();
        let ready = {
            let mut fds =
                vec![PollFd::new(stop, PollFlags::IN), PollFd::new(listener, PollFlags::IN)];
            fds.extend(waiting.iter().map(|&i| PollFd::new(&connections[i].stream, PollFlags::IN)));
            match poll(&mut fds, timeout.as_ref()) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => return,
            }
            fds.iter().map(|fd| !fd.revents().is_empty()).collect::<Vec<bool>>()
        };
        if ready[0] {
            return;
        }
        let now = Instant::now();
        let mut finished = Vec::new();
        for (&i, _) in waiting.iter().zip(&ready[2..]).filter(|(_, r)| **r) {
            if !connections[i].read(now) {
                finished.push(i);
            }
        }
        for i in finished.into_iter().rev() {
            connections.swap_remove(i);
        }
        if ready[1] {
            accept(listener, &mut connections);
        }
    }
}

/// Accepts every pending connection.
fn accept(listener: &UnixListener, connections: &mut Vec<Connection>) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if stream.set_nonblocking(true).is_ok() {
                    connections.push(Connection { stream, request: [0; 8], read: 0, due: None });
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // WouldBlock: none left. Anything else (too many open files): try again later.
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_after_the_delay_asked_for() {
        let service = SlowService::start().unwrap();
        let start = Instant::now();
        assert_eq!(ask(service.name(), 20_000).unwrap(), 20_000);
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(service.answered(), 1);
    }

    #[test]
    fn a_long_wait_does_not_hold_up_a_short_one() {
        let service = SlowService::start().unwrap();
        let addr = SocketAddr::from_abstract_name(service.name()).unwrap();
        let mut long = UnixStream::connect_addr(&addr).unwrap();
        long.write_all(&MAX_DELAY_US.to_le_bytes()).unwrap();
        // A server that answered one request at a time would answer this one a minute later,
        // after the long one.
        assert_eq!(ask(service.name(), 0).unwrap(), 0);
        assert_eq!(service.answered(), 1);
        long.set_nonblocking(true).unwrap();
        let pending = long.read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(pending.kind(), ErrorKind::WouldBlock, "{pending}");
        // Stopping the service ends the long wait.
        drop(service);
        long.set_nonblocking(false).unwrap();
        assert_eq!(long.read(&mut [0u8; 8]).unwrap(), 0);
    }

    #[test]
    fn a_request_in_pieces_and_a_client_that_leaves() {
        let service = SlowService::start().unwrap();
        let addr = SocketAddr::from_abstract_name(service.name()).unwrap();
        let mut gone = UnixStream::connect_addr(&addr).unwrap();
        gone.write_all(&[1, 2, 3]).unwrap();
        drop(gone);
        let mut slow = UnixStream::connect_addr(&addr).unwrap();
        let request = 5u64.to_le_bytes();
        slow.write_all(&request[..3]).unwrap();
        slow.flush().unwrap();
        slow.write_all(&request[3..]).unwrap();
        let mut answer = [0u8; 8];
        slow.read_exact(&mut answer).unwrap();
        assert_eq!(u64::from_le_bytes(answer), 5);
        // Then the server closes the connection.
        assert_eq!(slow.read(&mut answer).unwrap(), 0);
        assert_eq!(service.answered(), 1);
    }

    #[test]
    fn a_stopped_service_refuses_connections() {
        let service = SlowService::start().unwrap();
        let name = service.name().to_owned();
        drop(service);
        let refused = ask(&name, 1).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
    }

    #[test]
    fn the_shared_service_is_one_service() {
        let (a, b) = (shared().unwrap(), shared().unwrap());
        assert_eq!(a.name(), b.name());
        assert_eq!(ask(a.name(), 0).unwrap(), 0);
    }
}
