//! Large arguments and results: a round trip of 1 MiB and of 64 MiB through a pool worker,
//! as a `serde_bytes::ByteBuf` (copied through the worker's transport each way) and as a
//! `SharedBytes` (written once, read in place by the worker and back).
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
        let shared = SharedBytes::copy_from_slice(&vec![7u8; len])?;
        let (mut as_buf, mut as_shared) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let start = Instant::now();
            let back = pool.apply(echo_buf, buf.take().unwrap_or_default())?;
            as_buf.push(start.elapsed());
            buf = Some(back);
            let start = Instant::now();
            let back = pool.apply(echo_shared, shared.clone())?;
            as_shared.push(start.elapsed());
            assert_eq!(back.len(), len, "a short echo");
        }
        println!(
            "{:>3} MiB round trip, median of {rounds}: ByteBuf {:.2?}, SharedBytes {:.2?}",
            len >> 20,
            median(as_buf),
            median(as_shared)
        );
    }
    Ok(())
}
