//! Splitting row-wise work across lithe's thread pool.
//!
//! Element-wise and row-wise kernels are single-threaded (as every kernel in `lithe-kernels`);
//! the tensor ops split large tensors into runs of whole rows here, so that on several threads
//! they do not leave the other cores idle between two parallel GEMMs.

use crate::error::Result;
use lithe_kernels::threads;
use rayon::prelude::*;

/// Below this many elements per thread a split costs more than it saves.
const MIN_ELEMENTS_PER_THREAD: usize = 1 << 15;

/// Runs `f(first_row, rows_of_out)` over runs of whole rows of `out` (`cols` per row): on the
/// caller for small tensors or one thread, else on lithe's pool, a few runs per thread. `f` reads
/// its inputs at the same rows; the result does not depend on the split.
pub(crate) fn for_row_runs(
    out: &mut [f32],
    cols: usize,
    f: impl Fn(usize, &mut [f32]) -> Result<()> + Sync,
) -> Result<()> {
    let cols = cols.max(1);
    let rows = out.len() / cols;
    let threads = threads::num_threads();
    let parts = threads.min(out.len() / MIN_ELEMENTS_PER_THREAD);
    if parts <= 1 || rows < 2 {
        return f(0, out);
    }
    let rows_per_run = rows.div_ceil(4 * parts);
    threads::install(|| {
        out.par_chunks_mut(rows_per_run * cols)
            .enumerate()
            .try_for_each(|(i, run)| f(i * rows_per_run, run))
    })
}
