//! int8 GEMM: `C_i32 = A_s8 * B_s8^T`, with fused dequantize / GELU / requantize epilogues.
//!
//! - A (M x K) holds row-major activations, row `i` at `a[i * lda..]`;
//! - B (N x K) holds weights, one row per output column (a Linear layer's `[out, in]` matrix),
//!   packed once at load into a [`PackedI8B`] for one int8 path ([`I8Isa`]);
//! - values lie in [-127, 127] (symmetric quantization). -128 is rejected, because it is the
//!   value that would break the exactness of some paths (e.g. NEON's `smull` + `smlal2` pair sums
//!   in i16: 2 * 127 * 127 = 32258 fits, 2 * 128 * 128 does not).
//!
//! Every path returns bit-identical i32 sums (checked against [`crate::reference::gemm_i8_ref`]).
//! Paths ([`I8Isa`]): AMX-INT8 tiles, AVX512-VNNI (zmm), AVX-VNNI (ymm), AVX2, NEON dotprod,
//! NEON, portable; small M (decode) goes to a skinny kernel that streams B once without padding
//! A to the tile height. Threads split M (or N, when M has too few row tiles to share out
//! evenly, and for the skinny kernel); the result never depends on the thread count.
//! Files: [`pack`] (layouts), [`contract`] (micro-kernel contract and per-path table),
//! `driver` (loops and threads), [`epilogue`] (dequantize, GELU, requantize); the
//! micro-kernels live under `crate::arch` (`*_i8.rs`).

pub mod contract;
mod driver;
pub mod epilogue;
pub mod pack;

pub use contract::{
    AFeed, I8Kernels, I8Ukernel, I8UkernelParams, MAX_TILE, ScanRowFn, SkinnyKernel, TileState,
};
pub use epilogue::{Activation, Dequant, Scale};
pub use pack::PackedI8B;

use crate::elementwise::ElementwiseKernels;
use crate::{I8Isa, KernelError};
use driver::Sink;
use epilogue::{Epilogue, Target};
use std::cell::Cell;

/// Per-call options of the int8 GEMMs.
#[derive(Clone, Copy, Debug, Default)]
pub struct I8GemmOptions {
    /// Threads to split over; `None` uses [`crate::threads::num_threads`].
    pub threads: Option<usize>,
    /// Run on this kernel table instead of the one of the weights' path (tests use portable
    /// kernels with odd tiles); the weights must have been packed for it
    /// ([`PackedI8B::pack_for`]).
    pub kernels: Option<I8Kernels>,
}

/// `C = A * B^T` in exact i32: `c[i * ldc + j] = sum_p a[i * lda + p] * B[j, p]` for
/// `i < m`, `j < b.n()`.
///
/// Errors: `lda < K` (when m > 1), `ldc < N` (when m > 1), slices too short, a -128 in the rows
/// of A that are read, weights packed for another kernel table. `m == 0` or `N == 0` touches
/// nothing; `K == 0` writes zeros.
///
/// Speed: on the AMX path, rows of `c` that start on 64-byte boundaries (`c` aligned and
/// `ldc` a multiple of 16) let the tiles store whole cache lines; a `c` 16 bytes into a line
/// (where a large `Vec` starts) ran 128 x 384 x 1536 at about two thirds of the speed. The
/// epilogue variants ([`gemm_i8_dequant`], [`gemm_i8_requant`]) always store to an aligned tile.
pub fn gemm_i8(
    a: &[i8],
    lda: usize,
    m: usize,
    b: &PackedI8B,
    c: &mut [i32],
    ldc: usize,
    opts: &I8GemmOptions,
) -> Result<(), KernelError> {
    let (ks, row_init) = prepare(a, lda, m, b, opts)?;
    check_out("C", c.len(), m, b.n(), ldc)?;
    let sink = Sink::I32 {
        c: c.as_mut_ptr(),
        ldc,
    };
    driver::run(&ks, threads(opts), a, lda, m, &row_init.0, b, &sink);
    Ok(())
}

