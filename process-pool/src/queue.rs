//! `Queue<T>`: a typed, bounded queue that many processes put into and get from, like
//! Python's `multiprocessing.Queue`; and its one-sided handles, [`Producer`] and [`Consumer`].

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::channel::{DEFAULT_BYTES, GetFail, PutFail, Roles};
use crate::codec;
use crate::handoff::{self, Handle, Unopened};
use crate::queue_error::{GetError, PutError};

/// How long a put or get may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// Not at all.
    No,
    /// Until then, or forever.
    Until(Option<Instant>),
}

impl Wait {
    pub(crate) fn for_(timeout: Duration) -> Wait {
        Wait::Until(Instant::now().checked_add(timeout))
    }
}

/// Decodes a message's value and drops it: what it handed off is received, and let go.
fn discard_as<T: DeserializeOwned>(message: &[u8]) {
    drop(codec::decode::<T>(message));
}

/// Tells `handle`'s channel how this process drops the values of messages nobody will get:
/// as `T`s, so that what they handed off (handles, shared bytes) is received, and their
/// senders let go of it (see `Shared::discard_abandoned`).
pub(crate) fn typed<T: DeserializeOwned>(handle: &Handle) {
    handle.channel().discard_with(discard_as::<T>);
}

/// Encodes `value` and puts it through `handle`.
///
/// A value that is not put comes back in the error, and what it handed off as it was encoded
/// (handles, shared bytes) is taken back: nothing will receive those copies.
pub(crate) fn put<T: Serialize + DeserializeOwned>(
    handle: &Handle,
    value: T,
    wait: Wait,
) -> Result<(), PutError<T>> {
    let mut bytes = Vec::new();
    let (encoded, handed_off) = handoff::undoable(|| codec::encode_into(&value, &mut bytes));
    if let Err(e) = encoded {
        handed_off.take_back();
        return Err(PutError::Encode { value, reason: e.to_string() });
    }
    let channel = handle.channel();
    if !handed_off.is_empty() {
        typed::<T>(handle);
        channel.carries_handoffs();
    }
    let done = match wait {
        Wait::No => channel.poll_put(&bytes),
        Wait::Until(deadline) => channel.put(&bytes, deadline),
    };
    match &done {
        Ok(()) => handed_off.sent(),
        Err(_) => handed_off.take_back(),
    }
    done.map_err(|fail| match fail {
        PutFail::Full => PutError::Full(value),
        PutFail::Timeout => PutError::Timeout(value),
        PutFail::Disconnected => PutError::Disconnected(value),
        PutFail::TooLarge => {
            PutError::TooLarge { value, size: bytes.len(), limit: channel.max_message() }
        }
        PutFail::Broken => PutError::Broken(value),
    })
}

/// Takes a message from `handle` and decodes it.
pub(crate) fn get<T: DeserializeOwned>(handle: &Handle, wait: Wait) -> Result<T, GetError> {
    typed::<T>(handle);
    let channel = handle.channel();
    let message = match wait {
        Wait::No => channel.poll_get(),
        Wait::Until(deadline) => channel.get(deadline),
    };
    let message = message.map_err(|fail| match fail {
        GetFail::Empty => GetError::Empty,
        GetFail::Timeout => GetError::Timeout,
        GetFail::Disconnected => GetError::Disconnected,
        GetFail::Broken => GetError::Broken,
    })?;
    codec::decode(&message).map_err(|e| GetError::Decode(e.to_string()))
}

/// A handle read from bytes, if it has the roles its type promises.
pub(crate) fn expect_roles<'de, D: Deserializer<'de>>(
    deserializer: D,
    roles: Roles,
    what: &str,
) -> Result<Handle, D::Error> {
    let handle = Unopened::deserialize(deserializer)?;
    if handle.roles() != roles {
        return Err(serde::de::Error::custom(format!("the handle is not a {what}")));
    }
    handle.open().map_err(serde::de::Error::custom)
}

/// Defines a typed handle: its struct, `Clone`, `Debug` and serde impls.
macro_rules! typed_handle {
    ($(#[$doc:meta])* $name:ident, $roles:expr) => {
        $(#[$doc])*
        pub struct $name<T> {
            handle: Handle,
            _type: PhantomData<fn(T) -> T>,
        }

        impl<T> $name<T> {
            fn from_handle(handle: Handle) -> Self {
                $name { handle, _type: PhantomData }
            }
        }

        impl<T> Clone for $name<T> {
            fn clone(&self) -> Self {
                Self::from_handle(self.handle.clone_same())
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(self.handle.channel()).finish()
            }
        }

        impl<T> Serialize for $name<T> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.handle.serialize(serializer)
            }
        }

        impl<'de, T> Deserialize<'de> for $name<T> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                expect_roles(deserializer, $roles, stringify!($name)).map(Self::from_handle)
            }
        }
    };
}

