//! The portable element-wise path (`Isa::Scalar`): the generic kernels over [`F32xP`], an
//! 8-lane array of plain f32 whose lane-wise loops LLVM auto-vectorises for whatever the target
//! offers (SSE2 on baseline x86-64, NEON on aarch64), with no `unsafe` intrinsics at all.

use super::elementwise::elementwise_entry_points;
use super::simd::SimdF32;
use crate::Isa;

/// Lanes of the portable vector: two SSE or NEON registers, a good auto-vectorisation width.
const L: usize = 8;

/// Eight f32 lanes in plain Rust.
#[derive(Clone, Copy, Debug)]
pub(crate) struct F32xP([f32; L]);

impl F32xP {
    // Plain indexed loops over fixed-size arrays: the shape LLVM's loop and SLP vectorisers turn
    // into whole-register operations (closures through `array::from_fn` came out as per-lane
    // shuffles).
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    fn map(self, f: impl Fn(f32) -> f32) -> Self {
        let mut r = [0.0; L];
        for i in 0..L {
            r[i] = f(self.0[i]);
        }
        F32xP(r)
    }

    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    fn zip(self, o: Self, f: impl Fn(f32, f32) -> f32) -> Self {
        let mut r = [0.0; L];
        for i in 0..L {
            r[i] = f(self.0[i], o.0[i]);
        }
        F32xP(r)
    }
}

// SAFETY: no intrinsics; every method is plain Rust and valid on any CPU.
unsafe impl SimdF32 for F32xP {
    const LANES: usize = L;

    #[inline(always)]
    fn splat(v: f32) -> Self {
        F32xP([v; L])
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller guarantees `p` is readable for L floats; unaligned read.
        F32xP(unsafe { p.cast::<[f32; L]>().read_unaligned() })
    }

    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller guarantees `p` is writable for L floats; unaligned write.
        unsafe { p.cast::<[f32; L]>().write_unaligned(self.0) }
    }

    #[inline(always)]
    unsafe fn load_tail(p: *const f32, n: usize) -> Self {
        let mut v = [0.0; L];
        // SAFETY: the caller guarantees `p` is readable for n < L floats.
        unsafe { std::ptr::copy_nonoverlapping(p, v.as_mut_ptr(), n.min(L)) };
        F32xP(v)
    }

    #[inline(always)]
    unsafe fn store_tail(self, p: *mut f32, n: usize) {
        // SAFETY: the caller guarantees `p` is writable for n < L floats.
        unsafe { std::ptr::copy_nonoverlapping(self.0.as_ptr(), p, n.min(L)) }
    }

    #[inline(always)]
    fn keep_first(self, n: usize, fill: f32) -> Self {
        F32xP(std::array::from_fn(
            |i| if i < n { self.0[i] } else { fill },
        ))
    }

    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self.zip(o, |a, b| a + b)
    }

    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self.zip(o, |a, b| a - b)
    }

    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        self.zip(o, |a, b| a * b)
    }

    #[inline(always)]
    fn div(self, o: Self) -> Self {
        self.zip(o, |a, b| a / b)
    }

    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        self.mul(b).add(c)
    }

    #[inline(always)]
    fn max(self, o: Self) -> Self {
        // x86 `maxps` semantics: the second operand wins unless the first is greater, so a NaN
        // in `o` survives.
        self.zip(o, |a, b| if a > b { a } else { b })
    }

    #[inline(always)]
    fn min(self, o: Self) -> Self {
        self.zip(o, |a, b| if a < b { a } else { b })
    }

    #[inline(always)]
    fn abs(self) -> Self {
        self.map(f32::abs)
    }

    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    fn select_lt(a: Self, b: Self, x: Self, y: Self) -> Self {
        let mut r = y.0;
        for i in 0..L {
            if a.0[i] < b.0[i] {
                r[i] = x.0[i];
            }
        }
        F32xP(r)
    }

    #[inline(always)]
    fn pow2_magic(self) -> Self {
        self.map(|t| f32::from_bits((t.to_bits() << 23).wrapping_add(0x3f80_0000)))
    }

    #[inline(always)]
    fn reduce_add(self) -> f32 {
        let v = self.0;
        ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]))
    }

    #[inline(always)]
    fn reduce_max(self) -> f32 {
        self.0
            .into_iter()
            .fold(f32::NEG_INFINITY, |m, v| if v > m { v } else { m })
    }
}

elementwise_entry_points!(Isa::Scalar, F32xP,);
