//! A batch of large items keeps a bounded number of bytes in flight, whatever the number of
//! workers it plans for: the caller holds them until the server stores them, and the tasks
//! stream until agents finish them.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::PlainServer;
use serde_bytes::ByteBuf;
use taskpool_cluster::{ClusterConfig, Config, NextTimeout, Pool};

const MIB: usize = 1 << 20;

/// Waits until the file `go` exists in `dir` (at most ten minutes), then returns the
/// length of `bytes`.
fn hold((dir, bytes): (String, ByteBuf)) -> usize {
    let go = PathBuf::from(dir).join("go");
    let until = std::time::Instant::now() + Duration::from_secs(600);
    while !go.exists() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    bytes.len()
}

fn cheap(x: u32) -> u32 {
    x + 1
}

#[test]
fn a_batch_of_large_items_keeps_a_bounded_number_of_bytes_in_flight() {
    // Messages of 8 MiB: chunks of three items of a mebibyte.
    let Some(server) = PlainServer::configured("large_items", "max_payload: 8388608\n") else {
        return;
    };
    // Planned for many workers: four chunks each in flight, 66 chunks of 4 MiB.
    let config = ClusterConfig::new(server.url()).config(Config::new().workers(16));
    let (_agent, pool) = common::pool_on(&server.url(), config, 1, 1, &[]);
    // Measured cheap: later chunks are as large as their messages allow.
    assert_eq!(pool.map(cheap, 0..100).unwrap().len(), 100);
    let dir = common::markers("large_items");
    let pulled = AtomicUsize::new(0);
    let items = (0..300).map(|_| {
        pulled.fetch_add(1, Ordering::SeqCst);
        (dir.to_str().unwrap().to_string(), ByteBuf::from(vec![7u8; MIB]))
    });
    let mut results = pool.imap(hold, items);
    // Sends what the batch may have in flight, and finds no result: every item is held.
    assert!(results.next_timeout(Duration::ZERO).is_err(), "no item can finish yet");
    let ahead = pulled.load(Ordering::SeqCst);
    std::fs::write(dir.join("go"), b"").unwrap();
    // 64 MiB, and the chunk that reached it.
    assert!(ahead <= 64 + 3, "{ahead} items of a mebibyte in flight at once");
    let lens: Vec<usize> = results.map(Result::unwrap).collect();
    assert_eq!(lens, vec![MIB; 300]);
    std::fs::remove_dir_all(dir).unwrap();
}