typed_handle!(
    /// A typed, bounded queue shared by threads and processes, like Python's
    /// `multiprocessing.Queue`: any number of processes put values in and get them out, in
    /// the order they were put.
    ///
    /// Values are encoded with the same serde codec as task arguments, and live in a sealed
    /// shared-memory `memfd` of a fixed size: 1 MiB of encoded values by default, chosen with
    /// [`Queue::bounded`] (a count of values, as Python's `maxsize`) or
    /// [`Queue::with_limits`] (bytes and a count). A value larger than the queue can hold
    /// fails at once with [`PutError::TooLarge`].
    ///
    /// A handle reaches another process as a task argument of a [`ProcessPool`](crate::ProcessPool)
    /// or a [`spawn`](crate::spawn) (or inside one): it is serialized, and the receiving
    /// process maps the same memory. The same handle works between threads too, on the
    /// thread backend. Cloning a handle is cheap; the queue lives while any handle does.
    /// Receiving one costs more: a process that does not map the queue yet opens and maps its
    /// memory (its first page pre-faulted, the rest as it is touched), and a worker whose task
    /// dropped its last handle unmaps it, so the next handle it receives maps it again (about
    /// 20 µs a handle, where a no-op item of a `map` costs well under a microsecond). For a
    /// `map` of many items, give the handle once, in a field of a [`Task`](crate::Task)
    /// struct (a worker decodes it once per batch), not with each item. Only taskpool writes
    /// a handle: serializing one with another serializer (`serde_json`, say, to log a struct
    /// that holds one) fails, since nothing would ever receive that copy and let its role go.
    ///
    /// A `Queue` handle both puts and gets. [`Queue::producer`] and [`Queue::consumer`]
    /// make handles that only put or only get: when every handle that can put is gone
    /// (dropped, or its process died, even killed in the middle of a put), getters drain what
    /// is left and then get [`GetError::Disconnected`], from [`get`](Queue::get) and
    /// [`try_get`](Queue::try_get) alike, instead of waiting or polling forever; and when
    /// every handle that can get is gone, puts fail with [`PutError::Disconnected`], room or
    /// not, and give the value back. A process that ends drops its handles, which takes
    /// effect at once. One that died without dropping them (killed) still counts until a
    /// getter or putter has to wait, or polls an empty or full queue: that one asks the
    /// kernel, and sees the death within about 20 ms. Until then a put that finds room
    /// succeeds, and the value is never read. A handle in the argument of a one-off process
    /// ([`spawn`](crate::spawn)) counts as the child's from the start, so a child killed
    /// before it read its argument takes it with it. A process killed while it held the queue's
    /// lock costs the others a wait of a few milliseconds, never the queue: nothing it
    /// half-wrote is ever read.
    ///
    /// A [`SharedBytes`](crate::SharedBytes) value is not copied into the queue: what the
    /// queue holds names the memory of the process that put it (`/proc/PID/fd/N`), which the
    /// getter opens as it decodes the value. The sender keeps that memory until then (a pool
    /// worker or [`spawn`](crate::spawn)ed process that ends waits up to 10 s for it, but a
    /// pool dropped or shut down kills its workers after its `shutdown_grace`, 1 s by
    /// default, and joining a one-off waits until it has ended); if the sender is gone first
    /// (killed, or exited), the get fails with [`GetError::Decode`] and the value is lost.
    /// Get such values before joining or dropping their senders. Send plain bytes
    /// (`Vec<u8>`) where the sender may end before the value is taken. A handle to a queue
    /// or pipe put on a queue crosses the same way, and its sender waits the same at its end:
    /// if every process that held that queue is gone before the handle is got, the get fails
    /// with [`GetError::Decode`]. Values (shared bytes,
    /// handles) still in the queue when its last handle that can get is dropped are dropped
    /// by that drop, so that their senders let go of them.
    ///
    /// # Examples
    ///
    /// ```
    /// use taskpool_process::{GetError, Queue, spawn};
    ///
    /// fn produce(queue: taskpool_process::Producer<u64>) {
    ///     for i in 0..100 {
    ///         queue.put(i * i).unwrap();
    ///     }
    /// } // the producer's only handle drops here
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let queue = Queue::<u64>::new()?;
    /// let child = spawn(produce, queue.producer()?)?;
    /// let results = queue.consumer()?;
    /// drop(queue); // this process only gets from now on
    ///
    /// let mut sum = 0;
    /// loop {
    ///     match results.get() {
    ///         Ok(square) => sum += square,
    ///         Err(GetError::Disconnected) => break, // every producer is gone
    ///         Err(e) => return Err(e.into()),
    ///     }
    /// }
    /// assert_eq!(sum, (0..100).map(|i| i * i).sum::<u64>());
    /// child.join()?;
    /// # Ok(())
    /// # }
    /// ```
    Queue,
    Roles::BOTH
);

