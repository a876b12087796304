//! AVX-512F kernels: the f32 GEMM micro-kernel (MR x 32 tile, two zmm columns per row).
//!
//! With 2 FMA ports of latency 4, at least 8 independent accumulators must be in flight; the
//! 12 x 32 tile keeps 24 zmm accumulators, loads 2 zmm of B per depth step and folds each A value
//! into its FMAs as an embedded broadcast, so 24 FMAs cost 14 loads.

use super::portable::store_tile;
use super::rows_sweep::{self, rows_sweep_entry};
use super::x86_avx512_edge as edge;
use super::x86_avx512_elementwise::F32x16;
use crate::Isa;
use crate::gemm::{KernelSet, MatRef, RowsParams, RowsSweep, UkernelParams, pack};
use std::arch::x86_64::*;

/// Rows of the register tile.
pub const MR: usize = 12;
/// Columns of the register tile.
pub const NR: usize = 32;
/// How many depth steps ahead the micro-kernel prefetches B.
const B_PREFETCH: usize = 8;

/// The AVX-512 kernel set. Blocking: the A micro-panel (12 x 256, 12 KiB) stays in L1 while
/// 32 KiB B micro-panels stream past it from B~ (256 x 1024, 1 MiB, in L2). Tuned on a 48 KiB L1,
/// 2 MiB L2 core; kc in 192..384 and nc in 768..1536 were within noise of each other.
pub fn sgemm_kernels() -> KernelSet {
    KernelSet {
        isa: Isa::Avx512,
        mr: MR,
        nr: NR,
        mc: 16 * MR,
        kc: 256,
        nc: 32 * NR,
        pack_a: pack::pack_a::<MR>,
        pack_b: pack_b_32,
        ukernel: sgemm_ukernel_12x32,
        ukernel_direct_a: Some(sgemm_ukernel_direct_a_12x32),
        direct_a_max_n: 8 * NR,
        rows_b_rowmajor: Some(RowsSweep {
            kernel: rows_b_rowmajor,
            max_m: rows_sweep::MAX_M,
        }),
    }
}

/// # Safety
/// AVX-512F must be present; the contract in `gemm::contract` holds.
pub unsafe fn sgemm_ukernel_12x32(p: &UkernelParams) {
    // SAFETY: the kernel set is only built after `Isa::Avx512.check()`.
    unsafe { sgemm_ukernel_cols::<MR>(p) }
}

/// The tile that fits the call: a panel of at most [`edge::NARROW_N`] columns takes an edge
/// kernel (see `x86_avx512_edge`); one of at most 16 columns takes one zmm column per row (the
/// 5-wide last panel of `N = 197` would spend 32 FMAs per row on it); and the last rows of M
/// take the shortest tile in {1, 2, 4, 6, 8, MR} that covers them (the last of the 65 rows of an
/// `N = 65` attention block is 5 rows high; a 12-row tile would spend 12 FMAs on them).
#[inline(always)]
unsafe fn sgemm_ukernel_cols<const M: usize>(p: &UkernelParams) {
    // SAFETY: forwarded contract.
    unsafe {
        if edge::try_narrow(p, true, M) {
            return;
        }
        if p.n <= 16 {
            packed_rows::<M, 1>(p)
        } else {
            packed_rows::<M, 2>(p)
        }
    }
}

/// [`sgemm_ukernel_cols`]'s choice of tile height for a packed A panel `M` high.
#[inline(always)]
unsafe fn packed_rows<const M: usize, const C: usize>(p: &UkernelParams) {
    // SAFETY: forwarded contract; each height covers `p.m` rows and is below M.
    unsafe {
        if p.m == 1 {
            sgemm_ukernel::<M, 1, C>(p)
        } else if p.m == 2 {
            sgemm_ukernel::<M, 2, C>(p)
        } else if p.m <= 4 && 4 < M {
            sgemm_ukernel::<M, 4, C>(p)
        } else if p.m <= 6 && 6 < M {
            sgemm_ukernel::<M, 6, C>(p)
        } else if p.m <= 8 && 8 < M {
            sgemm_ukernel::<M, 8, C>(p)
        } else {
            sgemm_ukernel::<M, M, C>(p)
        }
    }
}

