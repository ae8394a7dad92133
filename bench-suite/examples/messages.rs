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
//! The measuring is the report's own (`taskpool_bench::messages`, the rows `messages_queue`
//! and `messages_pipe`); this example runs it with more messages and prints the figures.
//!
//! Run with `cargo run --release -p taskpool-bench --example messages -- [N] [REPEATS]`
//! (defaults: 1,000,000 messages, 5 repeats; Python sends N / 5, as it is slower).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use taskpool_bench::{Channel, messages};

/// Messages per second of one sample through `channel`.
fn sample(channel: Channel, n: u64) -> Result<f64, String> {
    Ok(n as f64 / messages(channel, n)?.as_secs_f64())
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Python's medians, `(queue, pipe)`, from `peers.py`.
fn python(n: u64, repeats: usize) -> Result<(f64, f64), String> {
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
    let usage = |what: &str, arg: &str| {
        format!("{what} must be a number above 0, not {arg:?}; usage: messages [N] [REPEATS]")
    };
    let mut number = |what: &str, default: u64| match args.next() {
        None => Ok(default),
        Some(arg) => arg.parse().ok().filter(|&n| n > 0).ok_or_else(|| usage(what, &arg)),
    };
    let n = number("N, the messages per sample,", 1_000_000)?;
    let repeats = number("REPEATS", 5)? as usize;
    let (mut queue, mut pipe) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        queue.push(sample(Channel::Queue, n)?);
        pipe.push(sample(Channel::Pipe, n)?);
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
