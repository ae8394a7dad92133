//! What a worker's shared-memory ring size costs and buys, side by side in one run: for
//! each ring size (and for the pipes alone), a pool of 2's start-up (from `new` to the first
//! result), the memory it adds (PSS of this program and its workers, summed), the no-op round
//! trip, 1,000 no-ops in flight, a `map` of 1M no-ops and a 1 MiB and a 64 MiB echo.
//!
//! Memory is the growth of the proportional set size (PSS) of this program and its workers
//! once the pool has run 100 no-ops: what the pool adds to the machine before a large payload
//! or a long run reaches the parts of the rings that are not pre-faulted.
//!
//! Each sample runs in a fresh child process of this program, the variants interleaved round
//! by round; the medians are printed. Run with
//! `cargo run --release -p taskpool-bench --example ring_size [rounds]`.
#![cfg_attr(not(feature = "process-pool"), allow(dead_code, unused_imports, unused_variables))]

use std::process::Command;
use std::time::Instant;

use serde_bytes::ByteBuf;
use taskpool_bench::tasks;

/// The variants: a label, the ring size (`0`: the pipes alone).
const VARIANTS: [(&str, usize); 7] = [
    ("pipes", 0),
    ("64 KiB", 64 << 10),
    ("128 KiB", 128 << 10),
    ("256 KiB", 256 << 10),
    ("512 KiB", 512 << 10),
    ("1 MiB", 1 << 20),
    ("2 MiB", 2 << 20),
];
const COLUMNS: [&str; 7] = [
    "start-up ms",
    "PSS KiB",
    "round trip µs",
    "1000 in flight ms",
    "map 1M ms",
    "1 MiB echo ms",
    "64 MiB echo ms",
];

/// The PSS of this program and its workers, in KiB.
fn program_pss_kib() -> f64 {
    taskpool_bench::tree_pss_kib(std::process::id())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// One sample in this (child) process, printed as one line of the [`COLUMNS`].
#[cfg(feature = "process-pool")]
fn sample(ring_bytes: usize) -> Result<(), taskpool_core::TaskError> {
    use taskpool_core::{Config, Pool};
    use taskpool_process::{ProcessConfig, ProcessPool};

    let config = ProcessConfig::new(Config::new().workers(2));
    let config = if ring_bytes > 0 { config.ring_bytes(ring_bytes) } else { config };
    let before = program_pss_kib();
    let clock = Instant::now();
    let pool = ProcessPool::with_config(config)?;
    pool.apply(tasks::noop, 1)?;
    let startup = clock.elapsed().as_secs_f64() * 1e3;
    pool.map(tasks::noop, 0..100)?;
    let pss = program_pss_kib() - before;

    let trips = (0..2000)
        .map(|i| {
            let clock = Instant::now();
            pool.apply(tasks::noop, i).map(|_| clock.elapsed().as_secs_f64() * 1e6)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let clock = Instant::now();
    let handles: Vec<_> = (0..1000).map(|i| pool.submit(tasks::noop, i)).collect();
    for handle in handles {
        handle.join()?;
    }
    let in_flight = clock.elapsed().as_secs_f64() * 1e3;
    let clock = Instant::now();
    pool.map(tasks::noop, 0..1_000_000)?;
    let map = clock.elapsed().as_secs_f64() * 1e3;
    // The median time, in ms, of `times` echoes of `bytes`.
    let echo = |bytes: usize, times: usize| {
        let samples = (0..times)
            .map(|_| {
                let payload = ByteBuf::from(vec![7u8; bytes]);
                let clock = Instant::now();
                pool.apply(tasks::echo, payload).map(|_| clock.elapsed().as_secs_f64() * 1e3)
            })
            .collect::<Result<Vec<_>, _>>();
        samples.map(median)
    };
    let (echoes, large) = (echo(1 << 20, 20)?, echo(64 << 20, 3)?);
    println!("{startup} {pss} {} {in_flight} {map} {} {}", median(trips), echoes, large);
    Ok(())
}

fn main() {
    taskpool_bench::init();
    let mut args = std::env::args().skip(1);
    let first = args.next();
    #[cfg(feature = "process-pool")]
    if first.as_deref() == Some("--sample") {
        let ring_bytes = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
        if let Err(e) = sample(ring_bytes) {
            eprintln!("sample failed: {e}");
            std::process::exit(1);
        }
        return;
    }
    let rounds: usize = match first {
        None => 5,
        Some(arg) => match arg.parse() {
            Ok(rounds) if rounds > 0 => rounds,
            _ => {
                eprintln!(
                    "ROUNDS must be a number above 0, not {arg:?}; usage: ring_size [ROUNDS]"
                );
                std::process::exit(2);
            }
        },
    };
    let exe = std::env::current_exe().expect("this program's path");
    let mut samples = vec![Vec::<Vec<f64>>::new(); VARIANTS.len()];
    for _ in 0..rounds {
        for (i, (_, ring_bytes)) in VARIANTS.iter().enumerate() {
            let mut command = Command::new(&exe);
            command.args(["--sample", &ring_bytes.to_string()]);
            if *ring_bytes == 0 {
                command.env("TASKPOOL_TRANSPORT", "pipes");
            }
            let out = command.output().expect("a sample runs");
            let line = String::from_utf8_lossy(&out.stdout);
            let values: Vec<f64> = line.split_whitespace().filter_map(|v| v.parse().ok()).collect();
            if values.len() == COLUMNS.len() {
                samples[i].push(values);
            } else {
                eprintln!("{}: {}", VARIANTS[i].0, String::from_utf8_lossy(&out.stderr));
            }
        }
    }
    println!("ring | {}", COLUMNS.join(" | "));
    for ((label, _), rows) in VARIANTS.iter().zip(&samples) {
        if rows.is_empty() {
            continue;
        }
        let medians: Vec<String> = (0..COLUMNS.len())
            .map(|c| format!("{:.3}", median(rows.iter().map(|r| r[c]).collect())))
            .collect();
        println!("{label} | {}", medians.join(" | "));
    }
}
