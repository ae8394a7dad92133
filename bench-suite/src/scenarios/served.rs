//! The report's `map` and `imap` rows with Python's `Pool.map` and `Pool.imap` sampled in
//! their rounds: a Python server (`backends/python_serve.rs`) keeps a warm
//! `multiprocessing.Pool` of the plan's workers and takes one sample in each round of the Rust
//! columns, as many as they take, so that drift of a shared machine hits both alike. Its
//! samples are the Python processes column's cell, and the value the row compares with,
//! whichever Python idiom maps fastest: the script's other maps run minutes later, in its own
//! run, and stay in the row as its idioms.

use std::cell::RefCell;

use super::cells::Target;
use super::scenario::Scenario;
use super::{Plan, RowId};
use crate::backends::Pools;
use crate::backends::python_serve::{ServeError, Server};
use crate::columns::{Column, Op};
use crate::report::{Cell, Idiom, Row};
use crate::stats::Variant;

/// The call the served samples of the `map` row time, as the row's idioms name it.
pub(crate) const SERVED_CALL: &str = "Pool.map(f, items)";

/// The call the served samples of the `imap` row time, as the row's idioms name it.
pub(crate) const SERVED_IMAP_CALL: &str = "Pool.imap(f, items)";

/// The column the served samples fill.
pub(crate) const SERVED_COLUMN: Column = Column::PYTHON_PROCESSES;

/// The call the server times for a row of `op`, if it serves that row.
pub(crate) fn served_call(op: Op) -> Option<&'static str> {
    match op {
        Op::Map => Some(SERVED_CALL),
        Op::Imap => Some(SERVED_IMAP_CALL),
        _ => None,
    }
}

/// The row of `scenario` (the `map` or the `imap` scenario) with the served samples in the
/// Python processes column: a value, or why there is none (no `python3`, or the server
/// failed: it is then killed, and its cell says why). The served value is also the column's
/// shown idiom.
pub(crate) fn served_row(scenario: &Scenario, plan: &Plan, pools: &RefCell<Pools>) -> (RowId, Row) {
    let items = (scenario.report_size)(plan);
    let op = scenario.op;
    let mut server = Server::start(plan.workers);
    let extra = match server.as_mut() {
        Ok(server) => vec![Variant::new(Target::Column(SERVED_COLUMN), move || {
            let rate = match op {
                Op::Imap => server.imap_noop(items),
                _ => server.map_noop(items),
            };
            rate.map_err(|e| e.to_string())
        })],
        Err(_) => Vec::new(),
    };
    let (id, mut row) = scenario.row_with(plan, pools, extra);
    match server {
        Ok(mut server) => {
            // The samples are taken: a server slow to exit is killed and costs nothing else.
            if let Err(e) = server.stop() {
                eprintln!("taskpool-bench: {e}");
            }
        }
        Err(ServeError::NoPython) => {
            row.cells.insert(SERVED_COLUMN, Cell::Skipped(ServeError::NoPython.to_string()));
        }
        Err(e) => {
            row.cells.insert(SERVED_COLUMN, Cell::Skipped(format!("failed: {e}")));
        }
    }
    // The script maps the rows' other Python idioms (`ProcessPoolExecutor.map`, `Pool.imap`
    // with the large chunks its docs advise): the served one joins them.
    if let (Some(call), Some(Cell::Value(value))) = (served_call(op), row.cells.get(&SERVED_COLUMN))
    {
        let value = value.clone();
        row.idioms.push(Idiom { column: SERVED_COLUMN, how: call.into(), value, shown: true });
    }
    (id, row)
}

/// Whether a row that [`served_row`] made holds served samples (the Python script's own run
/// then need not map with the served call).
pub(crate) fn sampled(row: &Row) -> bool {
    matches!(row.cells.get(&SERVED_COLUMN), Some(Cell::Value(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::{Mode, OVERHEAD};

    /// The quick run's `imap` row: every column that has `imap` measures it, the process
    /// column among them, and the Python server samples `Pool.imap` in the same rounds (when
    /// `python3` is there), so that the comparison column holds processes against Python
    /// processes; the other columns say why not, and the Python threads cell is left for the
    /// script.
    #[test]
    fn the_quick_imap_row_measures_processes_and_python_processes() {
        let plan = Plan::new(Mode::Quick);
        let scenario = OVERHEAD.iter().find(|s| s.op == Op::Imap).expect("an imap scenario");
        let pools = RefCell::new(Pools::default());
        let (id, row) = served_row(scenario, &plan, &pools);
        drop(pools);
        #[cfg(feature = "cluster")]
        crate::backends::cluster::stop();
        assert_eq!((id, row.key.as_str()), (RowId::Imap, "imap"));
        assert_eq!(row.label, "imap of 2000 no-ops, consumed as they come (items/s)");
        let measured = |column: Column| match row.cells.get(&column) {
            Some(Cell::Value(summary)) => {
                assert_eq!(summary.samples.len(), plan.map_repeats, "{column:?}");
                assert!(summary.median > 0.0 && summary.median.is_finite(), "{column:?}");
                true
            }
            other => {
                eprintln!("{column:?}: {other:?}");
                false
            }
        };
        let skipped = |column: Column| match row.cells.get(&column) {
            Some(Cell::Skipped(why)) => why.clone(),
            other => panic!("{column:?} is not skipped: {other:?}"),
        };
        let backend = |id| crate::columns::backend(id).unwrap();
        assert_eq!(measured(Column::TASKPOOL_PROCESSES), backend("processes").enabled());
        assert_eq!(measured(Column::TASKPOOL_THREADS), backend("threads").enabled());
        assert!(skipped(Column::RAYON).starts_with("rayon has no lazy ordered map"));
        assert_eq!(skipped(Column::PROCSPAWN), "procspawn has no batch API");
        assert!(!row.cells.contains_key(&Column::PYTHON_THREADS), "left for the script");
        if crate::backends::python::interpreter().is_err() {
            eprintln!("python3 not found: the Python processes cell says so");
            assert_eq!(skipped(SERVED_COLUMN), "python3 not found");
            return;
        }
        assert!(measured(SERVED_COLUMN), "Python's Pool.imap was not sampled");
        assert!(sampled(&row));
        // The served call is an idiom of the row, next to the script's chunked `Pool.imap`.
        let idioms: Vec<(Column, &str, bool)> =
            row.idioms.iter().map(|i| (i.column, i.how.as_str(), i.shown)).collect();
        assert_eq!(idioms, [(SERVED_COLUMN, SERVED_IMAP_CALL, true)]);
        if backend("processes").enabled() {
            let (peer, _) = row.best_peer(Column::TASKPOOL_PROCESSES).unwrap();
            assert_eq!(peer, SERVED_COLUMN);
            assert!(row.advantage(Column::TASKPOOL_PROCESSES).is_some());
        }
    }
}
