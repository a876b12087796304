//! AVX-512 packing of int8 activations for the AVX512-VNNI tile: the per-call half of the
//! packing, which at M = 128, K = 1536 (a BERT FFN down-projection) took 8% of the GEMM when
//! written one dword at a time.
//!
//! The layout is `pack::pack_a::<8, 4, U8Biased>`'s: in each depth group of 4 bytes the 8 rows
//! store their bytes side by side, so a panel is the 8 x (K / 4) dword matrix of A transposed.
//! 64 bytes of each row (16 groups) are loaded into 8 zmm, transposed in registers as 8 x 16
//! dwords and stored as 512 contiguous bytes: 32 shuffles, 8 XORs (the `+ 128` bias), 8 loads
//! and 8 stores per 512 bytes.

use crate::gemm_i8::pack::{self, U8Biased};
use std::arch::x86_64::*;

/// Rows per micro-panel.
const MR: usize = 8;
/// Depth bytes per group.
const KG: usize = 4;
/// Depth bytes of each row moved per step (one zmm).
const STEP: usize = 64;

/// `pack::pack_a::<8, 4, U8Biased>`, vectorized when the CPU has AVX512-BW (the same bytes; the
/// portable loop runs otherwise).
pub fn pack_a_8x4_u8biased(a: &[i8], lda: usize, mb: usize, k: usize, dst: &mut [u8]) {
    if is_x86_feature_detected!("avx512bw") {
        // SAFETY: AVX512-F/BW are present (checked just above).
        unsafe { pack_a_avx512(a, lda, mb, k, dst) }
    } else {
        pack::pack_a::<MR, KG, U8Biased>(a, lda, mb, k, dst)
    }
}

#[target_feature(enable = "avx512f,avx512bw")]
fn pack_a_avx512(a: &[i8], lda: usize, mb: usize, k: usize, dst: &mut [u8]) {
    let kp = k.div_ceil(KG) * KG;
    let panel_bytes = MR * kp;
    let groups = kp / KG;
    let bias = _mm512_set1_epi8(i8::MIN);
    for (q, panel) in dst
        .chunks_exact_mut(panel_bytes.max(1))
        .take(mb.div_ceil(MR))
        .enumerate()
    {
        let rows = (mb - q * MR).min(MR);
        // Rows past `mb` read nothing: zero bytes, which the bias turns into the encoded zero.
        let row_ptrs: [Option<*const i8>; MR] = std::array::from_fn(|r| {
            (r < rows).then(|| a[(q * MR + r) * lda..(q * MR + r) * lda + k].as_ptr())
        });
        let mut p = 0;
        while p < k {
            let len = STEP.min(k - p);
            let mask = if len == STEP {
                u64::MAX
            } else {
                (1u64 << len) - 1
            };
            let v: [__m512i; MR] = std::array::from_fn(|r| match row_ptrs[r] {
                // SAFETY: the mask keeps the load inside row r's `k` bytes (`p + len <= k`);
                // masked-off bytes are neither read nor faulted on, and come back as zero.
                Some(row) => unsafe { _mm512_maskz_loadu_epi8(mask, row.add(p)) },
                None => _mm512_setzero_si512(),
            });
            let out = transpose_8x16_dwords(v).map(|t| _mm512_xor_si512(t, bias));
            // Group `p / 4 + 2j` and the next one are `out[j]`; the last step may hold fewer.
            let first = p / KG;
            let step_groups = (groups - first).min(STEP / KG);
            let bytes = &mut panel[first * MR * KG..(first + step_groups) * MR * KG];
            for (chunk, &t) in bytes.chunks_mut(2 * MR * KG).zip(&out) {
                if chunk.len() == 2 * MR * KG {
                    // SAFETY: the chunk holds the 64 bytes written.
                    unsafe { _mm512_storeu_si512(chunk.as_mut_ptr().cast(), t) };
                } else {
                    // SAFETY: an odd last group: the chunk holds the 32 bytes written.
                    unsafe {
                        _mm256_storeu_si256(chunk.as_mut_ptr().cast(), _mm512_castsi512_si256(t))
                    };
                }
            }
            p += len;
        }
    }
}

/// Rows `r[0..8]` of 16 dwords each (dword `g` of row `i` is depth group `g` of A's row `i`)
/// become `out[j]` = groups `2j` and `2j + 1`, each as the 8 rows' dwords in order.
#[target_feature(enable = "avx512f")]
fn transpose_8x16_dwords(r: [__m512i; MR]) -> [__m512i; MR] {
    // Within each 128-bit lane L (groups 4L..4L+3): interleave row pairs by dword, then by qword,
    // which leaves lane L of u[s] (rows 0-3) and w[s] (rows 4-7) holding group 4L + s.
    let t: [__m512i; MR] = std::array::from_fn(|i| {
        let (x, y) = (r[i / 2 * 2], r[i / 2 * 2 + 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_epi32(x, y)
        } else {
            _mm512_unpackhi_epi32(x, y)
        }
    });
    let quads = |lo: usize| -> [__m512i; 4] {
        let (a_lo, a_hi, b_lo, b_hi) = (t[lo], t[lo + 1], t[lo + 2], t[lo + 3]);
        [
            _mm512_unpacklo_epi64(a_lo, b_lo),
            _mm512_unpackhi_epi64(a_lo, b_lo),
            _mm512_unpacklo_epi64(a_hi, b_hi),
            _mm512_unpackhi_epi64(a_hi, b_hi),
        ]
    };
    let (u, w) = (quads(0), quads(4));
    // Then across registers: groups 4L + s and 4L + s + 1 (s = 0 or 2) form out[2L + s / 2].
    let mut out = [_mm512_setzero_si512(); MR];
    for s in [0, 2] {
        // [u_s.L0, u_s.L1, w_s.L0, w_s.L1] and the same for s + 1; then L2, L3.
        let p_lo = _mm512_shuffle_i64x2::<0x44>(u[s], w[s]);
        let q_lo = _mm512_shuffle_i64x2::<0x44>(u[s + 1], w[s + 1]);
        let p_hi = _mm512_shuffle_i64x2::<0xEE>(u[s], w[s]);
        let q_hi = _mm512_shuffle_i64x2::<0xEE>(u[s + 1], w[s + 1]);
        let j = s / 2;
        out[j] = _mm512_shuffle_i64x2::<0x88>(p_lo, q_lo);
        out[2 + j] = _mm512_shuffle_i64x2::<0xDD>(p_lo, q_lo);
        out[4 + j] = _mm512_shuffle_i64x2::<0x88>(p_hi, q_hi);
        out[6 + j] = _mm512_shuffle_i64x2::<0xDD>(p_hi, q_hi);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_portable_packing() {
        let mut s = 7u64;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % 255) as i32 - 127
        };
        for mb in [1usize, 3, 7, 8, 9, 16, 21] {
            for k in [0usize, 1, 3, 4, 5, 63, 64, 65, 100, 128, 131, 200] {
                let lda = k + 3;
                let a: Vec<i8> = (0..mb * lda).map(|_| next() as i8).collect();
                let len = mb.div_ceil(MR) * MR * k.div_ceil(KG) * KG;
                // Different stale contents: every byte must be written.
                let mut want = vec![0xAAu8; len];
                let mut got = vec![0x55u8; len];
                pack::pack_a::<MR, KG, U8Biased>(&a, lda, mb, k, &mut want);
                pack_a_8x4_u8biased(&a, lda, mb, k, &mut got);
                assert_eq!(got, want, "mb {mb}, k {k}");
            }
        }
    }
}