/// [`sgemm_ukernel_cols`] for the direct-A kernel.
#[inline(always)]
unsafe fn sgemm_ukernel_direct_a_cols<const M: usize>(p: &UkernelParams) {
    // SAFETY: forwarded contract.
    unsafe {
        if edge::try_narrow(p, false, M) {
            return;
        }
        if p.n <= 16 {
            direct_rows::<M, 1>(p)
        } else {
            direct_rows::<M, 2>(p)
        }
    }
}

/// [`sgemm_ukernel_direct_a_cols`]'s choice of tile height.
#[inline(always)]
unsafe fn direct_rows<const M: usize, const C: usize>(p: &UkernelParams) {
    // SAFETY: forwarded contract; each height covers `p.m` rows.
    unsafe {
        if p.m == 1 {
            sgemm_ukernel_direct_a::<1, C>(p)
        } else if p.m == 2 {
            sgemm_ukernel_direct_a::<2, C>(p)
        } else if p.m <= 4 && 4 < M {
            sgemm_ukernel_direct_a::<4, C>(p)
        } else if p.m <= 6 && 6 < M {
            sgemm_ukernel_direct_a::<6, C>(p)
        } else if p.m <= 8 && 8 < M {
            sgemm_ukernel_direct_a::<8, C>(p)
        } else {
            sgemm_ukernel_direct_a::<M, C>(p)
        }
    }
}

/// # Safety
/// AVX-512F must be present; the direct-A contract in `gemm::contract` holds.
pub unsafe fn sgemm_ukernel_direct_a_12x32(p: &UkernelParams) {
    // SAFETY: the kernel set is only built after `Isa::Avx512.check()`.
    unsafe { sgemm_ukernel_direct_a_cols::<MR>(p) }
}

/// Start fetching the C tile now so its misses overlap the k loop instead of stalling the
/// epilogue (a full 12 x 32 tile is 24 cache lines).
#[inline(always)]
fn prefetch_c(p: &UkernelParams) {
    for i in 0..p.m {
        let row = p.c.wrapping_offset(i as isize * p.rsc) as *const i8;
        // SAFETY: prefetches never fault.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(row);
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(64));
        }
    }
}

/// The `R x 16C` tile (`C` = 1 or 2 zmm columns; packed B keeps its 32-column stride) on the
/// first `R` rows of an A panel `M` high.
#[target_feature(enable = "avx512f")]
unsafe fn sgemm_ukernel<const M: usize, const R: usize, const C: usize>(p: &UkernelParams) {
    prefetch_c(p);
    let mut acc = [[_mm512_setzero_ps(); C]; R];
    let (mut a, mut b) = (p.a, p.b);
    for _ in 0..p.k {
        // SAFETY: each depth step reads R <= M packed A values and 32 packed B values.
        unsafe {
            // B streams from L2: pull it into L1 a few depth steps ahead.
            for q in 0..C {
                _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(B_PREFETCH * NR + 16 * q) as *const i8);
            }
            let bv: [__m512; C] = std::array::from_fn(|q| _mm512_load_ps(b.add(16 * q)));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(*a.add(i));
                for (r, &bq) in row.iter_mut().zip(&bv) {
                    *r = _mm512_fmadd_ps(ai, bq, *r);
                }
            }
            a = a.add(M);
            b = b.add(NR);
        }
    }
    // SAFETY: forwarded contract.
    unsafe { store_acc(p, &acc) }
}

