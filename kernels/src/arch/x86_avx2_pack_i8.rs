//! AVX2 packing of int8 activations for the two 6-row ymm tiles: the AVX2 path's
//! (`pack::pack_a::<6, 2, I16>`: each depth pair as two sign-extended i16) and the AVX-VNNI
//! path's (`pack::pack_a::<6, 4, U8Biased>`: each depth quad as four `a + 128` bytes). Written one
//! value at a time, packing took 8% of the AVX2 GEMM at M = 128, K = 1536.
//!
//! Both layouts store one dword per row and depth group, the 6 rows side by side (24 bytes a
//! group), so both are the same dword transpose: 8 groups of each row are loaded into one ymm
//! (16 bytes sign-extended, or 32 bytes biased), the 6 rows (and two zero rows) are transposed in
//! registers as 8 x 8 dwords, and each group's first 6 dwords are stored.

use crate::gemm_i8::pack::{self, I16, U8Biased};
use std::arch::x86_64::*;

/// Rows per micro-panel.
const MR: usize = 6;
/// Bytes of one packed depth group (6 rows x one dword).
const GROUP_BYTES: usize = MR * 4;
/// Groups moved per step (one ymm of dwords per row).
const STEP_GROUPS: usize = 8;

/// `pack::pack_a::<6, 2, I16>`, vectorized when the CPU has AVX2 (the same bytes; the portable
/// loop runs otherwise).
pub fn pack_a_6x2_i16(a: &[i8], lda: usize, mb: usize, k: usize, dst: &mut [u8]) {
    if is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just above).
        unsafe { pack_i16_avx2(a, lda, mb, k, dst) }
    } else {
        pack::pack_a::<MR, 2, I16>(a, lda, mb, k, dst)
    }
}

/// `pack::pack_a::<6, 4, U8Biased>`, vectorized when the CPU has AVX2 (the same bytes; the
/// portable loop runs otherwise).
pub fn pack_a_6x4_u8biased(a: &[i8], lda: usize, mb: usize, k: usize, dst: &mut [u8]) {
    if is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just above).
        unsafe { pack_u8biased_avx2(a, lda, mb, k, dst) }
    } else {
        pack::pack_a::<MR, 4, U8Biased>(a, lda, mb, k, dst)
    }
}

#[target_feature(enable = "avx2")]
fn pack_i16_avx2(a: &[i8], lda: usize, mb: usize, k: usize, dst: &mut [u8]) {
    // 16 bytes -> 16 i16 = 8 depth pairs.
    pack_6_rows::<16, 2>(a, lda, mb, k, dst, |p| {
        // SAFETY: `pack_6_rows` passes 16 readable bytes.
        _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(p.cast()) })
    })
}

#[target_feature(enable = "avx2")]
fn pack_u8biased_avx2(a: &[i8], lda: usize, mb: usize, k: usize, dst: &mut [u8]) {
    let bias = _mm256_set1_epi8(i8::MIN);
    // 32 bytes = 8 depth quads, each byte + 128.
    pack_6_rows::<32, 4>(a, lda, mb, k, dst, |p| {
        // SAFETY: `pack_6_rows` passes 32 readable bytes.
        _mm256_xor_si256(unsafe { _mm256_loadu_si256(p.cast()) }, bias)
    })
}

