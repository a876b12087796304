//! The head-mix passes of the fused transform attention (`crate::transform_attention`), written
//! once over [`SimdF32`], with entry points per ISA (the vector types of the element-wise
//! kernels, one `#[target_feature]` each).
//!
//! [`mix_softmax`], over a block of `[H, rows, N]` maps: the pre-softmax head mix and the
//! softmax in one sweep per query row. The `H` mixed rows of one query (`H N` floats) stay in L1
//! between the mix and the softmax. It either computes the row statistics (max and
//! `1 / sum exp`) or takes them from the forward, in which case the mix and `exp` are a single
//! pass over each map taken as one flat run of `rows * N` floats (no partial vector per row). (The other mixes of the fused op, and the mix gradients, are `crate::head_mix`'s.)

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
        unsafe { mix_exp_flat::<V>(s, d, pre, pre_bias, stats, heads, rows, n, given) };
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

/// [`mix_softmax`] for rows of at least one vector: each map is mixed and exponentiated as one
/// flat run of `rows * n` floats, so a 65-token row does not end in a one-lane vector that
/// costs as much as a full one. A vector that straddles two rows takes each lane's max and
/// `1 / sum` from its own row. With the forward's statistics (`given`) the mix and `exp` are
/// one pass, with the same operations per element as the per-row pass; without, the statistics
/// are computed [`STAT_ROWS`] rows at a time (those rows of the `B` maps stay in L1).
///
/// # Safety
/// As [`mix_softmax`], with `n >= V::LANES`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn mix_exp_flat<V: SimdF32>(
    s: *const f32,
    d: *mut f32,
    pre: &[f32],
    pre_bias: &[f32],
    stats: &mut [f32],
    heads: usize,
    rows: usize,
    n: usize,
    given: bool,
) {
    let mut h = 0;
    while h < heads {
        let left = heads - h;
        // SAFETY (all arms): the caller's contract, h + B <= heads.
        unsafe {
            if heads_at_once::<V>() >= 4 && left >= 4 {
                if given {
                    mix_exp_heads::<V, 4>(s, d, pre, pre_bias, stats, heads, rows, n, h);
                } else {
                    mix_softmax_heads::<V, 4>(s, d, pre, pre_bias, stats, heads, rows, n, h);
                }
                h += 4;
            } else if left >= 2 {
                if given {
                    mix_exp_heads::<V, 2>(s, d, pre, pre_bias, stats, heads, rows, n, h);
                } else {
                    mix_softmax_heads::<V, 2>(s, d, pre, pre_bias, stats, heads, rows, n, h);
                }
                h += 2;
            } else {
                if given {
                    mix_exp_heads::<V, 1>(s, d, pre, pre_bias, stats, heads, rows, n, h);
                } else {
                    mix_softmax_heads::<V, 1>(s, d, pre, pre_bias, stats, heads, rows, n, h);
                }
                h += 1;
            }
        }
    }
}

/// Query rows [`mix_softmax_heads`] takes at a time: 16 rows of 4 maps of 65 floats stay in L1
/// through its three passes, and a run ends in a partial vector once per 16 rows, not per row.
const STAT_ROWS: usize = 16;

