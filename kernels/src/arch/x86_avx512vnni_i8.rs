//! AVX512-VNNI int8 kernels: `vpdpbusd` on zmm (u8 x s8, four products summed into each i32
//! lane per instruction).
//!
//! `vpdpbusd` multiplies unsigned by signed bytes, so A is packed as `a + 128` (u8) and each
//! column's sum starts at `-128 * sum_k B[n, k]` (precomputed when B is packed): exact in i32.
//!
//! Tile 8 x 48: 24 zmm accumulators (the two 512-bit pipes with a latency of several cycles
//! need 10+ independent chains), 3 zmm of B per depth group of 4 and one broadcast dword of A
//! per row, so 24 `vpdpbusd` cost 11 loads. 8 x 48 tiles the BERT/MiniLM shapes (M = 128,
//! N = 384, 1152, 1536) without edge waste.
//!
//! Skinny kernel (M <= 4): no A padding; one B panel streams once past all rows, with the depth
//! loop unrolled into independent accumulator sets so M = 1 still has 12 chains in flight.

use crate::I8Isa;
use crate::gemm_i8::pack::{self, S8, U8Biased};
use crate::gemm_i8::{I8Kernels, I8UkernelParams, SkinnyKernel};
use std::arch::x86_64::*;

/// Rows of the register tile.
pub const MR: usize = 8;
/// Columns of the register tile (three zmm of i32).
pub const NR: usize = 48;
/// Depth values per group (one i32 lane's worth of bytes).
const KG: usize = 4;
/// Bytes of B per depth group.
const B_GROUP: usize = NR * KG;
/// How many depth groups ahead the kernels prefetch B.
const B_PREFETCH_GROUPS: usize = 8;

/// The AVX512-VNNI kernel table.
pub fn kernels() -> I8Kernels {
    I8Kernels {
        isa: I8Isa::Avx512Vnni,
        mr: MR,
        nr: NR,
        kg: KG,
        a_bytes: 1,
        b_bytes: 1,
        colsum_factor: -128,
        b_block_bytes: 512 << 10,
        pack_a: super::x86_avx512_pack_i8::pack_a_8x4_u8biased,
        pack_b: pack::pack_b::<NR, KG, S8>,
        ukernel: ukernel_8x48,
        tile_state: None,
        skinny: Some(SkinnyKernel {
            max_m: 4,
            kernel: skinny_48,
            pack_rows: pack::pack_rows::<KG, U8Biased>,
            kg: KG,
            colsum_factor: -128,
        }),
    }
}

/// The 8 x 48 tile; a last panel of at most 16 or 32 columns (N = 1024 ends in one of 16) runs
/// only the zmm columns it needs instead of the full tile on zero padding.
///
/// # Safety
/// AVX512-VNNI must be present; the contract in `gemm_i8::contract` holds.
pub unsafe fn ukernel_8x48(p: &I8UkernelParams) {
    // SAFETY: this table is only built after `I8Isa::Avx512Vnni.check()`.
    unsafe {
        match p.n {
            0..=16 => tile::<1>(p),
            17..=32 => tile::<2>(p),
            _ => tile::<3>(p),
        }
    }
}

/// Loads `16 * C` initial column sums.
#[inline(always)]
unsafe fn load_row<const C: usize>(ptr: *const i32) -> [__m512i; C] {
    // SAFETY: the caller passes 16 * C readable i32s.
    std::array::from_fn(|q| unsafe { _mm512_loadu_si512(ptr.add(16 * q).cast()) })
}

/// Stores the first `n` of `16 * C` sums.
#[target_feature(enable = "avx512f")]
unsafe fn store_row<const C: usize>(c: *mut i32, row: &[__m512i; C], n: usize) {
    for (q, &v) in row.iter().enumerate() {
        let lo = 16 * q;
        if n >= lo + 16 {
            // SAFETY: 16 columns from `lo` are inside the row (n >= lo + 16).
            unsafe { _mm512_storeu_si512(c.add(lo).cast(), v) };
        } else if n > lo {
            let mask = ((1u32 << (n - lo)) - 1) as __mmask16;
            // SAFETY: the mask limits the store to the n - lo columns that exist.
            unsafe { _mm512_mask_storeu_epi32(c.add(lo), mask, v) };
        }
    }
}

