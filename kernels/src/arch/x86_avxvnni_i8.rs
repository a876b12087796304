//! AVX-VNNI int8 kernels: `vpdpbusd` on ymm (the VEX-encoded form, for CPUs with AVX-VNNI but
//! no AVX-512, and as a forced path on CPUs with both).
//!
//! `vpdpbusd` multiplies unsigned by signed bytes and adds four products into each i32 lane, so
//! A is packed as `a + 128` (u8) and each column's sum starts at `-128 * sum_k B[n, k]`
//! (precomputed when B is packed): exact in i32, no i16 intermediate.
//!
//! Tile 6 x 16: 12 ymm accumulators, 2 ymm of B per depth group of 4 and one broadcast dword of
//! A per row.

use crate::I8Isa;
use crate::gemm_i8::pack::{self, S8, U8Biased};
use crate::gemm_i8::{I8Kernels, I8UkernelParams, SkinnyKernel};
use std::arch::x86_64::*;

/// Rows of the register tile.
pub const MR: usize = 6;
/// Columns of the register tile (two ymm of i32).
pub const NR: usize = 16;
/// Depth values per group (one i32 lane's worth of bytes).
const KG: usize = 4;
/// Bytes of B per depth group.
const B_GROUP: usize = NR * KG;

/// The AVX-VNNI kernel table.
pub fn kernels() -> I8Kernels {
    I8Kernels {
        isa: I8Isa::AvxVnni,
        mr: MR,
        nr: NR,
        kg: KG,
        a_bytes: 1,
        b_bytes: 1,
        colsum_factor: -128,
        b_block_bytes: 384 << 10,
        pack_a: pack::pack_a::<MR, KG, U8Biased>,
        pack_b: pack::pack_b::<NR, KG, S8>,
        ukernel: ukernel_6x16_vnni,
        skinny: Some(SkinnyKernel {
            max_m: 4,
            kernel: skinny_16_vnni,
            pack_rows: pack::pack_rows::<KG, U8Biased>,
            kg: KG,
            colsum_factor: -128,
        }),
    }
}

/// # Safety
/// AVX-VNNI must be present; the contract in `gemm_i8::contract` holds.
pub unsafe fn ukernel_6x16_vnni(p: &I8UkernelParams) {
    // SAFETY: this table is only built after `I8Isa::AvxVnni.check()`.
    unsafe { tile(p) }
}

/// Stores the first `n` of 16 sums.
#[target_feature(enable = "avx2")]
unsafe fn store_row(c: *mut i32, row: &[__m256i; 2], n: usize) {
    if n == NR {
        // SAFETY: 16 columns exist.
        unsafe {
            _mm256_storeu_si256(c.cast(), row[0]);
            _mm256_storeu_si256(c.add(8).cast(), row[1]);
        }
    } else {
        let mut tmp = [0i32; NR];
        // SAFETY: `tmp` holds 16 i32s; then n <= 16 of them go to C.
        unsafe {
            _mm256_storeu_si256(tmp.as_mut_ptr().cast(), row[0]);
            _mm256_storeu_si256(tmp.as_mut_ptr().add(8).cast(), row[1]);
            std::ptr::copy_nonoverlapping(tmp.as_ptr(), c, n);
        }
    }
}

#[target_feature(enable = "avx2,avxvnni")]
unsafe fn tile(p: &I8UkernelParams) {
    // SAFETY: `col_init` holds NR values.
    let init = unsafe {
        [
            _mm256_loadu_si256(p.col_init.cast()),
            _mm256_loadu_si256(p.col_init.add(8).cast()),
        ]
    };
    let mut acc = [init; MR];
    let (mut a, mut b) = (p.a, p.b);
    for _ in 0..p.groups {
        // SAFETY: each depth group reads MR dwords of packed A and 2 ymm of packed B.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(8 * B_GROUP) as *const i8);
            let b0 = _mm256_loadu_si256(b.cast());
            let b1 = _mm256_loadu_si256(b.add(32).cast());
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm256_set1_epi32(a.add(4 * i).cast::<i32>().read_unaligned());
                row[0] = _mm256_dpbusd_avx_epi32(row[0], ai, b0);
                row[1] = _mm256_dpbusd_avx_epi32(row[1], ai, b1);
            }
            a = a.add(MR * 4);
            b = b.add(B_GROUP);
        }
    }
    for (i, row) in acc.iter().enumerate().take(p.m) {
        // SAFETY: row i < m of the C tile, n <= NR columns.
        unsafe { store_row(p.c.add(i * p.ldc), row, p.n) };
    }
}

/// # Safety
/// AVX-VNNI must be present; the skinny contract in `gemm_i8::contract` holds (m <= 4).
pub unsafe fn skinny_16_vnni(p: &I8UkernelParams) {
    // SAFETY: this table is only built after `I8Isa::AvxVnni.check()`; m <= max_m = 4.
    unsafe {
        match p.m {
            1 => skinny::<1, 4>(p),
            2 => skinny::<2, 2>(p),
            3 => skinny::<3, 1>(p),
            _ => skinny::<4, 1>(p),
        }
    }
}

/// `M` rows against one B panel, the depth unrolled `U` times into independent sums.
#[target_feature(enable = "avx2,avxvnni")]
unsafe fn skinny<const M: usize, const U: usize>(p: &I8UkernelParams) {
    let zero = _mm256_setzero_si256();
    let mut acc = [[[zero; 2]; M]; U];
    let rows: [*const u8; M] = std::array::from_fn(|i| p.a.wrapping_add(i * p.lda));
    let step = |acc: &mut [[__m256i; 2]; M], g: usize| {
        // SAFETY: group g < groups: B has 2 ymm there and each row a dword.
        unsafe {
            let b = p.b.add(g * B_GROUP);
            _mm_prefetch::<_MM_HINT_T0>(b.wrapping_add(8 * B_GROUP) as *const i8);
            let b0 = _mm256_loadu_si256(b.cast());
            let b1 = _mm256_loadu_si256(b.add(32).cast());
            for (row, &a) in acc.iter_mut().zip(&rows) {
                let ai = _mm256_set1_epi32(a.add(4 * g).cast::<i32>().read_unaligned());
                row[0] = _mm256_dpbusd_avx_epi32(row[0], ai, b0);
                row[1] = _mm256_dpbusd_avx_epi32(row[1], ai, b1);
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
    // SAFETY: `col_init` holds NR values.
    let init = unsafe {
        [
            _mm256_loadu_si256(p.col_init.cast()),
            _mm256_loadu_si256(p.col_init.add(8).cast()),
        ]
    };
    for i in 0..M {
        let mut row = init;
        for set in &acc {
            row[0] = _mm256_add_epi32(row[0], set[i][0]);
            row[1] = _mm256_add_epi32(row[1], set[i][1]);
        }
        // SAFETY: row i < m of C, n <= NR columns.
        unsafe { store_row(p.c.add(i * p.ldc), &row, p.n) };
    }
}
