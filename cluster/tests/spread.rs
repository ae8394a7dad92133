//! A `map`'s chunks spread over the agents: the chunks a `map` sends at once travel in a
//! share for each worker of the agents, each in a message of its own, which agents take one
//! for each free worker, so they do not travel in one message to one agent, an agent of
//! more workers takes more of them, and a pass of more items than a message of single tasks
//! holds still gives each agent about its share, whatever room each agent's pull request
//! has.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use taskpool_cluster::{ClusterConfig, ClusterPool, Config, Pool};

/// Works a millisecond, then says which worker process ran it.
fn worker_after_a_millisecond(_: u32) -> u32 {
    std::thread::sleep(Duration::from_millis(1));
    std::process::id()
}

#[test]
fn a_maps_chunks_spread_over_the_agents() {
    let Some(server) = common::server("spread") else { return };
    let url = server.url();
    // Two agents of one worker each: each takes one message at a time.
    let config = ClusterConfig::new(url.clone()).config(Config::new().workers(2));
    let (_agents, pool) = common::pool_on(&url, config, 2, 1, &[]);
    // 400 items go in chunks sized from what the first ones cost, several at once. Packed
    // into one message they all went to one agent.
    let ran = pool.map(worker_after_a_millisecond, 0..400).unwrap();
    let mut by_worker: HashMap<u32, usize> = HashMap::new();
    for pid in ran {
        *by_worker.entry(pid).or_default() += 1;
    }
    assert_eq!(by_worker.len(), 2, "one worker ran every item: {by_worker:?}");
    assert!(by_worker.values().all(|&n| n >= 100), "{by_worker:?}");
}

/// Says which agent ran it: the parent of the worker process.
fn agent_of_worker(_: u32) -> u32 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("the worker's stat");
    // The fields after the command's name, which ends with the last ')': state, parent.
    let after = &stat[stat.rfind(')').expect("a command name") + 1..];
    after.split_whitespace().nth(1).expect("a parent").parse().expect("a pid")
}

/// A pass of a `map` of more items than a message of single tasks holds (128) for each agent:
/// each agent still takes about an equal share. The server hands the messages to the agents'
/// pull requests in turn, so a share cut into a full message and a small rest gave one agent
/// both full messages.
#[test]
fn a_pass_of_more_items_than_a_message_per_agent_is_shared_evenly() {
    let Some(server) = common::server("spread_parcels") else { return };
    let url = server.url();
    // Chunks of 16 items, as many at once as 4 chunks per worker and 2 more: 18 chunks, the
    // whole `map` of 288 items in one pass, 144 items for each agent.
    let config = ClusterConfig::new(url.clone()).config(Config::new().workers(4).chunk_size(16));
    let (agents, pool) = common::pool_on(&url, config, 2, 2, &[]);
    let ran = pool.map(agent_of_worker, 0..288).expect("the map runs");
    let mut by_agent: HashMap<u32, usize> = HashMap::new();
    for pid in ran {
        *by_agent.entry(pid).or_default() += 1;
    }
    for agent in &agents {
        let items = by_agent.get(&agent.pid()).copied().unwrap_or(0);
        assert!(items >= 112, "an agent ran {items} items of 288: {by_agent:?}");
    }
}

/// Says that it started (the file `started-i` in `dir`), then waits until the test lets it go
/// (the file `go` in `dir`), at most ten minutes.
fn held((dir, i): (String, u32)) -> u32 {
    let dir = std::path::PathBuf::from(dir);
    std::fs::write(dir.join(format!("started-{i}")), "").unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(600);
    while !dir.join("go").exists() {
        assert!(std::time::Instant::now() < until, "task {i} was never let go");
        std::thread::sleep(Duration::from_millis(5));
    }
    i
}

/// Lets every held task go when dropped, so that a failing test leaves none waiting.
struct LetGo(std::path::PathBuf);

impl Drop for LetGo {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("go"), "");
    }
}

/// `(messages waiting, messages held by agents)` of the agents' consumers of `image`: of
/// single tasks and of `map` parcels.
fn consumer_state(url: &str, image: &str) -> (u64, usize) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(url).await.expect("connects");
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream("TASKPOOL_TASKS").await.expect("the tasks stream");
        let (mut waiting, mut held) = (0, 0);
        for name in [format!("agents_{image}"), format!("parcels_{image}")] {
            let mut consumer: async_nats::jetstream::consumer::PullConsumer =
                stream.get_consumer(&name).await.expect("the agents' consumer");
            let info = consumer.info().await.expect("its state");
            waiting += info.num_pending;
            held += info.num_ack_pending;
        }
        (waiting, held)
    })
}

/// The messages in the tasks stream: those sent and not yet finished by an agent.
fn tasks_in_stream(url: &str) -> u64 {
    common::tasks_state(url).messages
}