/// `out = act(s_a[i] * s_w[j] * (A * B^T)[i, j] + bias[j])` in f32 (see [`epilogue`]).
///
/// Errors: as [`gemm_i8`], plus `w_scales` (and `bias`) not of length N, a per-row scale slice
/// not of length `m`.
#[allow(clippy::too_many_arguments)] // BLAS-style: each operand with its stride
pub fn gemm_i8_dequant(
    a: &[i8],
    lda: usize,
    m: usize,
    b: &PackedI8B,
    dq: &Dequant<'_>,
    out: &mut [f32],
    ldo: usize,
    opts: &I8GemmOptions,
) -> Result<(), KernelError> {
    let prepared = prepare(a, lda, m, b, opts)?;
    check_out("out", out.len(), m, b.n(), ldo)?;
    check_dequant(dq, m, b.n())?;
    let target = Target::F32 {
        out: out.as_mut_ptr(),
        ld: ldo,
    };
    run_epilogue(&prepared, a, lda, m, b, dq, target, opts)
}

/// [`gemm_i8_dequant`] followed by requantization for the next layer:
/// `out = clamp(round_half_even(y / out_scale), -127, 127)`.
///
/// Errors: as [`gemm_i8_dequant`], plus an `out_scale` that is not finite and positive.
#[allow(clippy::too_many_arguments)] // BLAS-style: each operand with its stride
pub fn gemm_i8_requant(
    a: &[i8],
    lda: usize,
    m: usize,
    b: &PackedI8B,
    dq: &Dequant<'_>,
    out_scale: f32,
    out: &mut [i8],
    ldo: usize,
    opts: &I8GemmOptions,
) -> Result<(), KernelError> {
    let prepared = prepare(a, lda, m, b, opts)?;
    check_out("out", out.len(), m, b.n(), ldo)?;
    check_dequant(dq, m, b.n())?;
    if !(out_scale.is_finite() && out_scale > 0.0) {
        return Err(KernelError::InvalidValue(format!(
            "out_scale must be finite and positive, got {out_scale}"
        )));
    }
    let target = Target::S8 {
        out: out.as_mut_ptr(),
        ld: ldo,
        scale: out_scale,
    };
    run_epilogue(&prepared, a, lda, m, b, dq, target, opts)
}

#[allow(clippy::too_many_arguments)]
fn run_epilogue(
    (ks, row_init): &(I8Kernels, RowInit),
    a: &[i8],
    lda: usize,
    m: usize,
    b: &PackedI8B,
    dq: &Dequant<'_>,
    target: Target,
    opts: &I8GemmOptions,
) -> Result<(), KernelError> {
    let elementwise = ElementwiseKernels::for_isa(ks.isa.f32_family())?;
    let sink = Sink::Epilogue(Epilogue::new(*dq, target, &elementwise));
    driver::run(ks, threads(opts), a, lda, m, &row_init.0, b, &sink);
    Ok(())
}

fn threads(opts: &I8GemmOptions) -> usize {
    opts.threads
        .unwrap_or_else(crate::threads::num_threads)
        .max(1)
}

