//! Per-task floor: a raw length-prefixed ping-pong between two processes over
//! anonymous pipes, with no serialization framework in the way.
//!
//! [`PipeFloor::start`] re-executes the current binary with a private
//! environment marker.  The child, which must call
//! [`run_child_if_requested`] first thing in `main`, echoes every message it
//! receives until its stdin reaches end-of-file.
//!
//! Wire format (both directions): a `u32` little-endian length followed by
//! that many payload bytes.
//!
//! Both pipes are grown to [`PIPE_CAPACITY`] (1 MiB, as the process backend
//! grows its own), so that a 1 MiB message crosses without a wake-up per
//! 64 KiB, the default capacity: what a copy through pipes costs at best.
//! Where the kernel refuses (a capacity over `/proc/sys/fs/pipe-max-size`
//! for an unprivileged process), the pipes keep their capacity.
//!
//! Deadlock freedom for payloads larger than the pipe capacity: the child reads a whole
//! message before it writes anything back, and the parent writes a whole message before it
//! reads anything back.  So while the parent is blocked writing, the child is
//! draining the pipe, and while the child is blocked writing the echo, the
//! parent is draining the other pipe.  At most one message is ever in flight.
//!
//! I/O is done on unbuffered `File`s that own duplicates of the standard
//! descriptors: each message is written with a single `writev(2)` of its header
//! and its bytes (more only where the pipe takes part of it), and reads go
//! through a 64 KiB `BufReader`, so a small message costs one `read(2)` and a
//! large one is read straight into the destination buffer. No byte is copied
//! but by the pipes themselves (into the pipe and out of it, each way): the
//! echo child reads into a buffer it keeps and writes from it, and the parent
//! reads into a buffer it keeps.
//! `std::io::Stdout` is deliberately not used for the echo because it is
//! line-buffered and would split binary payloads at every `\n` byte.

use std::cell::RefCell;
use std::env;
use std::fs::File;
use std::io::{self, BufReader, IoSlice, Read, Write};
use std::os::fd::AsFd;
use std::process::{self, Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_bytes::ByteBuf;

use super::{PoolSpec, Running, text};

/// Environment variable that marks a process as the echo child.
const CHILD_ENV: &str = "__RUST_PEERS_PIPE_FLOOR_ECHO_CHILD";
/// Value the marker must have; anything else is ignored.
const CHILD_ENV_VALUE: &str = "1";
/// Capacity of the read-side buffers in both processes (one default pipe's worth).
const READ_BUF_CAPACITY: usize = 64 * 1024;
/// The capacity the pipes are grown to.
const PIPE_CAPACITY: usize = 1 << 20;

/// Call first thing in `main()`: if this process was started as the echo
/// child, run the echo loop and exit; otherwise return immediately.
///
/// The child exits with status 0 on a clean end-of-file at a message
/// boundary and with status 1 on any I/O error (reported on stderr).
///
/// This coexists with `procspawn::init()` in either order: the marker is set
/// only on the echo child's `Command`, never in the parent's own
/// environment, so procspawn workers do not inherit it; and procspawn's
/// marker is not set for the echo child, so its `init()` returns there.
pub(crate) fn run_child_if_requested() {
    if env::var_os(CHILD_ENV).is_some_and(|v| v == CHILD_ENV_VALUE) {
        let code = match echo_loop() {
            Ok(()) => 0,
            Err(err) => {
                eprintln!("pipe_floor echo child: {err}");
                1
            }
        };
        process::exit(code);
    }
}

/// Echo loop of the child: read one length-prefixed message, write it back,
/// repeat until end-of-file on stdin.
fn echo_loop() -> io::Result<()> {
    // Lock both standard streams once for the lifetime of the loop so that
    // nothing else in this process (e.g. a stray `println!`) can interleave
    // with the echo protocol, then do the actual I/O on raw duplicates.
    let stdin = io::stdin();
    let stdout = io::stdout();
    let stdin_lock = stdin.lock();
    let stdout_lock = stdout.lock();
    let mut input = BufReader::with_capacity(
        READ_BUF_CAPACITY,
        File::from(stdin_lock.as_fd().try_clone_to_owned()?),
    );
    let mut output = File::from(stdout_lock.as_fd().try_clone_to_owned()?);

    // `message` holds header + payload so the echo is a single write_all; it only grows, so
    // a round trip neither allocates nor clears it.
    let mut message: Vec<u8> = Vec::new();
    loop {
        let mut header = [0u8; 4];
        match input.read_exact(&mut header) {
            Ok(()) => {}
            // Clean shutdown: the parent closed our stdin between messages.
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(err) => return Err(err),
        }
        let len = payload_len(header)?;
        if message.len() < 4 + len {
            message.resize(4 + len, 0);
        }
        message[..4].copy_from_slice(&header);
        input.read_exact(&mut message[4..4 + len])?;
        output.write_all(&message[..4 + len])?;
    }
}

/// Decodes a little-endian `u32` length header into a `usize`.
fn payload_len(header: [u8; 4]) -> io::Result<usize> {
    usize::try_from(u32::from_le_bytes(header))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "length does not fit usize"))
}

