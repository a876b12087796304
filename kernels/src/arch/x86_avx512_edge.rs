//! Edge tiles of the AVX-512 f32 GEMM (`x86_avx512`) whose last B panel holds only a few
//! columns: an `N = 65` score matrix (`Q K^T` of a 65-token ViT) ends in a 1-column panel, and
//! the 16-lane tile would spend 16 lanes of every FMA on one column. With `n <= NARROW_N`
//! columns the tile is computed along another axis, so the work scales with `n`:
//!
//! - **rows in lanes** (a packed A panel, or a column-major A read in place): per depth step
//!   `q`, the column `A(0..m, q)` (`m <= 16`, one contiguous load) times `B(q, j)` broadcast;
//! - **dot products** (a row-major A read in place, the `Q` of attention scores): the `n` B
//!   columns are gathered once per tile into contiguous vectors, then each row of A streams past
//!   them, one 16-lane dot product per C element.
//!
//! The two forms round differently; the driver decides how A is fed once per problem (not per
//! thread), so a result never depends on the thread count.

use super::x86_avx512::NR;
use crate::gemm::UkernelParams;
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Panels with at most this many columns take an edge kernel.
pub(super) const NARROW_N: usize = 4;
/// Deepest panel the dot-product form gathers on the stack.
const DOT_MAX_K: usize = 256;
/// Partial sums per column in the rows-in-lanes form: four FMA chains in flight even for a
/// one-column tile.
const SUMS: usize = 4;

/// The mask of the first `n` of 16 lanes.
#[inline(always)]
fn lanes(n: usize) -> __mmask16 {
    if n >= 16 { 0xFFFF } else { (1u16 << n) - 1 }
}

/// Runs the narrow tile if this call has one (`p.n <= NARROW_N`, `p.m <= 16`, and a layout of A
/// with a unit stride, at most `DOT_MAX_K` deep if row-major); returns false to leave it to the
/// full tile. `mr` is the height of a packed A panel (the distance between its depth steps).
///
/// # Safety
/// AVX-512F is present; the micro-kernel contract (`gemm::contract`) holds for `p`, with `a`
/// packed (`packed`) or in place.
#[inline(always)]
pub(super) unsafe fn try_narrow(p: &UkernelParams, packed: bool, mr: usize) -> bool {
    if p.n > NARROW_N || p.m > 16 || p.k == 0 {
        return false;
    }
    let step = if packed {
        mr as isize
    } else if p.rsa == 1 {
        p.csa
    } else if p.csa == 1 && p.k <= DOT_MAX_K {
        // SAFETY: forwarded contract; rows of A are contiguous; k <= DOT_MAX_K.
        unsafe {
            match p.n {
                1 => dots::<1>(p),
                2 => dots::<2>(p),
                3 => dots::<3>(p),
                _ => dots::<4>(p),
            }
        }
        return true;
    } else {
        return false;
    };
    // SAFETY: forwarded contract; column q of A is contiguous at `a + q * step`.
    unsafe {
        match p.n {
            1 => rows_in_lanes::<1>(p, step),
            2 => rows_in_lanes::<2>(p, step),
            3 => rows_in_lanes::<3>(p, step),
            _ => rows_in_lanes::<4>(p, step),
        }
    }
    true
}

/// The `m x N` tile with A's rows in the lanes (see the module docs): `SUMS` depth steps in
/// flight, each into its own partial sums, added pairwise at the end.
///
/// # Safety
/// AVX-512F; A(i, q) at `p.a + i + q * step` for `i < m`, `q < k`; the contract for B and C.
#[target_feature(enable = "avx512f")]
unsafe fn rows_in_lanes<const N: usize>(p: &UkernelParams, step: isize) {
    let mask = lanes(p.m);
    let mut acc = [[_mm512_setzero_ps(); N]; SUMS];
    // One depth step into one set of sums: the column A(0..m, q) times each B(q, j).
    let add_step = |acc: &mut [__m512; N], q: usize| {
        // SAFETY: q < k: column q of A has m values at `a + q * step`, row q of the B panel
        // NR >= N.
        unsafe {
            let col = _mm512_maskz_loadu_ps(mask, p.a.offset(q as isize * step));
            let brow = p.b.add(q * NR);
            for (j, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(col, _mm512_set1_ps(*brow.add(j)), *a);
            }
        }
    };
    let mut q = 0;
    while q + SUMS <= p.k {
        for (u, sums) in acc.iter_mut().enumerate() {
            add_step(sums, q + u);
        }
        q += SUMS;
    }
    while q < p.k {
        add_step(&mut acc[0], q);
        q += 1;
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

/// The `m x N` tile as `m N` dot products along K: the N B columns are gathered once into
/// contiguous vectors (zero past `k`), then each row of A streams past them.
///
/// # Safety
/// AVX-512F; `k <= DOT_MAX_K`; A(i, q) at `p.a + i * rsa + q` for `i < m`, `q < k`; the
/// contract for B and C.
#[target_feature(enable = "avx512f")]
unsafe fn dots<const N: usize>(p: &UkernelParams) {
    let chunks = p.k.div_ceil(16);
    let tail = lanes(p.k - 16 * (chunks - 1));
    // Only the first `chunks` vectors of each column are written and read.
    let mut bt = [[MaybeUninit::<__m512>::uninit(); DOT_MAX_K / 16]; N];
    let idx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(NR as i32),
    );
    for (j, col) in bt.iter_mut().enumerate() {
        for (c, v) in col.iter_mut().enumerate().take(chunks) {
            let mask = if c + 1 == chunks { tail } else { 0xFFFF };
            // SAFETY: the gathered B(16 c + l, j), l in the mask, are rows < k of the panel.
            *v = MaybeUninit::new(unsafe {
                _mm512_mask_i32gather_ps::<4>(
                    _mm512_setzero_ps(),
                    mask,
                    idx,
                    p.b.add(16 * c * NR + j),
                )
            });
        }
    }
    let mut out = [[0f32; N]; 16];
    for (i, out) in out.iter_mut().enumerate().take(p.m) {
        // SAFETY: row i < m of A holds k contiguous values.
        let row = unsafe { p.a.offset(i as isize * p.rsa) };
        let mut acc = [_mm512_setzero_ps(); N];
        for c in 0..chunks {
            let mask = if c + 1 == chunks { tail } else { 0xFFFF };
            // SAFETY: the masked lanes of chunk c are A(i, q) with q < k; chunk c < chunks of
            // every column was written above.
            let av = unsafe { _mm512_maskz_loadu_ps(mask, row.add(16 * c)) };
            for (a, col) in acc.iter_mut().zip(&bt) {
                *a = _mm512_fmadd_ps(av, unsafe { col[c].assume_init() }, *a);
            }
        }
        for (o, a) in out.iter_mut().zip(acc) {
            *o = _mm512_reduce_add_ps(a);
        }
    }
    // SAFETY: forwarded contract for C and the bias.
    unsafe { store(p, |i, j| out[i][j]) };
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
