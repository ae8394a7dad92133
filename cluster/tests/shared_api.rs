//! The crate re-exports the shared API as the other backends do, so that code written for
//! them (matching a `TryError` of `try_map`, or a serialization error's `Direction`) builds
//! unchanged when it picks this backend.

use taskpool_cluster::{Direction, Side, TaskError, TryError};

#[test]
fn try_map_and_serialization_errors_are_nameable() {
    let failed: TryError<()> = TryError::Failed(TaskError::ShutDown);
    assert!(matches!(failed, TryError::Failed(TaskError::ShutDown)));
    let encode = Direction::Encode;
    assert!(matches!(encode, Direction::Encode));
    assert!(matches!(Side::Argument, Side::Argument));
}
