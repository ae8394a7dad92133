//! `imap_stream` and `imap_unordered_stream`: an input whose items arrive over time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{HANG, add_one};
use crate::{Config, Pool, TaskError};

/// Each result of `imap_stream` and `imap_unordered_stream` comes while the input waits for
/// its next item: an input that gets its next job only once the consumer has the last
/// result (which `imap` would hold back for ever) runs to its end. Over an endless input,
/// at most twice the window and one more are pulled ahead of the consumer. Dropping the
/// iterator while the input waits ends the thread that pulls it at the input's next item.
pub fn streamed_input_yields_while_it_waits<P: Pool>(make: impl Fn(Config) -> P) {
    let pool = make(Config::new().workers(2));
    for ordered in [true, false] {
        let (jobs, queue) = crossbeam_channel::unbounded::<u64>();
        // The input ends if no job comes within the hang limit: a regression fails the test
        // rather than hang it.
        let input = std::iter::from_fn(move || queue.recv_timeout(HANG).ok());
        let mut results = streamed(&pool, ordered, input);
        let mut x = 0;
        for _ in 0..50 {
            jobs.send(x).unwrap();
            x = results.next().expect("no result for the job sent").unwrap();
        }
        assert_eq!(x, 50, "ordered: {ordered}");
        jobs.send(x).unwrap();
        assert_eq!(results.next().unwrap().unwrap(), 51);
        drop(results);
        // The input's next item finds nobody to take it: its thread ends, and drops it.
        let started = Instant::now();
        while jobs.send(0).is_ok() {
            assert!(started.elapsed() < HANG, "the input outlived its iterator");
            thread::sleep(Duration::from_millis(1));
        }
    }
    for ordered in [true, false] {
        let window = pool.imap_window();
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let endless = (0u64..).inspect(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        for (i, result) in streamed(&pool, ordered, endless).take(5000).enumerate() {
            let value = result.unwrap();
            if ordered {
                assert_eq!(value, i as u64 + 1);
            }
            let ahead = pulled.load(Ordering::Relaxed) - (i + 1);
            assert!(ahead <= 2 * window + 1, "pulled {ahead} ahead; window {window}");
        }
    }
}

/// `imap_stream` or `imap_unordered_stream` of [`add_one`] over `input`.
fn streamed<'p, P: Pool>(
    pool: &'p P,
    ordered: bool,
    input: impl Iterator<Item = u64> + Send + 'static,
) -> Box<dyn Iterator<Item = Result<u64, TaskError>> + 'p> {
    if ordered {
        Box::new(pool.imap_stream(add_one, input))
    } else {
        Box::new(pool.imap_unordered_stream(add_one, input))
    }
}