/// Checks A and the weights' path; returns the kernel table to run and, when its kernels read A
/// in place, each row's initial sum (`rowsum_factor * sum_k A[i, k]`, from the same pass over A
/// as the check; empty otherwise).
fn prepare(
    a: &[i8],
    lda: usize,
    m: usize,
    b: &PackedI8B,
    opts: &I8GemmOptions,
) -> Result<(I8Kernels, RowInit), KernelError> {
    let ks = match opts.kernels {
        Some(ks) => ks,
        None => I8Kernels::for_isa(b.isa())?,
    };
    if !b.fits(&ks) {
        return Err(KernelError::PackedForOtherIsa {
            packed: b.isa().name(),
            requested: ks.isa.name(),
        });
    }
    let k = b.k();
    if m > 1 && lda < k {
        return Err(KernelError::ShapeMismatch(format!(
            "lda = {lda} is less than K = {k}"
        )));
    }
    if m > 0 {
        let needed = (m - 1)
            .checked_mul(lda)
            .and_then(|v| v.checked_add(k))
            .unwrap_or(usize::MAX);
        if a.len() < needed {
            return Err(KernelError::LengthMismatch(format!(
                "A has {} values, {m} rows of K = {k} at stride {lda} need {needed}",
                a.len()
            )));
        }
    }
    // The -128 check reads all of A once; a table that reads A in place sums its rows in the
    // same pass.
    let mut row_init = RowInit::take();
    for i in 0..m {
        let row = &a[i * lda..i * lda + k];
        let has_min = match ks.a_feed {
            AFeed::InPlace {
                rowsum_factor,
                scan_row,
                ..
            } => {
                let (has_min, sum) = scan_row(row);
                row_init.0.push(rowsum_factor.wrapping_mul(sum));
                has_min
            }
            AFeed::Packed(_) => has_i8_min(row),
        };
        if has_min {
            let p = row.iter().position(|&v| v == i8::MIN).unwrap_or(0);
            return Err(KernelError::I8OutOfRange {
                what: "A",
                index: i * lda + p,
            });
        }
    }
    Ok((ks, row_init))
}

thread_local! {
    /// The row sums of the last call on this thread, kept for the next one to refill.
    static ROW_INIT: Cell<Vec<i32>> = const { Cell::new(Vec::new()) };
}

/// One call's initial row sums, in this thread's buffer: taken out while the call runs (a
/// call that nests inside it, e.g. a pool job the waiting caller picks up, finds it empty and
/// allocates) and put back on drop, so a warm call allocates nothing.
struct RowInit(Vec<i32>);

impl RowInit {
    fn take() -> RowInit {
        let mut sums = ROW_INIT.take();
        sums.clear();
        RowInit(sums)
    }
}

impl Drop for RowInit {
    fn drop(&mut self) {
        ROW_INIT.set(std::mem::take(&mut self.0));
    }
}

/// Whether `row` holds a -128. A branch-free OR over the row vectorizes; on x86-64 it is also
/// compiled for AVX2, whose 32-byte compares scan A (read once per call, before any packing) in
/// about a third of the baseline SSE2 loop's time.
pub(crate) fn has_i8_min(row: &[i8]) -> bool {
    fn scan(row: &[i8]) -> bool {
        row.iter().fold(false, |seen, &v| seen | (v == i8::MIN))
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        fn scan_avx2(row: &[i8]) -> bool {
            scan(row)
        }
        if is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked just above).
            return unsafe { scan_avx2(row) };
        }
    }
    scan(row)
}

fn check_out(what: &str, len: usize, m: usize, n: usize, ld: usize) -> Result<(), KernelError> {
    if m > 1 && ld < n {
        return Err(KernelError::ShapeMismatch(format!(
            "{what}: row stride {ld} is less than N = {n}"
        )));
    }
    if m > 0 && n > 0 {
        let needed = (m - 1)
            .checked_mul(ld)
            .and_then(|v| v.checked_add(n))
            .unwrap_or(usize::MAX);
        if len < needed {
            return Err(KernelError::LengthMismatch(format!(
                "{what} has {len} values, {m} rows of N = {n} at stride {ld} need {needed}"
            )));
        }
    }
    Ok(())
}

fn check_dequant(dq: &Dequant<'_>, m: usize, n: usize) -> Result<(), KernelError> {
    if dq.w_scales.len() != n {
        return Err(KernelError::LengthMismatch(format!(
            "w_scales has {} values, N = {n}",
            dq.w_scales.len()
        )));
    }
    if let Some(bias) = dq.bias
        && bias.len() != n
    {
        return Err(KernelError::LengthMismatch(format!(
            "bias has {} values, N = {n}",
            bias.len()
        )));
    }
    if let Scale::PerRow(s) = dq.a_scale
        && s.len() != m
    {
        return Err(KernelError::LengthMismatch(format!(
            "per-row activation scales: {} values for M = {m} rows",
            s.len()
        )));
    }
    Ok(())
}

/// The default int8 path: [`I8Isa::active`].
pub fn active_isa() -> I8Isa {
    I8Isa::active()
}
