//! An agent runs the units of one caller's `map` as one job of its pool: they wait in one
//! line, in the order they came, and another job (of another caller, or of the same) takes
//! turns with it rather than wait behind every unit the agent holds.
//!
//! Every task here appends a line to a log when it starts; the items of the long `map` then
//! wait for the test to let them go, one at a time. The agent has one worker, so the order
//! of the log's lines is the order the tasks ran in.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use taskpool_cluster::{ClusterConfig, ClusterPool, Config, Pool};

/// Items of the long `map`.
const LONG: u32 = 24;
/// Items of the long `map` to a chunk: each chunk is one unit, and all are held at once.
const CHUNK: usize = 8;
/// The most items of the long `map` let go before the other task must have started: a
/// batch or two of the `map`, and those its worker held already.
const TURN: usize = 6;

/// Appends `line` to the file `log`.
fn append(log: &Path, line: &str) {
    let mut file = std::fs::OpenOptions::new().append(true).create(true).open(log).unwrap();
    file.write_all(format!("{line}\n").as_bytes()).unwrap();
}

/// Says in `dir`'s log that item `i` started, then waits until the test lets it go (the
/// file `go-i`, or `go` for all, in `dir`), at most ten minutes.
fn gated((dir, i): (String, u32)) -> u32 {
    let dir = PathBuf::from(dir);
    append(&dir.join("log"), &format!("map {i}"));
    let until = Instant::now() + Duration::from_secs(600);
    while !dir.join(format!("go-{i}")).exists() && !dir.join("go").exists() {
        assert!(Instant::now() < until, "item {i} was never let go");
        std::thread::sleep(Duration::from_millis(5));
    }
    i
}

/// Says in `dir`'s log that the other task started.
fn other_task(dir: String) -> u32 {
    append(&PathBuf::from(dir).join("log"), "other");
    7
}

/// Lets every item of the long `map` go when dropped, so that a failing test does not
/// leave it waiting.
struct LetAllGo(PathBuf);

impl Drop for LetAllGo {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("go"), "");
    }
}

/// The lines of `dir`'s log.
fn log(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("log")).unwrap_or_default().lines().map(String::from).collect()
}

/// Runs the long `map` on `mapper` and, once its first item runs, `other_task` from
/// `submit` (on `other`): the task must start after at most [`TURN`] items of the `map`.
fn takes_turns(test: &str, mapper: &ClusterPool, other: &ClusterPool) {
    let dir = common::markers(test);
    let path = dir.to_string_lossy().into_owned();
    let items: Vec<(String, u32)> = (0..LONG).map(|i| (path.clone(), i)).collect();
    std::thread::scope(|scope| {
        let _let_go = LetAllGo(dir.clone());
        let map = scope.spawn(|| mapper.map(gated, items));
        let started = |line: &str| log(&dir).iter().any(|l| l == line);
        assert!(common::poll(Duration::from_secs(60), || started("map 0")), "the map started");
        let mut task = other.submit(other_task, path.clone());
        let mut let_go = 0;
        while !started("other") {
            assert!(
                let_go < TURN,
                "the other task waits behind the map: {let_go} of its items were let go, and \
                 it has not started"
            );
            // The item that runs now: the last started.
            let next = format!("map {let_go}");
            let running = || started(&next) || started("other");
            assert!(common::poll(Duration::from_secs(30), running), "nothing runs");
            if started("other") {
                break;
            }
            std::fs::write(dir.join(format!("go-{let_go}")), "").unwrap();
            let_go += 1;
        }
        assert_eq!(task.join_timeout(Duration::from_secs(30)).unwrap(), 7);
        std::fs::write(dir.join("go"), "").unwrap();
        assert_eq!(map.join().unwrap().unwrap(), (0..LONG).collect::<Vec<u32>>());
    });
    // The units of the map ran as one job: its items in the order they were sent.
    let ran: Vec<String> = log(&dir).into_iter().filter(|l| l != "other").collect();
    let expected: Vec<String> = (0..LONG).map(|i| format!("map {i}")).collect();
    assert_eq!(ran, expected, "the map's items ran out of order");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The long `map` in chunks of [`CHUNK`] items: all its units are held by the agent at once.
fn mapper_config(url: &str) -> ClusterConfig {
    ClusterConfig::new(url).config(Config::new().workers(1).chunk_size(CHUNK))
}

#[test]
fn another_callers_task_does_not_wait_behind_every_unit_of_a_map_the_agent_holds() {
    let Some(server) = common::server("agent_jobs_callers") else { return };
    let url = server.url();
    let _agent = common::agent(&url, 1, &[]);
    let mapper = ClusterPool::with_config(mapper_config(&url)).expect("the pool connects");
    let other = ClusterPool::with_config(ClusterConfig::new(url.clone())).expect("connects");
    assert!(mapper.wait_for_agents(1, Duration::from_secs(30)));
    takes_turns("agent_jobs_callers", &mapper, &other);
}

#[test]
fn a_task_does_not_wait_behind_every_unit_of_a_map_of_its_own_pool() {
    let Some(server) = common::server("agent_jobs_own") else { return };
    let url = server.url();
    let (_agent, pool) = common::pool_on(&url, mapper_config(&url), 1, 1, &[]);
    takes_turns("agent_jobs_own", &pool, &pool);
}

/// Says in `dir`'s log that task `i` of the first function started.
fn first((dir, i): (String, u32)) -> u32 {
    append(&PathBuf::from(dir).join("log"), &format!("first {i}"));
    i
}

/// Says in `dir`'s log that task `i` of the second function started.
fn second((dir, i): (String, u32)) -> u32 {
    append(&PathBuf::from(dir).join("log"), &format!("second {i}"));
    i
}

/// Whether task `i` is of the first function: two of it, two of the other, and again, so
/// that two lines taking turns would run them in another order.
fn is_first(i: u32) -> bool {
    ((i - 1) / 2).is_multiple_of(2)
}

#[test]
fn a_callers_single_tasks_keep_their_order_whatever_their_function() {
    let Some(server) = common::server("agent_jobs_singles") else { return };
    let url = server.url();
    let (_agent, pool) = common::pool_on(&url, ClusterConfig::new(url.clone()), 1, 1, &[]);
    let dir = common::markers("agent_jobs_singles");
    let path = dir.to_string_lossy().into_owned();
    let _let_go = LetAllGo(dir.clone());
    // The worker is held while the other tasks queue on the agent.
    let held = pool.submit(gated, (path.clone(), 0));
    let started = || log(&dir).iter().any(|l| l == "map 0");
    assert!(common::poll(Duration::from_secs(60), started), "the first task started");
    let handles: Vec<_> = (1..=8)
        .map(|i| {
            if is_first(i) {
                pool.submit(first, (path.clone(), i))
            } else {
                pool.submit(second, (path.clone(), i))
            }
        })
        .collect();
    std::fs::write(dir.join("go"), "").unwrap();
    assert_eq!(held.join().unwrap(), 0);
    for (i, handle) in (1..=8).zip(handles) {
        assert_eq!(handle.join().unwrap(), i);
    }
    let expected: Vec<String> = std::iter::once("map 0".to_string())
        .chain((1..=8).map(|i| format!("{} {i}", if is_first(i) { "first" } else { "second" })))
        .collect();
    assert_eq!(log(&dir), expected, "the tasks ran out of order");
    std::fs::remove_dir_all(dir).unwrap();
}
