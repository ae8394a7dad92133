//! The shared conformance suite, run against the cluster backend: each behaviour on a
//! `nats-server` of its own with two agents of two workers.

mod common;

use std::time::Duration;

use taskpool_cluster::Config;

use common::Fixture;

fn fixture(test: &str, config: Config) -> Option<Fixture> {
    let server = common::server(test)?;
    let config = common::config(config).agent_wait(Duration::from_secs(60));
    Some(Fixture::on(server, 2, config))
}

/// One test per behaviour of `taskpool_core::conformance` (the list of its
/// `conformance_suite!`), each skipped with a printed reason when there is no server.
macro_rules! suite {
    ($($name:ident),+ $(,)?) => {$(
        #[test]
        fn $name() {
            if common::server_or_skip(stringify!($name)).is_none() {
                return;
            }
            taskpool_core::conformance::$name(|config| {
                fixture(stringify!($name), config).expect("the server was found")
            });
        }
    )+};
}

// Every behaviour of the suite, from its own list: a new one runs here as soon as it exists.
taskpool_core::conformance_suite!(each: suite);
