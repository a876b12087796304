//! A small f32 SIMD-vector trait and the vector math built on it (exp, erfc, sigmoid).
//!
//! The element-wise kernels (`arch::elementwise`) are written once, generically over
//! [`SimdF32`], and instantiated per ISA inside `#[target_feature]` entry points (one file per
//! ISA: `portable_elementwise`, `x86_avx2_elementwise`, `x86_avx512_elementwise`,
//! `aarch64_neon_elementwise`). Everything here is `#[inline(always)]` so that it is compiled
//! with the features of the entry point it lands in.
//!
//! Accuracy (f32, measured against the f64 references in the property tests):
//! - [`exp`]: Cody-Waite range reduction and a degree-6 polynomial (six multiply-adds), within
//!   1.5 ulp on [-87.3, 88.37] (the unit test measures 0.82 with fused multiply-adds, 1.02
//!   without); below -87.68 it returns exactly 0 (the true value is a subnormal under
//!   1.2e-38), above 88.37 it saturates at ~2.4e38 (finite on purpose: the tanh-GELU backward
//!   multiplies `e * (1 / (1 + e))`, which must stay finite). NaN propagates.
//! - [`half_erfc_abs`]: `0.5 erfc(|z|)` with Numerical Recipes' Chebyshev fit `erfcc`
//!   (fractional error < 1.2e-7 for all z >= 0) on top of [`exp`]; in f32 the rounding of `z^2`
//!   adds a relative error of about `6e-8 z^2` (3e-6 at z = 7, where erfc is 4e-23).

/// One vector of f32 lanes on some ISA.
///
/// # Safety
/// Implementations for SIMD types use intrinsics of their ISA. Their methods may only run where
/// that ISA is enabled: the generic bodies that use them are instantiated only inside
/// `#[target_feature]` entry points, which `crate::elementwise::ElementwiseKernels::for_isa` hands
/// out only after run-time detection.
pub(crate) unsafe trait SimdF32: Copy {
    /// Lanes per vector.
    const LANES: usize;
    /// All lanes `v`.
    fn splat(v: f32) -> Self;
    /// Loads `LANES` values.
    ///
    /// # Safety
    /// `p` must be valid for reading `LANES` f32 (no alignment needed).
    unsafe fn load(p: *const f32) -> Self;
    /// Stores `LANES` values.
    ///
    /// # Safety
    /// `p` must be valid for writing `LANES` f32 (no alignment needed).
    unsafe fn store(self, p: *mut f32);
    /// Loads the first `n` lanes (`0 < n < LANES`); the other lanes are 0.0.
    ///
    /// # Safety
    /// `p` must be valid for reading `n` f32; nothing past `p + n` is touched.
    unsafe fn load_tail(p: *const f32, n: usize) -> Self;
    /// Stores the first `n` lanes (`0 < n < LANES`).
    ///
    /// # Safety
    /// `p` must be valid for writing `n` f32; nothing past `p + n` is touched.
    unsafe fn store_tail(self, p: *mut f32, n: usize);
    /// Keeps the first `n` lanes and sets the others to `fill` (used to neutralise the padding
    /// lanes of a tail before a reduction).
    fn keep_first(self, n: usize, fill: f32) -> Self;
    /// `self + o`.
    fn add(self, o: Self) -> Self;
    /// `self - o`.
    fn sub(self, o: Self) -> Self;
    /// `self * o`.
    fn mul(self, o: Self) -> Self;
    /// `self / o` (IEEE division).
    fn div(self, o: Self) -> Self;
    /// `self * b + c`, fused where the ISA has FMA (not on the portable path, where a libm call
    /// would be far slower than two roundings).
    fn mul_add(self, b: Self, c: Self) -> Self;
    /// Lane-wise maximum. If `o` is NaN the lane is NaN; if only `self` is, it is unspecified.
    fn max(self, o: Self) -> Self;
    /// Lane-wise minimum. If `o` is NaN the lane is NaN; if only `self` is, it is unspecified.
    fn min(self, o: Self) -> Self;
    /// `|self|`.
    fn abs(self) -> Self;
    /// Lane-wise `if a < b { x } else { y }` (false for NaN).
    fn select_lt(a: Self, b: Self, x: Self, y: Self) -> Self;
    /// For `self = n + 1.5 * 2^23` with integer `n` in `[-127, 127]`: `2^n` (exactly 0 for
    /// `n = -127`), built by shifting the integer bits into the exponent field.
    fn pow2_magic(self) -> Self;
    /// Sum of the lanes.
    fn reduce_add(self) -> f32;
    /// Maximum of the lanes (NaN handling unspecified: callers get NaN from elsewhere).
    fn reduce_max(self) -> f32;
}

