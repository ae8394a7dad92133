//! The report's `map` row with Python's `Pool.map` sampled in its rounds: a Python server
//! (`backends/python_serve.rs`) keeps a warm `multiprocessing.Pool` of the plan's workers and
//! takes one sample in each round of the Rust columns, as many as they take, so that drift of
//! a shared machine hits both alike. Its samples are the Python processes column's cell, and
//! the value the row compares with, whichever Python idiom maps fastest: the script's other
//! maps run minutes later, in its own run, and stay in the row as its idioms.

use std::cell::RefCell;

use super::cells::Target;
use super::scenario::Scenario;
use super::{Plan, RowId};
use crate::backends::Pools;
use crate::backends::python_serve::{ServeError, Server};
use crate::columns::Column;
use crate::report::{Cell, Idiom, Row};
use crate::stats::Variant;

/// The call the served samples time, as the row's idioms name it.
pub(crate) const SERVED_CALL: &str = "Pool.map(f, items)";

/// The column the served samples fill.
pub(crate) const SERVED_COLUMN: Column = Column::PYTHON_PROCESSES;

/// The row of `scenario` (the `map` scenario) with the served samples in the Python processes
/// column: a value, or why there is none (no `python3`, or the server failed: it is then
/// killed, and its cell says why). The served value is also the column's shown idiom.
pub(crate) fn map_row(scenario: &Scenario, plan: &Plan, pools: &RefCell<Pools>) -> (RowId, Row) {
    let items = (scenario.report_size)(plan);
    let mut server = Server::start(plan.workers);
    let extra = match server.as_mut() {
        Ok(server) => vec![Variant::new(Target::Column(SERVED_COLUMN), move || {
            server.map_noop(items).map_err(|e| e.to_string())
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
    if let Some(Cell::Value(value)) = row.cells.get(&SERVED_COLUMN) {
        let value = value.clone();
        row.idioms.push(Idiom {
            column: SERVED_COLUMN,
            how: SERVED_CALL.into(),
            value,
            shown: true,
        });
    }
    (id, row)
}

/// Whether a row that [`map_row`] made holds served samples (the Python script's own run then
/// need not map with `Pool.map`).
pub(crate) fn sampled(row: &Row) -> bool {
    matches!(row.cells.get(&SERVED_COLUMN), Some(Cell::Value(_)))
}