/// [`mix_exp_flat`] without statistics, for the `B` heads `h0 ..`: per run of [`STAT_ROWS`]
/// rows, the mix into `dst` with each row's max, then `exp(x - max)` in place with each row's
/// sum, then the scaling by `1 / sum`; the max and `1 / sum` go to `stats`.
///
/// # Safety
/// As [`mix_exp_flat`], with `h0 + B <= heads`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn mix_softmax_heads<V: SimdF32, const B: usize>(
    s: *const f32,
    d: *mut f32,
    pre: &[f32],
    pre_bias: &[f32],
    stats: &mut [f32],
    heads: usize,
    rows: usize,
    n: usize,
    h0: usize,
) {
    let len = rows * n;
    let w = |b: usize, g: usize| pre[(h0 + b) * heads + g];
    let bias: [f32; B] = std::array::from_fn(|b| pre_bias[h0 + b]);
    let at = |b: usize, r: usize| 2 * ((h0 + b) * rows + r);
    // SAFETY: map h0 + b lies inside `dst` (caller).
    let d_maps: [*mut f32; B] = std::array::from_fn(|b| unsafe { d.add((h0 + b) * len) });
    let chunk = UNROLL * V::LANES;
    for r0 in (0..rows).step_by(STAT_ROWS) {
        let r1 = rows.min(r0 + STAT_ROWS);
        let (start, end) = (r0 * n, r1 * n);
        // Mix into `dst`.
        let mut x = start;
        while x < end {
            if x + chunk <= end {
                // SAFETY: lanes x .. x + chunk of every map lie inside `src` and `dst`.
                unsafe {
                    let acc = mixed_chunk::<V, B, UNROLL>(s, w, &bias, heads, len, x, V::LANES);
                    for (b, acc) in acc.iter().enumerate() {
                        for (u, a) in acc.iter().enumerate() {
                            a.store(d_maps[b].add(x + u * V::LANES));
                        }
                    }
                }
                x += chunk;
            } else {
                let k = V::LANES.min(end - x);
                // SAFETY: lanes x .. x + k of every map lie inside `src` and `dst`.
                unsafe {
                    let acc = mixed_chunk::<V, B, 1>(s, w, &bias, heads, len, x, k);
                    for (b, acc) in acc.iter().enumerate() {
                        store_lanes(acc[0], d_maps[b].add(x), k);
                    }
                }
                x += k;
            }
        }
        for (b, &map) in d_maps.iter().enumerate() {
            // Row maxima (each row from its own start; the rows are in L1).
            for r in r0..r1 {
                // SAFETY: row r of the map lies inside `dst`.
                let row = unsafe { map.add(r * n) };
                let mut vmax = V::splat(f32::NEG_INFINITY);
                let mut x = 0;
                while x < n {
                    let k = V::LANES.min(n - x);
                    // SAFETY: lanes x .. x + k of the row.
                    let v = unsafe { load_lanes::<V>(row.add(x), k) };
                    vmax = vmax.max(if k == V::LANES {
                        v
                    } else {
                        v.keep_first(k, f32::NEG_INFINITY)
                    });
                    x += k;
                }
                stats[at(b, r)] = vmax.reduce_max();
            }
            // exp(x - max) in place, flat, with each row's sum.
            let row_max = |r: usize| stats[at(b, r.min(r1 - 1))];
            let (mut row, mut next) = (r0, start + n);
            let mut sum = V::splat(0.0);
            let mut sums = [0f32; STAT_ROWS];
            let mut x = start;
            while x < end {
                let k = V::LANES.min(end - x);
                let vm = if x + k <= next {
                    V::splat(row_max(row))
                } else {
                    V::splat(row_max(row)).keep_first(next - x, row_max(row + 1))
                };
                // SAFETY: lanes x .. x + k of the map.
                let e = unsafe {
                    let e = exp(load_lanes::<V>(map.add(x), k).sub(vm));
                    store_lanes(e, map.add(x), k);
                    if k == V::LANES {
                        e
                    } else {
                        e.keep_first(k, 0.0)
                    }
                };
                if x + k <= next {
                    sum = sum.add(e);
                } else {
                    let mine = e.keep_first(next - x, 0.0);
                    sums[row - r0] = sum.add(mine).reduce_add();
                    sum = e.sub(mine);
                    row += 1;
                    next += n;
                }
                if x + k == next {
                    sums[row - r0] = sum.reduce_add();
                    sum = V::splat(0.0);
                    row += 1;
                    next += n;
                }
                x += k;
            }
            for r in r0..r1 {
                stats[at(b, r) + 1] = 1.0 / sums[r - r0];
            }
            // Scale by 1 / sum.
            let row_inv = |r: usize| stats[at(b, r.min(r1 - 1)) + 1];
            let (mut row, mut next) = (r0, start + n);
            let mut x = start;
            while x < end {
                let k = V::LANES.min(end - x);
                let vinv = if x + k <= next {
                    V::splat(row_inv(row))
                } else {
                    V::splat(row_inv(row)).keep_first(next - x, row_inv(row + 1))
                };
                // SAFETY: lanes x .. x + k of the map.
                unsafe { store_lanes(load_lanes::<V>(map.add(x), k).mul(vinv), map.add(x), k) };
                if x + k >= next {
                    row += 1;
                    next += n;
                }
                x += k;
            }
        }
    }
}

