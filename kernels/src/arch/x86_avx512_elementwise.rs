//! AVX-512F element-wise kernels: the generic kernels over [`F32x16`] (one zmm register),
//! instantiated inside `#[target_feature(enable = "avx512f")]` entry points. Tails use the
//! native write/read masks, so nothing past the end of a row is touched.

use super::elementwise::elementwise_entry_points;
use super::simd::SimdF32;
use crate::Isa;
use std::arch::x86_64::*;

/// Sixteen f32 lanes in a zmm register.
#[derive(Clone, Copy, Debug)]
pub(crate) struct F32x16(__m512);

/// Bits set for lanes `< n` (`n < 16`).
#[inline(always)]
fn lane_mask(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

// SAFETY: these methods use AVX-512F intrinsics; per the trait's contract they run only inside
// the `#[target_feature(enable = "avx512f")]` entry points below, reached after detection.
// Each `unsafe` block below relies on that and on the pointer contracts of the trait.
unsafe impl SimdF32 for F32x16 {
    const LANES: usize = 16;

    #[inline(always)]
    fn splat(v: f32) -> Self {
        // SAFETY: AVX-512F present (trait contract).
        F32x16(unsafe { _mm512_set1_ps(v) })
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: `p` readable for 16 floats (caller); unaligned load.
        F32x16(unsafe { _mm512_loadu_ps(p) })
    }

    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: `p` writable for 16 floats (caller); unaligned store.
        unsafe { _mm512_storeu_ps(p, self.0) }
    }

    #[inline(always)]
    unsafe fn load_tail(p: *const f32, n: usize) -> Self {
        // SAFETY: masked-off lanes are not accessed (no fault), the rest is readable (caller).
        F32x16(unsafe { _mm512_maskz_loadu_ps(lane_mask(n), p) })
    }

    #[inline(always)]
    unsafe fn store_tail(self, p: *mut f32, n: usize) {
        // SAFETY: masked-off lanes are not accessed, the rest is writable (caller).
        unsafe { _mm512_mask_storeu_ps(p, lane_mask(n), self.0) }
    }

    #[inline(always)]
    fn keep_first(self, n: usize, fill: f32) -> Self {
        // SAFETY: AVX-512F present (trait contract).
        F32x16(unsafe { _mm512_mask_mov_ps(_mm512_set1_ps(fill), lane_mask(n), self.0) })
    }

    #[inline(always)]
    fn add(self, o: Self) -> Self {
        // SAFETY: AVX-512F present (trait contract).
        F32x16(unsafe { _mm512_add_ps(self.0, o.0) })
    }

    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        // SAFETY: AVX-512F present (trait contract).
        F32x16(unsafe { _mm512_sub_ps(self.0, o.0) })
    }

    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        // SAFETY: AVX-512F present (trait contract).
        F32x16(unsafe { _mm512_mul_ps(self.0, o.0) })
    }

    #[inline(always)]
    fn div(self, o: Self) -> Self {
        // SAFETY: AVX-512F present (trait contract).
        F32x16(unsafe { _mm512_div_ps(self.0, o.0) })
    }

    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        // SAFETY: AVX-512F present (trait contract).
        F32x16(unsafe { _mm512_fmadd_ps(self.0, b.0, c.0) })
    }

    #[inline(always)]
    fn max(self, o: Self) -> Self {
        // SAFETY: AVX-512F present. `vmaxps` returns the second operand when either is NaN.
        F32x16(unsafe { _mm512_max_ps(self.0, o.0) })
    }

    #[inline(always)]
    fn min(self, o: Self) -> Self {
        // SAFETY: AVX-512F present. `vminps` returns the second operand when either is NaN.
        F32x16(unsafe { _mm512_min_ps(self.0, o.0) })
    }

    #[inline(always)]
    fn abs(self) -> Self {
        // SAFETY: AVX-512F present (trait contract).
        F32x16(unsafe { _mm512_abs_ps(self.0) })
    }

    #[inline(always)]
    fn select_lt(a: Self, b: Self, x: Self, y: Self) -> Self {
        // SAFETY: AVX-512F present (trait contract). Blend takes `x` where the mask is set.
        F32x16(unsafe {
            _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(a.0, b.0), y.0, x.0)
        })
    }

    #[inline(always)]
    fn pow2_magic(self) -> Self {
        // SAFETY: AVX-512F present (trait contract).
        F32x16(unsafe {
            let bits = _mm512_slli_epi32::<23>(_mm512_castps_si512(self.0));
            _mm512_castsi512_ps(_mm512_add_epi32(bits, _mm512_set1_epi32(0x3f80_0000)))
        })
    }

    #[inline(always)]
    fn reduce_add(self) -> f32 {
        // SAFETY: AVX-512F present (trait contract).
        unsafe { _mm512_reduce_add_ps(self.0) }
    }

    #[inline(always)]
    fn reduce_max(self) -> f32 {
        // SAFETY: AVX-512F present (trait contract).
        unsafe { _mm512_reduce_max_ps(self.0) }
    }
}

elementwise_entry_points!(Isa::Avx512, F32x16, "avx512f");
