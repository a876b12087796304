//! The passes of the fused transform attention (`crate::transform_attention`) that are not
//! GEMMs, written once over [`SimdF32`], with entry points per ISA (the vector types of the
//! element-wise kernels, one `#[target_feature]` each).
//!
//! [`mix_softmax`], over a block of `[H, rows, N]` maps: the pre-softmax head mix and the
//! softmax. Rows of at least one vector run as one flat run per map ([`flat`]); shorter ones
//! row by row here, the `H` mixed rows of one query (`H N` floats) staying in L1 between the
//! mix and the softmax. It either computes the row statistics (max and `1 / sum exp`) or takes
//! them from the forward, in which case the mix and `exp` are a single pass. [`flat`] also
//! holds the backward's softmax backward; [`dots`] the dot products of the trailing score
//! columns and the post-bias sums. (The other mixes of the fused op, and the mix gradients, are
//! `crate::head_mix`'s.)

mod dots;
mod flat;

use super::head_mix::{UNROLL, heads_at_once, mixed_chunk};
use super::simd::{SimdF32, exp, load_lanes, store_lanes};

/// For every query row `r < rows` and head `h < heads` of a block (`src`, `dst`: `[H, rows, N]`):
/// `x = pre_bias[h] + sum_g pre[h,g] src[g, r, :]`, then `dst[h, r, :] = exp(x - max) / sum`.
/// `stats` (`[H, rows, 2]`: row max, `1 / sum exp(x - max)`) is written when `given` is false,
/// and read instead of recomputed when it is true (`dst = exp(x - stats.0) * stats.1`).
///
/// # Safety
/// `src`, `dst` hold `heads * rows * n` floats, `pre` `heads * heads`, `pre_bias` `heads`,
/// `stats` `2 * heads * rows`; the vector type's ISA is enabled.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn mix_softmax<V: SimdF32>(
    dst: &mut [f32],
    src: &[f32],
    pre: &[f32],
    pre_bias: &[f32],
    stats: &mut [f32],
    heads: usize,
    rows: usize,
    n: usize,
    given: bool,
) {
    let len = rows * n;
    debug_assert!(dst.len() >= heads * len && src.len() >= heads * len);
    debug_assert!(pre.len() >= heads * heads && pre_bias.len() >= heads);
    debug_assert!(stats.len() >= 2 * heads * rows);
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    if n >= V::LANES {
        // SAFETY: the caller's contract; a vector spans at most two rows.
        unsafe { flat::mix_exp_flat::<V>(s, d, pre, pre_bias, stats, heads, rows, n, given) };
        return;
    }
    for r in 0..rows {
        let mut h = 0;
        while h < heads {
            let left = heads - h;
            // SAFETY (all arms): rows r of the maps lie inside `src` and `dst` (caller).
            if heads_at_once::<V>() >= 4 && left >= 4 {
                unsafe {
                    softmax_rows::<V, 4>(s, d, pre, pre_bias, stats, heads, rows, n, r, h, given)
                };
                h += 4;
            } else if left >= 2 {
                unsafe {
                    softmax_rows::<V, 2>(s, d, pre, pre_bias, stats, heads, rows, n, r, h, given)
                };
                h += 2;
            } else {
                unsafe {
                    softmax_rows::<V, 1>(s, d, pre, pre_bias, stats, heads, rows, n, r, h, given)
                };
                h += 1;
            }
        }
    }
}