/// [`mix_exp_flat`] for the `B` heads `h0 ..`.
///
/// # Safety
/// As [`mix_exp_flat`], with `h0 + B <= heads`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn mix_exp_heads<V: SimdF32, const B: usize>(
    s: *const f32,
    d: *mut f32,
    pre: &[f32],
    pre_bias: &[f32],
    stats: &[f32],
    heads: usize,
    rows: usize,
    n: usize,
    h0: usize,
) {
    let len = rows * n;
    let w = |b: usize, g: usize| pre[(h0 + b) * heads + g];
    let bias: [f32; B] = std::array::from_fn(|b| pre_bias[h0 + b]);
    // Row r's max and 1 / sum for head h0 + b (the last row stands in for the one past it).
    let stat = |b: usize, r: usize, i: usize| stats[2 * ((h0 + b) * rows + r.min(rows - 1)) + i];
    // SAFETY: map h0 + b lies inside `dst` (caller).
    let d_maps: [*mut f32; B] = std::array::from_fn(|b| unsafe { d.add((h0 + b) * len) });
    // The row of lane 0 of the vector at `x`, and where the next row starts.
    let (mut row, mut next) = (0, n);
    let exp_store = |acc: &V, b: usize, x: usize, k: usize, row: usize, next: usize| {
        let (vmax, vinv) = if next - x >= V::LANES {
            (V::splat(stat(b, row, 0)), V::splat(stat(b, row, 1)))
        } else {
            let here = next - x;
            (
                V::splat(stat(b, row, 0)).keep_first(here, stat(b, row + 1, 0)),
                V::splat(stat(b, row, 1)).keep_first(here, stat(b, row + 1, 1)),
            )
        };
        // SAFETY: lanes x .. x + k of map h0 + b lie inside `dst`.
        unsafe { store_lanes(exp(acc.sub(vmax)).mul(vinv), d_maps[b].add(x), k) };
    };
    let chunk = UNROLL * V::LANES;
    let mut x = 0;
    while x < len {
        let full = x + chunk <= len;
        let (step, vectors) = if full {
            (chunk, UNROLL)
        } else {
            (V::LANES.min(len - x), 1)
        };
        let acc: [[V; UNROLL]; B] = if full {
            // SAFETY: lanes x .. x + chunk of every source map lie inside `src`.
            unsafe { mixed_chunk::<V, B, UNROLL>(s, w, &bias, heads, len, x, V::LANES) }
        } else {
            // SAFETY: lanes x .. x + step of every source map lie inside `src`.
            let one = unsafe { mixed_chunk::<V, B, 1>(s, w, &bias, heads, len, x, step) };
            std::array::from_fn(|b| [one[b][0]; UNROLL])
        };
        for u in 0..vectors {
            let xu = x + u * V::LANES;
            // n >= LANES: at most one row boundary per vector.
            if xu >= next {
                row += 1;
                next += n;
            }
            let k = if full { V::LANES } else { step };
            for (b, acc) in acc.iter().enumerate() {
                exp_store(&acc[u], b, xu, k, row, next);
            }
        }
        x += step;
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

/// Rows whose dot products [`softmax_backward`] holds at once (on the stack).
const DOT_ROWS: usize = 64;

/// The softmax backward of `rows` rows of `n` (`p` the softmax, `dp` its gradient), written
/// (`=`, not added) into `ds`: `ds = p * (dp - sum_j dp_j p_j)` per row. For rows of at least
/// one vector the rows are taken as one flat run, [`DOT_ROWS`] at a time: one pass for the row
/// dot products (a vector straddling two rows adds its lanes to each), one for `ds`. Unlike the
/// per-row kernel (`crate::softmax::softmax_backward`), no row ends in a partial vector, and
/// each row's reduction is off the next row's path.
///
/// # Safety
/// `ds`, `dp`, `p` hold `rows * n` floats; the vector type's ISA is enabled.
#[inline(always)]
pub(crate) unsafe fn softmax_backward<V: SimdF32>(
    ds: &mut [f32],
    dp: &[f32],
    p: &[f32],
    rows: usize,
    n: usize,
) {
    debug_assert!(ds.len() >= rows * n && dp.len() >= rows * n && p.len() >= rows * n);
    let (d, g, y) = (ds.as_mut_ptr(), dp.as_ptr(), p.as_ptr());
    if n < V::LANES {
        for r in 0..rows {
            // SAFETY: row r holds n < LANES floats of each buffer.
            unsafe {
                let (gv, yv) = (
                    load_lanes::<V>(g.add(r * n), n),
                    load_lanes::<V>(y.add(r * n), n),
                );
                let dot = V::splat(gv.mul(yv).reduce_add());
                store_lanes(yv.mul(gv.sub(dot)), d.add(r * n), n);
            }
        }
        return;
    }
    let mut dots = [0f32; DOT_ROWS];
    for r0 in (0..rows).step_by(DOT_ROWS) {
        let r1 = rows.min(r0 + DOT_ROWS);
        let (start, end) = (r0 * n, r1 * n);
        // Pass 1: the dot product of each row; `row` is relative to r0 and `next` is where the
        // row after it starts (n >= LANES: at most one boundary inside a vector).
        let (mut row, mut next) = (0, start + n);
        let mut acc = V::splat(0.0);
        let mut x = start;
        while x < end {
            let k = V::LANES.min(end - x);
            // SAFETY: lanes x .. x + k lie inside the buffers (end <= rows * n).
            let prod = unsafe { load_lanes::<V>(g.add(x), k).mul(load_lanes::<V>(y.add(x), k)) };
            if x + k <= next {
                acc = acc.add(prod);
            } else {
                let mine = prod.keep_first(next - x, 0.0);
                dots[row] = acc.add(mine).reduce_add();
                acc = prod.sub(mine);
                row += 1;
                next += n;
            }
            if x + k == next {
                dots[row] = acc.reduce_add();
                acc = V::splat(0.0);
                row += 1;
                next += n;
            }
            x += k;
        }
        // Pass 2: ds = p (dp - dot), each lane with its row's dot.
        let (mut row, mut next) = (0, start + n);
        let mut x = start;
        while x < end {
            let k = V::LANES.min(end - x);
            let dot = if x + k <= next {
                V::splat(dots[row])
            } else {
                V::splat(dots[row]).keep_first(next - x, dots[row + 1])
            };
            // SAFETY: as in pass 1.
            unsafe {
                let (gv, yv) = (load_lanes::<V>(g.add(x), k), load_lanes::<V>(y.add(x), k));
                store_lanes(yv.mul(gv.sub(dot)), d.add(x), k);
            }
            if x + k >= next {
                row += 1;
                next += n;
            }
            x += k;
        }
    }
}

/// `out[i * out_stride] = scale * sum_c a[i * lda + c] x[c]` for `i < rows`, `c < depth`: the
/// few trailing columns of a block's scores (`Q K^T`) or of `dO V^T`, one dot product per row
/// against a token's contiguous row of `K` or `V`.
///
/// # Safety
/// `a` holds `(rows - 1) * lda + depth` floats, `x` `depth`, `out` `(rows - 1) * out_stride + 1`;
/// the vector type's ISA is enabled.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn row_dots<V: SimdF32>(
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
pub(crate) unsafe fn add_map_sums<V: SimdF32>(out: &mut [f32], maps: &[f32], len: usize) {
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
        /// The ISA is present; lengths as in `super::softmax_backward` (checked by the caller
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
            unsafe { super::softmax_backward::<$vec>(ds, dp, p, rows, n) }
        }

        /// # Safety
        /// The ISA is present; lengths as in `super::row_dots` (checked by the caller in
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
            unsafe { super::row_dots::<$vec>(out, out_stride, a, lda, rows, x, depth, scale) }
        }

        /// # Safety
        /// The ISA is present; lengths as in `super::add_map_sums` (checked by the caller in
        /// `crate::transform_attention`).
        $(#[target_feature(enable = $features)])?
        pub(crate) unsafe fn add_map_sums(out: &mut [f32], maps: &[f32], len: usize) {
            // SAFETY: the caller's contract.
            unsafe { super::add_map_sums::<$vec>(out, maps, len) }
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
