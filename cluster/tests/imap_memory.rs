//! An `imap` whose consumer is slower than the agents keeps a bounded number of bytes of
//! results ahead of it: once it has seen what its results weigh, it pulls no more items than
//! 64 MiB of such results, whatever its window of items. It kept as many items as its chunks
//! in flight carried (four per worker and two more), a gibibyte or more of large results
//! waiting in the caller for a consumer that reads one at a time.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_bytes::ByteBuf;
use taskpool_cluster::{ClusterConfig, Config, Pool};

/// Each result's size.
const RESULT: usize = 2 << 20;
/// The items of the `imap`: twice what its chunks in flight take at first.
const ITEMS: usize = 160;
/// Items to a chunk, so that what the chunks in flight carry does not hang on timing.
const CHUNK: usize = 8;

fn result_of(_: u32) -> ByteBuf {
    ByteBuf::from(vec![7u8; RESULT])
}

#[test]
fn a_slow_imap_keeps_a_bounded_number_of_result_bytes_ahead() {
    let Some(server) = common::server("imap_memory") else { return };
    let config =
        ClusterConfig::new(server.url()).config(Config::new().workers(2).chunk_size(CHUNK));
    let (_agent, pool) = common::pool_on(&server.url(), config, 1, 2, &[]);
    let pulled = AtomicUsize::new(0);
    let items = (0..ITEMS as u32).inspect(|_| {
        pulled.fetch_add(1, Ordering::SeqCst);
    });
    let mut results = pool.imap(result_of, items);
    // What the first chunks (sent before any result was seen) carried is yielded first.
    let first = 4 * 2 + 2;
    for consumed in 1..=ITEMS {
        let value = results.next().expect("an outcome per item").expect("a result");
        assert_eq!(value.len(), RESULT);
        let ahead = pulled.load(Ordering::SeqCst) - consumed;
        if consumed >= first * CHUNK {
            assert!(ahead <= (64 << 20) / RESULT, "{ahead} results of 2 MiB ahead of the consumer");
        }
    }
    assert!(results.next().is_none());
}
