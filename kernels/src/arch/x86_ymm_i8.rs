//! The 6 x 16 ymm int8 tile shared by the AVX2 and AVX-VNNI paths: 12 ymm accumulators, 2 ymm
//! of B per depth group (64 bytes either way: 16 columns x 2 i16, or 16 columns x 4 bytes) and
//! one broadcast dword of A per row. The paths differ only in the multiply-add of one group
//! (`vpmaddwd` + `vpaddd`, or `vpdpbusd`), so [`ymm_i8_kernels!`] writes the tile and the skinny
//! kernel once around a `dot` each path supplies, compiled with that path's target features.

use std::arch::x86_64::*;

/// Rows of the register tile.
pub const MR: usize = 6;
/// Columns of the register tile (two ymm of i32).
pub const NR: usize = 16;
/// Bytes of B per depth group.
pub const B_GROUP: usize = 64;

/// Stores the first `n` of 16 sums.
///
/// # Safety
/// AVX2 must be present; `c` has `n <= 16` writable i32s.
#[target_feature(enable = "avx2")]
pub unsafe fn store_row(c: *mut i32, row: &[__m256i; 2], n: usize) {
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

/// Defines `tile(p)` (the MR x NR micro-kernel) and `skinny::<M, U>(p)` (M <= 4 rows against one
/// B panel, the depth unrolled U times into independent sums) with target features `$features`,
/// accumulating one depth group with `$dot(acc, a_broadcast, b) -> acc`, and the path's public
/// entry points `$ukernel` (the tile) and `$skinny_entry` (the skinny kernel for m <= 4).
macro_rules! ymm_i8_kernels {
    ($features:literal, $dot:ident, $ukernel:ident, $skinny_entry:ident) => {
        /// # Safety
        /// The path's CPU features are present; the contract in `gemm_i8::contract` holds.
        pub unsafe fn $ukernel(p: &I8UkernelParams) {
            // SAFETY: the kernel table is only built after the path's `check()`.
            unsafe { tile(p) }
        }

        /// # Safety
        /// The path's CPU features are present; the skinny contract in `gemm_i8::contract`
        /// holds (m <= 4).
        pub unsafe fn $skinny_entry(p: &I8UkernelParams) {
            // SAFETY: the kernel table is only built after the path's `check()`; m <= 4.
            unsafe {
                match p.m {
                    1 => skinny::<1, 4>(p),
                    2 => skinny::<2, 2>(p),
                    3 => skinny::<3, 1>(p),
                    _ => skinny::<4, 1>(p),
                }
            }
        }

        #[target_feature(enable = $features)]
        unsafe fn tile(p: &I8UkernelParams) {
            use $crate::arch::x86_ymm_i8::{B_GROUP, MR, store_row};
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
                        row[0] = $dot(row[0], ai, b0);
                        row[1] = $dot(row[1], ai, b1);
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

        #[target_feature(enable = $features)]
        unsafe fn skinny<const M: usize, const U: usize>(p: &I8UkernelParams) {
            use $crate::arch::x86_ymm_i8::{B_GROUP, store_row};
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
                        row[0] = $dot(row[0], ai, b0);
                        row[1] = $dot(row[1], ai, b1);
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
    };
}
pub(crate) use ymm_i8_kernels;
