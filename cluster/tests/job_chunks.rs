//! Each `map` or `imap` of a pool learns what its own items cost: what one measured never
//! sizes the chunks of another. An `imap` of slow items after a `map` of cheap ones starts
//! as on a fresh pool, its first items shared out among the agents, rather than send
//! every item in one chunk; those first chunks travel a message to each agent, not one to
//! each item, and hold at most an item for each of an agent's workers, so that an `imap`'s
//! first result does not wait for items that wait for a worker.

mod common;

use std::collections::{HashMap, HashSet};
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
    common::tasks_state(url).last_sequence
}

/// Two agents of two workers: the held items, pulled before anything of their `imap` was
/// measured, go out a message to each agent, each of two chunks of two items, and all four
/// workers run them at once. Sized from the cheap `map`'s items, they went out in one chunk,
/// which one agent ran on its two workers while the other had none.
#[test]
fn a_slow_imap_after_a_cheap_map_starts_with_a_message_for_each_agent() {
    let Some(server) = common::server("job_chunks_fresh") else { return };
    let url = server.url();
    let config = ClusterConfig::new(url.clone()).config(Config::new().workers(1));
    let (_agents, pool) = common::pool_on(&url, config, 2, 2, &[]);
    let (together, units, messages) = held_after_cheap("job_chunks_fresh", &url, &pool, 4);
    assert!(together, "the two agents' four workers did not run four held items at once");
    assert_eq!(units, 4, "the held items travelled in {units} units");
    assert_eq!(messages, 2, "the held items travelled in {messages} messages");
}

/// Two agents of one worker each: the first chunks of a call go out a message to each agent,
/// each chunk of one item, and both agents run their items at once. Sent a message to each
/// item, eight items took eight messages (and eight units), and the server's work for them
/// was most of what a small `map` of cheap items cost; packed in one message, they all went
/// to one agent, which ran them one at a time while the other had none.
#[test]
fn the_first_chunks_of_a_call_spread_over_the_agents() {
    let Some(server) = common::server("job_chunks_spread") else { return };
    let url = server.url();
    let config = ClusterConfig::new(url.clone()).config(Config::new().workers(1));
    let (_agents, pool) = common::pool_on(&url, config, 2, 1, &[]);
    let (together, units, messages) = held_after_cheap("job_chunks_spread", &url, &pool, 2);
    assert!(together, "the two agents did not each run a held item at once");
    assert_eq!(units, 8, "the held items travelled in {units} units");
    assert_eq!(messages, 2, "the held items travelled in {messages} messages");
}

/// A fresh `map` of eight cheap items on two agents of two workers: four task messages, a
/// chunk for each worker, which the agents take one for each free worker, where it took
/// eight.
#[test]
fn a_small_map_on_two_agents_takes_a_message_for_each_worker() {
    let Some(server) = common::server("job_chunks_small_map") else { return };
    let url = server.url();
    let (_agents, pool) = common::pool_on(&url, ClusterConfig::new(url.clone()), 2, 2, &[]);
    for round in 0..3 {
        let (settled, messages) = (pool.stats().settled, stored(&url));
        assert_eq!(pool.map(cheap, 0..8).unwrap(), (0..8).map(cheap).collect::<Vec<u64>>());
        let units = pool.stats().settled - settled;
        let messages = stored(&url) - messages;
        assert_eq!(units, 4, "round {round}: the map's items travelled in {units} units");
        assert_eq!(messages, 4, "round {round}: they travelled in {messages} messages");
    }
}

/// One agent of two workers: the first chunks of a call travel in one message, as the agent
/// takes them all either way, four chunks of two items; its two workers run them side by side.
#[test]
fn with_one_agent_the_first_chunks_of_a_call_are_one_message() {
    let Some(server) = common::server("job_chunks_one_agent") else { return };
    let url = server.url();
    let config = ClusterConfig::new(url.clone()).config(Config::new().workers(1));
    let (_agent, pool) = common::pool_on(&url, config, 1, 2, &[]);
    let (together, units, messages) = held_after_cheap("job_chunks_one_agent", &url, &pool, 2);
    assert!(together, "the agent's two workers did not run two held items at once");
    assert_eq!(units, 4, "the held items travelled in {units} units");
    assert_eq!(messages, 1, "the held items travelled in {messages} messages");
}