/// The direct-A kernel: the same tile, with each A value broadcast from the unpacked A. Rows
/// past `m` re-read row `m - 1` (in bounds, results never stored), so the k loop has one shape
/// for every tile height.
#[target_feature(enable = "avx512f")]
unsafe fn sgemm_ukernel_direct_a<const M: usize, const C: usize>(p: &UkernelParams) {
    prefetch_c(p);
    let last = p.m.min(M) - 1;
    let rows: [*const f32; M] =
        std::array::from_fn(|i| p.a.wrapping_offset(i.min(last) as isize * p.rsa));
    let mut acc = [[_mm512_setzero_ps(); C]; M];
    let mut b = p.b;
    for q in 0..p.k {
        // SAFETY: each depth step reads 16 * C packed B values and A(i, q) of rows that exist.
        unsafe {
            let bv: [__m512; C] = std::array::from_fn(|c| _mm512_load_ps(b.add(16 * c)));
            for (row, &ap) in acc.iter_mut().zip(&rows) {
                let ai = _mm512_set1_ps(*ap.offset(q as isize * p.csa));
                for (r, &bq) in row.iter_mut().zip(&bv) {
                    *r = _mm512_fmadd_ps(ai, bq, *r);
                }
            }
            b = b.add(NR);
        }
    }
    // SAFETY: forwarded contract.
    unsafe { store_acc(p, &acc) }
}

/// `C = alpha * acc + beta * C (+ bias)` on the `m x n` corner. Row-major C (`csc == 1`) takes
/// masked vector stores, so partial tiles (a 50-wide attention score matrix is one full and one
/// 18-wide tile) cost no more than full ones; other strides go through the portable scalar
/// store.
// Inlined into its `#[target_feature]` callers (it has no features of its own), so `acc` stays
// in registers.
#[inline(always)]
unsafe fn store_acc<const M: usize, const C: usize>(p: &UkernelParams, acc: &[[__m512; C]; M]) {
    if p.csc == 1 {
        // SAFETY: only inlined into AVX-512F functions.
        let (alpha, beta) = unsafe { (_mm512_set1_ps(p.alpha), _mm512_set1_ps(p.beta)) };
        let lanes = |n: usize| -> __mmask16 { if n >= 16 { 0xFFFF } else { (1u16 << n) - 1 } };
        let masks: [__mmask16; C] = std::array::from_fn(|q| lanes(p.n.saturating_sub(16 * q)));
        let has_bias = !p.bias.is_null();
        // SAFETY: a non-null bias holds `n` values; the masks read exactly those.
        let bias: [__m512; C] = std::array::from_fn(|q| unsafe {
            if has_bias {
                _mm512_maskz_loadu_ps(masks[q], p.bias.wrapping_add(16 * q))
            } else {
                _mm512_setzero_ps()
            }
        });
        for (i, row) in acc.iter().enumerate().take(p.m) {
            // SAFETY: row i < m of C holds n contiguous elements; the masks cover exactly them
            // (masked-off lanes are neither read nor written).
            unsafe {
                let c = p.c.offset(i as isize * p.rsc);
                for q in 0..C {
                    // Wrapping: with n <= 16 q this may point past the view (never accessed).
                    let cq = c.wrapping_add(16 * q);
                    let mut r = _mm512_mul_ps(alpha, row[q]);
                    if p.beta != 0.0 {
                        r = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(masks[q], cq), r);
                    }
                    if has_bias {
                        r = _mm512_add_ps(r, bias[q]);
                    }
                    _mm512_mask_storeu_ps(cq, masks[q], r);
                }
            }
        }
    } else {
        let mut tile = [[0.0f32; NR]; M];
        for (row, out) in acc.iter().zip(tile.iter_mut()) {
            for (q, &v) in row.iter().enumerate() {
                // SAFETY: `out` is 32 floats, q < C <= 2.
                unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(16 * q), v) };
            }
        }
        // SAFETY: forwarded contract.
        unsafe { store_tile(p, &tile) };
    }
}