/// Says in `dir` which agent runs item `i` (the file `started-{i}-{agent's pid}`), then waits
/// until the test lets it go (the file `go-{i}`, or `go` for all, in `dir`), at most ten
/// minutes.
fn held_on_agent((dir, i): (String, u32)) -> u32 {
    let dir = std::path::PathBuf::from(dir);
    let marker = dir.join(format!("started-{i}-{}", std::os::unix::process::parent_id()));
    std::fs::write(marker.with_extension("tmp"), "").unwrap();
    std::fs::rename(marker.with_extension("tmp"), &marker).unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(600);
    while !dir.join(format!("go-{i}")).exists() && !dir.join("go").exists() {
        assert!(std::time::Instant::now() < until, "item {i} was never let go");
        std::thread::sleep(Duration::from_millis(5));
    }
    i
}

/// The items started so far in `dir`, with the pid of the agent that runs each.
fn started_on(dir: &std::path::Path) -> Vec<(u32, u32)> {
    let names = std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name());
    let names = names.map(|n| n.to_string_lossy().into_owned());
    let started = names.filter_map(|n| {
        let (i, agent) = n.strip_prefix("started-")?.split_once('-')?;
        Some((i.parse().ok()?, agent.parse().ok()?))
    });
    started.collect()
}

/// Agents of one and of three workers, a `map` of eight items, each held until the test lets
/// it go: the pass goes out a parcel for each of the four workers, and the agent of three
/// workers takes three of them, six items, while the other holds its one. Shared out a
/// parcel to each agent, each agent took four items: the agent of one worker held three
/// that waited for it while the other agent's workers had nothing to do.
#[test]
fn an_agent_of_more_workers_takes_more_of_a_map() {
    let Some(server) = common::server("spread_workers") else { return };
    let url = server.url();
    let small = common::agent(&url, 1, &[]);
    let large = common::agent(&url, 3, &[]);
    let config = ClusterConfig::new(url.clone()).config(Config::new().workers(1));
    let pool = ClusterPool::with_config(config).expect("the pool connects");
    assert!(pool.wait_for_agents(2, Duration::from_secs(30)), "both agents serve");
    let dir = common::markers("spread_workers");
    let path = dir.to_string_lossy().into_owned();
    std::thread::scope(|scope| {
        // Dropped before the scope waits for the map: a failed assertion lets every item go.
        let _let_go = LetGo(dir.clone());
        let map = scope.spawn(|| pool.map(held_on_agent, (0..8).map(|i| (path.clone(), i))));
        // The items the large agent starts go at once; the small agent's first is held. Once
        // the large agent has finished every message it took (one message, the small
        // agent's, is left in the stream), it has run all the items it took.
        let on_large = || started_on(&dir).into_iter().filter(|&(_, a)| a == large.pid());
        let small_holds = || started_on(&dir).iter().any(|&(_, a)| a == small.pid());
        let settled = || {
            for (i, _) in on_large() {
                std::fs::write(dir.join(format!("go-{i}")), "").unwrap();
            }
            let finished = pool.stats().settled > 0 && tasks_in_stream(&url) == 1;
            on_large().count() >= 5 || (small_holds() && finished)
        };
        assert!(common::poll(Duration::from_secs(60), settled), "the map's items ran");
        let ran = on_large().count();
        let (started, left) = (started_on(&dir), tasks_in_stream(&url));
        assert!(
            ran >= 5,
            "the agent of 3 workers ran {ran} of 8 items while the agent of 1 worker held \
             one: {started:?} (agents {} and {}; {left} messages left)",
            small.pid(),
            large.pid()
        );
        std::fs::write(dir.join("go"), "").unwrap();
        assert_eq!(map.join().unwrap().expect("the map runs"), (0..8).collect::<Vec<u32>>());
    });
    std::fs::remove_dir_all(dir).unwrap();
}

/// A pass of an `imap` reaches an agent whose pull request has room for one message only (it
/// asked for its free slots, and holds messages of other tasks): the agent still gets its
/// share. A share cut into two messages gave it one (of 80 items of 288) and the other agent
/// three, as the server hands messages to the open requests in turn. (A `map`'s parcels are
/// pulled for free workers only: the agent, its worker busy, would take none of them.)
#[test]
fn an_agent_with_room_for_one_message_gets_its_share_of_a_pass() {
    let Some(server) = common::server("spread_room_for_one") else { return };
    let url = server.url();
    let config = ClusterConfig::new(url.clone()).config(Config::new().workers(4).chunk_size(16));
    // The first agent, of one worker and four slots, alone: it takes the held tasks.
    let (mut agents, pool) = common::pool_on(&url, config, 1, 1, &[]);
    let dir = common::markers("spread_room_for_one");
    let _let_go = LetGo(dir.clone());
    let path = dir.to_string_lossy().into_owned();
    let mut handles = Vec::new();
    // Three tasks, each in a message of its own: each is sent once the one before is held.
    for i in 0..3 {
        handles.push(pool.submit(held, (path.clone(), i)));
        let taken = || consumer_state(&url, pool.image()) == (0, i as usize + 1);
        assert!(common::poll(Duration::from_secs(30), taken), "the agent holds task {i}");
    }
    assert!(common::poll(Duration::from_secs(30), || dir.join("started-0").exists()));
    // The second agent, whose pull request has room for four messages.
    agents.push(common::agent(&url, 1, &[]));
    assert!(pool.wait_for_agents(2, Duration::from_secs(30)), "both agents serve");
    std::thread::scope(|scope| {
        // 18 chunks of 16, in one pass: 144 items for each agent.
        let map = scope.spawn(|| pool.imap(agent_of_worker, 0..288).collect::<Vec<_>>());
        // Once the pass is taken, the held tasks go, and the first agent runs its share.
        let taken = || consumer_state(&url, pool.image()).0 == 0;
        let sent = || taken() && consumer_state(&url, pool.image()).1 > 3;
        assert!(common::poll(Duration::from_secs(30), sent), "the pass was taken");
        std::fs::write(dir.join("go"), "").unwrap();
        let ran = map.join().unwrap();
        let mut by_agent: HashMap<u32, usize> = HashMap::new();
        for pid in ran {
            let pid = pid.expect("every item runs");
            *by_agent.entry(pid).or_default() += 1;
        }
        for agent in &agents {
            let items = by_agent.get(&agent.pid()).copied().unwrap_or(0);
            assert!(items >= 112, "an agent ran {items} items of 288: {by_agent:?}");
        }
    });
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.join().unwrap(), i as u32);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// Says which agent ran it, whatever its bytes.
fn agent_of_bytes(_: Vec<u8>) -> u32 {
    agent_of_worker(0)
}

