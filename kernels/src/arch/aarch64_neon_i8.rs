//! NEON int8 kernels: `sdot` where the dot-product extension exists, else the
//! `smull` / `smlal2` / `sadalp` chain. Both multiply signed bytes directly (no +128 trick).
//!
//! dotprod (8 x 12 tile, depth groups of 4): `sdot vacc.4s, vb.16b, va.4b[l]` adds, for each of
//! 4 columns, the dot product of its 4 depth values with row `l`'s 4 values. 24 accumulators,
//! 2 loads of A (8 rows) and 3 of B (12 columns) per group. `vdotq_laneq_s32` is not stable, so
//! the instruction is emitted with `asm!`.
//!
//! Baseline (4 x 4 tile, depth groups of 16): each (row, column) pair owns an i32x4
//! accumulator. `smull` multiplies the low 8 bytes into i16 products and `smlal2` adds the high
//! 8 products onto them: each i16 lane is then a[l] b[l] + a[l+8] b[l+8], at most
//! 2 * 127 * 127 = 32258 < 32767 in magnitude (this is why -128 is excluded: 2 * 128 * 128
//! overflows), and `sadalp` widens adjacent pairs into the i32 accumulator. The four lanes are
//! summed at the end.

use super::portable_i8::store_tile;
use crate::I8Isa;
use crate::gemm_i8::pack::{self, S8};
use crate::gemm_i8::{AFeed, I8Kernels, I8UkernelParams};
use std::arch::aarch64::*;
use std::arch::asm;

/// Rows of the dotprod register tile.
pub const DOT_MR: usize = 8;
/// Columns of the dotprod register tile.
pub const DOT_NR: usize = 12;
/// Rows and columns of the baseline register tile.
pub const BASE_TILE: usize = 4;
/// Depth values per group of the baseline kernel.
const BASE_KG: usize = 16;

/// The dotprod kernel table.
pub fn dotprod_kernels() -> I8Kernels {
    I8Kernels {
        isa: I8Isa::NeonDotprod,
        mr: DOT_MR,
        nr: DOT_NR,
        kg: 4,
        a_bytes: 1,
        b_bytes: 1,
        colsum_factor: 0,
        b_block_bytes: 256 << 10,
        a_feed: AFeed::Packed(pack::pack_a::<DOT_MR, 4, S8>),
        pack_b: pack::pack_b::<DOT_NR, 4, S8>,
        ukernel: ukernel_8x12_dot,
        tile_state: None,
        skinny: None,
    }
}

/// The baseline NEON kernel table.
pub fn kernels() -> I8Kernels {
    I8Kernels {
        isa: I8Isa::Neon,
        mr: BASE_TILE,
        nr: BASE_TILE,
        kg: BASE_KG,
        a_bytes: 1,
        b_bytes: 1,
        colsum_factor: 0,
        b_block_bytes: 256 << 10,
        a_feed: AFeed::Packed(pack::pack_a::<BASE_TILE, BASE_KG, S8>),
        pack_b: pack::pack_b::<BASE_TILE, BASE_KG, S8>,
        ukernel: ukernel_4x4,
        tile_state: None,
        skinny: None,
    }
}

/// `acc += dot4(b, a.4b[L])` per 32-bit lane.
#[target_feature(enable = "neon,dotprod")]
#[inline]
unsafe fn sdot_lane<const L: i32>(acc: int32x4_t, b: int8x16_t, a: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: register-only arithmetic; the dot-product extension is enabled for this function
    // and was detected before the kernel table was built.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {b:v}.16b, {a:v}.4b[{lane}]",
            acc = inout(vreg) acc,
            b = in(vreg) b,
            a = in(vreg) a,
            lane = const L,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    acc
}

/// # Safety
/// NEON with dotprod must be present; the contract in `gemm_i8::contract` holds.
pub unsafe fn ukernel_8x12_dot(p: &I8UkernelParams) {
    // SAFETY: this table is only built after `I8Isa::NeonDotprod.check()`.
    unsafe { tile_dot(p) }
}

