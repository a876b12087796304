//! AVX-512F kernels: the f32 GEMM micro-kernel (MR x 32 tile, two zmm columns per row).
//!
//! With 2 FMA ports of latency 4, at least 8 independent accumulators must be in flight; the
//! 12 x 32 tile keeps 24 zmm accumulators, loads 2 zmm of B per depth step and folds each A value
//! into its FMAs as an embedded broadcast, so 24 FMAs cost 14 loads.

use super::portable::store_tile;
use crate::Isa;
use crate::gemm::{KernelSet, UkernelParams, pack};
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
        pack_b: pack::pack_b::<NR>,
        ukernel: sgemm_ukernel_12x32,
    }
}

/// # Safety
/// AVX-512F must be present; the contract in `gemm::contract` holds.
pub unsafe fn sgemm_ukernel_12x32(p: &UkernelParams) {
    // SAFETY: the kernel set is only built after `Isa::Avx512.check()`.
    unsafe { sgemm_ukernel::<MR>(p) }
}

#[target_feature(enable = "avx512f")]
unsafe fn sgemm_ukernel<const M: usize>(p: &UkernelParams) {
    // Start fetching the C tile now so its misses overlap the k loop instead of stalling the
    // epilogue (a full 12 x 32 tile is 24 cache lines).
    for i in 0..p.m {
        let row = p.c.wrapping_offset(i as isize * p.rsc) as *const i8;
        _mm_prefetch::<_MM_HINT_T0>(row);
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(64));
    }
    let mut acc = [[_mm512_setzero_ps(); 2]; M];
    let (mut a, mut b) = (p.a, p.b);
    for _ in 0..p.k {
        // SAFETY: each depth step reads M packed A values and 32 packed B values.
        unsafe {
            // B streams from L2: pull it into L1 a few depth steps ahead.
            _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(B_PREFETCH * NR) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(B_PREFETCH * NR + 16) as *const i8);
            let b0 = _mm512_load_ps(b);
            let b1 = _mm512_load_ps(b.add(16));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(*a.add(i));
                row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
            }
            a = a.add(M);
            b = b.add(NR);
        }
    }
    let alpha = _mm512_set1_ps(p.alpha);
    if p.m == M && p.n == NR && p.csc == 1 {
        for (i, row) in acc.iter().enumerate() {
            // SAFETY: full tile, rows of 32 contiguous elements.
            unsafe {
                let c = p.c.offset(i as isize * p.rsc);
                let mut r0 = _mm512_mul_ps(alpha, row[0]);
                let mut r1 = _mm512_mul_ps(alpha, row[1]);
                if p.beta != 0.0 {
                    let beta = _mm512_set1_ps(p.beta);
                    r0 = _mm512_fmadd_ps(beta, _mm512_loadu_ps(c), r0);
                    r1 = _mm512_fmadd_ps(beta, _mm512_loadu_ps(c.add(16)), r1);
                }
                _mm512_storeu_ps(c, r0);
                _mm512_storeu_ps(c.add(16), r1);
            }
        }
    } else {
        let mut tile = [[0.0f32; NR]; M];
        for (row, out) in acc.iter().zip(tile.iter_mut()) {
            // SAFETY: `out` is 32 floats.
            unsafe {
                _mm512_storeu_ps(out.as_mut_ptr(), row[0]);
                _mm512_storeu_ps(out.as_mut_ptr().add(16), row[1]);
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
        unsafe { sgemm_ukernel::<M>(p) }
    }
    KernelSet {
        mr: M,
        mc: 16 * M,
        pack_a: pack::pack_a::<M>,
        ukernel: uk::<M>,
        ..sgemm_kernels()
    }
}
