//! The classic producer/consumer program of Python's `multiprocessing` docs, with a
//! `Queue` between processes: one producer process puts N items, consumer processes get
//! them and report what they did, and a sentinel per consumer (`None`) tells each to stop.
//!
//! Run with `cargo run --release -p taskpool-process --example producer_consumer -- [N] [CONSUMERS]`
//! (defaults: 1,000,000 items, 2 consumers).

use std::time::Instant;

use taskpool_process::{Consumer, Producer, Queue, spawn};

/// Puts the items `0..n`, then one sentinel per consumer.
fn producer((queue, n, consumers): (Producer<Option<u64>>, u64, usize)) -> u64 {
    for item in 0..n {
        queue.put(Some(item)).expect("the consumers are gone");
    }
    for _ in 0..consumers {
        queue.put(None).expect("the consumers are gone");
    }
    n
}

/// Gets items until its sentinel; returns how many it got and their sum.
fn consumer(queue: Consumer<Option<u64>>) -> (u64, u64) {
    let (mut count, mut sum) = (0, 0);
    while let Some(item) = queue.get().expect("the producer died before its sentinels") {
        count += 1;
        sum += item;
    }
    (count, sum)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: producer_consumer [N] [CONSUMERS], N a count of items, CONSUMERS above 0";
    let n: u64 = args.next().map_or(Ok(1_000_000), |a| a.parse()).map_err(|_| usage)?;
    let consumers: usize = match args.next().map_or(Ok(2), |a| a.parse()) {
        Ok(consumers) if consumers > 0 => consumers,
        _ => return Err(usage.into()),
    };

    let queue = Queue::<Option<u64>>::new()?;
    let start = Instant::now();
    let workers = (0..consumers)
        .map(|_| spawn(consumer, queue.consumer()?))
        .collect::<Result<Vec<_>, _>>()?;
    let feeder = spawn(producer, (queue.producer()?, n, consumers))?;
    drop(queue);

    let put = feeder.join()?;
    let mut got = 0;
    let mut sum = 0;
    for (i, worker) in workers.into_iter().enumerate() {
        let (count, part) = worker.join()?;
        println!("consumer {i}: {count} items");
        got += count;
        sum += part;
    }
    let elapsed = start.elapsed();
    assert_eq!((got, sum), (put, n * n.saturating_sub(1) / 2), "every item once");
    println!(
        "{put} items from 1 producer to {consumers} consumers in {elapsed:.2?} \
         ({:.2} M items/s, process start-up included)",
        put as f64 / elapsed.as_secs_f64() / 1e6
    );
    Ok(())
}