/// Variants of the tile height, for tuning benches.
#[doc(hidden)]
pub fn sgemm_kernels_with_mr<const M: usize>() -> KernelSet {
    unsafe fn uk<const M: usize>(p: &UkernelParams) {
        // SAFETY: only reachable through a kernel set built after detection.
        unsafe { sgemm_ukernel_cols::<M>(p) }
    }
    unsafe fn uk_direct<const M: usize>(p: &UkernelParams) {
        // SAFETY: only reachable through a kernel set built after detection.
        unsafe { sgemm_ukernel_direct_a_cols::<M>(p) }
    }
    KernelSet {
        mr: M,
        mc: 16 * M,
        pack_a: pack::pack_a::<M>,
        ukernel: uk::<M>,
        ukernel_direct_a: Some(uk_direct::<M>),
        ..sgemm_kernels()
    }
}

/// Packs B into 32-wide panels like [`pack::pack_b`], transposing column-major B (a Linear
/// layer's `W^T`, with `W` stored `[out, in]` row-major, or the `K^T` of attention scores)
/// 16 x 16 at a time in registers instead of one scattered element at a time. A partial last
/// panel is transposed the same way with zero columns for the padding.
pub fn pack_b_32(b: MatRef<'_>, dst: &mut [f32]) {
    let (kb, nb) = (b.rows(), b.cols());
    if kb == 0 || nb == 0 {
        return;
    }
    if b.col_stride() == 1 {
        // SAFETY: this kernel set exists only after AVX-512F was detected; the driver sizes
        // `dst` for ceil(nb / NR) panels.
        unsafe { pack_b_rowmajor(b, dst) };
        return;
    }
    if b.row_stride() != 1 {
        return pack::pack_b::<NR>(b, dst);
    }
    // SAFETY: this kernel set exists only after AVX-512F was detected; the driver sizes `dst`
    // for ceil(nb / NR) panels.
    unsafe { pack_b_colmajor(b, dst) };
}

/// Row-major B: each source row is walked front to back (so the hardware prefetcher streams it)
/// and its 32-wide pieces go to the panels as two zmm each. The partial last panel takes masked
/// loads, which also write its zero padding. Compiled for AVX-512 rather than left to the
/// portable copy, whose 16-byte moves made packing most of the time of a 1-row product.
#[target_feature(enable = "avx512f")]
unsafe fn pack_b_rowmajor(b: MatRef<'_>, dst: &mut [f32]) {
    let (kb, nb, rs) = (b.rows(), b.cols(), b.row_stride());
    let src = b.data();
    let panels = nb.div_ceil(NR);
    assert!(dst.len() >= panels * NR * kb && (kb - 1) * rs + nb <= src.len());
    let lanes = |n: usize| -> __mmask16 { if n >= 16 { 0xFFFF } else { (1u16 << n) - 1 } };
    let tail = nb - (panels - 1) * NR;
    let (m0, m1) = (lanes(tail), lanes(tail.saturating_sub(16)));
    for p in 0..kb {
        // SAFETY: row p holds `nb` values from `p * rs` (asserted above): full panels read 32
        // of them, the last panel's masks cover exactly the rest; panel q's row p is the NR
        // values at `q * NR * kb + p * NR`, inside `dst`.
        unsafe {
            let row = src.as_ptr().add(p * rs);
            let out = dst.as_mut_ptr().add(p * NR);
            for q in 0..panels - 1 {
                let (from, to) = (row.add(q * NR), out.add(q * NR * kb));
                _mm512_storeu_ps(to, _mm512_loadu_ps(from));
                _mm512_storeu_ps(to.add(16), _mm512_loadu_ps(from.add(16)));
            }
            let (from, to) = (row.add((panels - 1) * NR), out.add((panels - 1) * NR * kb));
            _mm512_storeu_ps(to, _mm512_maskz_loadu_ps(m0, from));
            _mm512_storeu_ps(to.add(16), _mm512_maskz_loadu_ps(m1, from.wrapping_add(16)));
        }
    }
}