/// [`mix_softmax`] for query row `r` of the `B` heads `h0 ..`.
///
/// # Safety
/// As [`mix_softmax`], with `r < rows` and `h0 + B <= heads`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn softmax_rows<V: SimdF32, const B: usize>(
    s: *const f32,
    d: *mut f32,
    pre: &[f32],
    pre_bias: &[f32],
    stats: &mut [f32],
    heads: usize,
    rows: usize,
    n: usize,
    r: usize,
    h0: usize,
    given: bool,
) {
    let len = rows * n;
    let chunk = UNROLL * V::LANES;
    let w = |b: usize, g: usize| pre[(h0 + b) * heads + g];
    let bias: [f32; B] = std::array::from_fn(|b| pre_bias[h0 + b]);
    let at: [usize; B] = std::array::from_fn(|b| (h0 + b) * rows + r);
    // SAFETY (all blocks below): row r of map g starts at g * len + r * n and every chunk read
    // or written lies in 0..n of that row.
    let s_row = unsafe { s.add(r * n) };
    let d_rows: [*mut f32; B] = std::array::from_fn(|b| unsafe { d.add((h0 + b) * len + r * n) });
    if given {
        let vmax: [V; B] = std::array::from_fn(|b| V::splat(stats[2 * at[b]]));
        let vinv: [V; B] = std::array::from_fn(|b| V::splat(stats[2 * at[b] + 1]));
        let mut x = 0;
        while x + chunk <= n {
            let acc =
                unsafe { mixed_chunk::<V, B, UNROLL>(s_row, w, &bias, heads, len, x, V::LANES) };
            for b in 0..B {
                for (u, a) in acc[b].iter().enumerate() {
                    let p = exp(a.sub(vmax[b])).mul(vinv[b]);
                    unsafe { p.store(d_rows[b].add(x + u * V::LANES)) };
                }
            }
            x += chunk;
        }
        while x < n {
            let k = V::LANES.min(n - x);
            let acc = unsafe { mixed_chunk::<V, B, 1>(s_row, w, &bias, heads, len, x, k) };
            for b in 0..B {
                unsafe {
                    store_lanes(
                        exp(acc[b][0].sub(vmax[b])).mul(vinv[b]),
                        d_rows[b].add(x),
                        k,
                    )
                };
            }
            x += k;
        }
        return;
    }
    // Mix into `dst` while tracking the row maxima.
    let mut vmax = [V::splat(f32::NEG_INFINITY); B];
    let mut x = 0;
    while x + chunk <= n {
        let acc = unsafe { mixed_chunk::<V, B, UNROLL>(s_row, w, &bias, heads, len, x, V::LANES) };
        for b in 0..B {
            for (u, a) in acc[b].iter().enumerate() {
                vmax[b] = vmax[b].max(*a);
                unsafe { a.store(d_rows[b].add(x + u * V::LANES)) };
            }
        }
        x += chunk;
    }
    while x < n {
        let k = V::LANES.min(n - x);
        let acc = unsafe { mixed_chunk::<V, B, 1>(s_row, w, &bias, heads, len, x, k) };
        for b in 0..B {
            vmax[b] = vmax[b].max(acc[b][0].keep_first(k, f32::NEG_INFINITY));
            unsafe { store_lanes(acc[b][0], d_rows[b].add(x), k) };
        }
        x += k;
    }
    // Per row: exp(x - max) in place (the row is in L1), summed; then scaled.
    for b in 0..B {
        let d_row = d_rows[b];
        let row_max = vmax[b].reduce_max();
        let vm = V::splat(row_max);
        // Even vectors into one sum, odd into the other (two chains in registers).
        let mut sums = [V::splat(0.0); 2];
        let mut x = 0;
        // SAFETY (all calls): each range x .. x + k lies inside the row (x + k <= n).
        while x + 2 * V::LANES <= n {
            sums[0] = sums[0].add(unsafe { exp_in_place(d_row, vm, x, V::LANES) });
            sums[1] = sums[1].add(unsafe { exp_in_place(d_row, vm, x + V::LANES, V::LANES) });
            x += 2 * V::LANES;
        }
        if x < n {
            let k = V::LANES.min(n - x);
            sums[0] = sums[0].add(unsafe { exp_in_place(d_row, vm, x, k) });
            if x + k < n {
                sums[1] = sums[1].add(unsafe { exp_in_place(d_row, vm, x + k, n - x - k) });
            }
        }
        let inv = 1.0 / sums[0].add(sums[1]).reduce_add();
        let vinv = V::splat(inv);
        let mut x = 0;
        while x < n {
            let k = V::LANES.min(n - x);
            unsafe { store_lanes(load_lanes::<V>(d_row.add(x), k).mul(vinv), d_row.add(x), k) };
            x += k;
        }
        stats[2 * at[b]] = row_max;
        stats[2 * at[b] + 1] = inv;
    }
}

