//! The f32 row sweep: batch-1 products (M <= 4) with a row-major B view, such as a GEMV
//! `x^T B`. Each B element is used by at most 4 rows, so packing B (a copy of all of it) costs
//! more than the arithmetic; the sweep instead reads B's rows front to back, 4 at a time (4
//! sequential streams the hardware prefetcher follows), and keeps the sums of a chunk of
//! columns in an L1 buffer.
//!
//! Every sum is the micro-kernel's: one fused multiply-add per depth step, in depth order, from
//! zero, then `alpha * sum`, `beta * C` added the way that ISA's micro-kernel adds it to a tile
//! of at most 4 rows ([`BetaRounding`]), and `+ bias`; so a view B run through the sweep and the
//! same B pre-packed give the same bits. One generic body over [`SimdF32`], instantiated inside
//! each ISA's `#[target_feature]` entry point (`rows_b_rowmajor` in `x86_avx512`, `x86_avx2`,
//! `aarch64_neon`).

use super::simd::{SimdF32, load_lanes, store_lanes};
use crate::gemm::RowsParams;

/// Largest M the sweep takes (4 rows of sums per B vector loaded).
pub const MAX_M: usize = 4;
/// Columns whose sums are kept at once: 4 rows x 512 f32 = 8 KiB, beside the B rows in L1.
const CHUNK: usize = 512;
/// B rows read per step.
const UNROLL: usize = 4;

/// How the ISA's micro-kernel adds `beta * C` to `alpha * sum` on a short (M <= 4) row-major
/// tile.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum BetaRounding {
    /// One fused multiply-add, `fma(beta, C, alpha * sum)` (the AVX-512 tile).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Fused,
    /// A product and a sum, `alpha * sum + beta * C` (the portable store).
    Separate,
}

/// Sweeps the first `n` columns of `p` (`1 <= m <= MAX_M`).
///
/// # Safety
/// `V`'s ISA is enabled in the caller (this is inlined into its entry point); `p` satisfies
/// [`RowsParams`] and `n <= p.n`.
#[inline(always)]
pub(crate) unsafe fn sweep<V: SimdF32>(p: &RowsParams, n: usize, beta_rounding: BetaRounding) {
    // SAFETY: forwarded contract.
    unsafe {
        match p.m {
            1 => sweep_rows::<V, 1>(p, n, beta_rounding),
            2 => sweep_rows::<V, 2>(p, n, beta_rounding),
            3 => sweep_rows::<V, 3>(p, n, beta_rounding),
            _ => sweep_rows::<V, MAX_M>(p, n, beta_rounding),
        }
    }
}

/// [`sweep`] for `M` rows, `CHUNK` columns at a time.
#[inline(always)]
unsafe fn sweep_rows<V: SimdF32, const M: usize>(p: &RowsParams, n: usize, beta: BetaRounding) {
    let mut sums = [[0.0f32; CHUNK]; M];
    for j0 in (0..n).step_by(CHUNK) {
        let width = CHUNK.min(n - j0);
        for row in sums.iter_mut() {
            row[..width.div_ceil(V::LANES) * V::LANES].fill(0.0);
        }
        let mut q = 0;
        while q + UNROLL <= p.k {
            // SAFETY: rows q..q + UNROLL of A and B exist; `width` columns from j0 do.
            unsafe { step::<V, M, UNROLL>(p, &mut sums, q, j0, width) };
            q += UNROLL;
        }
        while q < p.k {
            // SAFETY: as above, one row.
            unsafe { step::<V, M, 1>(p, &mut sums, q, j0, width) };
            q += 1;
        }
        // SAFETY: the chunk's columns lie in C's rows; `sums` holds them.
        unsafe { store::<V, M>(p, &sums, j0, width, beta) };
    }
}

/// Adds depth steps `q..q + U` into the sums of columns `j0..j0 + width`, each sum taking its
/// `U` fused multiply-adds in depth order.
///
/// # Safety
/// Rows `q..q + U` of A (its `M` rows) and B exist, and B's rows hold the columns.
#[inline(always)]
unsafe fn step<V: SimdF32, const M: usize, const U: usize>(
    p: &RowsParams,
    sums: &mut [[f32; CHUNK]; M],
    q: usize,
    j0: usize,
    width: usize,
) {
    // SAFETY: the caller vouches for A(i, q + u) and B's rows q + u.
    let (a, b_rows) = unsafe {
        let a: [[V; U]; M] = std::array::from_fn(|i| {
            std::array::from_fn(|u| {
                V::splat(*p.a.offset(i as isize * p.rsa + (q + u) as isize * p.csa))
            })
        });
        let b_rows: [*const f32; U] = std::array::from_fn(|u| p.b.add((q + u) * p.rsb + j0));
        (a, b_rows)
    };
    let full = width / V::LANES;
    for v in 0..full {
        let at = v * V::LANES;
        // SAFETY: LANES columns from `at` exist in every row read.
        let b: [V; U] = std::array::from_fn(|u| unsafe { V::load(b_rows[u].add(at)) });
        // SAFETY: LANES sums from `at` exist.
        unsafe { add_products(sums, &a, &b, at) };
    }
    let at = full * V::LANES;
    if width > at {
        // SAFETY: the tail's columns exist, and nothing past them is read; the sums rows have
        // room for a whole vector more (CHUNK is a multiple of LANES).
        unsafe {
            let b: [V; U] = std::array::from_fn(|u| V::load_tail(b_rows[u].add(at), width - at));
            add_products(sums, &a, &b, at);
        }
    }
}