#[target_feature(enable = "neon,dotprod")]
unsafe fn tile_dot(p: &I8UkernelParams) {
    // SAFETY: `col_init` holds 12 values.
    let init = unsafe {
        [
            vld1q_s32(p.col_init),
            vld1q_s32(p.col_init.add(4)),
            vld1q_s32(p.col_init.add(8)),
        ]
    };
    let mut acc = [init; DOT_MR];
    let (mut a, mut b) = (p.a.cast::<i8>(), p.b.cast::<i8>());
    for _ in 0..p.groups {
        // SAFETY: each group reads 32 bytes of packed A and 48 of packed B.
        unsafe {
            let (a_lo, a_hi) = (vld1q_s8(a), vld1q_s8(a.add(16)));
            let bv = [vld1q_s8(b), vld1q_s8(b.add(16)), vld1q_s8(b.add(32))];
            for (c, &bc) in bv.iter().enumerate() {
                acc[0][c] = sdot_lane::<0>(acc[0][c], bc, a_lo);
                acc[1][c] = sdot_lane::<1>(acc[1][c], bc, a_lo);
                acc[2][c] = sdot_lane::<2>(acc[2][c], bc, a_lo);
                acc[3][c] = sdot_lane::<3>(acc[3][c], bc, a_lo);
                acc[4][c] = sdot_lane::<0>(acc[4][c], bc, a_hi);
                acc[5][c] = sdot_lane::<1>(acc[5][c], bc, a_hi);
                acc[6][c] = sdot_lane::<2>(acc[6][c], bc, a_hi);
                acc[7][c] = sdot_lane::<3>(acc[7][c], bc, a_hi);
            }
            a = a.add(32);
            b = b.add(48);
        }
    }
    let mut tile = [[0i32; DOT_NR]; DOT_MR];
    for (row, out) in acc.iter().zip(tile.iter_mut()) {
        for (c, &v) in row.iter().enumerate() {
            // SAFETY: `out` holds 12 i32s.
            unsafe { vst1q_s32(out.as_mut_ptr().add(4 * c), v) };
        }
    }
    // SAFETY: forwarded contract.
    unsafe { store_tile(p, &tile) };
}

/// # Safety
/// NEON must be present; the contract in `gemm_i8::contract` holds.
pub unsafe fn ukernel_4x4(p: &I8UkernelParams) {
    // SAFETY: this table is only built after `I8Isa::Neon.check()`.
    unsafe { tile_base(p) }
}

#[target_feature(enable = "neon")]
unsafe fn tile_base(p: &I8UkernelParams) {
    let mut acc = [[vdupq_n_s32(0); BASE_TILE]; BASE_TILE];
    let (mut a, mut b) = (p.a.cast::<i8>(), p.b.cast::<i8>());
    for _ in 0..p.groups {
        // SAFETY: each group reads 4 x 16 bytes of packed A and of packed B.
        unsafe {
            let av: [int8x16_t; 4] = std::array::from_fn(|i| vld1q_s8(a.add(16 * i)));
            let bv: [int8x16_t; 4] = std::array::from_fn(|j| vld1q_s8(b.add(16 * j)));
            for (row, &ai) in acc.iter_mut().zip(&av) {
                for (s, &bj) in row.iter_mut().zip(&bv) {
                    let prod = vmull_s8(vget_low_s8(ai), vget_low_s8(bj));
                    let prod = vmlal_high_s8(prod, ai, bj);
                    *s = vpadalq_s16(*s, prod);
                }
            }
            a = a.add(64);
            b = b.add(64);
        }
    }
    // SAFETY: `col_init` holds 4 values.
    let init = unsafe { vld1q_s32(p.col_init) };
    let mut tile = [[0i32; BASE_TILE]; BASE_TILE];
    for (row, out) in acc.iter().zip(tile.iter_mut()) {
        let sums = vpaddq_s32(vpaddq_s32(row[0], row[1]), vpaddq_s32(row[2], row[3]));
        // SAFETY: `out` holds 4 i32s.
        unsafe { vst1q_s32(out.as_mut_ptr(), vaddq_s32(sums, init)) };
    }
    // SAFETY: forwarded contract.
    unsafe { store_tile(p, &tile) };
}
