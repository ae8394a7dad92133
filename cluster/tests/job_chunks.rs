//! Each `map` or `imap` of a pool learns what its own items cost: what one measured never
//! sizes the chunks of another. An `imap` of slow items after a `map` of cheap ones starts
//! from one item to a chunk, as on a fresh pool, rather than send every item in one chunk;
//! and those first chunks spread over the agents.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use taskpool_cluster::{ClusterConfig, ClusterPool, Config, NextTimeout, Pool};

fn cheap(x: u64) -> u64 {
    x * 2
}

/// Items of the slow `imap`, each held until the test lets it go.
const HELD: u32 = 8;

/// Lets every held item go when dropped, so that a failing test does not leave them waiting.
struct LetAllGo(PathBuf);

impl Drop for LetAllGo {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("go"), "");
    }
}

/// How many held items have started.
fn started(dir: &Path) -> usize {
    let entries = std::fs::read_dir(dir).unwrap();
    let names = entries.filter_map(|e| e.ok()).map(|e| e.file_name());
    let names = names.map(|n| n.to_string_lossy().into_owned());
    names.filter(|n| n.starts_with("started-") && !n.ends_with(".tmp")).count()
}

/// Runs an `imap` of [`HELD`] held items, of a length the pool cannot know in advance, on
/// `pool` (on the server at `url`) after a `map` of cheap items; waits until `side_by_side`
/// of them run at once, then lets them all go. Returns whether they did, the units the held
/// items travelled in, and the task messages they travelled in.
fn held_after_cheap(
    test: &str,
    url: &str,
    pool: &ClusterPool,
    side_by_side: usize,
) -> (bool, u64, u64) {
    let doubled = pool.map(cheap, 0..200).unwrap();
    assert_eq!(doubled, (0..200).map(cheap).collect::<Vec<u64>>());
    let before = pool.stats().settled;
    let messages_before = stored(url);
    let dir = common::markers(test);
    let path = dir.to_string_lossy().into_owned();
    let let_go = LetAllGo(dir.clone());
    let items = (0..).take_while(|&i| i < HELD).map(|i| (path.clone(), i));
    let (together, values) = std::thread::scope(|scope| {
        // An `imap` sends its items as its consumer asks for them.
        let consumer = scope.spawn(|| {
            let mut held = pool.imap(common::mark_and_hold, items);
            let mut values = Vec::new();
            while let Some(value) = held.next_timeout(Duration::from_secs(120)).unwrap() {
                values.push(value.unwrap());
            }
            values
        });
        let together = common::poll(Duration::from_secs(60), || started(&dir) >= side_by_side);
        drop(let_go);
        (together, consumer.join().unwrap())
    });
    assert_eq!(values, (0..HELD).collect::<Vec<u32>>());
    std::fs::remove_dir_all(dir).unwrap();
    (together, pool.stats().settled - before, stored(url) - messages_before)
}

/// The messages the tasks stream has taken so far.
fn stored(url: &str) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(url).await.expect("connects");
        let js = async_nats::jetstream::new(client);
        let mut tasks = js.get_stream("TASKPOOL_TASKS").await.expect("the tasks stream");
        tasks.info().await.expect("its state").state.last_sequence
    })
}

#[test]
fn a_slow_imap_after_a_cheap_map_starts_from_chunks_of_one() {
    let Some(server) = common::server("job_chunks_one") else { return };
    let url = server.url();
    let _agent = common::agent(&url, 2, &[]);
    let config = ClusterConfig::new(url.clone()).config(Config::new().workers(1));
    let pool = ClusterPool::with_config(config).expect("the pool connects");
    assert!(pool.wait_for_agents(1, Duration::from_secs(30)));
    let (together, units, _) = held_after_cheap("job_chunks_one", &url, &pool, 2);
    assert!(together, "the agent's two workers did not run two held items at once");
    // Nothing was measured before every item was sent (the pool keeps more chunks than that
    // in flight): one item to a chunk. Sized from the cheap map's items: one chunk.
    assert_eq!(units, u64::from(HELD), "the held items travelled in {units} units");
}

/// Two agents of one worker each: the chunks of one item sent before anything was measured
/// travel in messages of their own, so that both agents get some. Packed in one message,
/// they all went to one agent, which ran them one at a time while the other had none.
#[test]
fn the_first_chunks_of_a_call_spread_over_the_agents() {
    let Some(server) = common::server("job_chunks_spread") else { return };
    let url = server.url();
    let _agents = [common::agent(&url, 1, &[]), common::agent(&url, 1, &[])];
    let config = ClusterConfig::new(url.clone()).config(Config::new().workers(1));
    let pool = ClusterPool::with_config(config).expect("the pool connects");
    assert!(pool.wait_for_agents(2, Duration::from_secs(30)));
    let (together, units, messages) = held_after_cheap("job_chunks_spread", &url, &pool, 2);
    assert!(together, "the two agents did not each run a held item at once");
    assert_eq!(units, u64::from(HELD), "the held items travelled in {units} units");
    // An agent of one worker holds four messages at once: eight take both agents.
    assert_eq!(messages, u64::from(HELD), "the held items travelled in {messages} messages");
}

/// One agent of two workers: the first chunks of a call share messages, as the agent takes
/// them all either way; its two workers still run them side by side.
#[test]
fn with_one_agent_the_first_chunks_of_a_call_share_messages() {
    let Some(server) = common::server("job_chunks_one_agent") else { return };
    let url = server.url();
    let _agent = common::agent(&url, 2, &[]);
    let config = ClusterConfig::new(url.clone()).config(Config::new().workers(1));
    let pool = ClusterPool::with_config(config).expect("the pool connects");
    assert!(pool.wait_for_agents(1, Duration::from_secs(30)));
    let (together, units, messages) = held_after_cheap("job_chunks_one_agent", &url, &pool, 2);
    assert!(together, "the agent's two workers did not run two held items at once");
    assert_eq!(units, u64::from(HELD), "the held items travelled in {units} units");
    assert!(messages < u64::from(HELD), "the held items travelled in {messages} messages");
}
