//! The errors of [`Queue`](crate::Queue) and [`Pipe`](crate::Pipe) operations: one type for
//! putting (which hands the value back) and one for getting.

use std::fmt;

/// Why a value was not put in a [`Queue`](crate::Queue) (or sent through a pipe's
/// [`End`](crate::End)). The value comes back in every case.
///
/// More causes may be added: a `match` on it needs a `_` arm (or use
/// [`PutError::into_inner`] to take the value back whatever the cause).
///
/// # Examples
///
/// ```
/// use taskpool_process::{PutError, Queue};
///
/// let queue = Queue::<u32>::bounded(1)?;
/// queue.try_put(1).unwrap();
/// assert!(matches!(queue.try_put(2), Err(PutError::Full(2))));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PutError<T> {
    /// The queue is full, and a handle that can get is left
    /// ([`Queue::try_put`](crate::Queue::try_put)).
    Full(T),
    /// The queue stayed full until the timeout
    /// ([`Queue::put_timeout`](crate::Queue::put_timeout)).
    Timeout(T),
    /// No handle that can get is left, in any live process: nobody would ever take it. Said
    /// whether or not the queue has room; see [`Queue::put`](crate::Queue::put) for when a
    /// getter whose process died is noticed.
    Disconnected(T),
    /// The encoded value is larger than the queue can ever hold: a queue made with more
    /// bytes ([`Queue::with_limits`](crate::Queue::with_limits), or
    /// [`Pipe::with_bytes`](crate::Pipe::with_bytes)) takes it.
    TooLarge {
        /// The value.
        value: T,
        /// Its encoded size in bytes.
        size: usize,
        /// The largest encoded value the queue holds.
        limit: usize,
    },
    /// The value could not be encoded (its `Serialize` implementation failed).
    Encode {
        /// The value.
        value: T,
        /// The encoder's message.
        reason: String,
    },
    /// The queue's shared memory holds impossible positions: a process wrote over it.
    Broken(T),
}

impl<T> PutError<T> {
    /// The value that was not put.
    ///
    /// # Examples
    ///
    /// ```
    /// use taskpool_process::Queue;
    ///
    /// let queue = Queue::<String>::bounded(1)?;
    /// queue.try_put("first".into()).unwrap();
    /// let err = queue.try_put("second".into()).unwrap_err();
    /// assert_eq!(err.into_inner(), "second");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(value)
            | PutError::Timeout(value)
            | PutError::Disconnected(value)
            | PutError::TooLarge { value, .. }
            | PutError::Encode { value, .. }
            | PutError::Broken(value) => value,
        }
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("Full(..)"),
            PutError::Timeout(_) => f.write_str("Timeout(..)"),
            PutError::Disconnected(_) => f.write_str("Disconnected(..)"),
            PutError::TooLarge { size, limit, .. } => {
                f.debug_struct("TooLarge").field("size", size).field("limit", limit).finish()
            }
            PutError::Encode { reason, .. } => {
                f.debug_struct("Encode").field("reason", reason).finish()
            }
            PutError::Broken(_) => f.write_str("Broken(..)"),
        }
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("the queue (or pipe) is full"),
            PutError::Timeout(_) => {
                f.write_str("the queue (or pipe) stayed full until the timeout")
            }
            PutError::Disconnected(_) => {
                f.write_str("no process can take from the queue (or the pipe's other end) any more")
            }
            PutError::TooLarge { size, limit, .. } => {
                write!(
                    f,
                    "the value takes {size} bytes encoded, and the queue (or pipe) holds at most {limit}: \
                     give it more bytes (`Queue::with_limits`, `Pipe::with_bytes`)"
                )
            }
            PutError::Encode { reason, .. } => write!(f, "the value cannot be encoded: {reason}"),
            PutError::Broken(_) => f.write_str(BROKEN),
        }
    }
}

impl<T> std::error::Error for PutError<T> {}

/// Why nothing was taken from a [`Queue`](crate::Queue) (or received on a pipe's
/// [`End`](crate::End)).
///
/// More causes may be added: a `match` on it needs a `_` arm.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use taskpool_process::{GetError, Queue};
///
/// let queue = Queue::<u32>::new()?;
/// assert_eq!(queue.try_get(), Err(GetError::Empty));
/// assert_eq!(queue.get_timeout(Duration::from_millis(1)), Err(GetError::Timeout));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GetError {
    /// The queue is empty, and a handle that can put is left
    /// ([`Queue::try_get`](crate::Queue::try_get)).
    Empty,
    /// The queue stayed empty until the timeout
    /// ([`Queue::get_timeout`](crate::Queue::get_timeout)).
    Timeout,
    /// The queue is empty and no handle that can put is left, in any live process: nothing
    /// will ever come. Said by every get, [`Queue::try_get`](crate::Queue::try_get)
    /// included.
    Disconnected,
    /// A message was taken but could not be decoded as the queue's type, or it holds
    /// [`SharedBytes`](crate::SharedBytes) (or a queue's or pipe's handle) that cannot be
    /// opened: because the process that put them is gone, or because this process cannot
    /// open or map them now (out of descriptors, `EMFILE`, or of address space). Either way
    /// the message is lost: it is not given again to a later get.
    Decode(String),
    /// The queue's shared memory holds impossible positions or lengths: a process wrote over
    /// it.
    Broken,
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Empty => f.write_str("the queue (or pipe) is empty"),
            GetError::Timeout => f.write_str("the queue (or pipe) stayed empty until the timeout"),
            GetError::Disconnected => {
                f.write_str("the queue (or pipe) is empty and no process can send to it any more")
            }
            GetError::Decode(reason) => write!(f, "a message cannot be decoded: {reason}"),
            GetError::Broken => f.write_str(BROKEN),
        }
    }
}

impl std::error::Error for GetError {}

/// What a `Broken` error says, putting or getting.
const BROKEN: &str = "the shared memory of the queue (or pipe) is broken: a process wrote over it";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_too_large_says_how_to_make_room_for_it() {
        let err = PutError::TooLarge { value: (), size: 10_003, limit: 4092 };
        assert_eq!(
            err.to_string(),
            "the value takes 10003 bytes encoded, and the queue (or pipe) holds at most 4092: \
             give it more bytes (`Queue::with_limits`, `Pipe::with_bytes`)"
        );
    }

    #[test]
    fn every_message_fits_a_pipe_as_well_as_a_queue() {
        let puts = [
            PutError::Full(()),
            PutError::Timeout(()),
            PutError::Disconnected(()),
            PutError::TooLarge { value: (), size: 2, limit: 1 },
            PutError::Broken(()),
        ];
        let gets = [GetError::Empty, GetError::Timeout, GetError::Disconnected, GetError::Broken];
        let texts = puts.iter().map(|e| e.to_string()).chain(gets.iter().map(|e| e.to_string()));
        for text in texts {
            assert!(text.contains("pipe"), "{text:?} speaks of a queue only");
        }
    }
}
