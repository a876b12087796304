//! AVX512-VNNI int8 kernels: `vpdpbusd` on zmm (u8 x s8, four products summed into each i32
//! lane per instruction).
//!
//! `vpdpbusd` multiplies unsigned by signed bytes. B, packed once, carries the `+ 128` (u8, in
//! the register operand); A's signed bytes are the broadcast operand, read straight from A's
//! rows with no per-call packing; and each row's sums start at `-128 * sum_k A[i, k]` (computed
//! per call while A is checked for -128): exact in i32. Packing A instead (as `a + 128`, with
//! the correction per column of B) took 2% of the GEMM at 128 x 1536 x 384, where reading A in
//! place made the GEMM 2% faster.
//!
//! Tile 8 x 48: 24 zmm accumulators (the two 512-bit pipes with a latency of several cycles
//! need 10+ independent chains), 3 zmm of B per depth group of 4 and one broadcast dword of A
//! per row, so 24 `vpdpbusd` cost 11 loads. 8 x 48 tiles the BERT/MiniLM shapes (M = 128,
//! N = 384, 1152, 1536) without edge waste.
//!
//! Skinny kernel (M <= 4): no A padding; one B panel streams once past all rows, with the depth
//! loop unrolled into independent accumulator sets so M = 1 still has 12 chains in flight. The
//! AMX path reuses it on its own B layout (signed B, `a + 128` rows, column corrections).

use crate::I8Isa;
use crate::gemm_i8::pack::{self, S8, U8Biased};
use crate::gemm_i8::{AFeed, I8Kernels, I8UkernelParams, SkinnyKernel};
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
        colsum_factor: 0,
        b_block_bytes: 512 << 10,
        a_feed: AFeed::InPlace {
            pad_rows: pack::pack_rows::<KG, S8>,
            rowsum_factor: -128,
            scan_row,
        },
        pack_b: pack::pack_b::<NR, KG, U8Biased>,
        ukernel: ukernel_8x48,
        tile_state: None,
        skinny: Some(SkinnyKernel {
            max_m: 4,
            kernel: skinny_48,
            pack_rows: None,
            kg: KG,
            colsum_factor: 0,
        }),
    }
}

/// Whether `row` holds a -128, and the sum of its values, 64 bytes per step: one compare into
/// a mask and one `vpdpbusd` of ones against the bytes (four of them into each i32 lane), two
/// sums in flight. At 128 x 1536 x 384 it takes 0.6% of the GEMM (an AVX2 compare loop plus a
/// widening sum loop took 1.2%).
fn scan_row(row: &[i8]) -> (bool, i32) {
    // The table is built only after `I8Isa::Avx512Vnni.check()`, but this is a safe function
    // anyone holding the table can call, so it checks again (two cached loads).
    if is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vnni") {
        // SAFETY: AVX512-F/BW/VNNI are present (F comes with BW).
        unsafe { scan_row_vnni(row) }
    } else {
        scan_row_portable(row)
    }
}