/// Loads `k` lanes at `p` (`k == LANES`: a full vector; else a zero-filled tail).
///
/// # Safety
/// `p` is readable for `k` floats, `0 < k <= LANES`.
#[inline(always)]
pub(crate) unsafe fn load_lanes<V: SimdF32>(p: *const f32, k: usize) -> V {
    // SAFETY: the caller's contract.
    unsafe {
        if k == V::LANES {
            V::load(p)
        } else {
            V::load_tail(p, k)
        }
    }
}

/// Stores `k` lanes at `p`.
///
/// # Safety
/// `p` is writable for `k` floats, `0 < k <= LANES`.
#[inline(always)]
pub(crate) unsafe fn store_lanes<V: SimdF32>(v: V, p: *mut f32, k: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        if k == V::LANES {
            v.store(p)
        } else {
            v.store_tail(p, k)
        }
    }
}

const EXP_LO: f32 = -88.0;
const EXP_HI: f32 = 88.376_26;
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits.
const MAGIC: f32 = 12_582_912.0;
/// ln 2 split so that `n * LN2_HI` is exact for |n| < 2^9 (Cody-Waite).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// `e^x` per lane (see the module docs for accuracy, saturation and NaN).
// The polynomial is a minimax fit of the relative error of e^r on [-ln2/2, ln2/2] with the
// constant term held at 1 (Remez exchange, 2.6e-9 before rounding the coefficients to f32).
// In Horner form it is one multiply-add per coefficient: Cephes' 1 + r + r^2 P(r) took two
// more operations per vector and measured no more accurate.
#[inline(always)]
pub(crate) fn exp<V: SimdF32>(x: V) -> V {
    // Clamp with the NaN-carrying operand second, so NaN survives.
    let x = V::splat(EXP_HI).min(V::splat(EXP_LO).max(x));
    // n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2].
    let t = x.mul_add(V::splat(LOG2E), V::splat(MAGIC));
    let n = t.sub(V::splat(MAGIC));
    let r = n.mul_add(V::splat(-LN2_HI), x);
    let r = n.mul_add(V::splat(-LN2_LO), r);
    // e^r by a degree-6 polynomial in Horner form: six multiply-adds.
    let mut p = V::splat(1.406_124_1e-3);
    p = p.mul_add(r, V::splat(8.379_011e-3));
    p = p.mul_add(r, V::splat(4.166_477_5e-2));
    p = p.mul_add(r, V::splat(1.666_636_6e-1));
    p = p.mul_add(r, V::splat(5.000_000_6e-1));
    p = p.mul_add(r, V::splat(1.0));
    let y = p.mul_add(r, V::splat(1.0));
    y.mul(t.pow2_magic())
}

/// `0.5 * erfc(a)` for `a >= 0` (NaN for NaN), relative accuracy ~1e-7 (see module docs).
// The coefficients are Numerical Recipes' as published; some round to fewer f32 digits.
#[allow(clippy::excessive_precision)]
#[inline(always)]
pub(crate) fn half_erfc_abs<V: SimdF32>(a: V) -> V {
    // Numerical Recipes `erfcc`: erfc(a) = t exp(-a^2 + P(t)), t = 1 / (1 + a/2).
    const C: [f32; 10] = [
        0.170_872_77,
        -0.822_152_23,
        1.488_515_87,
        -1.135_203_98,
        0.278_868_07,
        -0.186_288_06,
        0.096_784_18,
        0.374_091_96,
        1.000_023_68,
        -1.265_512_23,
    ];
    let one = V::splat(1.0);
    let t = one.div(a.mul_add(V::splat(0.5), one));
    let mut p = V::splat(C[0]);
    for &c in &C[1..] {
        p = p.mul_add(t, V::splat(c));
    }
    let arg = p.sub(a.mul(a));
    t.mul(exp(arg)).mul(V::splat(0.5))
}

