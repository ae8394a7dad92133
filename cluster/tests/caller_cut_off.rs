//! A caller whose connection to the server drops and comes back within its `abandon_after`
//! loses nothing; one cut off for longer is taken for gone by the agents, which stop its
//! tasks, and its pending tasks fail with `Unreachable` once it is back, rather than wait for
//! ever for results nobody will send.
//!
//! The caller reaches the server through a relay of this test's own, which the test cuts
//! (closing every relayed connection and refusing new ones) and mends.

mod common;

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use async_nats::jetstream::stream::State;
use taskpool_cluster::{ClusterConfig, ClusterPool, Config, Pool, TaskError, TaskHandle};

/// Long enough to call something that did not happen hung.
const DEADLINE: Duration = Duration::from_secs(60);

/// A relay to the server: cut, it closes what it relays and refuses new connections.
struct Relay {
    port: u16,
    open: Arc<AtomicBool>,
    relayed: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn to(server_port: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let relayed: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (is_open, streams) = (open.clone(), relayed.clone());
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { return };
                if !is_open.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", server_port)) else {
                    continue;
                };
                let pipes = (|| -> io::Result<_> {
                    let mut kept = streams.lock().unwrap();
                    kept.push(inbound.try_clone()?);
                    kept.push(outbound.try_clone()?);
                    Ok((inbound.try_clone()?, outbound.try_clone()?))
                })();
                let Ok((mut in_read, mut out_read)) = pipes else { continue };
                let (mut in_write, mut out_write) = (inbound, outbound);
                std::thread::spawn(move || io::copy(&mut in_read, &mut out_write));
                std::thread::spawn(move || io::copy(&mut out_read, &mut in_write));
            }
        });
        Relay { port, open, relayed }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for stream in self.relayed.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn mend(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// A pool through `relay` to the server at `url` that takes `bound` of silence, with three
/// tasks stored on the server, each in a message of its own, the first running.
fn start(
    url: &str,
    relay: &Relay,
    dir: &Path,
    bound: Duration,
) -> (ClusterPool, Vec<taskpool_cluster::TaskHandle<u32>>) {
    let config =
        ClusterConfig::new(relay.url()).config(Config::new().workers(1)).abandon_after(bound);
    let pool = ClusterPool::with_config(config).expect("the pool connects");
    assert!(pool.wait_for_agents(1, DEADLINE));
    let dir_name = dir.to_string_lossy().into_owned();
    let handles = (0..3)
        .map(|i| {
            let handle = pool.submit(common::mark_and_hold, (dir_name.clone(), i));
            streams(url, |tasks, _| tasks.last_sequence > u64::from(i));
            handle
        })
        .collect();
    assert!(common::poll(DEADLINE, || dir.join("started-0").exists()), "the first task runs");
    (pool, handles)
}

/// Returns once `done` holds of the states of the tasks and results streams.
fn streams(url: &str, done: impl Fn(&State, &State) -> bool) {
    common::streams_reach(url, DEADLINE, done);
}

/// The outcomes of `handles`, joined on a thread of their own (which then drops `pool`);
/// fails the test if they are not all in within `deadline`.
fn joined_within(
    pool: ClusterPool,
    handles: Vec<TaskHandle<u32>>,
    deadline: Duration,
) -> Vec<Result<u32, TaskError>> {
    let (tx, joined) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(handles.into_iter().map(|h| h.join()).collect::<Vec<_>>());
        drop(pool);
    });
    joined.recv_timeout(deadline).expect("the tasks are answered")
}

#[test]
fn a_caller_cut_off_within_its_bound_loses_nothing() {
    let Some(server) = common::server("caller_cut_off_briefly") else { return };
    let _agent = common::agent(&server.url(), 1, &[]);
    let relay = Relay::to(server.port());
    let dir = common::markers("cut-off-briefly");
    let (pool, handles) = start(&server.url(), &relay, &dir, Duration::from_secs(8));
    relay.cut();
    // The tasks finish while the caller is cut off: their results wait for it.
    std::fs::write(dir.join("go"), "").unwrap();
    // Every task message acknowledged: every result stored (several may share a message).
    streams(&server.url(), |tasks, _| tasks.last_sequence >= 3 && tasks.messages == 0);
    relay.mend();
    let results = joined_within(pool, handles, DEADLINE);
    for (i, result) in results.into_iter().enumerate() {
        assert_eq!(result.unwrap(), i as u32);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_caller_cut_off_for_longer_than_its_bound_fails_its_tasks_once_back() {
    let Some(server) = common::server("caller_cut_off_long") else { return };
    let _agent = common::agent(&server.url(), 1, &[]);
    let relay = Relay::to(server.port());
    let dir = common::markers("cut-off-long");
    let bound = Duration::from_secs(3);
    let (pool, handles) = start(&server.url(), &relay, &dir, bound);
    let worker: u32 = std::fs::read_to_string(dir.join("started-0")).unwrap().parse().unwrap();
    relay.cut();
    // The agent takes the caller for gone and stops its running task.
    assert!(
        common::poll(bound + DEADLINE, || common::ended(worker)),
        "the running task was stopped"
    );
    relay.mend();
    let results = joined_within(pool, handles, DEADLINE);
    for result in results {
        match result {
            Err(TaskError::Unreachable { source, .. }) => {
                assert!(source.to_string().contains("abandon_after"), "{source}");
            }
            other => panic!("expected a task of a caller taken for gone to fail, got {other:?}"),
        }
    }
    for i in 1..3 {
        assert!(!dir.join(format!("started-{i}")).exists(), "task {i} of the gone caller ran");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