/// Parent side of the ping-pong: owns the echo child and both pipe ends.
///
/// Dropping a `PipeFloor` closes the child's stdin, drains its stdout and
/// reaps it (errors ignored), so no zombie is left behind.
#[derive(Debug)]
pub(crate) struct PipeFloor {
    /// The echo child process.
    child: Child,
    /// Write end of the child's stdin; `None` once shut down.
    stdin: Option<ChildStdin>,
    /// Buffered read end of the child's stdout.
    stdout: BufReader<ChildStdout>,
    /// Reusable buffer the echoed payload is read into.
    in_buf: Vec<u8>,
}

impl PipeFloor {
    /// Starts the echo child by re-executing `std::env::current_exe()` with a
    /// private environment marker, with stdin and stdout piped and stderr
    /// inherited.  No command-line arguments are passed to the child.
    pub(crate) fn start() -> io::Result<Self> {
        let mut child = Command::new(env::current_exe()?)
            .env(CHILD_ENV, CHILD_ENV_VALUE)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            // Unreachable with Stdio::piped(), but never leave a zombie.
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("echo child has no piped stdin/stdout"));
        };
        // A refusal keeps the default capacity: the floor still measures pipes.
        let _ = rustix::pipe::fcntl_setpipe_size(&stdin, PIPE_CAPACITY);
        let _ = rustix::pipe::fcntl_setpipe_size(&stdout, PIPE_CAPACITY);
        Ok(Self {
            child,
            stdin: Some(stdin),
            stdout: BufReader::with_capacity(READ_BUF_CAPACITY, stdout),
            in_buf: Vec::new(),
        })
    }

    /// Sends `payload` (as a `u32` little-endian length followed by the bytes)
    /// and reads the complete echo back.
    ///
    /// Fails with `InvalidInput` if the payload is longer than `u32::MAX`
    /// bytes, and with `InvalidData` if the echoed length differs (the echoed
    /// bytes themselves are only compared in debug builds, to keep the timed
    /// path free of a full-payload `memcmp`).
    pub(crate) fn round_trip(&mut self, payload: &[u8]) -> io::Result<()> {
        let len = u32::try_from(payload.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "payload exceeds u32::MAX"))?;
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "pipe floor is shut down"))?;

        let header = len.to_le_bytes();
        let mut slices = [IoSlice::new(&header), IoSlice::new(payload)];
        let mut unwritten = &mut slices[..];
        while !unwritten.is_empty() {
            match stdin.write_vectored(unwritten) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut unwritten, n),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }

        let mut header = [0u8; 4];
        self.stdout.read_exact(&mut header)?;
        let echoed = payload_len(header)?;
        if echoed != payload.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("echoed length {echoed} != sent length {}", payload.len()),
            ));
        }
        if self.in_buf.len() < echoed {
            self.in_buf.resize(echoed, 0);
        }
        self.stdout.read_exact(&mut self.in_buf[..echoed])?;
        debug_assert_eq!(self.in_buf[..echoed], *payload, "echo payload mismatch");
        Ok(())
    }

    /// Called by `Drop`: closes stdin (EOF for the
    /// child), drains stdout so a child blocked mid-echo can finish, then reaps.
    fn close_and_reap(&mut self) -> io::Result<process::ExitStatus> {
        drop(self.stdin.take());
        let drained = io::copy(&mut self.stdout, &mut io::sink());
        // Reap even if draining failed, so no zombie is left behind.
        let status = self.child.wait()?;
        drained.map(|_| status)
    }
}

impl Drop for PipeFloor {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.close_and_reap();
        }
    }
}

/// The floor as a backend: a no-op is 8 bytes there and back, a payload its bytes.
struct Floor(RefCell<PipeFloor>);

/// Starts the echo child; `spec` is ignored (the floor has one peer process).
pub(crate) fn start(spec: &PoolSpec) -> Result<Box<dyn Running>, String> {
    let _ = spec;
    Ok(Box::new(Floor(RefCell::new(PipeFloor::start().map_err(text)?))))
}

impl Running for Floor {
    fn noop(&self) -> Result<(), String> {
        self.0.borrow_mut().round_trip(&[0; 8]).map_err(text)
    }

    fn echo(&self, payload: ByteBuf) -> Result<ByteBuf, String> {
        self.0.borrow_mut().round_trip(&payload).map_err(text)?;
        Ok(payload)
    }
}