/// The shared loop: `STEP` source bytes of each row (`STEP / KG` = 8 groups) become one ymm of 8
/// dwords through `load`, which reads exactly `STEP` bytes; zero bytes stand for rows past `mb`
/// and depth past `k` (`load` must map them to the format's zero).
#[target_feature(enable = "avx2")]
fn pack_6_rows<const STEP: usize, const KG: usize>(
    a: &[i8],
    lda: usize,
    mb: usize,
    k: usize,
    dst: &mut [u8],
    load: impl Fn(*const i8) -> __m256i,
) {
    debug_assert!(STEP == STEP_GROUPS * KG && STEP <= 32);
    let kp = k.div_ceil(KG) * KG;
    let groups = kp / KG;
    // Rows past `mb`: the format's zero, the same vector every step.
    let zero_row = load([0i8; 32].as_ptr());
    for (q, panel) in dst
        .chunks_exact_mut((groups * GROUP_BYTES).max(1))
        .take(mb.div_ceil(MR))
        .enumerate()
    {
        let rows: [&[i8]; MR] = std::array::from_fn(|r| {
            let i = q * MR + r;
            if i < mb {
                &a[i * lda..i * lda + k]
            } else {
                &[]
            }
        });
        let mut p = 0;
        while p < k {
            let len = STEP.min(k - p);
            let v: [__m256i; 8] = std::array::from_fn(|r| match rows.get(r) {
                Some(row) if !row.is_empty() => {
                    if len == STEP {
                        load(row[p..p + STEP].as_ptr())
                    } else {
                        let mut tail = [0i8; 32];
                        tail[..len].copy_from_slice(&row[p..p + len]);
                        load(tail.as_ptr())
                    }
                }
                _ => zero_row,
            });
            let out = transpose_8x8_dwords(v);
            let first = p / KG;
            let step_groups = (groups - first).min(STEP_GROUPS);
            let bytes = &mut panel[first * GROUP_BYTES..(first + step_groups) * GROUP_BYTES];
            for (chunk, &t) in bytes.chunks_exact_mut(GROUP_BYTES).zip(&out) {
                // SAFETY: the chunk holds the 16 + 8 bytes written (rows 0-3, rows 4-5).
                unsafe {
                    _mm_storeu_si128(chunk.as_mut_ptr().cast(), _mm256_castsi256_si128(t));
                    _mm_storel_epi64(
                        chunk.as_mut_ptr().add(16).cast(),
                        _mm256_extracti128_si256::<1>(t),
                    );
                }
            }
            p += len;
        }
    }
}

/// `r[i]` holds dword `g` of row `i`; `out[g]` holds dword `g` of every row, in row order.
#[target_feature(enable = "avx2")]
fn transpose_8x8_dwords(r: [__m256i; 8]) -> [__m256i; 8] {
    // Per 128-bit lane: interleave row pairs by dword, then by qword: lane L of u[s] (rows 0-3)
    // and w[s] (rows 4-7) holds dword 4L + s.
    let t: [__m256i; 8] = std::array::from_fn(|i| {
        let (x, y) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
        if i % 2 == 0 {
            _mm256_unpacklo_epi32(x, y)
        } else {
            _mm256_unpackhi_epi32(x, y)
        }
    });
    let quads = |lo: usize| -> [__m256i; 4] {
        let (a_lo, a_hi, b_lo, b_hi) = (t[lo], t[lo + 1], t[lo + 2], t[lo + 3]);
        [
            _mm256_unpacklo_epi64(a_lo, b_lo),
            _mm256_unpackhi_epi64(a_lo, b_lo),
            _mm256_unpacklo_epi64(a_hi, b_hi),
            _mm256_unpackhi_epi64(a_hi, b_hi),
        ]
    };
    let (u, w) = (quads(0), quads(4));
    // Dword 4L + s is [u[s].L, w[s].L].
    std::array::from_fn(|g| {
        let s = g % 4;
        if g < 4 {
            _mm256_permute2x128_si256::<0x20>(u[s], w[s])
        } else {
            _mm256_permute2x128_si256::<0x31>(u[s], w[s])
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type PackFn = fn(&[i8], usize, usize, usize, &mut [u8]);

    /// Packs with `fast` and `portable` over row and depth edges (`kg` depth values a group,
    /// `bytes` bytes a value) and compares every byte.
    fn check(fast: PackFn, portable: PackFn, kg: usize, bytes: usize) {
        let mut s = 11u64;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % 255) as i32 - 127
        };
        for mb in [1usize, 4, 5, 6, 7, 12, 17] {
            for k in [0usize, 1, 2, 3, 5, 15, 16, 17, 31, 32, 33, 100, 131] {
                let lda = k + 5;
                let a: Vec<i8> = (0..mb * lda).map(|_| next() as i8).collect();
                let len = mb.div_ceil(MR) * MR * k.div_ceil(kg) * kg * bytes;
                // Different stale contents: every byte must be written.
                let mut want = vec![0xAAu8; len];
                let mut got = vec![0x55u8; len];
                portable(&a, lda, mb, k, &mut want);
                fast(&a, lda, mb, k, &mut got);
                assert_eq!(got, want, "mb {mb}, k {k}");
            }
        }
    }

    #[test]
    fn i16_pairs_match_the_portable_packing() {
        check(pack_a_6x2_i16, pack::pack_a::<MR, 2, I16>, 2, 2);
    }

    #[test]
    fn biased_quads_match_the_portable_packing() {
        check(pack_a_6x4_u8biased, pack::pack_a::<MR, 4, U8Biased>, 4, 1);
    }
}