/// The first `16 * C` columns of the tile (B keeps its 48-column group stride).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile<const C: usize>(p: &I8UkernelParams) {
    // SAFETY: `col_init` holds NR >= 16 * C values.
    let init = unsafe { load_row::<C>(p.col_init) };
    let mut acc = [init; MR];
    let (mut a, mut b) = (p.a, p.b);
    for _ in 0..p.groups {
        // SAFETY: each depth group reads MR dwords of packed A and C of the 3 zmm of packed B;
        // the prefetch is only a hint (any address is allowed).
        unsafe {
            let ahead = b.wrapping_add(B_PREFETCH_GROUPS * B_GROUP) as *const i8;
            for q in 0..C {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * q));
            }
            let bv: [__m512i; C] =
                std::array::from_fn(|q| _mm512_loadu_si512(b.add(64 * q).cast()));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm512_set1_epi32(a.add(KG * i).cast::<i32>().read_unaligned());
                for (s, &bq) in row.iter_mut().zip(&bv) {
                    *s = _mm512_dpbusd_epi32(*s, ai, bq);
                }
            }
            a = a.add(MR * KG);
            b = b.add(B_GROUP);
        }
    }
    for (i, row) in acc.iter().enumerate().take(p.m) {
        // SAFETY: row i < m of the C tile, n <= 16 * C columns.
        unsafe { store_row(p.c.add(i * p.ldc), row, p.n) };
    }
}

/// # Safety
/// AVX512-VNNI must be present; the skinny contract in `gemm_i8::contract` holds (m <= 4).
pub unsafe fn skinny_48(p: &I8UkernelParams) {
    // SAFETY: this table is only built after `I8Isa::Avx512Vnni.check()`; m <= max_m = 4.
    unsafe { skinny_cols::<3>(p) }
}

/// The skinny kernel on 32-wide panels (the AMX path's B layout: depth groups of 4, 32
/// columns), with `a + 128` rows and `-128 * colsum` initial sums.
///
/// # Safety
/// AVX512-VNNI must be present; the skinny contract in `gemm_i8::contract` holds (m <= 4).
pub unsafe fn skinny_32(p: &I8UkernelParams) {
    // SAFETY: forwarded (AMX CPUs have AVX512-VNNI; the AMX table checks it).
    unsafe { skinny_cols::<2>(p) }
}

#[inline(always)]
unsafe fn skinny_cols<const C: usize>(p: &I8UkernelParams) {
    // SAFETY: forwarded.
    unsafe {
        match p.m {
            1 => skinny::<1, 4, C>(p),
            2 => skinny::<2, 2, C>(p),
            3 => skinny::<3, 1, C>(p),
            _ => skinny::<4, 1, C>(p),
        }
    }
}

/// `M` rows against one panel of `16 * C` columns, the depth unrolled `U` times into
/// independent sums.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn skinny<const M: usize, const U: usize, const C: usize>(p: &I8UkernelParams) {
    let group_bytes = 64 * C;
    let zero = _mm512_setzero_si512();
    let mut acc = [[[zero; C]; M]; U];
    // SAFETY: `col_init` holds 16 * C values.
    let init = unsafe { load_row::<C>(p.col_init) };
    acc[0] = [init; M];
    let rows: [*const u8; M] = std::array::from_fn(|i| p.a.wrapping_add(i * p.lda));
    let step = |acc: &mut [[__m512i; C]; M], g: usize| {
        // SAFETY: group g < groups: B has C zmm there and each row a dword.
        unsafe {
            let b = p.b.add(g * group_bytes);
            let ahead = b.wrapping_add(B_PREFETCH_GROUPS * group_bytes) as *const i8;
            for q in 0..C {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * q));
            }
            let bv: [__m512i; C] =
                std::array::from_fn(|q| _mm512_loadu_si512(b.add(64 * q).cast()));
            for (row, &a) in acc.iter_mut().zip(&rows) {
                let ai = _mm512_set1_epi32(a.add(KG * g).cast::<i32>().read_unaligned());
                for (s, &bq) in row.iter_mut().zip(&bv) {
                    *s = _mm512_dpbusd_epi32(*s, ai, bq);
                }
            }
        }
    };
    let mut g = 0;
    while g + U <= p.groups {
        for (u, set) in acc.iter_mut().enumerate() {
            step(set, g + u);
        }
        g += U;
    }
    while g < p.groups {
        step(&mut acc[0], g);
        g += 1;
    }
    for i in 0..M {
        let mut row = acc[0][i];
        for set in &acc[1..] {
            for (s, &t) in row.iter_mut().zip(&set[i]) {
                *s = _mm512_add_epi32(*s, t);
            }
        }
        // SAFETY: row i < m of C, n <= NR columns.
        unsafe { store_row(p.c.add(i * p.ldc), &row, p.n) };
    }
}
