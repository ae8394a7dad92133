//! Small messages per second from one process to another: taskpool's `Queue` and `Pipe`
//! against Python's `multiprocessing.Queue` and `multiprocessing.Pipe()`, measured the same
//! way in one run.
//!
//! Each sample starts a fresh producer process that puts a marker, then N small integers,
//! then a sentinel (`None`); the consumer (this process, or the Python script's main
//! process) runs the clock from the marker's arrival to the sentinel's, so process start-up
//! is left out. The taskpool variants are interleaved (queue, pipe, queue, pipe, ...); the
//! Python script (`python/peers.py`, scenario `messages`) interleaves its own two the same
//! way. Medians of the samples are printed, with each taskpool figure's ratio to Python's.
//!
//! Run with `cargo run --release -p taskpool-bench --example messages -- [N] [REPEATS]`
//! (defaults: 1,000,000 messages, 5 repeats; Python sends N / 5, as it is slower).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use taskpool_process::{End, GetError, Pipe, Producer, Queue, spawn};

/// Puts the marker, `n` integers and the sentinel.
fn queue_producer((queue, n): (Producer<Option<i64>>, i64)) {
    queue.put(Some(-1)).expect("the consumer is gone");
    for i in 0..n {
        queue.put(Some(i)).expect("the consumer is gone");
    }
    queue.put(None).expect("the consumer is gone");
}

/// The same through a pipe's end.
fn pipe_producer((end, n): (End<Option<i64>>, i64)) {
    end.send(Some(-1)).expect("the consumer is gone");
    for i in 0..n {
        end.send(Some(i)).expect("the consumer is gone");
    }
    end.send(None).expect("the consumer is gone");
}

/// Messages per second from the marker to the sentinel, with `get` taking each.
fn drain(n: i64, get: impl Fn() -> Result<Option<i64>, GetError>) -> Result<f64, String> {
    if get().map_err(|e| e.to_string())? != Some(-1) {
        return Err("the first message is not the marker".into());
    }
    let start = Instant::now();
    let mut count = 0;
    while get().map_err(|e| e.to_string())?.is_some() {
        count += 1;
    }
    let elapsed = start.elapsed();
    if count != n {
        return Err(format!("{count} messages arrived, not {n}"));
    }
    Ok(n as f64 / elapsed.as_secs_f64())
}

fn queue_sample(n: i64) -> Result<f64, String> {
    let queue = Queue::<Option<i64>>::new().map_err(|e| e.to_string())?;
    let child = spawn(queue_producer, (queue.producer().map_err(|e| e.to_string())?, n))
        .map_err(|e| e.to_string())?;
    let rate = drain(n, || queue.get());
    child.join().map_err(|e| e.to_string())?;
    rate
}

fn pipe_sample(n: i64) -> Result<f64, String> {
    let (here, there) = Pipe::new::<Option<i64>>().map_err(|e| e.to_string())?;
    let child = spawn(pipe_producer, (there, n)).map_err(|e| e.to_string())?;
    let rate = drain(n, || here.recv());
    child.join().map_err(|e| e.to_string())?;
    rate
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Python's medians, `(queue, pipe)`, from `peers.py`.
fn python(n: i64, repeats: usize) -> Result<(f64, f64), String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python").join("peers.py");
    let spec = format!(r#"{{"scenarios": ["messages"], "repeats": {repeats}, "messages": {n}}}"#);
    let mut child = Command::new("python3")
        .arg(&script)
        .args(["--spec", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("python3: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(spec.as_bytes()).map_err(|e| format!("python3: {e}"))?;
    }
    let output = child.wait_with_output().map_err(|e| format!("python3: {e}"))?;
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("peers.py output: {e}"))?;
    let cell = |kind: &str| {
        report["results"]["messages"][kind]["median_messages_per_s"]
            .as_f64()
            .ok_or_else(|| format!("peers.py has no {kind} figure: {}", report["errors"]))
    };
    Ok((cell("mp_queue")?, cell("mp_pipe")?))
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let n: i64 = args.next().map_or(Ok(1_000_000), |a| a.parse()).map_err(|e| format!("{e}"))?;
    let repeats: usize = args.next().map_or(Ok(5), |a| a.parse()).map_err(|e| format!("{e}"))?;
    let (mut queue, mut pipe) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        queue.push(queue_sample(n)?);
        pipe.push(pipe_sample(n)?);
    }
    let (queue, pipe) = (median(queue), median(pipe));
    println!(
        "small messages (Option<i64>) from a child process to its parent, medians of {repeats}:"
    );
    println!("  taskpool Queue   {:>7.2} M/s ({n} messages per sample)", queue / 1e6);
    println!("  taskpool Pipe    {:>7.2} M/s", pipe / 1e6);
    match python((n / 5).max(1000), repeats) {
        Ok((py_queue, py_pipe)) => {
            println!(
                "  Python mp.Queue  {:>7.2} M/s ({} messages per sample)",
                py_queue / 1e6,
                (n / 5).max(1000)
            );
            println!("  Python mp.Pipe   {:>7.2} M/s", py_pipe / 1e6);
            println!(
                "  ratios: Queue {:.1}x multiprocessing.Queue, Pipe {:.1}x multiprocessing.Pipe",
                queue / py_queue,
                pipe / py_pipe
            );
        }
        Err(e) => println!("  Python: skipped ({e})"),
    }
    Ok(())
}
