//! A pool and agents on a three-node NATS cluster, each side connected to a server of its
//! own, with streams of three replicas: the server that leads the agents' consumer dies
//! while an agent holds a task.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Server, SpeakingAgent};
use taskpool_cluster::{ClusterConfig, ClusterPool, Config, Pool, TaskError};

/// Long enough for a cluster to elect its leaders, or to call a step hung.
const WITHIN: Duration = Duration::from_secs(30);

/// A node of the cluster and its monitoring port.
struct Node {
    server: Server,
    name: String,
    monitor: u16,
}

/// Three servers in one cluster, each with JetStream and a monitoring port, once the cluster
/// has a meta leader; `None` (skipped) without a server binary.
fn cluster(test: &str) -> Option<Vec<Node>> {
    common::server_or_skip(test)?;
    let routes = Routes::new(test);
    let nodes: Vec<Node> = (0..3).map(|i| routes.start(i)).collect();
    let led = common::poll(WITHIN, || {
        jsz(&nodes[0], "").is_some_and(|v| v["meta_cluster"]["leader"].as_str().is_some())
    });
    assert!(led, "the cluster elects no meta leader: {}", what_each_sees(&nodes));
    Some(nodes)
}

/// What each node says of the cluster (its meta group, its routes): why no leader, when
/// none is elected.
fn what_each_sees(nodes: &[Node]) -> String {
    let seen = nodes.iter().map(|node| {
        let meta = jsz(node, "").map(|v| v["meta_cluster"].to_string());
        let routes = monitoring(node, "routez").map(|v| v["num_routes"].to_string());
        let (meta, routes) = (meta.unwrap_or("no answer".into()), routes.unwrap_or_default());
        format!("{}: meta {meta}, routes {routes}", node.name)
    });
    seen.collect::<Vec<_>>().join("; ")
}

/// The cluster ports of three servers that make one cluster.
struct Routes {
    cluster: String,
    ports: Vec<u16>,
}

impl Routes {
    fn new(test: &str) -> Routes {
        let cluster = format!("{test}-{}", std::process::id());
        Routes { cluster, ports: (0..3).map(|_| common::free_port()).collect() }
    }

    /// Starts node `i` of the three; on another monitoring port if another program took the
    /// one chosen before the node listened on it (tests run side by side).
    fn start(&self, i: usize) -> Node {
        let list = self.ports.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect::<Vec<_>>();
        let name = format!("{}-n{i}", self.cluster);
        let mut attempts = 0;
        loop {
            let monitor = common::free_port();
            let args = vec![
                "--cluster_name".to_string(),
                self.cluster.clone(),
                "--cluster".to_string(),
                list[i].clone(),
                "--routes".to_string(),
                list.join(","),
                "-m".to_string(),
                monitor.to_string(),
            ];
            match Server::start_with(&name, args) {
                Ok(server) => return Node { server, name, monitor },
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempts < 3 => {
                    attempts += 1;
                }
                Err(e) => panic!("a node starts: {e:?}"),
            }
        }
    }
}

/// The node's `/jsz` monitoring page with `query`, if it answers.
fn jsz(node: &Node, query: &str) -> Option<serde_json::Value> {
    monitoring(node, &format!("jsz{query}"))
}

/// The node's monitoring page `page` (with its query), if it answers.
fn monitoring(node: &Node, page: &str) -> Option<serde_json::Value> {
    let mut stream = TcpStream::connect(("127.0.0.1", node.monitor)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET /{page} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

/// The agents' consumer and its stream's state, as the live node `node` sees them.
fn agents_consumer(node: &Node) -> Option<(serde_json::Value, serde_json::Value)> {
    let page = jsz(node, "?accounts=true&streams=true&consumers=true")?;
    let accounts = page["account_details"].as_array()?;
    accounts.iter().flat_map(|a| a["stream_detail"].as_array().into_iter().flatten()).find_map(
        |stream| {
            let consumers = stream["consumer_detail"].as_array()?;
            let found = consumers
                .iter()
                .find(|c| c["name"].as_str().is_some_and(|n| n.starts_with("agents_")))?;
            Some((found.clone(), stream["state"].clone()))
        },
    )
}

/// Appends a line to `dir/runs` (one per run), then waits until `dir/go` exists.
fn run_and_hold(dir: String) -> u32 {
    let dir = PathBuf::from(dir);
    let mut runs = std::fs::OpenOptions::new().append(true).create(true).open(dir.join("runs"));
    writeln!(runs.as_mut().unwrap(), "run").unwrap();
    let until = Instant::now() + Duration::from_secs(600);
    while !dir.join("go").exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    7
}

fn square(x: u64) -> u64 {
    x * x
}

fn runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("runs")).map_or(0, |text| text.lines().count())
}

