//! f32 GEMM: `C = alpha * op(A) * op(B) + beta * C`.
//!
//! A and B are strided views ([`MatRef`]), so a row-major, column-major or transposed operand is
//! just a choice of strides and never needs a transposed copy: the packing routines read any
//! layout. The work is split the BLIS way:
//!
//! - [`pack`]: copies blocks of A and B into micro-panels the micro-kernel streams through;
//! - the micro-kernels (one file per ISA under `crate::arch`) compute one MR x NR tile of C;
//! - [`driver`]: the loops over blocks (no ISA code), and the split across threads;
//! - [`PackedB`]: a B (a Linear layer's weight) packed once and reused by every call.
//!
//! [`sgemm_fused`] also adds a bias row in the micro-kernels' epilogue, so a Linear layer's
//! `X W^T + b` is one pass over C; [`sgemm_fused_uninit`] writes that C into memory that need
//! not be initialized (a new output buffer is then never zeroed first).
//!
//! Which micro-kernel runs is decided once ([`crate::Isa::active`]), or per call through
//! [`GemmOptions`].

pub mod contract;
pub mod driver;
pub mod pack;
mod packed;
mod view;

pub use contract::{KernelSet, RowsParams, RowsSweep, UkernelParams};
pub use packed::{BSource, PackedB};
pub use view::{MatMut, MatRef};

use crate::{Isa, KernelError};
use std::sync::OnceLock;

/// Per-call overrides of the process-wide defaults.
#[derive(Clone, Copy, Debug, Default)]
pub struct GemmOptions {
    /// Force a code path; `None` uses [`Isa::active`].
    pub isa: Option<Isa>,
    /// Threads to split over; `None` uses [`crate::threads::num_threads`].
    pub threads: Option<usize>,
}

/// `C = alpha * A * B + beta * C` on the default path and thread count.
///
/// Shapes: A is m x k, B is k x n, C is m x n (transposes are expressed through the views'
/// strides, e.g. [`MatRef::t`]). Behaviour at the edges, as in BLAS:
/// - m == 0 or n == 0: nothing is touched;
/// - k == 0: C is scaled by beta;
/// - beta == 0: C is write-only, so NaN or garbage already in C does not leak into the result;
/// - NaN or infinity in A or B propagates into C through IEEE arithmetic (no checks, no panic).
pub fn sgemm(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
) -> Result<(), KernelError> {
    sgemm_with(&GemmOptions::default(), alpha, a, b, beta, c)
}

/// [`sgemm`] with an explicit code path and/or thread count.
pub fn sgemm_with(
    opts: &GemmOptions,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
) -> Result<(), KernelError> {
    sgemm_fused(opts, alpha, a, BSource::View(b), beta, None, c)
}

/// `C = alpha * A * B + beta * C (+ bias[j] on every row's j-th column when given)`, with B a
/// view or packed once by [`PackedB::pack`].
///
/// The bias is added once per element in the micro-kernel's epilogue of the last K block, so a
/// Linear layer `Y = X W^T + b` is `sgemm_fused(opts, 1.0, x, b_w, 0.0, Some(b), y)` instead of
/// filling Y with the bias rows and accumulating into it. Edge behaviour as in [`sgemm`], with
/// k == 0 giving `C = beta * C + bias`. Errors: mismatched shapes (including `bias.len() != n`)
/// and a [`PackedB`] packed for other kernels than `opts` resolves to
/// ([`KernelError::PackedMismatch`]). With the same kernels, a packed B and the view it was packed
/// from give bit-identical results, on any thread count.
pub fn sgemm_fused(
    opts: &GemmOptions,
    alpha: f32,
    a: MatRef<'_>,
    b: BSource<'_>,
    beta: f32,
    bias: Option<&[f32]>,
    c: MatMut<'_>,
) -> Result<(), KernelError> {
    let kernels = resolve_kernels(opts)?;
    let threads = threads_for(opts, a.rows(), b.cols(), a.cols());
    driver::gemm_fused(&kernels, threads, alpha, a, b, beta, bias, c)
}

/// `C = alpha * A * B (+ bias[j] on column j)` written into `c`, a row-major `m x n` output that
/// may be uninitialized (say a `Vec`'s [spare capacity](Vec::spare_capacity_mut)): [`sgemm_fused`]
/// with beta = 0, which never reads C. On `Ok` every one of the `m * n` values of `c` is
/// initialized, with the bits `sgemm_fused` would give, so a caller can `set_len` its vector
/// instead of zeroing a buffer the product overwrites. Errors as in [`sgemm_fused`], and a `c`
/// whose length is not `m * n`.
pub fn sgemm_fused_uninit(
    opts: &GemmOptions,
    alpha: f32,
    a: MatRef<'_>,
    b: BSource<'_>,
    bias: Option<&[f32]>,
    c: &mut [std::mem::MaybeUninit<f32>],
) -> Result<(), KernelError> {
    let kernels = resolve_kernels(opts)?;
    let threads = threads_for(opts, a.rows(), b.cols(), a.cols());
    driver::gemm_fused_uninit(&kernels, threads, alpha, a, b, bias, c)
}

/// The thread count for an `m x k` by `k x n` product: 1 below the driver's parallel threshold
/// (skipping the thread-count lookup, a lock), else `opts`'s or the process-wide count.
fn threads_for(opts: &GemmOptions, m: usize, n: usize, k: usize) -> usize {
    let macs = m.saturating_mul(n).saturating_mul(k);
    match opts.threads {
        _ if macs < driver::PARALLEL_MIN_MACS => 1,
        Some(t) => t.max(1),
        None => crate::threads::num_threads().max(1),
    }
}

/// A is m x k, B is k x n, C is m x n.
pub(crate) fn check_shapes(
    a: &MatRef<'_>,
    b_rows: usize,
    b_cols: usize,
    c: &MatMut<'_>,
) -> Result<(), KernelError> {
    if a.rows() != c.rows() || b_cols != c.cols() || a.cols() != b_rows {
        return Err(KernelError::ShapeMismatch(format!(
            "A is {}x{}, B is {}x{}, C is {}x{}",
            a.rows(),
            a.cols(),
            b_rows,
            b_cols,
            c.rows(),
            c.cols()
        )));
    }
    Ok(())
}

/// The kernels `opts` asks for: its ISA, else the active one.
pub(crate) fn resolve_kernels(opts: &GemmOptions) -> Result<KernelSet, KernelError> {
    match opts.isa {
        Some(isa) => KernelSet::for_isa(isa),
        None => Ok(*active_kernels()),
    }
}

/// The kernel set of [`Isa::active`], chosen once.
pub fn active_kernels() -> &'static KernelSet {
    static ACTIVE: OnceLock<KernelSet> = OnceLock::new();
    ACTIVE.get_or_init(|| {
        KernelSet::for_isa(Isa::active()).expect("Isa::active() only returns supported paths")
    })
}
