//! The calling thread as a baseline: CPU-bound work done one task after another, which the
//! speed-ups of every pool are measured against.

use super::{PoolSpec, Running};
use crate::scenarios::Kernel;

/// No pool at all: tasks run on the calling thread, whatever `spec` says.
struct Sequential;

/// The baseline; `spec` is ignored.
pub(crate) fn start(spec: &PoolSpec) -> Result<Box<dyn Running>, String> {
    let _ = spec;
    Ok(Box::new(Sequential))
}

impl Running for Sequential {
    fn noop(&self) -> Result<(), String> {
        std::hint::black_box(crate::tasks::noop(1));
        Ok(())
    }

    fn kernel(&self, kernel: &Kernel) -> Result<u64, String> {
        Ok(kernel.sequential())
    }
}