/// Column-major B: for each 16-deep slab of a panel, 16 columns are loaded as 16 vectors (each
/// contiguous in memory; zero past the last column), transposed, and stored as 16 panel rows.
#[target_feature(enable = "avx512f")]
unsafe fn pack_b_colmajor(b: MatRef<'_>, dst: &mut [f32]) {
    let (kb, nb, cs) = (b.rows(), b.cols(), b.col_stride());
    let panels = nb.div_ceil(NR);
    let src = b.data();
    assert!(dst.len() >= panels * NR * kb && (nb - 1) * cs + kb <= src.len());
    for q in 0..panels {
        let panel = &mut dst[q * NR * kb..(q + 1) * NR * kb];
        for p0 in (0..kb).step_by(16) {
            let rows = 16.min(kb - p0);
            let mask: __mmask16 = if rows == 16 {
                0xFFFF
            } else {
                (1u16 << rows) - 1
            };
            for half in 0..2 {
                let col0 = q * NR + half * 16;
                // SAFETY: column `col0 + i < nb` holds `kb` values from `(col0 + i) * cs`
                // (asserted above); the mask keeps the load inside them.
                let cols: [__m512; 16] = std::array::from_fn(|i| {
                    if col0 + i < nb {
                        unsafe {
                            _mm512_maskz_loadu_ps(mask, src.as_ptr().add((col0 + i) * cs + p0))
                        }
                    } else {
                        _mm512_setzero_ps()
                    }
                });
                let t = transpose_16x16(cols);
                for (r, row) in t.iter().enumerate().take(rows) {
                    // SAFETY: panel row `p0 + r` has NR values; this writes 16 of them.
                    unsafe {
                        _mm512_storeu_ps(panel.as_mut_ptr().add((p0 + r) * NR + half * 16), *row)
                    };
                }
            }
        }
    }
}

/// `out[j][i] = rows[i][j]` for a 16 x 16 block: pairs of rows interleaved within 128-bit lanes,
/// then 4-row groups, then a 4 x 4 transpose of the 128-bit lanes.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose_16x16(r: [__m512; 16]) -> [__m512; 16] {
    // a[2k], a[2k+1]: rows 2k and 2k+1 interleaved (lane L: elements 4L..4L+1, then 4L+2..4L+3).
    let a: [__m512; 16] = std::array::from_fn(|i| {
        let (x, y) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_ps(x, y)
        } else {
            _mm512_unpackhi_ps(x, y)
        }
    });
    // b[4g + c], lane L: rows 4g..4g+3 of column 4L + c.
    let b: [__m512; 16] = std::array::from_fn(|i| {
        let (g, c) = (i / 4, i % 4);
        let (lo, hi) = (a[4 * g + c / 2], a[4 * g + 2 + c / 2]);
        if c % 2 == 0 {
            _mm512_shuffle_ps::<0x44>(lo, hi)
        } else {
            _mm512_shuffle_ps::<0xEE>(lo, hi)
        }
    });
    let mut out = [_mm512_setzero_ps(); 16];
    for c in 0..4 {
        let (b0, b1, b2, b3) = (b[c], b[4 + c], b[8 + c], b[12 + c]);
        let c1 = _mm512_shuffle_f32x4::<0x44>(b0, b1);
        let c2 = _mm512_shuffle_f32x4::<0xEE>(b0, b1);
        let c3 = _mm512_shuffle_f32x4::<0x44>(b2, b3);
        let c4 = _mm512_shuffle_f32x4::<0xEE>(b2, b3);
        out[c] = _mm512_shuffle_f32x4::<0x88>(c1, c3);
        out[4 + c] = _mm512_shuffle_f32x4::<0xDD>(c1, c3);
        out[8 + c] = _mm512_shuffle_f32x4::<0x88>(c2, c4);
        out[12 + c] = _mm512_shuffle_f32x4::<0xDD>(c2, c4);
    }
    out
}

// The row sweep on zmm vectors. A last panel of at most NARROW_N columns is left to the edge
// tiles, which round differently; the 12 x 32 tile's row-major store adds beta * C with one FMA.
rows_sweep_entry!("avx512f", F32x16, Fused, NR, edge::NARROW_N);