/// A pass whose share for each agent is more than a chunk holds (half a message, on a
/// server of 1 MiB messages) goes in chunks of about even items. Cut by bytes alone, the
/// shares of 9 items of 100 KiB went in chunks of 6, 6 and 6 items, and one agent took two.
#[test]
fn a_pass_cut_by_bytes_is_shared_evenly() {
    let Some(server) = common::PlainServer::start("spread_bytes", true) else { return };
    let url = server.url();
    // As many chunks at once as 4 per worker and 2 more: all 18 items in one pass, 9 for
    // each agent, of which 6 fill half a message.
    let config = ClusterConfig::new(url.clone()).config(Config::new().workers(4));
    let (agents, pool) = common::pool_on(&url, config, 2, 2, &[]);
    let ran = pool.map(agent_of_bytes, (0..18).map(|_| vec![7; 100 << 10])).expect("it runs");
    let mut by_agent: HashMap<u32, usize> = HashMap::new();
    for pid in ran {
        *by_agent.entry(pid).or_default() += 1;
    }
    for agent in &agents {
        let items = by_agent.get(&agent.pid()).copied().unwrap_or(0);
        assert!(items >= 8, "an agent ran {items} items of 18: {by_agent:?}");
    }
}

/// Agents of one worker each; the first runs a single task held until the test lets it go,
/// then a `map` of two items, each let go as soon as it starts: the other agent runs both,
/// one after the other, while the single task still runs. An agent pulled a parcel for each
/// of its workers whatever single tasks took them, so the busy agent took one of the two
/// parcels, whose item waited there behind the single task while the other agent's worker
/// had nothing to do.
#[test]
fn an_agent_busy_with_a_single_task_leaves_a_maps_parcels_to_free_workers() {
    let Some(server) = common::server("spread_busy") else { return };
    let url = server.url();
    let (mut agents, pool) = common::pool_on(&url, ClusterConfig::new(url.clone()), 1, 1, &[]);
    let busy = agents[0].pid();
    let dir = common::markers("spread_busy");
    let path = dir.to_string_lossy().into_owned();
    std::thread::scope(|scope| {
        // Dropped before the scope waits: a failed assertion lets every item go.
        let _let_go = LetGo(dir.clone());
        let task = pool.submit(held_on_agent, (path.clone(), 100));
        let started = || started_on(&dir).contains(&(100, busy));
        assert!(common::poll(Duration::from_secs(30), started), "the single task runs");
        agents.push(common::agent(&url, 1, &[]));
        let free = agents[1].pid();
        assert!(pool.wait_for_agents(2, Duration::from_secs(30)), "both agents serve");
        let map = scope.spawn(|| pool.map(held_on_agent, (0..2).map(|i| (path.clone(), i))));
        let both_started = || {
            let items: Vec<(u32, u32)> =
                started_on(&dir).into_iter().filter(|&(i, _)| i < 100).collect();
            for &(i, _) in &items {
                std::fs::write(dir.join(format!("go-{i}")), "").unwrap();
            }
            items.len() == 2
        };
        let ran = common::poll(Duration::from_secs(20), both_started);
        let started = started_on(&dir);
        assert!(
            ran,
            "of the map's two items, {:?} started in 20 s while the agent {busy} ran the \
             single task and the agent {free} was free",
            started.iter().filter(|&&(i, _)| i < 100).collect::<Vec<_>>()
        );
        for i in 0..2 {
            assert!(started.contains(&(i, free)), "item {i} ran on the free agent: {started:?}");
        }
        assert!(!dir.join("go-100").exists() && !dir.join("go").exists(), "still held");
        assert_eq!(map.join().unwrap().expect("the map runs"), vec![0, 1]);
        std::fs::write(dir.join("go"), "").unwrap();
        assert_eq!(task.join().expect("the single task runs"), 100);
    });
    std::fs::remove_dir_all(dir).unwrap();
}
