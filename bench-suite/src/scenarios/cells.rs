//! Which backend fills each column of a row: the first backend of the column (in the order
//! of `columns.rs`) that can run the row's operation at its size; if none can, the column
//! says why. References (floors, the sequential baseline) join a row when they can run it.

use crate::columns::{BACKENDS, Backend, Column, Op, Shows};

/// Where a measured value goes: a column's cell or the row's reference.
pub(crate) type Target = Shows;

/// For each column, in table order: the backend that fills it for `op` at `size`, or why
/// none of the column's backends can.
pub(crate) fn choose(op: Op, size: u64) -> Vec<(Column, Result<&'static Backend, String>)> {
    Column::ALL
        .iter()
        .map(|&column| {
            let mut why = None;
            for backend in BACKENDS.iter().filter(|b| b.column() == Some(column)) {
                match backend.can(op, size) {
                    Ok(()) => return (column, Ok(backend)),
                    Err(e) => {
                        why.get_or_insert(e);
                    }
                }
            }
            (column, Err(why.unwrap_or_else(|| "no backend".to_owned())))
        })
        .collect()
}

/// The references that can run `op` at `size`, with their names.
pub(crate) fn references(op: Op, size: u64) -> Vec<(&'static str, &'static Backend)> {
    BACKENDS
        .iter()
        .filter_map(|b| match b.shows() {
            Shows::Reference(name) if b.can(op, size).is_ok() => Some((name, b)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_column_takes_its_first_able_backend_or_says_why_not() {
        let spawn = choose(Op::Spawn, 1);
        let rayon = spawn.iter().find(|(c, _)| *c == Column::RAYON).unwrap();
        assert_eq!(rayon.1.as_ref().unwrap().id(), "std-thread");
        let map = choose(Op::Map, 1000);
        let procspawn = map.iter().find(|(c, _)| *c == Column::PROCSPAWN).unwrap();
        assert_eq!(procspawn.1.as_ref().unwrap_err(), "procspawn has no batch API");
        assert_eq!(map.len(), Column::ALL.len());
    }

    #[test]
    fn references_join_the_rows_they_can_run() {
        let names = |op| references(op, 8).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(names(Op::RoundTrip), ["blocking pipe floor", "spinning shared-memory floor"]);
        assert_eq!(names(Op::Payload), ["blocking pipe floor", "copy floor"]);
        // The floor echoes SharedBytes' bytes, in a build that has the type.
        let shared: &[&str] =
            if cfg!(feature = "process-pool") { &["blocking pipe floor"] } else { &[] };
        assert_eq!(names(Op::PayloadShared), shared);
        assert_eq!(names(Op::Kernels), ["sequential"]);
        assert!(names(Op::Startup).is_empty());
    }
}
