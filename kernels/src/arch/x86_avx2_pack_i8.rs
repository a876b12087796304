//! AVX2 packing of int8 activations for the AVX2 tile (`pack::pack_a::<6, 2, I16>`): each depth
//! pair of the 6 rows becomes 6 dwords of two sign-extended i16, side by side. Written one
//! value at a time it took 8% of the GEMM at M = 128, K = 1536.
//!
//! 16 bytes of each row (8 depth pairs) are sign-extended to one ymm of 8 dwords; the 6 rows (and
//! two zero rows) are transposed in registers as 8 x 8 dwords, and each depth pair's first 6
//! dwords (24 bytes) are stored.

use crate::gemm_i8::pack::{self, I16};
use std::arch::x86_64::*;

/// Rows per micro-panel.
const MR: usize = 6;
/// Depth values per group.
const KG: usize = 2;
/// Depth values of each row moved per step.
const STEP: usize = 16;
/// Bytes of one packed depth group (6 rows x 2 i16).
const GROUP_BYTES: usize = MR * KG * 2;

/// `pack::pack_a::<6, 2, I16>`, vectorized when the CPU has AVX2 (the same bytes; the portable
/// loop runs otherwise).
pub fn pack_a_6x2_i16(a: &[i8], lda: usize, mb: usize, k: usize, dst: &mut [u8]) {
    if is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just above).
        unsafe { pack_a_avx2(a, lda, mb, k, dst) }
    } else {
        pack::pack_a::<MR, KG, I16>(a, lda, mb, k, dst)
    }
}

#[target_feature(enable = "avx2")]
fn pack_a_avx2(a: &[i8], lda: usize, mb: usize, k: usize, dst: &mut [u8]) {
    let kp = k.div_ceil(KG) * KG;
    let groups = kp / KG;
    for (q, panel) in dst
        .chunks_exact_mut((MR * kp * 2).max(1))
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
            // Rows past `mb` and depth past `k` are zeros.
            let v: [__m256i; 8] = std::array::from_fn(|r| {
                let x = match rows.get(r) {
                    Some(row) if !row.is_empty() => {
                        let mut tail = [0i8; STEP];
                        let src = if len == STEP {
                            &row[p..p + STEP]
                        } else {
                            tail[..len].copy_from_slice(&row[p..p + len]);
                            &tail[..]
                        };
                        // SAFETY: `src` holds 16 readable bytes.
                        unsafe { _mm_loadu_si128(src.as_ptr().cast()) }
                    }
                    _ => _mm_setzero_si128(),
                };
                _mm256_cvtepi8_epi16(x)
            });
            let out = transpose_8x8_dwords(v);
            let first = p / KG;
            let step_groups = (groups - first).min(STEP / KG);
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

    #[test]
    fn matches_the_portable_packing() {
        let mut s = 11u64;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % 255) as i32 - 127
        };
        for mb in [1usize, 4, 5, 6, 7, 12, 17] {
            for k in [0usize, 1, 2, 3, 15, 16, 17, 31, 33, 100, 131] {
                let lda = k + 5;
                let a: Vec<i8> = (0..mb * lda).map(|_| next() as i8).collect();
                let len = mb.div_ceil(MR) * MR * k.div_ceil(KG) * KG * 2;
                // Different stale contents: every byte must be written.
                let mut want = vec![0xAAu8; len];
                let mut got = vec![0x55u8; len];
                pack::pack_a::<MR, KG, I16>(&a, lda, mb, k, &mut want);
                pack_a_6x2_i16(&a, lda, mb, k, &mut got);
                assert_eq!(got, want, "mb {mb}, k {k}");
            }
        }
    }
}
