//! AVX2 + FMA element-wise kernels: the generic kernels over [`F32x8`] (one ymm register),
//! instantiated inside `#[target_feature(enable = "avx2,fma")]` entry points. Tails use
//! `vmaskmovps`, so nothing past the end of a row is read or written.

use super::elementwise::elementwise_entry_points;
use super::simd::SimdF32;
use crate::Isa;
use std::arch::x86_64::*;

/// Eight f32 lanes in a ymm register.
#[derive(Clone, Copy, Debug)]
pub(crate) struct F32x8(__m256);

/// All-ones in lanes `< n`, as an integer mask for `vmaskmovps` / `vblendvps`.
#[inline(always)]
fn lane_mask(n: usize) -> __m256i {
    // SAFETY: AVX2 is enabled in every entry point this is inlined into (see `SimdF32`).
    unsafe {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }
}

// SAFETY: these methods use AVX2/FMA intrinsics; per the trait's contract they run only inside
// the `#[target_feature(enable = "avx2,fma")]` entry points below, reached after detection.
// Each `unsafe` block below relies on that and on the pointer contracts of the trait.
unsafe impl SimdF32 for F32x8 {
    const LANES: usize = 8;

    #[inline(always)]
    fn splat(v: f32) -> Self {
        // SAFETY: AVX present (trait contract).
        F32x8(unsafe { _mm256_set1_ps(v) })
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: `p` readable for 8 floats (caller); unaligned load.
        F32x8(unsafe { _mm256_loadu_ps(p) })
    }

    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: `p` writable for 8 floats (caller); unaligned store.
        unsafe { _mm256_storeu_ps(p, self.0) }
    }

    #[inline(always)]
    unsafe fn load_tail(p: *const f32, n: usize) -> Self {
        // SAFETY: masked-off lanes are not accessed (no fault), the rest is readable (caller).
        F32x8(unsafe { _mm256_maskload_ps(p, lane_mask(n)) })
    }

    #[inline(always)]
    unsafe fn store_tail(self, p: *mut f32, n: usize) {
        // SAFETY: masked-off lanes are not accessed, the rest is writable (caller).
        unsafe { _mm256_maskstore_ps(p, lane_mask(n), self.0) }
    }

    #[inline(always)]
    fn keep_first(self, n: usize, fill: f32) -> Self {
        // SAFETY: AVX present (trait contract).
        F32x8(unsafe {
            _mm256_blendv_ps(
                _mm256_set1_ps(fill),
                self.0,
                _mm256_castsi256_ps(lane_mask(n)),
            )
        })
    }

    #[inline(always)]
    fn add(self, o: Self) -> Self {
        // SAFETY: AVX present (trait contract).
        F32x8(unsafe { _mm256_add_ps(self.0, o.0) })
    }

    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        // SAFETY: AVX present (trait contract).
        F32x8(unsafe { _mm256_sub_ps(self.0, o.0) })
    }

    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        // SAFETY: AVX present (trait contract).
        F32x8(unsafe { _mm256_mul_ps(self.0, o.0) })
    }

    #[inline(always)]
    fn div(self, o: Self) -> Self {
        // SAFETY: AVX present (trait contract).
        F32x8(unsafe { _mm256_div_ps(self.0, o.0) })
    }

    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        // SAFETY: FMA present (trait contract).
        F32x8(unsafe { _mm256_fmadd_ps(self.0, b.0, c.0) })
    }

    #[inline(always)]
    fn max(self, o: Self) -> Self {
        // SAFETY: AVX present. `vmaxps` returns the second operand when either is NaN.
        F32x8(unsafe { _mm256_max_ps(self.0, o.0) })
    }

    #[inline(always)]
    fn min(self, o: Self) -> Self {
        // SAFETY: AVX present. `vminps` returns the second operand when either is NaN.
        F32x8(unsafe { _mm256_min_ps(self.0, o.0) })
    }

    #[inline(always)]
    fn abs(self) -> Self {
        // SAFETY: AVX present (trait contract).
        F32x8(unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), self.0) })
    }

    #[inline(always)]
    fn select_lt(a: Self, b: Self, x: Self, y: Self) -> Self {
        // SAFETY: AVX present (trait contract).
        F32x8(unsafe { _mm256_blendv_ps(y.0, x.0, _mm256_cmp_ps::<_CMP_LT_OQ>(a.0, b.0)) })
    }

    #[inline(always)]
    fn pow2_magic(self) -> Self {
        // SAFETY: AVX2 present (trait contract).
        F32x8(unsafe {
            let bits = _mm256_slli_epi32::<23>(_mm256_castps_si256(self.0));
            _mm256_castsi256_ps(_mm256_add_epi32(bits, _mm256_set1_epi32(0x3f80_0000)))
        })
    }

    #[inline(always)]
    fn reduce_add(self) -> f32 {
        // SAFETY: AVX present (trait contract).
        unsafe {
            let s = _mm_add_ps(
                _mm256_castps256_ps128(self.0),
                _mm256_extractf128_ps::<1>(self.0),
            );
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s)))
        }
    }

    #[inline(always)]
    fn reduce_max(self) -> f32 {
        // SAFETY: AVX present (trait contract).
        unsafe {
            let s = _mm_max_ps(
                _mm256_castps256_ps128(self.0),
                _mm256_extractf128_ps::<1>(self.0),
            );
            let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(_mm_max_ss(s, _mm_shuffle_ps::<0b01>(s, s)))
        }
    }
}

elementwise_entry_points!(Isa::Avx2, F32x8, "avx2,fma");