/// The new leader of the agents' consumer gives the task an agent holds to an agent again
/// (it does not know the progress the agent reported to the old one): the agent that still
/// runs it takes the new delivery as its own, and does not run the task a second time.
#[test]
fn a_task_redelivered_to_the_agent_that_runs_it_runs_once() {
    let Some(mut nodes) = cluster("three_nodes") else { return };
    let vars = [("TASKPOOL_AGENT_ACK_WAIT_MS", "1000"), ("TASKPOOL_AGENT_REPLICAS", "3")];
    // Three workers: one for the held task, one for a second run of it, one for a marker.
    let config = ClusterConfig::new(nodes[0].server.url())
        .config(Config::new().workers(3))
        .replicas(3)
        .agent_wait(Duration::from_secs(60));
    let (_agent, pool) = common::pool_on(&nodes[1].server.url(), config, 1, 3, &vars);
    let dir = common::markers("three_nodes_redelivered");
    let held = pool.submit(run_and_hold, dir.to_string_lossy().into_owned());
    assert!(common::poll(WITHIN, || runs(&dir) == 1), "the task starts");

    // The server that leads the agents' consumer dies while the agent holds the task.
    let leader = std::cell::RefCell::new(None);
    assert!(common::poll(WITHIN, || {
        let found = agents_consumer(&nodes[0])
            .and_then(|(c, _)| c["cluster"]["leader"].as_str().map(str::to_owned));
        *leader.borrow_mut() = found;
        leader.borrow().is_some()
    }));
    let leader = leader.into_inner().unwrap();
    let at = nodes.iter().position(|n| n.name == leader).expect("the leader is a node");
    nodes[at].server.kill();
    let live: Vec<&Node> = nodes.iter().filter(|n| n.server.pid().is_some()).collect();

    // A new leader delivers the held task again (to the only agent).
    let redelivered = common::poll(WITHIN, || {
        live.iter().any(|n| {
            agents_consumer(n).is_some_and(|(c, _)| {
                let (delivered, of) =
                    (&c["delivered"]["consumer_seq"], &c["delivered"]["stream_seq"]);
                c["cluster"]["leader"].as_str().is_some_and(|l| l != leader)
                    && delivered.as_u64() > of.as_u64()
            })
        })
    });
    assert!(redelivered, "the new leader of the agents' consumer delivers the held task again");
    // A task sent after the redelivery reaches the agent after it, and has a worker of its own.
    assert_eq!(pool.submit(square, 3).join().unwrap(), 9);

    std::fs::write(dir.join("go"), "").unwrap();
    assert_eq!(held.join().unwrap(), 7);
    // Every delivery is acknowledged, and the stream empty, once every run has ended.
    let settled = common::poll(WITHIN, || {
        live.iter().any(|n| {
            agents_consumer(n).is_some_and(|(c, state)| {
                c["num_ack_pending"].as_u64() == Some(0) && state["messages"].as_u64() == Some(0)
            })
        })
    });
    assert!(settled, "every delivery of the task is acknowledged");
    assert_eq!(runs(&dir), 1, "the agent ran the task it held again");
    let _ = std::fs::remove_dir_all(&dir);
}

/// More replicas than the cluster has servers fail, once the cluster has refused them for a
/// while (it may still be forming), as a server that does not take the streams, saying what
/// to do; as many as it has serve.
#[test]
fn more_replicas_than_servers_fail_saying_so() {
    let Some(nodes) = cluster("three_nodes_replicas") else { return };
    let url = nodes[0].server.url();
    let started = Instant::now();
    let config = ClusterConfig::new(url.clone()).stream_name("FOUR").replicas(4);
    match ClusterPool::with_config(config) {
        Err(TaskError::Unreachable { waited, source }) => {
            assert!(waited <= started.elapsed(), "waited {waited:?}");
            let reason = source.to_string();
            assert!(reason.contains("FOUR_TASKS"), "names the stream: {reason}");
            assert!(reason.contains("ask for fewer replicas"), "says what to do: {reason}");
        }
        other => panic!("expected the streams refused, got {:?}", other.map(|_| ())),
    }
    let config = ClusterConfig::new(url).stream_name("THREE").replicas(3);
    ClusterPool::with_config(config).expect("three replicas on three servers");
}

