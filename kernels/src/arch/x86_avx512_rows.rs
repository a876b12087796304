//! The AVX-512 row sweep: batch-1 products (M <= 4) with a row-major B view, such as a GEMV
//! `x^T B`. Each B element is used by at most 4 rows, so packing B (a copy of all of it) costs
//! more than the arithmetic; the sweep instead reads B's rows front to back, 4 at a time (4
//! sequential streams the hardware prefetcher follows), and keeps the sums of a chunk of
//! columns in an L1 buffer.
//!
//! Every sum is the micro-kernel's (`x86_avx512`): one fused multiply-add per depth step, in
//! depth order, from zero, then `alpha * sum`, `fma(beta, C, .)` and `+ bias`, so a view B run
//! through the sweep and the same B pre-packed give the same bits. The one place the
//! micro-kernel rounds differently is a last panel of at most `NARROW_N` columns (the edge
//! tiles); the sweep leaves such a panel to it.

use super::x86_avx512::NR;
use super::x86_avx512_edge::NARROW_N;
use crate::gemm::RowsParams;
use std::arch::x86_64::*;

/// Largest M the sweep takes (4 rows of sums per B vector loaded).
pub const MAX_M: usize = 4;
/// Columns whose sums are kept at once: 4 rows x 512 f32 = 8 KiB, beside the B rows in L1.
const CHUNK: usize = 512;
/// B rows read per step.
const UNROLL: usize = 4;

/// The mask of the first `n` of 16 lanes.
#[inline(always)]
fn lanes(n: usize) -> __mmask16 {
    if n >= 16 { 0xFFFF } else { (1u16 << n) - 1 }
}

/// Runs the sweep on all of `p`'s columns but a last panel of at most `NARROW_N` columns, and
/// returns how many it did.
///
/// # Safety
/// AVX-512F is present; `p` satisfies [`RowsParams`] with `m <= MAX_M`.
pub unsafe fn rows_b_rowmajor(p: &RowsParams) -> usize {
    if p.n == 0 || p.m == 0 {
        return 0;
    }
    let last = p.n - (p.n - 1) / NR * NR;
    let n = if last <= NARROW_N { p.n - last } else { p.n };
    if n > 0 {
        // SAFETY: forwarded contract; n <= p.n.
        unsafe {
            match p.m {
                1 => sweep::<1>(p, n),
                2 => sweep::<2>(p, n),
                3 => sweep::<3>(p, n),
                _ => sweep::<MAX_M>(p, n),
            }
        }
    }
    n
}

/// The first `n` columns of `p`, `CHUNK` at a time.
#[target_feature(enable = "avx512f")]
unsafe fn sweep<const M: usize>(p: &RowsParams, n: usize) {
    let mut sums = [[0.0f32; CHUNK]; M];
    for j0 in (0..n).step_by(CHUNK) {
        let width = CHUNK.min(n - j0);
        for row in sums.iter_mut() {
            row[..width.div_ceil(16) * 16].fill(0.0);
        }
        let mut q = 0;
        while q + UNROLL <= p.k {
            // SAFETY: rows q..q + UNROLL of A and B exist; `width` columns from j0 do.
            unsafe { step::<M, UNROLL>(p, &mut sums, q, j0, width) };
            q += UNROLL;
        }
        while q < p.k {
            // SAFETY: as above, one row.
            unsafe { step::<M, 1>(p, &mut sums, q, j0, width) };
            q += 1;
        }
        // SAFETY: the chunk's columns lie in C's rows; `sums` holds them.
        unsafe { store(p, &sums, j0, width) };
    }
}

