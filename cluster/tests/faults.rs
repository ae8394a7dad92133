//! Faults survived on loopback: agents killed every second, the server restarted, a server
//! of a three-node cluster killed. Each run checks that every task settles once with its
//! right value: nothing lost, nothing settled twice.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::Server;
use taskpool_cluster::{ClusterConfig, Config, Pool, TaskHandle};

/// A value only the right item produces: a lost, doubled or misplaced result shows.
fn value(item: u64) -> u64 {
    item.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17) ^ item
}

/// [`value`], after a short sleep so that the run lasts long enough for the faults.
fn slow_value(item: u64) -> u64 {
    std::thread::sleep(Duration::from_micros(300));
    value(item)
}

const ACK_WAIT: [(&str, &str); 1] = [("TASKPOOL_AGENT_ACK_WAIT_MS", "1000")];

/// Joins every handle and checks its value; returns how many there were.
fn check_all(handles: Vec<TaskHandle<u64>>, from: usize) -> usize {
    let n = handles.len();
    for (i, h) in handles.into_iter().enumerate() {
        let item = (from + i) as u64;
        assert_eq!(h.join().unwrap(), value(item), "item {item}");
    }
    n
}

fn config(urls: &str, workers: usize) -> ClusterConfig {
    ClusterConfig::new(urls)
        .config(Config::new().workers(workers))
        .agent_wait(Duration::from_secs(120))
        .delivery_limit(50)
}

#[test]
fn fifty_thousand_tasks_survive_an_agent_killed_every_second() {
    let Some(server) = common::server("agent_kills") else { return };
    let url = server.url();
    let (agents, pool) = common::pool_on(&url, config(&url, 6), 3, 2, &ACK_WAIT);
    let done = Arc::new(AtomicBool::new(false));
    let killer = {
        let (done, url) = (done.clone(), url.clone());
        std::thread::spawn(move || {
            let mut agents = agents;
            let mut kills = 0;
            let mut victim = 0;
            // The fault schedule itself is timed: one agent killed per second.
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(1));
                if done.load(Ordering::SeqCst) {
                    break;
                }
                agents[victim].kill();
                kills += 1;
                agents[victim] = common::agent(&url, 2, &ACK_WAIT);
                victim = (victim + 1) % agents.len();
            }
            kills
        })
    };
    let handles: Vec<_> = (0..50_000).map(|i| pool.submit(slow_value, i)).collect();
    let n = check_all(handles, 0);
    done.store(true, Ordering::SeqCst);
    let kills = killer.join().unwrap();
    let stats = pool.stats();
    eprintln!("50000 tasks, {kills} agents killed, {} duplicate results ignored", stats.duplicates);
    assert_eq!(n, 50_000);
    assert!(kills >= 2, "the run outlasted at least two kills ({kills})");
    assert_eq!(stats.settled, 50_000, "every task settled exactly once");
}

#[test]
fn a_server_restart_mid_run_loses_nothing() {
    let Some(mut server) = common::server("server_restart") else { return };
    let url = server.url();
    let (_agents, pool) = common::pool_on(&url, config(&url, 4), 2, 2, &ACK_WAIT);
    let mut handles: Vec<_> = (0..20_000).map(|i| pool.submit(slow_value, i)).collect();
    let rest = handles.split_off(2_000);
    check_all(handles, 0);
    server.restart().expect("the server starts again");
    let n = check_all(rest, 2_000);
    assert_eq!(n, 18_000);
    assert_eq!(pool.stats().settled, 20_000);
    // The pool works on after the restart.
    assert_eq!(pool.map(value, 0..1000).unwrap(), (0..1000).map(value).collect::<Vec<_>>());
}

#[test]
fn a_three_node_cluster_loses_a_server_and_nothing_is_lost() {
    if common::server_or_skip("cluster_node_killed").is_none() {
        return;
    }
    let routes: Vec<u16> = (0..3).map(|_| common::free_port()).collect();
    let route_list =
        routes.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let mut servers: Vec<Server> = (0..3)
        .map(|i| {
            let extra = vec![
                "--cluster_name".to_string(),
                format!("taskpool-{}", std::process::id()),
                "--cluster".to_string(),
                format!("nats://127.0.0.1:{}", routes[i]),
                "--routes".to_string(),
                route_list.clone(),
            ];
            Server::start_with(&format!("n{i}"), extra).expect("a node starts")
        })
        .collect();
    let urls = servers.iter().map(Server::url).collect::<Vec<_>>().join(",");
    let agent_vars = [ACK_WAIT[0], ("TASKPOOL_AGENT_REPLICAS", "3")];
    let config = config(&urls, 4).replicas(3);
    let (_agents, pool) = common::pool_on(&urls, config, 2, 2, &agent_vars);
    let mut handles: Vec<_> = (0..20_000).map(|i| pool.submit(slow_value, i)).collect();
    let rest = handles.split_off(2_000);
    check_all(handles, 0);
    servers[1].kill();
    let n = check_all(rest, 2_000);
    assert_eq!(n, 18_000);
    assert_eq!(pool.stats().settled, 20_000);
    assert_eq!(pool.map(value, 0..1000).unwrap(), (0..1000).map(value).collect::<Vec<_>>());
}
