//! Large arguments and results: a round trip of 1 MiB and of 64 MiB through a pool worker,
//! as a `serde_bytes::ByteBuf` (copied through the worker's transport each way) and as a
//! `SharedBytes` (written once, read in place by the worker and back): the same value each
//! time (which the worker finds already mapped or maps again: no byte is copied), and a new
//! value each time, made before the clock starts (the worker maps pages it never saw).
//!
//! Each kind runs in rounds of its own: after a 64 MiB `ByteBuf` echo, the worker and the
//! caller give back the pages of their 64 MiB buffers, which takes milliseconds and would
//! land on the clock of whatever round trip came next.
//!
//! Run with `cargo run --release -p taskpool-process --example shared_bytes`.

use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;
use taskpool_process::{Pool, ProcessPool, SharedBytes};

/// Reads the argument in place (its last byte) and returns it.
fn echo_shared(data: SharedBytes) -> SharedBytes {
    std::hint::black_box(data.last());
    data
}

/// Returns its argument.
fn echo_buf(data: ByteBuf) -> ByteBuf {
    data
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = ProcessPool::new(1)?;
    for (len, rounds) in [(1usize << 20, 50), (64 << 20, 9)] {
        let mut buf = Some(ByteBuf::from(vec![7u8; len]));
        let mut as_buf = Vec::new();
        for _ in 0..rounds {
            let start = Instant::now();
            let back = pool.apply(echo_buf, buf.take().unwrap_or_default())?;
            as_buf.push(start.elapsed());
            buf = Some(back);
        }
        drop(buf);

        let shared = SharedBytes::copy_from_slice(&vec![7u8; len])?;
        let mut as_same = Vec::new();
        for _ in 0..rounds {
            let start = Instant::now();
            let back = pool.apply(echo_shared, shared.clone())?;
            as_same.push(start.elapsed());
            assert_eq!(back.len(), len, "a short echo");
        }

        let mut as_new = Vec::new();
        for _ in 0..rounds {
            let fresh = SharedBytes::new(len, |out| out.fill(7))?;
            let start = Instant::now();
            let back = pool.apply(echo_shared, fresh)?;
            as_new.push(start.elapsed());
            assert_eq!(back.len(), len, "a short echo");
        }
        println!(
            "{:>3} MiB round trip, median of {rounds}: ByteBuf {:.2?}, SharedBytes {:.2?} \
             (the same value) and {:.2?} (a new value each time)",
            len >> 20,
            median(as_buf),
            median(as_same),
            median(as_new)
        );
    }
    Ok(())
}
