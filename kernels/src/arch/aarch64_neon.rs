//! NEON kernels: the f32 GEMM micro-kernel (8 x 12 tile).
//!
//! 24 q-register accumulators (8 rows x 3 columns of 4); per depth step two loads of A (8 values)
//! and three of B, and each FMA takes its A value from a lane (`fmla v.4s, v.4s, v.s[l]`), so no
//! broadcasts are needed: 24 FMAs for 5 loads, 29 of the 32 registers.

use super::aarch64_neon_elementwise::F32x4;
use super::portable::store_tile;
use super::rows_sweep::{self, rows_sweep_entry};
use crate::Isa;
use crate::gemm::{KernelSet, RowsParams, RowsSweep, UkernelParams, pack};
use std::arch::aarch64::*;

/// Rows of the register tile.
pub const MR: usize = 8;
/// Columns of the register tile.
pub const NR: usize = 12;

/// The NEON kernel set. Blocking for a typical 64 KiB L1 / 1 MiB L2 core.
pub fn sgemm_kernels() -> KernelSet {
    KernelSet {
        isa: Isa::Neon,
        mr: MR,
        nr: NR,
        mc: 16 * MR,
        kc: 256,
        nc: 256 * NR,
        pack_a: pack::pack_a::<MR>,
        pack_b: pack::pack_b::<NR>,
        ukernel: sgemm_ukernel_8x12,
        ukernel_direct_a: Some(sgemm_ukernel_direct_a_8x12),
        direct_a_max_n: 8 * NR,
        rows_b_rowmajor: Some(RowsSweep {
            kernel: rows_b_rowmajor,
            max_m: rows_sweep::MAX_M,
        }),
    }
}

/// # Safety
/// NEON must be present; the contract in `gemm::contract` holds.
pub unsafe fn sgemm_ukernel_8x12(p: &UkernelParams) {
    // SAFETY: the kernel set is only built after `Isa::Neon.check()`; each height covers
    // `p.m` rows.
    unsafe {
        match p.m {
            1 => sgemm_ukernel_short::<1>(p),
            2 => sgemm_ukernel_short::<2>(p),
            3 | 4 => sgemm_ukernel_short::<4>(p),
            _ => sgemm_ukernel(p),
        }
    }
}

/// # Safety
/// NEON must be present; the direct-A contract in `gemm::contract` holds.
pub unsafe fn sgemm_ukernel_direct_a_8x12(p: &UkernelParams) {
    // SAFETY: the kernel set is only built after `Isa::Neon.check()`; each height covers
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

/// The direct-A kernel: the same tile on the first `R` rows, each A value loaded and broadcast
/// (`ld1r`) from the unpacked A. Rows past `m` re-read row `m - 1` (in bounds, results never
/// stored).
#[target_feature(enable = "neon")]
unsafe fn sgemm_ukernel_direct_a<const R: usize>(p: &UkernelParams) {
    let last = p.m.min(R) - 1;
    let rows: [*const f32; R] =
        std::array::from_fn(|i| p.a.wrapping_offset(i.min(last) as isize * p.rsa));
    let mut acc = [[vdupq_n_f32(0.0); 3]; R];
    let mut b = p.b;
    for q in 0..p.k {
        // SAFETY: each depth step reads 12 packed B values and A(i, q) of rows that exist.
        unsafe {
            let bv = [vld1q_f32(b), vld1q_f32(b.add(4)), vld1q_f32(b.add(8))];
            for (row, &ap) in acc.iter_mut().zip(&rows) {
                let ai = vld1q_dup_f32(ap.offset(q as isize * p.csa));
                for (acc_ij, &bj) in row.iter_mut().zip(&bv) {
                    *acc_ij = vfmaq_f32(*acc_ij, bj, ai);
                }
            }
            b = b.add(NR);
        }
    }
    // SAFETY: forwarded contract.
    unsafe { store_acc(p, &acc) }
}

/// The tile on the first `R < MR` rows of a packed A panel, each A value broadcast (`ld1r`): a
/// short last row block, or a batch-1 product, spends no FMAs on the zero rows below it. The
/// same fused multiply-adds as the full tile's by-lane form, so the same bits.
#[target_feature(enable = "neon")]
unsafe fn sgemm_ukernel_short<const R: usize>(p: &UkernelParams) {
    let mut acc = [[vdupq_n_f32(0.0); 3]; R];
    let (mut a, mut b) = (p.a, p.b);
    for _ in 0..p.k {
        // SAFETY: each depth step reads R < MR packed A values and 12 packed B values.
        unsafe {
            let bv = [vld1q_f32(b), vld1q_f32(b.add(4)), vld1q_f32(b.add(8))];
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = vld1q_dup_f32(a.add(i));
                for (acc_ij, &bj) in row.iter_mut().zip(&bv) {
                    *acc_ij = vfmaq_f32(*acc_ij, bj, ai);
                }
            }
            a = a.add(MR);
            b = b.add(NR);
        }
    }
    // SAFETY: forwarded contract.
    unsafe { store_acc(p, &acc) }
}

