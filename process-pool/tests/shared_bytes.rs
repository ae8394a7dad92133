//! `SharedBytes` as task arguments and results: 1 MiB and 64 MiB round trips through pool
//! workers and one-off processes arrive whole, read in place, and a worker's own result
//! reaches the parent after the worker has dropped it; bytes whose sender died before they
//! were opened fail to decode with an error that says so.

mod common;

use common::{made, pattern};
use taskpool_process::{Pool, ProcessPool, SharedBytes, spawn};

/// Returns what it got.
fn echo(data: SharedBytes) -> SharedBytes {
    data
}

/// Returns a new value made in the worker: each byte plus one.
fn plus_one(data: SharedBytes) -> SharedBytes {
    SharedBytes::new(data.len(), |out| {
        for (o, &b) in out.iter_mut().zip(data.iter()) {
            *o = b.wrapping_add(1);
        }
    })
    .unwrap()
}

/// The worker's view: length and a checksum of what it read in place.
fn checksum(data: SharedBytes) -> (usize, u64) {
    (data.len(), data.iter().map(|&b| u64::from(b)).sum())
}

fn checksum_of(len: usize, seed: u8) -> u64 {
    (0..len).map(|i| u64::from(pattern(seed, i))).sum()
}

fn is_pattern(data: &[u8], seed: u8) -> bool {
    data.iter().enumerate().all(|(i, &b)| b == pattern(seed, i))
}

#[test]
fn one_and_sixty_four_mib_round_trip_through_pool_workers() {
    let pool = ProcessPool::new(2).unwrap();
    for len in [1 << 20, 64 << 20] {
        let data = made(len, 5);
        assert_eq!(pool.apply(checksum, data.clone()).unwrap(), (len, checksum_of(len, 5)));
        let back = pool.apply(echo, data.clone()).unwrap();
        assert_eq!(back.len(), len);
        assert!(is_pattern(&back, 5), "the echo of {len} bytes is whole");
        let changed = pool.apply(plus_one, data).unwrap();
        assert!(is_pattern(&changed, 6), "the worker's own {len} bytes arrived whole");
    }
}

#[test]
fn a_one_off_process_reads_and_returns_shared_bytes() {
    let data = made(1 << 20, 9);
    let child = spawn(plus_one, data.clone()).unwrap();
    let back = child.join().unwrap();
    assert!(is_pattern(&back, 10));
    assert!(is_pattern(&data, 9), "the original is unchanged");
    let empty = spawn(echo, SharedBytes::copy_from_slice(&[]).unwrap()).unwrap();
    assert!(empty.join().unwrap().is_empty());
}

/// Puts shared bytes it made, then its pid, then waits to be killed.
fn put_then_wait(
    (bytes, pids): (taskpool_process::Producer<SharedBytes>, taskpool_process::Producer<u32>),
) {
    bytes.put(made(4096, 7)).unwrap();
    pids.put(std::process::id()).unwrap();
    common::sleep_ms(600_000);
}

#[test]
fn bytes_whose_sender_was_killed_before_they_were_got_fail_naming_that_process() {
    use taskpool_process::{Exit, GetError, Queue, TaskError};
    common::within("bytes whose sender died", || {
        let (bytes, pids) = (Queue::<SharedBytes>::new().unwrap(), Queue::<u32>::new().unwrap());
        let pool = ProcessPool::new(1).unwrap();
        let sender =
            pool.submit(put_then_wait, (bytes.producer().unwrap(), pids.producer().unwrap()));
        let pid = pids.get().unwrap();
        // SAFETY: kill has no memory effects; the pid is our pool's live worker.
        assert_eq!(unsafe { libc::kill(pid.cast_signed(), libc::SIGKILL) }, 0);
        // Joined, the worker is reaped: nothing holds the bytes any more.
        assert!(matches!(sender.join(), Err(TaskError::Crashed(Exit::Signal(9)))));
        match bytes.get() {
            Err(GetError::Decode(reason)) => {
                assert!(reason.contains(&format!("process {pid} no longer holds it")), "{reason}");
            }
            other => panic!("expected a decode error, got {:?}", other.map(|b| b.len())),
        }
    });
}

/// The memfds of shared bytes process `pid` has open.
fn memfds_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("/memfd:taskpool-bytes"))
        .count()
}

/// A worker that sent shared bytes as a result lets go of them once it has sat idle a while
/// after they arrived, as it gives back its other buffers for large values. Before, it kept
/// the last value it sent (its memory, however large) until it next made, received or
/// dropped shared bytes: for as long as the pool sat idle.
#[test]
fn an_idle_worker_lets_go_of_the_shared_bytes_it_sent() {
    let pool = ProcessPool::new(1).unwrap();
    let pid = pool.pids()[0];
    let back = pool.apply(plus_one, made(1 << 20, 3)).unwrap();
    assert!(is_pattern(&back, 4));
    drop(back);
    let deadline = std::time::Instant::now() + common::HANG;
    while memfds_of(pid) != 0 {
        assert!(std::time::Instant::now() < deadline, "the idle worker still holds its result");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Written by another serializer (to save a result as JSON, say), shared bytes are their
/// bytes, and read back from them: not where this process keeps them, which no file or
/// other program could use, and which kept the memory open until the process exits.
#[test]
fn another_serializer_writes_and_reads_shared_bytes_as_their_bytes() {
    let bytes = SharedBytes::copy_from_slice(&[1, 2, 255]).unwrap();
    let text = serde_json::to_string(&bytes).unwrap();
    assert_eq!(text, "[1,2,255]");
    let back: SharedBytes = serde_json::from_str(&text).unwrap();
    assert_eq!(&back[..], [1, 2, 255]);
    let empty: SharedBytes = serde_json::from_str("[]").unwrap();
    assert!(empty.is_empty());
}

/// Where the bytes start in the worker, modulo a page.
fn offset_in_page(data: SharedBytes) -> usize {
    data.as_ptr() as usize % 4096
}

/// Bytes made in the worker.
fn made_here(len: usize) -> SharedBytes {
    SharedBytes::new(len, |out| out.fill(1)).unwrap()
}

#[test]
fn shared_bytes_start_on_a_page_boundary_in_every_process() {
    let pool = ProcessPool::new(1).unwrap();
    for len in [0, 1, 8, 4097, 1 << 20] {
        let data = SharedBytes::new(len, |out| out.fill(2)).unwrap();
        assert_eq!(data.as_ptr() as usize % 4096, 0, "made here, {len} bytes");
        assert_eq!(pool.apply(offset_in_page, data).unwrap(), 0, "read in a worker, {len} bytes");
        let back = pool.apply(made_here, len).unwrap();
        assert_eq!(back.as_ptr() as usize % 4096, 0, "made in a worker, {len} bytes");
        assert_eq!(back.len(), len);
    }
}