/// `exp(row - max)` on the `k` lanes at `x` of a row, in place; returns them with zeros past
/// `k` (for the row sum).
///
/// # Safety
/// `row` is readable and writable for `x + k` floats, `0 < k <= LANES`.
#[inline(always)]
unsafe fn exp_in_place<V: SimdF32>(row: *mut f32, max: V, x: usize, k: usize) -> V {
    // SAFETY: the caller's contract.
    unsafe {
        let e = exp(load_lanes::<V>(row.add(x), k).sub(max));
        store_lanes(e, row.add(x), k);
        if k == V::LANES {
            e
        } else {
            e.keep_first(k, 0.0)
        }
    }
}

/// Stamps out one ISA's entry points with that ISA's `#[target_feature]`, each instantiating the
/// generic bodies above with the ISA's vector type.
macro_rules! transform_attention_entry_points {
    ($vec:ty, $($features:literal)?) => {
        /// # Safety
        /// The ISA is present; lengths as in `super::mix_softmax` (checked by the caller in
        /// `crate::transform_attention`).
        #[allow(clippy::too_many_arguments)]
        $(#[target_feature(enable = $features)])?
        pub(crate) unsafe fn mix_softmax(
            dst: &mut [f32],
            src: &[f32],
            pre: &[f32],
            pre_bias: &[f32],
            stats: &mut [f32],
            heads: usize,
            rows: usize,
            n: usize,
            given: bool,
        ) {
            // SAFETY: the caller's contract.
            unsafe {
                super::mix_softmax::<$vec>(dst, src, pre, pre_bias, stats, heads, rows, n, given)
            }
        }

        /// # Safety
        /// The ISA is present; lengths as in `super::flat::softmax_backward` (checked by the caller
        /// in `crate::transform_attention`).
        $(#[target_feature(enable = $features)])?
        pub(crate) unsafe fn softmax_backward(
            ds: &mut [f32],
            dp: &[f32],
            p: &[f32],
            rows: usize,
            n: usize,
        ) {
            // SAFETY: the caller's contract.
            unsafe { super::flat::softmax_backward::<$vec>(ds, dp, p, rows, n) }
        }

        /// # Safety
        /// The ISA is present; lengths as in `super::dots::row_dots` (checked by the caller in
        /// `crate::transform_attention`).
        #[allow(clippy::too_many_arguments)]
        $(#[target_feature(enable = $features)])?
        pub(crate) unsafe fn row_dots(
            out: &mut [f32],
            out_stride: usize,
            a: &[f32],
            lda: usize,
            rows: usize,
            x: &[f32],
            depth: usize,
            scale: f32,
        ) {
            // SAFETY: the caller's contract.
            unsafe { super::dots::row_dots::<$vec>(out, out_stride, a, lda, rows, x, depth, scale) }
        }

        /// # Safety
        /// The ISA is present; lengths as in `super::dots::add_map_sums` (checked by the caller in
        /// `crate::transform_attention`).
        $(#[target_feature(enable = $features)])?
        pub(crate) unsafe fn add_map_sums(out: &mut [f32], maps: &[f32], len: usize) {
            // SAFETY: the caller's contract.
            unsafe { super::dots::add_map_sums::<$vec>(out, maps, len) }
        }
    };
}

/// The portable path (`Isa::Scalar`): the 8-lane plain-Rust vector LLVM auto-vectorises.
pub(crate) mod portable {
    transform_attention_entry_points!(crate::arch::portable_elementwise::F32xP,);
}

/// AVX2 + FMA: one ymm register per vector.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    transform_attention_entry_points!(crate::arch::x86_avx2_elementwise::F32x8, "avx2,fma");
}

/// AVX-512F: one zmm register per vector.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    transform_attention_entry_points!(crate::arch::x86_avx512_elementwise::F32x16, "avx512f");
}

/// NEON: one q register per vector.
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon {
    transform_attention_entry_points!(crate::arch::aarch64_neon_elementwise::F32x4, "neon");
}