typed_handle!(
    /// A handle to a [`Queue`] that only puts: while one lives (in a live process), getters
    /// of an empty queue wait (or are told [`GetError::Empty`]) rather than fail with
    /// [`GetError::Disconnected`].
    ///
    /// # Examples
    ///
    /// ```
    /// use taskpool_process::{PutError, Queue};
    ///
    /// let queue = Queue::<String>::new()?;
    /// let producer = queue.producer()?;
    /// producer.put("hello".to_string()).unwrap();
    /// assert_eq!(queue.get().as_deref(), Ok("hello"));
    ///
    /// drop(queue); // the last handle that can get
    /// let err = producer.put("anyone?".to_string()).unwrap_err();
    /// assert_eq!(err, PutError::Disconnected("anyone?".to_string()));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    Producer,
    Roles::PUT
);

typed_handle!(
    /// A handle to a [`Queue`] that only gets: while one lives (in a live process), puts
    /// succeed (or wait while the queue is full) rather than fail with
    /// [`PutError::Disconnected`].
    ///
    /// # Examples
    ///
    /// ```
    /// use taskpool_process::{GetError, Queue};
    ///
    /// let queue = Queue::<u8>::new()?;
    /// let consumer = queue.consumer()?;
    /// queue.put(7).unwrap();
    /// drop(queue); // the last handle that can put
    /// assert_eq!(consumer.get(), Ok(7));
    /// assert_eq!(consumer.get(), Err(GetError::Disconnected));
    /// assert_eq!(consumer.try_get(), Err(GetError::Disconnected));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    Consumer,
    Roles::GET
);

/// The put methods, shared by [`Queue`] and [`Producer`].
macro_rules! put_methods {
    () => {
        /// Puts `value` at the end of the queue, waiting while it is full.
        ///
        /// # Errors
        ///
        /// [`PutError::Disconnected`] if no handle that can get is left: at once, room or
        /// not, once every such handle was dropped (a process that ends drops its own); for
        /// one whose process died without dropping it, once this put waited for room about
        /// 20 ms (a put that finds room succeeds until then). [`PutError::TooLarge`] if the
        /// encoded value can never fit, [`PutError::Encode`], [`PutError::Broken`]. The
        /// value comes back in each.
        ///
        /// # Examples
        ///
        /// ```
        /// let queue = taskpool_process::Queue::<u32>::new()?;
        /// queue.put(1).unwrap();
        /// assert_eq!(queue.get(), Ok(1));
        /// # Ok::<(), std::io::Error>(())
        /// ```
        pub fn put(&self, value: T) -> Result<(), PutError<T>> {
            put(&self.handle, value, Wait::Until(None))
        }

        /// Puts `value` if there is room now.
        ///
        /// # Errors
        ///
        /// [`PutError::Full`] if there is no room now and a handle that can get is left;
        /// otherwise as [`put`](Self::put), without the wait: `Disconnected` rather than
        /// `Full` once no getter is left, so that a loop that retries on `Full` ends. A full
        /// queue whose getters all died without dropping their handles says `Full` until
        /// this process next asks the kernel whether they live, which a poll does at most
        /// every 20 ms.
        ///
        /// # Examples
        ///
        /// ```
        /// use taskpool_process::{PutError, Queue};
        ///
        /// let queue = Queue::<u32>::bounded(1)?;
        /// assert_eq!(queue.try_put(1), Ok(()));
        /// assert_eq!(queue.try_put(2), Err(PutError::Full(2)));
        /// # Ok::<(), std::io::Error>(())
        /// ```
        pub fn try_put(&self, value: T) -> Result<(), PutError<T>> {
            put(&self.handle, value, Wait::No)
        }

        /// Puts `value`, waiting at most `timeout` for room.
        ///
        /// # Errors
        ///
        /// [`PutError::Timeout`], or as [`put`](Self::put).
        ///
        /// # Examples
        ///
        /// ```
        /// use std::time::Duration;
        /// use taskpool_process::{PutError, Queue};
        ///
        /// let queue = Queue::<u32>::bounded(1)?;
        /// queue.put(1).unwrap();
        /// let err = queue.put_timeout(2, Duration::from_millis(1));
        /// assert_eq!(err, Err(PutError::Timeout(2)));
        /// # Ok::<(), std::io::Error>(())
        /// ```
        pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), PutError<T>> {
            put(&self.handle, value, Wait::for_(timeout))
        }
    };
}

