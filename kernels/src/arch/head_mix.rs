//! The body of [`crate::head_mix`]: `dst[h] = sum_g M[h, g] src[g] + bias[h]` over `heads` rows
//! of `len` floats each, written once generically over [`SimdF32`] and instantiated per ISA by
//! `elementwise_entry_points!`. Each output chunk stays in registers while the H source rows
//! stream past it from L1 (one load per fused multiply-add).

use super::simd::SimdF32;

/// Vectors per chunk of a row: four independent accumulators hide the FMA latency.
pub(crate) const UNROLL: usize = 4;

/// Lanes of the step from `x` in a map of `len` floats: a full chunk of `UNROLL` vectors while
/// one fits, then one vector at a time (the last one partial).
#[inline(always)]
pub(crate) fn chunk_lanes<V: SimdF32>(x: usize, len: usize) -> usize {
    if x + UNROLL * V::LANES <= len {
        UNROLL * V::LANES
    } else {
        V::LANES.min(len - x)
    }
}

/// Output heads mixed together when the vector type has 16 lanes (and 32 registers: 16
/// accumulators, 4 coefficients and a source vector fit), else 2: each source vector loaded
/// feeds that many FMAs, so the loop is not bound by loads.
#[inline(always)]
pub(crate) fn heads_at_once<V: SimdF32>() -> usize {
    if V::LANES >= 16 { 4 } else { 2 }
}

/// The coefficient `M[h, g]` of a row-major `heads x heads` matrix, or of its transpose.
#[inline(always)]
fn coeff(m: &[f32], heads: usize, h: usize, g: usize, transpose: bool) -> f32 {
    if transpose {
        m[g * heads + h]
    } else {
        m[h * heads + g]
    }
}

/// One chunk of `B` mixed rows: `bias[b] + sum_g w(b, g) src[g * stride + x ..]` over `heads`
/// source rows, for `U` vectors from `x` (`k` lanes valid in the last one; the others are
/// zero-filled on load).
///
/// # Safety
/// Every `src[g * stride + x + u * LANES ..]` read lies inside `src` (`k` lanes for the last).
#[inline(always)]
pub(crate) unsafe fn mixed_chunk<V: SimdF32, const B: usize, const U: usize>(
    src: *const f32,
    w: impl Fn(usize, usize) -> f32,
    bias: &[f32; B],
    heads: usize,
    stride: usize,
    x: usize,
    k: usize,
) -> [[V; U]; B] {
    let mut acc = [[V::splat(0.0); U]; B];
    for (a, &b) in acc.iter_mut().zip(bias) {
        *a = [V::splat(b); U];
    }
    for g in 0..heads {
        let wv: [V; B] = std::array::from_fn(|b| V::splat(w(b, g)));
        // SAFETY: the caller's contract.
        let row = unsafe { src.add(g * stride + x) };
        for u in 0..U {
            let sv = unsafe {
                if u + 1 < U || k == V::LANES {
                    V::load(row.add(u * V::LANES))
                } else {
                    V::load_tail(row.add(u * V::LANES), k)
                }
            };
            for (a, w) in acc.iter_mut().zip(&wv) {
                a[u] = sv.mul_add(*w, a[u]);
            }
        }
    }
    acc
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
    // Chunks outer, heads inner: the H source chunks stay in L1 for every output head.
    let mut x = 0;
    while x < len {
        let k = chunk_lanes::<V>(x, len);
        let mut h = 0;
        while h < heads {
            let left = heads - h;
            // SAFETY (all arms): the caller's contract; h + B <= heads, x + k <= len.
            unsafe {
                if heads_at_once::<V>() >= 4 && left >= 4 {
                    mix_chunk_into::<V, 4>(dst, src, m, bias, heads, len, transpose, h, x, k);
                    h += 4;
                } else if left >= 2 {
                    mix_chunk_into::<V, 2>(dst, src, m, bias, heads, len, transpose, h, x, k);
                    h += 2;
                } else {
                    mix_chunk_into::<V, 1>(dst, src, m, bias, heads, len, transpose, h, x, k);
                    h += 1;
                }
            }
        }
        x += k;
    }
}

/// [`mix_heads`] for the `B` output heads `h0 ..` on lanes `x .. x + k`: a full chunk
/// (`k = UNROLL * LANES`) or one vector (`k <= LANES`).
///
/// # Safety
/// As [`mix_heads`], with `h0 + B <= heads` and `x + k <= len`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn mix_chunk_into<V: SimdF32, const B: usize>(
    dst: &mut [f32],
    src: &[f32],
    m: &[f32],
    bias: Option<&[f32]>,
    heads: usize,
    len: usize,
    transpose: bool,
    h0: usize,
    x: usize,
    k: usize,
) {
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    let w = |b: usize, g: usize| coeff(m, heads, h0 + b, g, transpose);
    let bias: [f32; B] = std::array::from_fn(|b| bias.map_or(0.0, |v| v[h0 + b]));
    // SAFETY (all blocks): lanes x .. x + k of rows below `heads` lie inside `src` and `dst`.
    if k == UNROLL * V::LANES {
        let acc = unsafe { mixed_chunk::<V, B, UNROLL>(s, w, &bias, heads, len, x, V::LANES) };
        for (b, acc) in acc.iter().enumerate() {
            let out = unsafe { d.add((h0 + b) * len + x) };
            for (u, a) in acc.iter().enumerate() {
                unsafe { a.store(out.add(u * V::LANES)) };
            }
        }
    } else {
        let acc = unsafe { mixed_chunk::<V, B, 1>(s, w, &bias, heads, len, x, k) };
        for (b, acc) in acc.iter().enumerate() {
            let out = unsafe { d.add((h0 + b) * len + x) };
            if k == V::LANES {
                unsafe { acc[0].store(out) };
            } else {
                unsafe { acc[0].store_tail(out, k) };
            }
        }
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
