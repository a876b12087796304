//! f32 GEMM: `C = alpha * op(A) * op(B) + beta * C`.
//!
//! A and B are strided views ([`MatRef`]), so a row-major, column-major or transposed operand is
//! just a choice of strides and never needs a transposed copy: the packing routines read any
//! layout. The work is split the BLIS way:
//!
//! - [`pack`]: copies blocks of A and B into micro-panels the micro-kernel streams through;
//! - the micro-kernels (one file per ISA under `crate::arch`) compute one MR x NR tile of C;
//! - [`driver`]: the loops over blocks (no ISA code), and the split across threads.
//!
//! Which micro-kernel runs is decided once ([`crate::Isa::active`]), or per call through
//! [`GemmOptions`].

pub mod contract;
pub mod driver;
pub mod pack;
mod view;

pub use contract::{KernelSet, UkernelParams};
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
    if a.rows() != c.rows() || b.cols() != c.cols() || a.cols() != b.rows() {
        return Err(KernelError::ShapeMismatch(format!(
            "A is {}x{}, B is {}x{}, C is {}x{}",
            a.rows(),
            a.cols(),
            b.rows(),
            b.cols(),
            c.rows(),
            c.cols()
        )));
    }
    let kernels = match opts.isa {
        Some(isa) => KernelSet::for_isa(isa)?,
        None => *active_kernels(),
    };
    // Small problems run on the calling thread anyway: skip the thread-count lookup (a lock).
    let macs = a.rows().saturating_mul(b.cols()).saturating_mul(a.cols());
    let small = macs < driver::PARALLEL_MIN_MACS;
    let threads = match opts.threads {
        _ if small => 1,
        Some(t) => t.max(1),
        None => crate::threads::num_threads().max(1),
    };
    driver::gemm(&kernels, threads, alpha, a, b, beta, c);
    Ok(())
}

/// The kernel set of [`Isa::active`], chosen once.
pub fn active_kernels() -> &'static KernelSet {
    static ACTIVE: OnceLock<KernelSet> = OnceLock::new();
    ACTIVE.get_or_init(|| {
        KernelSet::for_isa(Isa::active()).expect("Isa::active() only returns supported paths")
    })
}
