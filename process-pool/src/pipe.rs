//! `Pipe`: two connected ends, each sending to the other, like Python's
//! `multiprocessing.Pipe()`.

use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::channel::{DEFAULT_BYTES, Roles};
use crate::handoff::{Handle, Unopened};
use crate::queue::{Wait, get, put, typed};
use crate::queue_error::{GetError, PutError};

/// Makes connected pairs of [`End`]s: what Python's `multiprocessing.Pipe()` returns.
///
/// The pipe is duplex, as Python's is by default: each end sends values to the other and
/// receives what the other sent, in order. Each direction is a bounded queue in shared
/// memory (1 MiB of encoded values unless [`Pipe::with_bytes`] says otherwise). An end
/// reaches another process as a task argument, like a [`Queue`](crate::Queue); when one end
/// is dropped (a process that ends drops its own) or its process dies, the other receives
/// what was already sent and then [`GetError::Disconnected`] (from `recv` and `try_recv`
/// alike), and its sends fail with [`PutError::Disconnected`], room or not. An end whose
/// process died without dropping it (killed) is noticed as a queue's handles are: by a
/// receive or send that waits or polls, within about 20 ms; until then a send that finds
/// room succeeds. [`SharedBytes`](crate::SharedBytes) sent through a pipe refer to the
/// sender's memory, as through a queue: if the sender is gone before the other end receives
/// them, that receive fails with [`GetError::Decode`]. For one-way traffic, use one end to
/// send and the other to receive.
///
/// # Examples
///
/// ```
/// use taskpool_process::{End, Pipe, spawn};
///
/// fn echo_upper(end: End<String>) {
///     while let Ok(word) = end.recv() {
///         end.send(word.to_uppercase()).unwrap();
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (here, there) = Pipe::new::<String>()?;
/// let child = spawn(echo_upper, there)?;
/// here.send("ping".to_string())?;
/// assert_eq!(here.recv()?, "PING");
/// drop(here); // the child's `recv` fails: it returns
/// child.join()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Pipe;

impl Pipe {
    /// A connected pair of ends, each direction holding 1 MiB of encoded values.
    ///
    /// # Errors
    ///
    /// The kernel refused the shared memory: [`ErrorKind::Unsupported`](std::io::ErrorKind)
    /// where it has no `memfd` (whatever carries the pool's own messages).
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = taskpool_process::Pipe::new::<u32>()?;
    /// a.send(1).unwrap();
    /// assert_eq!(b.recv(), Ok(1));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[allow(clippy::new_ret_no_self)]
    pub fn new<T: Serialize + DeserializeOwned>() -> std::io::Result<(End<T>, End<T>)> {
        Pipe::with_bytes(DEFAULT_BYTES)
    }

    /// A connected pair of ends, each direction holding `bytes` bytes of encoded values
    /// (each takes its encoded size and 4 bytes).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](std::io::ErrorKind) if `bytes` is under 64 or over 4 GiB;
    /// as [`Pipe::new`] if the kernel refused the shared memory.
    ///
    /// # Examples
    ///
    /// ```
    /// use taskpool_process::{Pipe, PutError};
    ///
    /// let (a, _b) = Pipe::with_bytes::<Vec<u8>>(4096)?;
    /// assert!(matches!(a.send(vec![1; 8192]), Err(PutError::TooLarge { .. })));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_bytes<T: Serialize + DeserializeOwned>(
        bytes: usize,
    ) -> std::io::Result<(End<T>, End<T>)> {
        let there = Handle::create(bytes, u64::MAX, Roles::PUT)?;
        let back = Handle::create(bytes, u64::MAX, Roles::PUT)?;
        typed::<T>(&there);
        typed::<T>(&back);
        let b = End::of(back.with_roles(Roles::PUT)?, there.with_roles(Roles::GET)?);
        let a = End::of(there, back.with_roles(Roles::GET)?);
        drop(back);
        Ok((a, b))
    }
}

/// One end of a [`Pipe`]: sends to the other end, receives from it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use taskpool_process::{GetError, Pipe, PutError};
///
/// let (a, b) = Pipe::new::<u32>()?;
/// b.send(2).unwrap();
/// assert_eq!(a.recv_timeout(Duration::from_secs(1)), Ok(2));
/// drop(b);
/// assert_eq!(a.recv(), Err(GetError::Disconnected));
/// assert_eq!(a.send(3), Err(PutError::Disconnected(3)));
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct End<T> {
    out: Handle,
    inbox: Handle,
    /// A receive found the other end gone: its sends fail too, even where the process of
    /// the other end died unseen by the outgoing direction (which only a wait or a poll of
    /// that direction would notice).
    other_gone: AtomicBool,
    _type: PhantomData<fn(T) -> T>,
}