/// Adds `a[i][u] * b[u]` for u = 0, 1, .. (one fused multiply-add each, in that order) into the
/// `LANES` sums of every row `i` at column `at`.
///
/// # Safety
/// `at + LANES <= CHUNK`.
#[inline(always)]
unsafe fn add_products<V: SimdF32, const M: usize, const U: usize>(
    sums: &mut [[f32; CHUNK]; M],
    a: &[[V; U]; M],
    b: &[V; U],
    at: usize,
) {
    for (row, a_row) in sums.iter_mut().zip(a) {
        // SAFETY: LANES sums from `at` exist.
        unsafe {
            let s = row.as_mut_ptr().add(at);
            let mut acc = V::load(s);
            for (&bu, &au) in b.iter().zip(a_row) {
                acc = au.mul_add(bu, acc);
            }
            acc.store(s);
        }
    }
}

/// `C = alpha * sums + beta * C (+ bias)` on columns `j0..j0 + width`, rounded as the ISA's
/// micro-kernel rounds a short row-major tile.
///
/// # Safety
/// The columns lie in C's `m` rows (and in the bias when there is one).
#[inline(always)]
unsafe fn store<V: SimdF32, const M: usize>(
    p: &RowsParams,
    sums: &[[f32; CHUNK]; M],
    j0: usize,
    width: usize,
    rounding: BetaRounding,
) {
    let (alpha, beta) = (V::splat(p.alpha), V::splat(p.beta));
    for at in (0..width).step_by(V::LANES) {
        let lanes = V::LANES.min(width - at);
        let j = j0 + at;
        // SAFETY: the bias holds `lanes` values from column j (the caller's contract).
        let bias = (!p.bias.is_null()).then(|| unsafe { load_lanes::<V>(p.bias.add(j), lanes) });
        for (i, row) in sums.iter().enumerate() {
            let c = p.c.wrapping_add(i * p.rsc + j);
            // SAFETY: the sums row holds a whole vector from `at`.
            let mut r = alpha.mul(unsafe { V::load(row.as_ptr().add(at)) });
            if p.beta != 0.0 {
                // SAFETY: C's row i holds `lanes` values from column j (the caller's contract).
                let c0 = unsafe { load_lanes::<V>(c, lanes) };
                r = match rounding {
                    BetaRounding::Fused => beta.mul_add(c0, r),
                    BetaRounding::Separate => r.add(beta.mul(c0)),
                };
            }
            if let Some(bias) = bias {
                r = r.add(bias);
            }
            // SAFETY: as for the load of C.
            unsafe { store_lanes(r, c, lanes) };
        }
    }
}

/// Of `n` columns in `nr`-wide panels, how many the sweep takes: all but a last panel of at most
/// `leave_narrow` columns (one the micro-kernel rounds its own way; 0 leaves none).
pub(crate) fn columns_to_sweep(n: usize, nr: usize, leave_narrow: usize) -> usize {
    if n == 0 {
        return 0;
    }
    let last = n - (n - 1) / nr * nr;
    if last <= leave_narrow { n - last } else { n }
}

/// Defines one ISA's `pub unsafe fn rows_b_rowmajor(p: &RowsParams) -> usize` (a
/// [`RowsKernel`](crate::gemm::contract::RowsKernel)): [`sweep`] on vector type `$vector` inside
/// `#[target_feature(enable = $features)]`, with `BetaRounding::$rounding`, over the columns
/// [`columns_to_sweep`]`(n, $nr, $leave_narrow)` gives.
macro_rules! rows_sweep_entry {
    ($features:literal, $vector:ty, $rounding:ident, $nr:expr, $leave_narrow:expr) => {
        /// The row sweep (`arch::rows_sweep`) on this ISA's vectors; returns the columns swept.
        ///
        /// # Safety
        /// The ISA's features are present; `p` satisfies [`RowsParams`] with
        /// `m <= rows_sweep::MAX_M`.
        pub unsafe fn rows_b_rowmajor(p: &RowsParams) -> usize {
            let n = $crate::arch::rows_sweep::columns_to_sweep(p.n, $nr, $leave_narrow);
            if n > 0 && p.m > 0 {
                // SAFETY: forwarded contract; n <= p.n.
                unsafe { rows_sweep_with_features(p, n) };
            }
            n
        }

        #[target_feature(enable = $features)]
        unsafe fn rows_sweep_with_features(p: &RowsParams, n: usize) {
            use $crate::arch::rows_sweep::{BetaRounding, sweep};
            // SAFETY: the ISA is enabled here; forwarded contract.
            unsafe { sweep::<$vector>(p, n, BetaRounding::$rounding) }
        }
    };
}
pub(crate) use rows_sweep_entry;