#[target_feature(enable = "neon")]
unsafe fn sgemm_ukernel(p: &UkernelParams) {
    let zero = vdupq_n_f32(0.0);
    let mut acc = [[zero; 3]; MR];
    let (mut a, mut b) = (p.a, p.b);
    for _ in 0..p.k {
        // SAFETY: each depth step reads 8 packed A values and 12 packed B values.
        unsafe {
            let a_lo = vld1q_f32(a);
            let a_hi = vld1q_f32(a.add(4));
            let bv = [vld1q_f32(b), vld1q_f32(b.add(4)), vld1q_f32(b.add(8))];
            for j in 0..3 {
                acc[0][j] = vfmaq_laneq_f32::<0>(acc[0][j], bv[j], a_lo);
                acc[1][j] = vfmaq_laneq_f32::<1>(acc[1][j], bv[j], a_lo);
                acc[2][j] = vfmaq_laneq_f32::<2>(acc[2][j], bv[j], a_lo);
                acc[3][j] = vfmaq_laneq_f32::<3>(acc[3][j], bv[j], a_lo);
                acc[4][j] = vfmaq_laneq_f32::<0>(acc[4][j], bv[j], a_hi);
                acc[5][j] = vfmaq_laneq_f32::<1>(acc[5][j], bv[j], a_hi);
                acc[6][j] = vfmaq_laneq_f32::<2>(acc[6][j], bv[j], a_hi);
                acc[7][j] = vfmaq_laneq_f32::<3>(acc[7][j], bv[j], a_hi);
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
unsafe fn store_acc<const R: usize>(p: &UkernelParams, acc: &[[float32x4_t; 3]; R]) {
    // SAFETY: only inlined into NEON functions.
    let alpha = unsafe { vdupq_n_f32(p.alpha) };
    if R == MR && p.m == MR && p.n == NR && p.csc == 1 {
        let has_bias = !p.bias.is_null();
        // SAFETY: a non-null bias holds the full tile's 12 values.
        let bias: [float32x4_t; 3] = std::array::from_fn(|j| unsafe {
            if has_bias {
                vld1q_f32(p.bias.add(4 * j))
            } else {
                vdupq_n_f32(0.0)
            }
        });
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: full tile, rows of 12 contiguous elements.
            unsafe {
                let c = p.c.offset(i as isize * p.rsc);
                for (j, &v) in row.iter().enumerate() {
                    let mut r = vmulq_f32(alpha, v);
                    if p.beta != 0.0 {
                        r = vfmaq_f32(r, vdupq_n_f32(p.beta), vld1q_f32(c.add(4 * j)));
                    }
                    if has_bias {
                        r = vaddq_f32(r, bias[j]);
                    }
                    vst1q_f32(c.add(4 * j), r);
                }
            }
        }
    } else {
        let mut tile = [[0.0f32; NR]; R];
        for (row, out) in acc.iter().zip(tile.iter_mut()) {
            for (j, &v) in row.iter().enumerate() {
                // SAFETY: `out` is 12 floats.
                unsafe { vst1q_f32(out.as_mut_ptr().add(4 * j), v) };
            }
        }
        // SAFETY: forwarded contract.
        unsafe { store_tile(p, &tile) };
    }
}

// The row sweep on NEON vectors, over all columns. A tile of fewer than MR rows goes through
// the portable store, which adds beta * C as a separate product.
rows_sweep_entry!("neon", F32x4, Separate, NR, 0);