/// [`scan_row`] without AVX-512: the check every other table makes, and a plain sum.
fn scan_row_portable(row: &[i8]) -> (bool, i32) {
    let sum = row.iter().map(|&v| i32::from(v)).sum();
    (crate::gemm_i8::has_i8_min(row), sum)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn scan_row_vnni(row: &[i8]) -> (bool, i32) {
    let (ones, min) = (_mm512_set1_epi8(1), _mm512_set1_epi8(i8::MIN));
    let (mut even, mut odd) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    let mut seen: __mmask64 = 0;
    let mut step = |acc: &mut __m512i, v: __m512i| {
        seen |= _mm512_cmpeq_epi8_mask(v, min);
        *acc = _mm512_dpbusd_epi32(*acc, ones, v);
    };
    let mut pairs = row.chunks_exact(128);
    for pair in pairs.by_ref() {
        // SAFETY: the pair holds 128 bytes.
        let (lo, hi) = unsafe {
            (
                _mm512_loadu_si512(pair.as_ptr().cast()),
                _mm512_loadu_si512(pair.as_ptr().add(64).cast()),
            )
        };
        step(&mut even, lo);
        step(&mut odd, hi);
    }
    for part in pairs.remainder().chunks(64) {
        let mask = u64::MAX >> (64 - part.len());
        // SAFETY: the mask covers the part's bytes only; masked-off bytes are not read and load
        // as 0 (not -128, and adding nothing).
        let v = unsafe { _mm512_maskz_loadu_epi8(mask, part.as_ptr().cast()) };
        step(&mut even, v);
    }
    (
        seen != 0,
        _mm512_reduce_add_epi32(_mm512_add_epi32(even, odd)),
    )
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

/// The `M` row pointers of a tile whose A is read in place (rows past `m` repeat row `m - 1`:
/// in bounds, and their sums are never stored).
#[inline(always)]
fn a_rows<const M: usize>(p: &I8UkernelParams) -> [*const u8; M] {
    let last = p.m.max(1) - 1;
    std::array::from_fn(|i| p.a.wrapping_add(i.min(last) * p.lda))
}

/// Row `i`'s initial sums (`row_init`, rows past `m` as row `m - 1`), splat over `C` vectors.
///
/// # Safety
/// `p.row_init` holds `p.m >= 1` values.
#[inline(always)]
unsafe fn row_start<const C: usize>(p: &I8UkernelParams, i: usize) -> [__m512i; C] {
    // SAFETY: the index is below m; AVX-512F is enabled in every caller (inlined into them).
    unsafe { [_mm512_set1_epi32(*p.row_init.add(i.min(p.m.max(1) - 1))); C] }
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

/// The first `16 * C` columns of the tile (B keeps its 48-column group stride), A read in
/// place.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile<const C: usize>(p: &I8UkernelParams) {
    // SAFETY: `row_init` holds m values.
    let mut acc: [[__m512i; C]; MR] = std::array::from_fn(|i| unsafe { row_start(p, i) });
    let rows = a_rows::<MR>(p);
    let mut b = p.b;
    for g in 0..p.groups {
        // SAFETY: each depth group reads one dword of each A row (groups * KG bytes per row)
        // and C of the 3 zmm of packed B; the prefetch is only a hint (any address is allowed).
        unsafe {
            let ahead = b.wrapping_add(B_PREFETCH_GROUPS * B_GROUP) as *const i8;
            for q in 0..C {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64 * q));
            }
            let bv: [__m512i; C] =
                std::array::from_fn(|q| _mm512_loadu_si512(b.add(64 * q).cast()));
            for (row, &a) in acc.iter_mut().zip(&rows) {
                let ai = _mm512_set1_epi32(a.add(KG * g).cast::<i32>().read_unaligned());
                for (s, &bq) in row.iter_mut().zip(&bv) {
                    // B + 128 (u8) times A (s8).
                    *s = _mm512_dpbusd_epi32(*s, bq, ai);
                }
            }
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
    unsafe { skinny_cols::<3, true>(p) }
}

/// The skinny kernel on 32-wide panels (the AMX path's B layout: depth groups of 4, 32
/// columns), with `a + 128` rows and `-128 * colsum` initial sums.
///
/// # Safety
/// AVX512-VNNI must be present; the skinny contract in `gemm_i8::contract` holds (m <= 4).
pub unsafe fn skinny_32(p: &I8UkernelParams) {
    // SAFETY: forwarded (AMX CPUs have AVX512-VNNI; the AMX table checks it).
    unsafe { skinny_cols::<2, false>(p) }
}

/// `IN_PLACE`: A's signed rows against `B + 128`, sums from `row_init` (this path); else
/// `a + 128` rows against signed B, sums from `col_init` (the AMX path's layout).
#[inline(always)]
unsafe fn skinny_cols<const C: usize, const IN_PLACE: bool>(p: &I8UkernelParams) {
    // SAFETY: forwarded.
    unsafe {
        match p.m {
            1 => skinny::<1, 4, C, IN_PLACE>(p),
            2 => skinny::<2, 2, C, IN_PLACE>(p),
            3 => skinny::<3, 1, C, IN_PLACE>(p),
            _ => skinny::<4, 1, C, IN_PLACE>(p),
        }
    }
}

/// `M` rows against one panel of `16 * C` columns, the depth unrolled `U` times into
/// independent sums (operands as in [`skinny_cols`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn skinny<const M: usize, const U: usize, const C: usize, const IN_PLACE: bool>(
    p: &I8UkernelParams,
) {
    let group_bytes = 64 * C;
    let zero = _mm512_setzero_si512();
    let mut acc = [[[zero; C]; M]; U];
    acc[0] = if IN_PLACE {
        // SAFETY: `row_init` holds m = M values.
        std::array::from_fn(|i| unsafe { row_start(p, i) })
    } else {
        // SAFETY: `col_init` holds 16 * C values.
        [unsafe { load_row::<C>(p.col_init) }; M]
    };
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
                    *s = if IN_PLACE {
                        _mm512_dpbusd_epi32(*s, bq, ai)
                    } else {
                        _mm512_dpbusd_epi32(*s, ai, bq)
                    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_row_finds_every_minus_128_and_sums_exactly() {
        if !(is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vnni")) {
            return;
        }
        let mut s = 11u64;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as usize
        };
        // Every tail length of both loops, long rows, and a -128 at each end and inside.
        for len in (0..=300).chain([1536, 4097]) {
            let mut row: Vec<i8> = (0..len)
                .map(|_| ((next() % 255) as i32 - 127) as i8)
                .collect();
            for extreme in [127i8, -127] {
                let flat = vec![extreme; len];
                // SAFETY: the features were checked above.
                assert_eq!(unsafe { scan_row_vnni(&flat) }, scan_row_portable(&flat));
            }
            // SAFETY (all calls below): as above.
            assert_eq!(
                unsafe { scan_row_vnni(&row) },
                scan_row_portable(&row),
                "len {len}"
            );
            assert!(!unsafe { scan_row_vnni(&row) }.0);
            if len > 0 {
                for at in [0, len - 1, next() % len] {
                    let keep = row[at];
                    row[at] = i8::MIN;
                    assert!(unsafe { scan_row_vnni(&row) }.0, "len {len}, -128 at {at}");
                    row[at] = keep;
                }
            }
        }
    }
}