/// Says in `dir` that item `i` started, then waits until the file `go-{i}` or `go` exists
/// there (at most ten minutes); returns `i`.
fn mark_and_hold_each((dir, i): (String, u32)) -> u32 {
    let dir = PathBuf::from(dir);
    let marker = dir.join(format!("started-{i}"));
    std::fs::write(marker.with_extension("tmp"), "").unwrap();
    std::fs::rename(marker.with_extension("tmp"), &marker).unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(600);
    while !dir.join(format!("go-{i}")).exists() && !dir.join("go").exists() {
        if std::time::Instant::now() >= until {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    i
}

/// Two agents of two workers, an `imap` of eight held items: once the four that start first
/// are let go, the first result comes, though the other four have not started. Its first
/// pass's items travelled a chunk of four to each agent, whose results came back together
/// once all four were done: a worker ran two of them one after the other, and the first
/// result waited for the second (an `imap` of 1 s items yielded its first after 2 s).
#[test]
fn an_imap_yields_its_first_result_once_its_first_items_are_done() {
    let Some(server) = common::server("job_chunks_first_result") else { return };
    let url = server.url();
    let config = ClusterConfig::new(url.clone()).config(Config::new().workers(1));
    let (_agents, pool) = common::pool_on(&url, config, 2, 2, &[]);
    let dir = common::markers("job_chunks_first_result");
    let path = dir.to_string_lossy().into_owned();
    let let_go = LetAllGo(dir.clone());
    let items = (0..HELD).map(|i| (path.clone(), i));
    let mut held = pool.imap(mark_and_hold_each, items);
    let first = std::thread::scope(|scope| {
        let first = scope.spawn(|| held.next_timeout(Duration::from_secs(60)));
        // The four workers each start an item; those four are let go, the others not.
        assert!(common::poll(Duration::from_secs(60), || started(&dir) >= 4));
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if let Some(i) = name.strip_prefix("started-").filter(|_| !name.ends_with(".tmp")) {
                std::fs::write(dir.join(format!("go-{i}")), "").unwrap();
            }
        }
        first.join().unwrap()
    });
    drop(let_go);
    let rest: Vec<u32> = held.map(Result::unwrap).collect();
    std::fs::remove_dir_all(dir).unwrap();
    let first = first.expect("the first result came while items were held");
    assert_eq!(first.map(Result::unwrap), Some(0));
    assert_eq!(rest, (1..HELD).collect::<Vec<u32>>());
}

/// Sleeps 5 ms; returns the pid of the agent whose worker ran it (the worker's parent).
fn nap_on_agent(_: u32) -> u32 {
    std::thread::sleep(Duration::from_millis(5));
    std::os::unix::process::parent_id()
}

/// Two agents of one worker, a `map` of 20 items of 5 ms: its first pass sends 10 of them, a
/// message to each agent; once the first unit is measured, the 10 left go at once in
/// several chunks, shared out a message to each agent by their items, and each agent runs
/// about half of them. Loose, those chunks queued together and travelled in one message (or
/// one chunk first, then the others in one), which one agent ran while the other had none.
#[test]
fn the_chunks_sent_after_the_first_result_spread_over_the_agents() {
    let Some(server) = common::server("job_chunks_burst") else { return };
    let url = server.url();
    let config = ClusterConfig::new(url.clone()).config(Config::new().workers(1));
    let (_agents, pool) = common::pool_on(&url, config, 2, 1, &[]);
    let agents = pool.map(nap_on_agent, 0..20).unwrap();
    let first: HashSet<u32> = agents[..10].iter().copied().collect();
    assert_eq!(first.len(), 2, "the first pass ran on {} agents", first.len());
    // The 10 items left go in chunks of one (10 ms of work is one item here), at most 9 at
    // once (10 chunks in flight): 5 and 4 to the agents, or 5 and 5, and any item left later.
    let mut burst: HashMap<u32, usize> = HashMap::new();
    for &agent in &agents[10..] {
        *burst.entry(agent).or_default() += 1;
    }
    let shares: Vec<usize> = first.iter().map(|a| burst.get(a).copied().unwrap_or(0)).collect();
    assert!(shares.iter().all(|&n| n >= 4), "the agents ran {shares:?} of the 10 items left");
}