/// The get methods, shared by [`Queue`] and [`Consumer`].
macro_rules! get_methods {
    () => {
        /// Takes the oldest value, waiting while the queue is empty.
        ///
        /// # Errors
        ///
        /// [`GetError::Disconnected`] once the queue is empty and no handle that can put is
        /// left: as soon as every such handle was dropped; for one whose process died
        /// without dropping it, once this get waited about 20 ms. [`GetError::Decode`] if a
        /// message is not a `T`, or holds [`SharedBytes`](crate::SharedBytes) whose sending
        /// process is gone, or that this process cannot open now (out of descriptors): the
        /// message is lost; [`GetError::Broken`].
        ///
        /// # Examples
        ///
        /// ```
        /// let queue = taskpool_process::Queue::<String>::new()?;
        /// queue.put("first".to_string()).unwrap();
        /// assert_eq!(queue.get().as_deref(), Ok("first"));
        /// # Ok::<(), std::io::Error>(())
        /// ```
        pub fn get(&self) -> Result<T, GetError> {
            get(&self.handle, Wait::Until(None))
        }

        /// Takes the oldest value if there is one now.
        ///
        /// # Errors
        ///
        /// [`GetError::Empty`] if the queue is empty and a handle that can put is left;
        /// otherwise as [`get`](Self::get), without the wait: [`GetError::Disconnected`] once
        /// the queue is empty and no putter is left, so that a polling loop ends. Putters
        /// that all died without dropping their handles are noticed when this process next
        /// asks the kernel whether they live, which a poll does at most every 20 ms.
        ///
        /// # Examples
        ///
        /// ```
        /// use taskpool_process::{GetError, Queue};
        ///
        /// let queue = Queue::<u32>::new()?;
        /// assert_eq!(queue.try_get(), Err(GetError::Empty));
        /// # Ok::<(), std::io::Error>(())
        /// ```
        pub fn try_get(&self) -> Result<T, GetError> {
            get(&self.handle, Wait::No)
        }

        /// Takes the oldest value, waiting at most `timeout` for one.
        ///
        /// # Errors
        ///
        /// [`GetError::Timeout`], or as [`get`](Self::get).
        ///
        /// # Examples
        ///
        /// ```
        /// use std::time::Duration;
        /// use taskpool_process::{GetError, Queue};
        ///
        /// let queue = Queue::<u32>::new()?;
        /// assert_eq!(queue.get_timeout(Duration::from_millis(1)), Err(GetError::Timeout));
        /// # Ok::<(), std::io::Error>(())
        /// ```
        pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
            get(&self.handle, Wait::for_(timeout))
        }
    };
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// A queue of 1 MiB of encoded values.
    ///
    /// # Errors
    ///
    /// The kernel refused the shared memory: [`ErrorKind::Unsupported`](std::io::ErrorKind)
    /// where it has no `memfd` (whatever carries the pool's own messages), and
    /// [`ErrorKind::FileTooLarge`](std::io::ErrorKind) past the process's file-size limit
    /// (`RLIMIT_FSIZE`, which counts shared memory as a file).
    ///
    /// # Examples
    ///
    /// ```
    /// let queue = taskpool_process::Queue::<(u32, String)>::new()?;
    /// queue.put((1, "one".into())).unwrap();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new() -> std::io::Result<Self> {
        Self::with_limits(DEFAULT_BYTES, None)
    }

    /// A queue of at most `max_values` values (and 1 MiB of them encoded), like Python's
    /// `Queue(maxsize)`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](std::io::ErrorKind) if `max_values` is zero; as
    /// [`Queue::new`] if the kernel refused the shared memory.
    ///
    /// # Examples
    ///
    /// ```
    /// let queue = taskpool_process::Queue::<u32>::bounded(2)?;
    /// queue.put(1).unwrap();
    /// queue.put(2).unwrap();
    /// assert!(queue.try_put(3).is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn bounded(max_values: usize) -> std::io::Result<Self> {
        Self::with_limits(DEFAULT_BYTES, Some(max_values))
    }

    /// A queue of `bytes` bytes of encoded values (each takes its encoded size and 4 bytes),
    /// and at most `max_values` values if given.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`](std::io::ErrorKind) if `bytes` is under 64 or over 4 GiB
    /// or `max_values` is zero; as [`Queue::new`] if the kernel refused the shared memory.
    ///
    /// # Examples
    ///
    /// ```
    /// use taskpool_process::{PutError, Queue};
    ///
    /// let queue = Queue::<Vec<u8>>::with_limits(4096, None)?;
    /// let err = queue.put(vec![0; 10_000]).unwrap_err();
    /// assert!(matches!(err, PutError::TooLarge { .. }), "{err}");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_limits(bytes: usize, max_values: Option<usize>) -> std::io::Result<Self> {
        let max = max_values.map_or(u64::MAX, |n| n as u64);
        let handle = Handle::create(bytes, max, Roles::BOTH)?;
        typed::<T>(&handle);
        Ok(Self::from_handle(handle))
    }

    /// A handle to this queue that only puts.
    ///
    /// # Errors
    ///
    /// The queue is broken.
    ///
    /// # Examples
    ///
    /// ```
    /// let queue = taskpool_process::Queue::<u32>::new()?;
    /// queue.producer()?.put(5).unwrap();
    /// assert_eq!(queue.get(), Ok(5));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn producer(&self) -> std::io::Result<Producer<T>> {
        self.handle.with_roles(Roles::PUT).map(Producer::from_handle)
    }

    /// A handle to this queue that only gets.
    ///
    /// A [`Queue`] can put as well, so a get on a queue whose `Queue` handle is kept never
    /// fails with [`GetError::Disconnected`]: it waits for a value its own holder might put.
    /// To read until the producers are done, read from a consumer and drop the `Queue` (the
    /// second example; a loop of `queue.get()` there would wait for ever once the
    /// producer is gone).
    ///
    /// # Errors
    ///
    /// The queue is broken.
    ///
    /// # Examples
    ///
    /// ```
    /// let queue = taskpool_process::Queue::<u32>::new()?;
    /// queue.put(5).unwrap();
    /// assert_eq!(queue.consumer()?.get(), Ok(5));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// Reading until every producer has dropped its handle (or ended):
    ///
    /// ```
    /// let queue = taskpool_process::Queue::<u32>::new()?;
    /// let (producer, consumer) = (queue.producer()?, queue.consumer()?);
    /// drop(queue);
    /// let putter = std::thread::spawn(move || {
    ///     for x in 0..3 {
    ///         producer.put(x).unwrap();
    ///     }
    /// });
    /// let mut got = Vec::new();
    /// while let Ok(x) = consumer.get() {
    ///     got.push(x);
    /// }
    /// assert_eq!(got, [0, 1, 2]);
    /// putter.join().unwrap();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn consumer(&self) -> std::io::Result<Consumer<T>> {
        self.handle.with_roles(Roles::GET).map(Consumer::from_handle)
    }

    /// The number of values waiting now; others may change it at once.
    ///
    /// # Examples
    ///
    /// ```
    /// let queue = taskpool_process::Queue::<u32>::new()?;
    /// queue.put(5).unwrap();
    /// assert_eq!(queue.len(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.handle.channel().len_now()
    }

    /// Whether no value waits now; others may change it at once.
    ///
    /// # Examples
    ///
    /// ```
    /// let queue = taskpool_process::Queue::<u32>::new()?;
    /// assert!(queue.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The largest encoded value the queue holds, in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let queue = taskpool_process::Queue::<u32>::with_limits(4096, None)?;
    /// assert_eq!(queue.max_value_bytes(), 4092);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn max_value_bytes(&self) -> usize {
        self.handle.channel().max_message()
    }

    put_methods!();
    get_methods!();
}

impl<T: Serialize + DeserializeOwned> Producer<T> {
    put_methods!();
}

impl<T: Serialize + DeserializeOwned> Consumer<T> {
    get_methods!();
}
