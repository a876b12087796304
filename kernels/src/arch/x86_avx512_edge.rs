//! Edge tiles of the AVX-512 f32 GEMM (`x86_avx512`) whose last B panel holds only a few
//! columns: an `N = 65` score matrix (`Q K^T` of a 65-token ViT) ends in a 1-column panel, and
//! the 16-lane tile would spend 16 lanes of every FMA on one column. With `n <= NARROW_N`
//! columns the tile is computed with A's rows in the lanes instead: per depth step `q`, the
//! column `A(0..m, q)` (`m <= 16`) times `B(q, j)` broadcast, so the work scales with `n`.
//!
//! A column is one contiguous load for a packed A panel and for a column-major A read in place;
//! a row-major A read in place (the `Q` of attention scores) is loaded 16 depth steps at a time
//! along its rows and transposed in registers. Every layout sums the same products in the same
//! order (four partial sums by `q mod 4`, added pairwise at the end), so the result does not
//! depend on whether the driver packed A: a thread's column range, and with it that choice, may
//! differ with the thread count, and results must not.

use super::x86_avx512::{NR, transpose_16x16};
use crate::gemm::UkernelParams;
use std::arch::x86_64::*;

/// Panels with at most this many columns take an edge kernel.
pub(super) const NARROW_N: usize = 4;
/// Partial sums per column: four FMA chains in flight even for a one-column tile.
const SUMS: usize = 4;

/// The mask of the first `n` of 16 lanes.
#[inline(always)]
fn lanes(n: usize) -> __mmask16 {
    if n >= 16 { 0xFFFF } else { (1u16 << n) - 1 }
}

/// Runs the narrow tile if this call has one (`p.n <= NARROW_N`, `p.m <= 16`, and a layout of A
/// with a unit stride); returns false to leave it to the full tile. `mr` is the height of a
/// packed A panel (the distance between its depth steps).
///
/// # Safety
/// AVX-512F is present; the micro-kernel contract (`gemm::contract`) holds for `p`, with `a`
/// packed (`packed`) or in place.
#[inline(always)]
pub(super) unsafe fn try_narrow(p: &UkernelParams, packed: bool, mr: usize) -> bool {
    if p.n > NARROW_N || p.m > 16 || p.k == 0 {
        return false;
    }
    let source = if packed {
        Source::Columns(mr as isize)
    } else if p.rsa == 1 {
        Source::Columns(p.csa)
    } else if p.csa == 1 {
        Source::Rows
    } else {
        return false;
    };
    // SAFETY: forwarded contract; `source` says where A's values lie.
    unsafe {
        match p.n {
            1 => rows_in_lanes::<1>(p, source),
            2 => rows_in_lanes::<2>(p, source),
            3 => rows_in_lanes::<3>(p, source),
            _ => rows_in_lanes::<4>(p, source),
        }
    }
    true
}

/// Where the A columns of a tile come from.
#[derive(Clone, Copy)]
enum Source {
    /// Column `q` is contiguous at `a + q * step`.
    Columns(isize),
    /// Row `i` is contiguous at `a + i * rsa` (columns come from a transpose).
    Rows,
}

/// Columns `q0 .. q0 + 16` of A (those below `k`), `m` rows in the lanes, zero elsewhere.
///
/// # Safety
/// AVX-512F; the contract's A for `p` as `source` describes it; `q0 < k`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn a_columns(p: &UkernelParams, source: Source, q0: usize) -> [__m512; 16] {
    let count = 16.min(p.k - q0);
    let mut v = [_mm512_setzero_ps(); 16];
    // SAFETY (both arms): every masked load reads A(i, q) with i < m, q0 <= q < k.
    unsafe {
        match source {
            Source::Columns(step) => {
                let mask = lanes(p.m);
                for (u, col) in v.iter_mut().enumerate().take(count) {
                    *col = _mm512_maskz_loadu_ps(mask, p.a.offset((q0 + u) as isize * step));
                }
                v
            }
            Source::Rows => {
                let mask = lanes(count);
                for (i, row) in v.iter_mut().enumerate().take(p.m) {
                    *row = _mm512_maskz_loadu_ps(mask, p.a.offset(i as isize * p.rsa).add(q0));
                }
                transpose_16x16(v)
            }
        }
    }
}

/// The `m x N` tile with A's rows in the lanes (see the module docs).
///
/// # Safety
/// AVX-512F; the contract for `p`, with A where `source` says.
#[target_feature(enable = "avx512f")]
unsafe fn rows_in_lanes<const N: usize>(p: &UkernelParams, source: Source) {
    let mut acc = [[_mm512_setzero_ps(); N]; SUMS];
    for q0 in (0..p.k).step_by(16) {
        // SAFETY: q0 < k; the B panel holds rows q0 .. k.
        unsafe {
            let cols = a_columns(p, source, q0);
            let b = p.b.add(q0 * NR);
            if q0 + 16 <= p.k {
                add_chunk::<N, true>(&mut acc, &cols, b, 16);
            } else {
                add_chunk::<N, false>(&mut acc, &cols, b, p.k - q0);
            }
        }
    }
    let mut cols = [[0f32; 16]; N];
    for (j, out) in cols.iter_mut().enumerate() {
        let sum = _mm512_add_ps(
            _mm512_add_ps(acc[0][j], acc[1][j]),
            _mm512_add_ps(acc[2][j], acc[3][j]),
        );
        // SAFETY: `out` holds 16 floats.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), sum) };
    }
    // SAFETY: forwarded contract for C and the bias.
    unsafe { store(p, |i, j| cols[j][i]) };
}

/// Adds the products of `count` depth steps (16 when `FULL`, which unrolls the loop with
/// constant accumulator slots): step `u` goes to partial sum `u mod SUMS`.
///
/// # Safety
/// AVX-512F; `b` points at `count` rows of a packed B panel (`NR` apart, `N` values used).
#[inline(always)]
unsafe fn add_chunk<const N: usize, const FULL: bool>(
    acc: &mut [[__m512; N]; SUMS],
    cols: &[__m512; 16],
    b: *const f32,
    count: usize,
) {
    for (u, col) in cols.iter().enumerate() {
        if !FULL && u == count {
            break;
        }
        // SAFETY: u < count: row u of the panel.
        let brow = unsafe { b.add(u * NR) };
        for (j, a) in acc[u % SUMS].iter_mut().enumerate() {
            // SAFETY: j < N <= NR: inside the row; AVX-512F (caller).
            *a = unsafe { _mm512_fmadd_ps(*col, _mm512_set1_ps(*brow.add(j)), *a) };
        }
    }
}

/// `C(i, j) = alpha * tile(i, j) + beta * C(i, j) (+ bias[j])` on the `m x n` corner, C read
/// only when `beta != 0`.
///
/// # Safety
/// The contract's C and bias pointers for `p`.
#[inline(always)]
unsafe fn store(p: &UkernelParams, tile: impl Fn(usize, usize) -> f32) {
    for i in 0..p.m {
        for j in 0..p.n {
            // SAFETY: (i, j) is inside the m x n corner; a non-null bias holds n values.
            unsafe {
                let c = p.c.offset(i as isize * p.rsc + j as isize * p.csc);
                // The full tile's rounding: alpha * sum, then one fused multiply-add of beta C.
                let mut v = p.alpha * tile(i, j);
                if p.beta != 0.0 {
                    v = p.beta.mul_add(*c, v);
                }
                if !p.bias.is_null() {
                    v += *p.bias.add(j);
                }
                *c = v;
            }
        }
    }
}
