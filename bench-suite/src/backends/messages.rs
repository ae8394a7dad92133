//! taskpool's `Queue` and `Pipe` as the message rows use them: a one-off `spawn`ed producer
//! sends a marker, N small integers and a sentinel; this process takes them and times the
//! marker-to-sentinel stretch.

use std::time::{Duration, Instant};

use taskpool_process::{End, GetError, Pipe, Producer, Queue, spawn};

use crate::scenarios::Channel;

/// The first message, which starts the clock.
const MARKER: i64 = -1;

/// Sends `n` small messages through `channel` from a fresh child process to this one and
/// returns the time from the first message's arrival to the last one's (the child's start
/// and exit are left out).
///
/// # Errors
///
/// The channel or the child could not be made, a side saw the other disconnect, or the
/// messages did not arrive as sent.
///
/// # Examples
///
/// ```
/// use taskpool_bench::{Channel, messages};
///
/// let elapsed = messages(Channel::Pipe, 1000)?;
/// println!("{:.0} messages/s", 1000.0 / elapsed.as_secs_f64());
/// # Ok::<(), String>(())
/// ```
pub fn messages(channel: Channel, n: u64) -> Result<Duration, String> {
    let n = i64::try_from(n).map_err(|_| format!("{n} messages are too many"))?;
    let text = |e: &dyn std::fmt::Display| e.to_string();
    match channel {
        Channel::Queue => {
            let queue = Queue::<Option<i64>>::new().map_err(|e| text(&e))?;
            let producer = queue.producer().map_err(|e| text(&e))?;
            let child = spawn(queue_producer, (producer, n)).map_err(|e| text(&e))?;
            let elapsed = drain(n, || queue.get());
            // A producer stopped early by a failed drain sees the consumer gone, and exits.
            drop(queue);
            child.join().map_err(|e| text(&e))?;
            elapsed
        }
        Channel::Pipe => {
            let (here, there) = Pipe::new::<Option<i64>>().map_err(|e| text(&e))?;
            let child = spawn(pipe_producer, (there, n)).map_err(|e| text(&e))?;
            let elapsed = drain(n, || here.recv());
            drop(here);
            child.join().map_err(|e| text(&e))?;
            elapsed
        }
    }
}

/// In the child: the marker, `n` integers and the sentinel (`None`) into a queue. A failed
/// `put` means the parent is gone, and the parent then reports it.
fn queue_producer((queue, n): (Producer<Option<i64>>, i64)) {
    let _ = produce(n, |m| queue.put(m).is_ok());
}

/// The same through a pipe's end.
fn pipe_producer((end, n): (End<Option<i64>>, i64)) {
    let _ = produce(n, |m| end.send(m).is_ok());
}

/// Sends the marker, `0..n` and `None` with `send` while it succeeds.
fn produce(n: i64, send: impl Fn(Option<i64>) -> bool) -> bool {
    send(Some(MARKER)) && (0..n).all(|i| send(Some(i))) && send(None)
}

/// Takes messages with `get`: the marker, then integers until the sentinel; the time from the
/// marker to the sentinel.
fn drain(n: i64, get: impl Fn() -> Result<Option<i64>, GetError>) -> Result<Duration, String> {
    if get().map_err(|e| e.to_string())? != Some(MARKER) {
        return Err("the first message is not the marker".into());
    }
    let start = Instant::now();
    let mut count = 0;
    while let Some(value) = get().map_err(|e| e.to_string())? {
        if value != count {
            return Err(format!("message {count} arrived as {value}"));
        }
        count += 1;
    }
    let elapsed = start.elapsed();
    if count != n {
        return Err(format!("{count} messages arrived, not {n}"));
    }
    Ok(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_arrives_in_order_through_both_channels() {
        for channel in Channel::ALL {
            let elapsed = messages(channel, 2000).unwrap();
            assert!(elapsed > Duration::ZERO, "{channel:?}");
        }
    }

    #[test]
    fn a_missing_or_extra_message_is_an_error() {
        let sent = std::cell::RefCell::new(vec![Some(-1), Some(0), Some(2), None].into_iter());
        let next = || Ok(sent.borrow_mut().next().flatten());
        assert_eq!(drain(3, next).unwrap_err(), "message 1 arrived as 2");
        let sent = std::cell::RefCell::new(vec![Some(-1), Some(0), None].into_iter());
        let next = || Ok(sent.borrow_mut().next().flatten());
        assert_eq!(drain(2, next).unwrap_err(), "1 messages arrived, not 2");
        let sent = std::cell::RefCell::new(vec![Some(0)].into_iter());
        let next = || Ok(sent.borrow_mut().next().flatten());
        assert_eq!(drain(0, next).unwrap_err(), "the first message is not the marker");
    }
}
