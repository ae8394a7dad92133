//! A caller's task does not wait behind the whole of another caller's `map` of slow items:
//! until a pool has measured what its items cost, it sends them one to a chunk, so that a
//! first guess that takes them for cheap does not queue the whole `map` at once.

mod common;

use std::io::Write;
use std::time::Duration;

use taskpool_cluster::{ClusterConfig, ClusterPool, Config, Pool};

/// Appends `tag` to the file `log`, as one line.
fn append(log: &str, tag: &str) {
    let mut file = std::fs::OpenOptions::new().append(true).create(true).open(log).unwrap();
    file.write_all(format!("{tag}\n").as_bytes()).unwrap();
}

/// Says in `log` that an item of the `map` started, then works 20 ms.
fn slow_item((log, i): (String, u32)) -> u32 {
    append(&log, "map");
    std::thread::sleep(Duration::from_millis(20));
    i
}

/// Says in `log` that the other caller's task started.
fn single_task(log: String) -> u32 {
    append(&log, "single");
    7
}

#[test]
fn a_task_does_not_wait_behind_the_whole_of_another_callers_map() {
    let Some(server) = common::server("other_caller") else { return };
    let url = server.url();
    let _agent = common::agent(&url, 2, &[]);
    let dir = common::markers("other_caller");
    let log = dir.join("log").to_str().unwrap().to_string();
    let config = || ClusterConfig::new(url.clone()).config(Config::new().workers(2));
    let mapper = ClusterPool::with_config(config()).expect("the pool connects");
    let other = ClusterPool::with_config(config()).expect("the pool connects");
    assert!(mapper.wait_for_agents(1, Duration::from_secs(30)));
    let items: Vec<(String, u32)> = (0..400).map(|i| (log.clone(), i)).collect();
    std::thread::scope(|scope| {
        let map = scope.spawn(|| mapper.map(slow_item, items));
        let started = || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("map"));
        assert!(common::poll(Duration::from_secs(60), started), "the map started");
        assert_eq!(other.apply(single_task, log.clone()).unwrap(), 7);
        assert_eq!(map.join().unwrap().unwrap(), (0..400).collect::<Vec<u32>>());
    });
    let lines = std::fs::read_to_string(&log).unwrap();
    let before = lines.lines().take_while(|&line| line == "map").count();
    // The whole map (400 items) was queued before the other task when its first chunks were
    // sized for items of 20 µs; now only the few chunks in flight of one item each are.
    assert!(before < 100, "{before} items of the map started before the other caller's task");
    std::fs::remove_dir_all(dir).unwrap();
}
