//! AVX2 + FMA kernels: the f32 GEMM micro-kernel (6 x 16 tile, the classic Haswell shape).
//!
//! 12 ymm accumulators (6 rows x 2 columns of 8) cover the 2 FMA ports at latency 4-5; with 2
//! loads of B and 6 broadcasts per depth step, 16 registers suffice.

use super::portable::store_tile;
use super::rows_sweep::{self, rows_sweep_entry};
use super::x86_avx2_elementwise::F32x8;
use crate::Isa;
use crate::gemm::{KernelSet, RowsParams, RowsSweep, UkernelParams, pack};
use std::arch::x86_64::*;

/// Rows of the register tile.
pub const MR: usize = 6;
/// Columns of the register tile.
pub const NR: usize = 16;

/// The AVX2 kernel set. Blocking: a 256-deep B micro-panel is 16 KiB (L1), A~ of 144 x 256
/// is 144 KiB (L2), B~ of 256 x 4096 is 4 MiB (L3).
pub fn sgemm_kernels() -> KernelSet {
    KernelSet {
        isa: Isa::Avx2,
        mr: MR,
        nr: NR,
        mc: 24 * MR,
        kc: 256,
        nc: 256 * NR,
        pack_a: pack::pack_a::<MR>,
        pack_b: pack::pack_b::<NR>,
        ukernel: sgemm_ukernel_6x16,
        ukernel_direct_a: Some(sgemm_ukernel_direct_a_6x16),
        direct_a_max_n: 8 * NR,
        rows_b_rowmajor: Some(RowsSweep {
            kernel: rows_b_rowmajor,
            max_m: rows_sweep::MAX_M,
        }),
    }
}

/// # Safety
/// AVX2 and FMA must be present; the contract in `gemm::contract` holds.
pub unsafe fn sgemm_ukernel_6x16(p: &UkernelParams) {
    // SAFETY: the kernel set is only built after `Isa::Avx2.check()`; each height covers
    // `p.m` rows.
    unsafe {
        match p.m {
            1 => sgemm_ukernel::<1>(p),
            2 => sgemm_ukernel::<2>(p),
            3 | 4 => sgemm_ukernel::<4>(p),
            _ => sgemm_ukernel::<MR>(p),
        }
    }
}

/// # Safety
/// AVX2 and FMA must be present; the direct-A contract in `gemm::contract` holds.
pub unsafe fn sgemm_ukernel_direct_a_6x16(p: &UkernelParams) {
    // SAFETY: the kernel set is only built after `Isa::Avx2.check()`; each height covers
    // `p.m` rows.
    unsafe {
        match p.m {
            1 => sgemm_ukernel_direct_a::<1>(p),
            2 => sgemm_ukernel_direct_a::<2>(p),
            3 | 4 => sgemm_ukernel_direct_a::<4>(p),
            _ => sgemm_ukernel_direct_a::<MR>(p),
        }
    }
}

/// The direct-A kernel: the same tile on the first `R` rows, each A value broadcast from the
/// unpacked A. Rows past `m` re-read row `m - 1` (in bounds, results never stored).
#[target_feature(enable = "avx2,fma")]
unsafe fn sgemm_ukernel_direct_a<const R: usize>(p: &UkernelParams) {
    let last = p.m.min(R) - 1;
    let rows: [*const f32; R] =
        std::array::from_fn(|i| p.a.wrapping_offset(i.min(last) as isize * p.rsa));
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let mut b = p.b;
    for q in 0..p.k {
        // SAFETY: each depth step reads 16 packed B values and A(i, q) of rows that exist.
        unsafe {
            let b0 = _mm256_load_ps(b);
            let b1 = _mm256_load_ps(b.add(8));
            for (row, &ap) in acc.iter_mut().zip(&rows) {
                let ai = _mm256_broadcast_ss(&*ap.offset(q as isize * p.csa));
                row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
            }
            b = b.add(NR);
        }
    }
    // SAFETY: forwarded contract.
    unsafe { store_acc(p, &acc) }
}

/// The tile on the first `R` rows of a packed A panel (a short last row block, or a batch-1
/// product, spends no FMAs on the zero rows below it).
#[target_feature(enable = "avx2,fma")]
unsafe fn sgemm_ukernel<const R: usize>(p: &UkernelParams) {
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let (mut a, mut b) = (p.a, p.b);
    for _ in 0..p.k {
        // SAFETY: each depth step reads R <= MR packed A values and 16 packed B values.
        unsafe {
            let b0 = _mm256_load_ps(b);
            let b1 = _mm256_load_ps(b.add(8));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm256_broadcast_ss(&*a.add(i));
                row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
            }
            a = a.add(MR);
            b = b.add(NR);
        }
    }
    // SAFETY: forwarded contract.
    unsafe { store_acc(p, &acc) }
}

/// `C = alpha * acc + beta * C (+ bias)` on the `m x n` corner of the tile.
// Inlined into its `#[target_feature]` callers (it has no features of its own), so `acc` stays
// in registers.
#[inline(always)]
unsafe fn store_acc<const R: usize>(p: &UkernelParams, acc: &[[__m256; 2]; R]) {
    // SAFETY: only inlined into AVX2 functions.
    let alpha = unsafe { _mm256_set1_ps(p.alpha) };
    if R == MR && p.m == MR && p.n == NR && p.csc == 1 {
        let has_bias = !p.bias.is_null();
        // SAFETY: a non-null bias holds the full tile's 16 values.
        let (bias0, bias1) = unsafe {
            if has_bias {
                (_mm256_loadu_ps(p.bias), _mm256_loadu_ps(p.bias.add(8)))
            } else {
                (_mm256_setzero_ps(), _mm256_setzero_ps())
            }
        };
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: full tile, rows of 16 contiguous elements.
            unsafe {
                let c = p.c.offset(i as isize * p.rsc);
                let mut r0 = _mm256_mul_ps(alpha, row[0]);
                let mut r1 = _mm256_mul_ps(alpha, row[1]);
                if p.beta != 0.0 {
                    let beta = _mm256_set1_ps(p.beta);
                    r0 = _mm256_fmadd_ps(beta, _mm256_loadu_ps(c), r0);
                    r1 = _mm256_fmadd_ps(beta, _mm256_loadu_ps(c.add(8)), r1);
                }
                if has_bias {
                    r0 = _mm256_add_ps(r0, bias0);
                    r1 = _mm256_add_ps(r1, bias1);
                }
                _mm256_storeu_ps(c, r0);
                _mm256_storeu_ps(c.add(8), r1);
            }
        }
    } else {
        let mut tile = [[0.0f32; NR]; R];
        for (row, out) in acc.iter().zip(tile.iter_mut()) {
            // SAFETY: `out` is 16 floats.
            unsafe {
                _mm256_storeu_ps(out.as_mut_ptr(), row[0]);
                _mm256_storeu_ps(out.as_mut_ptr().add(8), row[1]);
            }
        }
        // SAFETY: forwarded contract.
        unsafe { store_tile(p, &tile) };
    }
}

// The row sweep on ymm vectors, over all columns. A tile of fewer than MR rows goes through the
// portable store, which adds beta * C as a separate product.
rows_sweep_entry!("avx2,fma", F32x8, Separate, NR, 0);