/// Adds depth steps `q..q + U` into the sums of columns `j0..j0 + width`, each sum taking its
/// `U` fused multiply-adds in depth order.
///
/// # Safety
/// AVX-512F; rows `q..q + U` of A (its `M` rows) and B exist, and B's rows hold the columns.
#[inline(always)]
unsafe fn step<const M: usize, const U: usize>(
    p: &RowsParams,
    sums: &mut [[f32; CHUNK]; M],
    q: usize,
    j0: usize,
    width: usize,
) {
    // SAFETY: the caller vouches for A(i, q + u) and B's rows q + u.
    let (a, b_rows) = unsafe {
        let a: [[__m512; U]; M] = std::array::from_fn(|i| {
            std::array::from_fn(|u| {
                let at = i as isize * p.rsa + (q + u) as isize * p.csa;
                _mm512_set1_ps(*p.a.offset(at))
            })
        });
        let b_rows: [*const f32; U] = std::array::from_fn(|u| p.b.add((q + u) * p.rsb + j0));
        (a, b_rows)
    };
    let full = width / 16;
    for v in 0..full {
        // SAFETY: 16 columns from 16 v exist in every row read.
        unsafe {
            let b: [__m512; U] = std::array::from_fn(|u| _mm512_loadu_ps(b_rows[u].add(16 * v)));
            add_products(sums, &a, &b, 16 * v);
        }
    }
    if width > 16 * full {
        let mask = lanes(width - 16 * full);
        // SAFETY: the mask covers exactly the columns that exist (masked-off lanes are not
        // read); the sums rows have room for 16 more.
        unsafe {
            let b: [__m512; U] = std::array::from_fn(|u| {
                _mm512_maskz_loadu_ps(mask, b_rows[u].wrapping_add(16 * full))
            });
            add_products(sums, &a, &b, 16 * full);
        }
    }
}

/// Adds `a[i][u] * b[u]` for u = 0, 1, .. (one fused multiply-add each, in that order) into the
/// 16 sums of every row `i` at column `at`.
///
/// # Safety
/// AVX-512F; `at + 16 <= CHUNK`.
#[inline(always)]
unsafe fn add_products<const M: usize, const U: usize>(
    sums: &mut [[f32; CHUNK]; M],
    a: &[[__m512; U]; M],
    b: &[__m512; U],
    at: usize,
) {
    for (row, a_row) in sums.iter_mut().zip(a) {
        // SAFETY: 16 sums from `at` exist; only inlined into the AVX-512F sweep.
        unsafe {
            let s = row.as_mut_ptr().add(at);
            let mut acc = _mm512_loadu_ps(s);
            for (&bu, &au) in b.iter().zip(a_row) {
                acc = _mm512_fmadd_ps(au, bu, acc);
            }
            _mm512_storeu_ps(s, acc);
        }
    }
}

/// `C = alpha * sums + beta * C (+ bias)` on columns `j0..j0 + width`, rounded as the
/// micro-kernel's row-major store rounds.
///
/// # Safety
/// AVX-512F; the columns lie in C's `m` rows (and in the bias when there is one).
#[inline(always)]
unsafe fn store<const M: usize>(p: &RowsParams, sums: &[[f32; CHUNK]; M], j0: usize, width: usize) {
    // SAFETY: only inlined into the AVX-512F sweep.
    let (alpha, beta) = unsafe { (_mm512_set1_ps(p.alpha), _mm512_set1_ps(p.beta)) };
    let has_bias = !p.bias.is_null();
    for v in 0..width.div_ceil(16) {
        let mask = lanes(width - 16 * v);
        let j = j0 + 16 * v;
        // SAFETY: a non-null bias holds the columns; the mask reads exactly them.
        let bias = unsafe {
            if has_bias {
                _mm512_maskz_loadu_ps(mask, p.bias.wrapping_add(j))
            } else {
                _mm512_setzero_ps()
            }
        };
        for (i, row) in sums.iter().enumerate() {
            // SAFETY: row i < m of C holds the columns; masked-off lanes are neither read nor
            // written.
            unsafe {
                let c = p.c.wrapping_add(i * p.rsc + j);
                let mut r = _mm512_mul_ps(alpha, _mm512_loadu_ps(row.as_ptr().add(16 * v)));
                if p.beta != 0.0 {
                    r = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(mask, c), r);
                }
                if has_bias {
                    r = _mm512_add_ps(r, bias);
                }
                _mm512_mask_storeu_ps(c, mask, r);
            }
        }
    }
}
