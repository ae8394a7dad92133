//! How a `map` takes its input: large items go to the workers while the caller still encodes
//! the next ones, and a long input is encoded as the workers go, never all before them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_bytes::ByteBuf;
use taskpool_process::{Pool, ProcessPool};

/// A directory of this test's own.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("taskpool-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Appends one byte to `DIR/done` (one per item run), then works `millis` on the item: the
/// file's length is how many items ran.
fn mark_done((dir, millis, bytes): (String, u64, ByteBuf)) -> usize {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(Path::new(&dir).join("done"))
        .unwrap();
    file.write_all(b".").unwrap();
    std::thread::sleep(Duration::from_millis(millis));
    bytes.len()
}

/// How many items ran, by `DIR/done`'s length.
fn done(dir: &Path) -> usize {
    std::fs::metadata(dir.join("done")).map_or(0, |m| m.len() as usize)
}

#[test]
fn a_map_of_large_items_starts_running_before_its_input_ends() {
    let dir = scratch("map-large-first");
    let pool = ProcessPool::new(2).unwrap();
    let text = dir.to_str().unwrap().to_owned();
    // The input waits at its 200th item (20 MiB in) until a worker ran one: a map that
    // sent its items only in runs of thousands would wait for ever.
    let items = (0..400usize).map(|i| {
        if i == 200 {
            let deadline = Instant::now() + Duration::from_secs(60);
            while done(&dir) == 0 {
                assert!(Instant::now() < deadline, "no item ran while the input was taken");
                std::thread::yield_now();
            }
        }
        (text.clone(), 0, ByteBuf::from(vec![7u8; 100 << 10]))
    });
    let lengths = pool.map(mark_done, items).unwrap();
    assert_eq!(lengths, vec![100 << 10; 400]);
    assert_eq!(done(&dir), 400);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_map_of_a_long_input_encodes_it_as_the_workers_go() {
    let dir = scratch("map-ahead");
    let pool = ProcessPool::new(2).unwrap();
    let text = dir.to_str().unwrap().to_owned();
    // 1 MiB items that take 2 ms each: encoded all at once, the input would be taken in a
    // fraction of the time the workers need. The map holds at most 64 MiB of encoded items
    // waiting for their results, and takes items in runs of 4 MiB: 68 items ahead of the
    // results it received, and an item runs before its result is received.
    let mut most_ahead = 0;
    let items = (0..300usize).map(|i| {
        most_ahead = most_ahead.max(i - done(&dir).min(i));
        (text.clone(), 2, ByteBuf::from(vec![7u8; 1 << 20]))
    });
    let lengths = pool.map(mark_done, items).unwrap();
    assert_eq!(lengths, vec![1 << 20; 300]);
    assert!(most_ahead <= 68, "the input was taken {most_ahead} items ahead of the workers");
    std::fs::remove_dir_all(&dir).unwrap();
}