impl<T> fmt::Debug for End<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("End")
            .field("out", self.out.channel())
            .field("in", self.inbox.channel())
            .finish()
    }
}

impl<T> End<T> {
    /// The end that sends on `out` and receives on `inbox`.
    fn of(out: Handle, inbox: Handle) -> Self {
        End { out, inbox, other_gone: AtomicBool::new(false), _type: PhantomData }
    }
}

impl<T: Serialize + DeserializeOwned> End<T> {
    /// Sends `value` to the other end, waiting while the direction is full.
    ///
    /// # Errors
    ///
    /// As [`Queue::put`](crate::Queue::put): [`PutError::Disconnected`], room or not, once
    /// the other end is gone (dropped; for a process that died without dropping it, once
    /// this send waited for room about 20 ms).
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = taskpool_process::Pipe::new::<u32>()?;
    /// a.send(1).unwrap();
    /// assert_eq!(b.recv(), Ok(1));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send(&self, value: T) -> Result<(), PutError<T>> {
        self.send_unless_gone(value, Wait::Until(None))
    }

    /// Sends `value` if there is room now.
    ///
    /// # Errors
    ///
    /// As [`Queue::try_put`](crate::Queue::try_put): [`PutError::Full`] if there is no room
    /// now and the other end is there; otherwise as [`send`](Self::send), without the wait
    /// (`Disconnected` rather than `Full` once the other end is gone).
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = taskpool_process::Pipe::new::<u32>()?;
    /// a.try_send(1).unwrap();
    /// assert_eq!(b.try_recv(), Ok(1));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_send(&self, value: T) -> Result<(), PutError<T>> {
        self.send_unless_gone(value, Wait::No)
    }

    /// Receives the oldest value the other end sent, waiting for one.
    ///
    /// # Errors
    ///
    /// [`GetError::Disconnected`] once nothing is left and the other end is gone; otherwise
    /// as [`Queue::get`](crate::Queue::get) ([`GetError::Decode`] for shared bytes whose
    /// sender is gone, or that this process is out of descriptors to open, say: the value is
    /// lost).
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = taskpool_process::Pipe::new::<String>()?;
    /// b.send("hi".into()).unwrap();
    /// assert_eq!(a.recv().as_deref(), Ok("hi"));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv(&self) -> Result<T, GetError> {
        self.receive(Wait::Until(None))
    }

    /// Receives a value if one waits now.
    ///
    /// # Errors
    ///
    /// As [`Queue::try_get`](crate::Queue::try_get): [`GetError::Empty`] if nothing waits
    /// and the other end is there; otherwise as [`recv`](Self::recv), without the wait
    /// ([`GetError::Disconnected`] once nothing is left and the other end is gone).
    ///
    /// # Examples
    ///
    /// ```
    /// use taskpool_process::{GetError, Pipe};
    ///
    /// let (a, b) = Pipe::new::<u32>()?;
    /// assert_eq!(a.try_recv(), Err(GetError::Empty));
    /// drop(b);
    /// assert_eq!(a.try_recv(), Err(GetError::Disconnected));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_recv(&self) -> Result<T, GetError> {
        self.receive(Wait::No)
    }

    /// Receives a value, waiting at most `timeout` for one (Python's `poll(timeout)` then
    /// `recv()`).
    ///
    /// # Errors
    ///
    /// [`GetError::Timeout`], or as [`recv`](Self::recv).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use taskpool_process::{GetError, Pipe};
    ///
    /// let (a, _b) = Pipe::new::<u32>()?;
    /// assert_eq!(a.recv_timeout(Duration::from_millis(1)), Err(GetError::Timeout));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.receive(Wait::for_(timeout))
    }

    /// Sends, unless a receive already found the other end gone.
    fn send_unless_gone(&self, value: T, wait: Wait) -> Result<(), PutError<T>> {
        if self.other_gone.load(Ordering::Relaxed) {
            return Err(PutError::Disconnected(value));
        }
        put(&self.out, value, wait)
    }

    /// Receives, and remembers when the other end is gone (both directions are its).
    fn receive(&self, wait: Wait) -> Result<T, GetError> {
        let got = get(&self.inbox, wait);
        if matches!(got, Err(GetError::Disconnected)) {
            self.other_gone.store(true, Ordering::Relaxed);
        }
        got
    }
}

impl<T> Serialize for End<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&self.out, &self.inbox).serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for End<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let (out, inbox) = <(Unopened, Unopened)>::deserialize(deserializer)?;
        if out.roles() != Roles::PUT || inbox.roles() != Roles::GET {
            return Err(D::Error::custom("the handle is not a pipe end"));
        }
        let (out, inbox) =
            (out.open().map_err(D::Error::custom)?, inbox.open().map_err(D::Error::custom)?);
        Ok(End::of(out, inbox))
    }
}
