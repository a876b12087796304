//! Two small reductions of the fused transform attention's backward and score products: the
//! dot products of a block's few trailing score columns against a token's row ([`row_dots`]),
//! and the sums of whole maps ([`add_map_sums`]).

use super::super::head_mix::UNROLL;
use super::super::simd::{SimdF32, load_lanes};

/// `out[i * out_stride] = scale * sum_c a[i * lda + c] x[c]` for `i < rows`, `c < depth`: the
/// few trailing columns of a block's scores (`Q K^T`) or of `dO V^T`, one dot product per row
/// against a token's contiguous row of `K` or `V`.
///
/// # Safety
/// `a` holds `(rows - 1) * lda + depth` floats, `x` `depth`, `out` `(rows - 1) * out_stride + 1`;
/// the vector type's ISA is enabled.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) unsafe fn row_dots<V: SimdF32>(
    out: &mut [f32],
    out_stride: usize,
    a: &[f32],
    lda: usize,
    rows: usize,
    x: &[f32],
    depth: usize,
    scale: f32,
) {
    debug_assert!(rows == 0 || out.len() > (rows - 1) * out_stride);
    debug_assert!(rows == 0 || a.len() >= (rows - 1) * lda + depth);
    debug_assert!(x.len() >= depth);
    // Four rows at a time: four independent chains, and four reductions in flight.
    let mut i = 0;
    while i < rows {
        let group = 4.min(rows - i);
        let mut acc = [V::splat(0.0); 4];
        let mut c = 0;
        while c < depth {
            let k = V::LANES.min(depth - c);
            // SAFETY: lanes c .. c + k of x and of rows i .. i + group exist (asserted lengths).
            unsafe {
                let xv = load_lanes::<V>(x.as_ptr().add(c), k);
                for (r, acc) in acc.iter_mut().enumerate().take(group) {
                    let av = load_lanes::<V>(a.as_ptr().add((i + r) * lda + c), k);
                    *acc = av.mul_add(xv, *acc);
                }
            }
            c += k;
        }
        for (r, acc) in acc.iter().enumerate().take(group) {
            out[(i + r) * out_stride] = scale * acc.reduce_add();
        }
        i += group;
    }
}

/// `out[h] += sum(maps[h * len .. (h + 1) * len])` for every `h < out.len()` (the post-bias
/// gradient: each `dP'_h` summed). The terms of a map cancel (the sum is far below the sum of
/// their magnitudes), so the lanes' partial sums are added in f64: a short map (a few tokens)
/// is then summed with at most a rounding per lane instead of a chain of f32 roundings.
///
/// # Safety
/// `maps` holds `out.len() * len` floats; the vector type's ISA is enabled.
#[inline(always)]
pub(super) unsafe fn add_map_sums<V: SimdF32>(out: &mut [f32], maps: &[f32], len: usize) {
    debug_assert!(maps.len() >= out.len() * len);
    let chunk = UNROLL * V::LANES;
    for (h, o) in out.iter_mut().enumerate() {
        let map = maps[h * len..].as_ptr();
        let mut sums = [V::splat(0.0); UNROLL];
        let mut x = 0;
        while x + chunk <= len {
            for (u, sum) in sums.iter_mut().enumerate() {
                // SAFETY: lanes x + u LANES .. of the map lie inside `maps`.
                *sum = sum.add(unsafe { V::load(map.add(x + u * V::LANES)) });
            }
            x += chunk;
        }
        // The rest, one vector at a time into the sums in turn (each lane adds at most once).
        let mut u = 0;
        while x < len {
            let k = V::LANES.min(len - x);
            // SAFETY: lanes x .. x + k of the map.
            sums[u] = sums[u].add(unsafe { load_lanes::<V>(map.add(x), k) });
            u = (u + 1) % UNROLL;
            x += k;
        }
        let mut lanes = [0f32; 16];
        let mut total = f64::from(*o);
        for v in &sums {
            // SAFETY: `lanes` holds 16 >= LANES floats.
            unsafe { v.store(lanes.as_mut_ptr()) };
            total += lanes[..V::LANES].iter().map(|&x| f64::from(x)).sum::<f64>();
        }
        *o = total as f32;
    }
}