/// The standard normal CDF `Phi(x) = 0.5 (1 + erf(x / sqrt 2))`, computed through erfc so that
/// it is relatively accurate in the lower tail too. Returns `(Phi(x), a)` with `a = |x| / sqrt 2`.
#[inline(always)]
pub(crate) fn normal_cdf<V: SimdF32>(x: V) -> (V, V) {
    let a = x.abs().mul(V::splat(std::f32::consts::FRAC_1_SQRT_2));
    let h = half_erfc_abs(a);
    let cdf = V::select_lt(x, V::splat(0.0), h, V::splat(1.0).sub(h));
    (cdf, a)
}

/// `1 / (1 + e^-v)` and `e^-v`: the logistic sigmoid, with the exponential the caller may reuse
/// (`1 - sigmoid(v) = e^-v * sigmoid(v)` without cancellation).
#[inline(always)]
pub(crate) fn sigmoid_and_exp_neg<V: SimdF32>(v: V) -> (V, V) {
    let e = exp(V::splat(0.0).sub(v));
    (V::splat(1.0).div(V::splat(1.0).add(e)), e)
}

#[cfg(test)]
mod tests {
    use super::{SimdF32, exp};

    /// The largest relative error of [`exp`] over `x0, x0 + step, ...` below `x1`, in units of
    /// 2^-23 (one ulp at 1.0), against f64 `exp` of the same f32 input.
    fn exp_error_ulps<V: SimdF32>(x0: f32, x1: f32, step: f32) -> f64 {
        let mut xs = Vec::new();
        let mut x = x0;
        while x < x1 {
            xs.push(x);
            x += step;
        }
        xs.resize(xs.len().next_multiple_of(V::LANES), x0);
        let mut out = vec![0f32; V::LANES];
        let mut worst = 0f64;
        for chunk in xs.chunks_exact(V::LANES) {
            // SAFETY: both buffers hold LANES floats.
            unsafe { exp(V::load(chunk.as_ptr())).store(out.as_mut_ptr()) };
            for (&x, &y) in chunk.iter().zip(&out) {
                let want = f64::from(x).exp();
                worst = worst.max((f64::from(y) - want).abs() / want * f64::from(1u32 << 23));
            }
        }
        worst
    }

    /// The accuracy the module docs state: within 1.5 ulp on [-87.3, 88.37] (normal results).
    #[test]
    fn exp_is_within_one_and_a_half_ulp() {
        type V = crate::arch::portable_elementwise::F32xP;
        let worst = exp_error_ulps::<V>(-87.3, 88.37, 1.7e-4);
        eprintln!("portable exp: {worst:.3} ulp");
        assert!(worst <= 1.5, "portable exp: {worst} ulp");
    }

    /// The same with fused multiply-adds, on the x86 vector types this CPU has.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn exp_is_within_one_and_a_half_ulp_on_x86() {
        #[target_feature(enable = "avx2,fma")]
        fn avx2() -> f64 {
            exp_error_ulps::<crate::arch::x86_avx2_elementwise::F32x8>(-87.3, 88.37, 1.7e-4)
        }
        #[target_feature(enable = "avx512f")]
        fn avx512() -> f64 {
            exp_error_ulps::<crate::arch::x86_avx512_elementwise::F32x16>(-87.3, 88.37, 1.7e-4)
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: AVX2 and FMA are present.
            let worst = unsafe { avx2() };
            eprintln!("avx2 exp: {worst:.3} ulp");
            assert!(worst <= 1.5, "avx2 exp: {worst} ulp");
        }
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is present.
            let worst = unsafe { avx512() };
            eprintln!("avx512 exp: {worst:.3} ulp");
            assert!(worst <= 1.5, "avx512 exp: {worst} ulp");
        }
    }
}
