//! An agent serves from a constructor of the program, before `main`; the constructors the
//! linker placed after it (a C or C++ library's, the runtime of `-C instrument-coverage`,
//! which writes the agent's coverage when it exits) run in the agent too, as they do before
//! `main`, and in its workers.

// Named before `taskpool_cluster`, so that rustc hands its objects to the linker after that
// crate's, and its constructor comes after the agent hook.
use late_constructor::{MARK_IN, ran};

mod common;

use taskpool_cluster::{ClusterConfig, ClusterPool, Pool};

fn constructor_ran(_: ()) -> bool {
    ran()
}

#[test]
fn constructors_after_the_agent_hook_run_in_agents() {
    assert!(ran(), "the constructor did not run in the program");
    let Some(server) = common::server("agent_constructors") else { return };
    let marks = common::markers("agent_constructors");
    let url = server.url();
    let agent = common::agent(&url, 1, &[(MARK_IN, marks.to_str().unwrap())]);
    // The agent writes its mark before it serves.
    assert!(marks.join(agent.pid().to_string()).exists(), "it did not run in the agent");
    let pool = ClusterPool::with_config(ClusterConfig::new(url)).expect("the pool connects");
    assert!(pool.apply(constructor_ran, ()).unwrap(), "it did not run in the agent's worker");
    let _ = std::fs::remove_dir_all(marks);
}
