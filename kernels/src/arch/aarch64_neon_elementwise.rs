//! NEON element-wise kernels: the generic kernels over [`F32x4`] (one q register), instantiated
//! inside `#[target_feature(enable = "neon")]` entry points. NEON has no masked loads, so tails go
//! through a small stack buffer and nothing past the end of a row is touched.

use super::elementwise::elementwise_entry_points;
use super::simd::SimdF32;
use crate::Isa;
use std::arch::aarch64::*;

/// Four f32 lanes in a q register.
#[derive(Clone, Copy, Debug)]
pub(crate) struct F32x4(float32x4_t);

// SAFETY: these methods use NEON intrinsics; per the trait's contract they run only inside the
// `#[target_feature(enable = "neon")]` entry points below, reached after detection. Each
// `unsafe` block below relies on that and on the pointer contracts of the trait.
unsafe impl SimdF32 for F32x4 {
    const LANES: usize = 4;

    #[inline(always)]
    fn splat(v: f32) -> Self {
        // SAFETY: NEON present (trait contract).
        F32x4(unsafe { vdupq_n_f32(v) })
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: `p` readable for 4 floats (caller); `ld1` has no alignment requirement.
        F32x4(unsafe { vld1q_f32(p) })
    }

    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: `p` writable for 4 floats (caller).
        unsafe { vst1q_f32(p, self.0) }
    }

    #[inline(always)]
    unsafe fn load_tail(p: *const f32, n: usize) -> Self {
        let mut buf = [0.0f32; 4];
        // SAFETY: `p` readable for n < 4 floats (caller); `buf` holds 4.
        unsafe {
            std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n.min(4));
            F32x4(vld1q_f32(buf.as_ptr()))
        }
    }

    #[inline(always)]
    unsafe fn store_tail(self, p: *mut f32, n: usize) {
        let mut buf = [0.0f32; 4];
        // SAFETY: `buf` holds 4 floats; `p` writable for n < 4 floats (caller).
        unsafe {
            vst1q_f32(buf.as_mut_ptr(), self.0);
            std::ptr::copy_nonoverlapping(buf.as_ptr(), p, n.min(4));
        }
    }

    #[inline(always)]
    fn keep_first(self, n: usize, fill: f32) -> Self {
        const IDX: [u32; 4] = [0, 1, 2, 3];
        // SAFETY: NEON present (trait contract); `IDX` holds 4 u32.
        F32x4(unsafe {
            let keep = vcltq_u32(vld1q_u32(IDX.as_ptr()), vdupq_n_u32(n as u32));
            vbslq_f32(keep, self.0, vdupq_n_f32(fill))
        })
    }

    #[inline(always)]
    fn add(self, o: Self) -> Self {
        // SAFETY: NEON present (trait contract).
        F32x4(unsafe { vaddq_f32(self.0, o.0) })
    }

    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        // SAFETY: NEON present (trait contract).
        F32x4(unsafe { vsubq_f32(self.0, o.0) })
    }

    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        // SAFETY: NEON present (trait contract).
        F32x4(unsafe { vmulq_f32(self.0, o.0) })
    }

    #[inline(always)]
    fn div(self, o: Self) -> Self {
        // SAFETY: NEON present (trait contract).
        F32x4(unsafe { vdivq_f32(self.0, o.0) })
    }

    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        // SAFETY: NEON present (trait contract). `vfmaq_f32(c, a, b) = c + a * b`, fused.
        F32x4(unsafe { vfmaq_f32(c.0, self.0, b.0) })
    }

    #[inline(always)]
    fn max(self, o: Self) -> Self {
        // SAFETY: NEON present. `fmax` returns NaN when either operand is NaN.
        F32x4(unsafe { vmaxq_f32(self.0, o.0) })
    }

    #[inline(always)]
    fn min(self, o: Self) -> Self {
        // SAFETY: NEON present. `fmin` returns NaN when either operand is NaN.
        F32x4(unsafe { vminq_f32(self.0, o.0) })
    }

    #[inline(always)]
    fn abs(self) -> Self {
        // SAFETY: NEON present (trait contract).
        F32x4(unsafe { vabsq_f32(self.0) })
    }

    #[inline(always)]
    fn select_lt(a: Self, b: Self, x: Self, y: Self) -> Self {
        // SAFETY: NEON present (trait contract). `fcmgt` is false for NaN.
        F32x4(unsafe { vbslq_f32(vcltq_f32(a.0, b.0), x.0, y.0) })
    }

    #[inline(always)]
    fn pow2_magic(self) -> Self {
        // SAFETY: NEON present (trait contract).
        F32x4(unsafe {
            let bits = vshlq_n_u32::<23>(vreinterpretq_u32_f32(self.0));
            vreinterpretq_f32_u32(vaddq_u32(bits, vdupq_n_u32(0x3f80_0000)))
        })
    }

    #[inline(always)]
    fn reduce_add(self) -> f32 {
        // SAFETY: NEON present (trait contract).
        unsafe { vaddvq_f32(self.0) }
    }

    #[inline(always)]
    fn reduce_max(self) -> f32 {
        // SAFETY: NEON present (trait contract).
        unsafe { vmaxvq_f32(self.0) }
    }
}

elementwise_entry_points!(Isa::Neon, F32x4, "neon");
