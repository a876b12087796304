//! The body of [`crate::head_mix`]: `dst[h] = sum_g M[h, g] src[g] + bias[h]` over `heads` rows
//! of `len` floats each, written once generically over [`SimdF32`] and instantiated per ISA by
//! `elementwise_entry_points!`. Each output chunk stays in registers while the H source rows
//! stream past it from L1 (one load per fused multiply-add).

use super::simd::{SimdF32, load_lanes, store_lanes};

/// Vectors per chunk of a row: four independent accumulators hide the FMA latency.
pub(crate) const UNROLL: usize = 4;

/// Lanes of the step from `x` in a map of `len` floats: a full chunk of `UNROLL` vectors while
/// one fits, then one vector at a time (the last one partial).
#[inline(always)]
fn chunk_lanes<V: SimdF32>(x: usize, len: usize) -> usize {
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
            let lanes = if u + 1 < U { V::LANES } else { k };
            let sv: V = unsafe { load_lanes(row.add(u * V::LANES), lanes) };
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
            unsafe { store_lanes(acc[0], out, k) };
        }
    }
}

/// `acc[h * heads + g] += sum_x a[h * len + x] * b[g * len + x]`: the `heads x heads` dot
/// products of two sets of maps (the gradients of the head mixes).
///
/// Register-tiled like a GEMM with a long inner dimension: a tile of `TH` rows of `a` by `TG`
/// rows of `b` keeps its `TH x TG` sums in registers for the whole length, so each vector
/// loaded feeds `TG` (or `TH`) FMAs, and each row of `a` is read `heads / TG` times and each
/// row of `b` `heads / TH` times instead of `heads` times. (One pair of rows at a time loaded
/// two vectors per FMA and ran at a quarter of the FMA rate at `H = 12`.)
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
    // 16-lane vectors (32 registers): 4 x 4 sums, 4 + 1 operand vectors; else 2 x 4.
    let tall = heads_at_once::<V>();
    let mut h = 0;
    while h < heads {
        let th = if heads - h >= 4 && tall >= 4 {
            4
        } else if heads - h >= 2 {
            2
        } else {
            1
        };
        let mut g = 0;
        while g < heads {
            let tg = if heads - g >= 4 {
                4
            } else if heads - g >= 2 {
                2
            } else {
                1
            };
            // SAFETY (all arms): the caller's contract; h + th <= heads, g + tg <= heads.
            unsafe {
                match (th, tg) {
                    (4, 4) => dots_tile::<V, 4, 4>(acc, a, b, heads, len, h, g),
                    (4, 2) => dots_tile::<V, 4, 2>(acc, a, b, heads, len, h, g),
                    (4, _) => dots_tile::<V, 4, 1>(acc, a, b, heads, len, h, g),
                    (2, 4) => dots_tile::<V, 2, 4>(acc, a, b, heads, len, h, g),
                    (2, 2) => dots_tile::<V, 2, 2>(acc, a, b, heads, len, h, g),
                    (2, _) => dots_tile::<V, 2, 1>(acc, a, b, heads, len, h, g),
                    (_, 4) => dots_tile::<V, 1, 4>(acc, a, b, heads, len, h, g),
                    (_, 2) => dots_tile::<V, 1, 2>(acc, a, b, heads, len, h, g),
                    _ => dots_tile::<V, 1, 1>(acc, a, b, heads, len, h, g),
                }
            }
            g += tg;
        }
        h += th;
    }
}

/// One vector step of [`dots_tile`] at lane `x` (`k` lanes valid, `0 < k <= LANES`).
///
/// # Safety
/// Each row pointer is readable for `x + k` floats.
#[inline(always)]
unsafe fn dots_step<V: SimdF32, const TH: usize, const TG: usize>(
    sums: &mut [[V; TG]; TH],
    pa: &[*const f32; TH],
    pb: &[*const f32; TG],
    x: usize,
    k: usize,
) {
    // SAFETY (both loads): the caller's contract.
    let bv: [V; TG] = std::array::from_fn(|j| unsafe { load_lanes(pb[j].add(x), k) });
    for (row, &p) in sums.iter_mut().zip(pa) {
        let av: V = unsafe { load_lanes(p.add(x), k) };
        for (s, bj) in row.iter_mut().zip(&bv) {
            *s = av.mul_add(*bj, *s);
        }
    }
}

/// The `TH x TG` tile of [`add_head_dots`] at rows `h0 ..` of `a` and `g0 ..` of `b`: one vector
/// of sums per pair over the full length (a zero-filled tail last), each reduced once.
///
/// # Safety
/// As [`add_head_dots`], with `h0 + TH <= heads` and `g0 + TG <= heads`.
#[inline(always)]
unsafe fn dots_tile<V: SimdF32, const TH: usize, const TG: usize>(
    acc: &mut [f32],
    a: &[f32],
    b: &[f32],
    heads: usize,
    len: usize,
    h0: usize,
    g0: usize,
) {
    // SAFETY (all pointer arithmetic below): rows h0 + i and g0 + j hold `len` floats.
    let pa: [*const f32; TH] = std::array::from_fn(|i| unsafe { a.as_ptr().add((h0 + i) * len) });
    let pb: [*const f32; TG] = std::array::from_fn(|j| unsafe { b.as_ptr().add((g0 + j) * len) });
    let mut sums = [[V::splat(0.0); TG]; TH];
    let full = len - len % V::LANES;
    let mut x = 0;
    while x < full {
        // SAFETY: x + LANES <= full <= len.
        unsafe { dots_step(&mut sums, &pa, &pb, x, V::LANES) };
        x += V::LANES;
    }
    if full < len {
        // SAFETY: lanes full..len of each row; the rest load as zero and add nothing.
        unsafe { dots_step(&mut sums, &pa, &pb, full, len - full) };
    }
    for (i, row) in sums.iter().enumerate() {
        for (j, s) in row.iter().enumerate() {
            acc[(h0 + i) * heads + g0 + j] += s.reduce_add();
        }
    }
}