/// Waits for a line of `agent` that contains `text`; the lines before it, or `Err` with them
/// if the agent ends or says nothing of the kind within [`WITHIN`].
fn said(agent: &SpeakingAgent, text: &str) -> Result<Vec<String>, Vec<String>> {
    agent.next_line(WITHIN, |line| line.contains(text)).map(|(_, before)| before)
}

/// An agent started while its cluster is not formed yet (its servers start one after the
/// other) has a server but no JetStream yet: it waits, saying why, and serves once the
/// cluster has a leader, rather than end.
#[test]
fn an_agent_waits_for_a_cluster_to_form() {
    if common::server_or_skip("three_nodes_forming").is_none() {
        return;
    }
    let routes = Routes::new("three_nodes_forming");
    let first = routes.start(0);
    let agent = SpeakingAgent::start(&first.server.url(), &[]);
    let before = said(&agent, "trying again").expect("the agent says why it waits, and waits");
    assert!(
        before.iter().all(|l| !l.contains("serving")),
        "it cannot serve before the cluster has a leader: {before:?}"
    );
    // A cluster made anew elects its first leader once all its servers are up.
    let others: Vec<Node> = (1..3).map(|i| routes.start(i)).collect();
    said(&agent, "serving image").expect("the agent serves once the cluster has a leader");
    let pool = ClusterPool::connect(others[0].server.url()).expect("the pool connects");
    assert_eq!(pool.submit(square, 4).join().unwrap(), 16);
}

/// A cluster that lost two of its three servers has no leader for the tasks stream: a task
/// sent then fails after the agent wait as a server that does not take it, saying why.
#[test]
fn a_task_sent_to_a_cluster_without_a_majority_fails_saying_why() {
    let Some(mut nodes) = cluster("three_nodes_majority") else { return };
    let url = nodes[0].server.url();
    let vars = [("TASKPOOL_AGENT_REPLICAS", "3")];
    let config = ClusterConfig::new(url.clone()).replicas(3).agent_wait(Duration::from_secs(10));
    let (_agent, pool) = common::pool_on(&url, config, 1, 1, &vars);
    assert_eq!(pool.submit(square, 2).join().unwrap(), 4);
    nodes[1].server.kill();
    nodes[2].server.kill();
    match pool.submit(square, 3).join() {
        Err(TaskError::Unreachable { source, .. }) => {
            let reason = source.to_string();
            assert!(reason.contains("fewer than a majority"), "says why: {reason}");
        }
        other => panic!("expected the task refused, got {other:?}"),
    }
}

/// An agent whose server dies reconnects to another server of the cluster, and says which:
/// not the url it was given, whose server is gone.
#[test]
fn an_agent_says_which_server_it_reconnected_to() {
    let Some(mut nodes) = cluster("three_nodes_reconnect") else { return };
    let agent = SpeakingAgent::start(&nodes[1].server.url(), &[]);
    said(&agent, "serving image").expect("the agent serves");
    nodes[1].server.kill();
    let lost = format!("{} at 127.0.0.1:{}", nodes[1].name, nodes[1].server.port());
    let before = said(&agent, &lost).expect("the agent says which server it lost");
    assert!(before.iter().all(|l| !l.contains("reconnected")), "{before:?}");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let line = agent.lines.iter().find(|l| l.contains("reconnected"));
        let _ = tx.send(line);
        drop(agent);
    });
    let line = rx.recv_timeout(WITHIN).expect("the agent reconnects").expect("it says so");
    let others = [&nodes[0], &nodes[2]];
    let named = others
        .iter()
        .any(|n| line.contains(&format!("{} at 127.0.0.1:{}", n.name, n.server.port())));
    assert!(named, "names the server it reconnected to: {line}");
}
