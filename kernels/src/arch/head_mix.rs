//! The body of [`crate::head_mix`]: `dst[h] = sum_g M[h, g] src[g] + bias[h]` over `heads` rows
//! of `len` floats each, written once generically over [`SimdF32`] and instantiated per ISA by
//! `elementwise_entry_points!`. Each output chunk stays in registers while the H source rows
//! stream past it from L1 (one load per fused multiply-add).

use super::simd::SimdF32;

/// Vectors per chunk of a row: four independent accumulators hide the FMA latency.
const UNROLL: usize = 4;

/// The coefficient `M[h, g]` of a row-major `heads x heads` matrix, or of its transpose.
#[inline(always)]
fn coeff(m: &[f32], heads: usize, h: usize, g: usize, transpose: bool) -> f32 {
    if transpose {
        m[g * heads + h]
    } else {
        m[h * heads + g]
    }
}

/// `dst[h * len + x] = sum_g M[h, g] * src[g * len + x] + bias[h]` (bias 0 when `None`;
/// `M = m^T` when `transpose`).
///
/// # Safety
/// `dst` and `src` hold `heads * len` floats, `m` holds `heads * heads`, `bias` (if any)
/// `heads`; the vector type's ISA is enabled.
#[inline(always)]
pub(crate) unsafe fn mix_heads<V: SimdF32>(
    dst: &mut [f32],
    src: &[f32],
    m: &[f32],
    bias: Option<&[f32]>,
    heads: usize,
    len: usize,
    transpose: bool,
) {
    debug_assert!(dst.len() >= heads * len && src.len() >= heads * len);
    debug_assert!(m.len() >= heads * heads && bias.is_none_or(|b| b.len() >= heads));
    let chunk = UNROLL * V::LANES;
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    let mut x = 0;
    while x + chunk <= len {
        for h in 0..heads {
            let mut acc = [V::splat(bias.map_or(0.0, |b| b[h])); UNROLL];
            for g in 0..heads {
                let w = V::splat(coeff(m, heads, h, g, transpose));
                // SAFETY: x + chunk <= len, so every lane read lies in row g of `src`.
                let row = unsafe { s.add(g * len + x) };
                for (u, a) in acc.iter_mut().enumerate() {
                    *a = unsafe { V::load(row.add(u * V::LANES)) }.mul_add(w, *a);
                }
            }
            // SAFETY: the same lanes of row h of `dst`.
            let out = unsafe { d.add(h * len + x) };
            for (u, a) in acc.iter().enumerate() {
                unsafe { a.store(out.add(u * V::LANES)) };
            }
        }
        x += chunk;
    }
    // The tail: one vector at a time, the last one partial.
    while x < len {
        let n = V::LANES.min(len - x);
        for h in 0..heads {
            let mut acc = V::splat(bias.map_or(0.0, |b| b[h]));
            for g in 0..heads {
                let w = V::splat(coeff(m, heads, h, g, transpose));
                // SAFETY: lanes x..x + n of row g, all below len.
                let p = unsafe { s.add(g * len + x) };
                let v = if n == V::LANES {
                    unsafe { V::load(p) }
                } else {
                    unsafe { V::load_tail(p, n) }
                };
                acc = v.mul_add(w, acc);
            }
            // SAFETY: lanes x..x + n of row h of `dst`.
            let p = unsafe { d.add(h * len + x) };
            if n == V::LANES {
                unsafe { acc.store(p) };
            } else {
                unsafe { acc.store_tail(p, n) };
            }
        }
        x += n;
    }
}

/// `acc[h * heads + g] += sum_x a[h * len + x] * b[g * len + x]`: the `heads x heads` dot
/// products of two sets of maps (the gradients of the head mixes).
///
/// # Safety
/// `a` and `b` hold `heads * len` floats, `acc` holds `heads * heads`; the vector type's ISA is
/// enabled.
#[inline(always)]
pub(crate) unsafe fn add_head_dots<V: SimdF32>(
    acc: &mut [f32],
    a: &[f32],
    b: &[f32],
    heads: usize,
    len: usize,
) {
    debug_assert!(a.len() >= heads * len && b.len() >= heads * len);
    debug_assert!(acc.len() >= heads * heads);
    let full = len - len % V::LANES;
    for h in 0..heads {
        let a_row = &a[h * len..(h + 1) * len];
        for g in 0..heads {
            let b_row = &b[g * len..(g + 1) * len];
            let (pa, pb) = (a_row.as_ptr(), b_row.as_ptr());
            let mut sums = [V::splat(0.0); UNROLL];
            let mut x = 0;
            while x + UNROLL * V::LANES <= full {
                for (u, s) in sums.iter_mut().enumerate() {
                    let at = x + u * V::LANES;
                    // SAFETY: at + LANES <= full <= len: inside both rows.
                    let (va, vb) = unsafe { (V::load(pa.add(at)), V::load(pb.add(at))) };
                    *s = va.mul_add(vb, *s);
                }
                x += UNROLL * V::LANES;
            }
            while x < full {
                // SAFETY: x + LANES <= full <= len.
                let (va, vb) = unsafe { (V::load(pa.add(x)), V::load(pb.add(x))) };
                sums[0] = va.mul_add(vb, sums[0]);
                x += V::LANES;
            }
            if full < len {
                let n = len - full;
                // SAFETY: lanes full..len of both rows.
                let (va, vb) =
                    unsafe { (V::load_tail(pa.add(full), n), V::load_tail(pb.add(full), n)) };
                sums[1] = va.mul_add(vb, sums[1]);
            }
            let total = sums[0].add(sums[1]).add(sums[2].add(sums[3]));
            acc[h * heads + g] += total.reduce_add();
        }
    }
}
