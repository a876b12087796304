//! The fused transform attention's passes over rows of at least one vector taken as one flat
//! run: the rows of a `[rows, N]` map lie end to end, so a 65-token row does not end in a
//! one-lane vector that costs as much as a full one. [`FlatRows`] walks such a run and keeps
//! each lane with its row: a vector straddling two rows takes each lane's per-row value (a max,
//! a `1 / sum`, a dot product) from its own row, and splits its sums between them.

use super::super::head_mix::{UNROLL, heads_at_once, mixed_chunk};
use super::super::simd::{SimdF32, exp, load_lanes, store_lanes};

/// Each lane's index, for the lanes of a vector past a row boundary.
static LANE_INDEX: [f32; 16] = [
    0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
];

/// A walk over rows of `n >= LANES` floats laid end to end, one vector (`k <= LANES` valid
/// lanes at flat offset `x`) at a time, the vectors of a run starting on a row boundary: a
/// vector then holds the end of at most one row.
struct FlatRows {
    /// The row of the vector's first lane.
    row: usize,
    /// Where the row after it starts.
    next: usize,
    n: usize,
}

impl FlatRows {
    /// At the start of row `row`, flat offset `start`.
    fn new(row: usize, start: usize, n: usize) -> FlatRows {
        FlatRows {
            row,
            next: start + n,
            n,
        }
    }

    /// `f(row)` in the lanes of the current row, `f(row + 1)` in those past its end.
    #[inline(always)]
    fn per_lane<V: SimdF32>(&self, x: usize, k: usize, f: impl Fn(usize) -> f32) -> V {
        let here = V::splat(f(self.row));
        if x + k <= self.next {
            here
        } else {
            here.keep_first(self.next - x, f(self.row + 1))
        }
    }

    /// Past the vector at `x`: into the next row when the vector reached the current one's end.
    #[inline(always)]
    fn step(&mut self, x: usize, k: usize) {
        if x + k >= self.next {
            self.row += 1;
            self.next += self.n;
        }
    }

    /// Adds `v` (zero past its `k` lanes) to `sum`, the current row's running sum; when the
    /// vector reaches the row's end, `done(row, total)` receives the row and `sum` restarts
    /// with the lanes past it (selected, not subtracted, so a NaN stays in its row). Then
    /// steps past the vector.
    #[inline(always)]
    fn add<V: SimdF32>(
        &mut self,
        sum: &mut V,
        v: V,
        x: usize,
        k: usize,
        mut done: impl FnMut(usize, f32),
    ) {
        if x + k < self.next {
            *sum = sum.add(v);
            return;
        }
        let here = self.next - x;
        let zero = V::splat(0.0);
        done(self.row, sum.add(v.keep_first(here, 0.0)).reduce_add());
        *sum = if here >= k {
            zero
        } else {
            // SAFETY: LANE_INDEX holds 16 >= LANES floats.
            let lane = unsafe { V::load(LANE_INDEX.as_ptr()) };
            V::select_lt(lane, V::splat(here as f32), zero, v)
        };
        self.row += 1;
        self.next += self.n;
    }
}

/// `super::mix_softmax` for rows of at least one vector, each map mixed and exponentiated as one
/// flat run of `rows * n` floats. With the forward's statistics (`given`) the mix and `exp` are
/// one pass, with the same operations per element as the per-row pass; without, the statistics
/// are computed [`STAT_ROWS`] rows at a time (those rows of the `B` maps stay in L1).
///
/// # Safety
/// As `super::mix_softmax`, with `n >= V::LANES`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) unsafe fn mix_exp_flat<V: SimdF32>(
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
    // The `$b` heads from `h`, with or without the statistics.
    macro_rules! group {
        ($b:literal, $h:expr) => {
            if given {
                mix_exp_heads::<V, $b>(s, d, pre, pre_bias, stats, heads, rows, n, $h)
            } else {
                mix_softmax_heads::<V, $b>(s, d, pre, pre_bias, stats, heads, rows, n, $h)
            }
        };
    }
    let mut h = 0;
    while h < heads {
        let left = heads - h;
        let b = if heads_at_once::<V>() >= 4 && left >= 4 {
            4
        } else if left >= 2 {
            2
        } else {
            1
        };
        // SAFETY (all arms): the caller's contract, h + b <= heads.
        unsafe {
            match b {
                4 => group!(4, h),
                2 => group!(2, h),
                _ => group!(1, h),
            }
        }
        h += b;
    }
}

/// One step of a flat run through the mix: a full chunk of `UNROLL` vectors while one fits
/// before `end`, then one vector (the last one partial). Returns the mixed vectors of the `B`
/// heads (only the first is meaningful for a single vector), the step and the vector count.
///
/// # Safety
/// Lanes `x .. end` of every source map lie inside `s`.
#[inline(always)]
unsafe fn mix_step<V: SimdF32, const B: usize>(
    s: *const f32,
    w: impl Fn(usize, usize) -> f32,
    bias: &[f32; B],
    heads: usize,
    len: usize,
    x: usize,
    end: usize,
) -> ([[V; UNROLL]; B], usize, usize) {
    let chunk = UNROLL * V::LANES;
    if x + chunk <= end {
        // SAFETY: lanes x .. x + chunk of every source map (caller).
        let acc = unsafe { mixed_chunk::<V, B, UNROLL>(s, w, bias, heads, len, x, V::LANES) };
        (acc, chunk, UNROLL)
    } else {
        let k = V::LANES.min(end - x);
        // SAFETY: lanes x .. x + k of every source map (caller).
        let one = unsafe { mixed_chunk::<V, B, 1>(s, w, bias, heads, len, x, k) };
        (std::array::from_fn(|b| [one[b][0]; UNROLL]), k, 1)
    }
}

/// Query rows [`mix_softmax_heads`] takes at a time: 16 rows of 4 maps of 65 floats stay in L1
/// through its three passes, and a run ends in a partial vector once per 16 rows, not per row.
const STAT_ROWS: usize = 16;

/// [`mix_exp_flat`] without statistics, for the `B` heads `h0 ..`: per run of [`STAT_ROWS`]
/// rows, the mix into `dst`, each row's max, then `exp(x - max)` in place with each row's sum,
/// then the scaling by `1 / sum`; the max and `1 / sum` go to `stats`.
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
    for r0 in (0..rows).step_by(STAT_ROWS) {
        let r1 = rows.min(r0 + STAT_ROWS);
        let (start, end) = (r0 * n, r1 * n);
        // Mix into `dst`.
        let mut x = start;
        while x < end {
            // SAFETY: lanes x .. end of every map lie inside `src` (caller).
            let (acc, step, vectors) = unsafe { mix_step::<V, B>(s, w, &bias, heads, len, x, end) };
            let k = step.min(V::LANES);
            for (b, acc) in acc.iter().enumerate() {
                for (u, a) in acc.iter().enumerate().take(vectors) {
                    // SAFETY: lanes x + u LANES .. (k of them) of map h0 + b lie inside `dst`.
                    unsafe { store_lanes(*a, d_maps[b].add(x + u * V::LANES), k) };
                }
            }
            x += step;
        }
        for (b, &map) in d_maps.iter().enumerate() {
            // Row maxima (each row from its own start; the rows are in L1).
            for r in r0..r1 {
                let mut vmax = V::splat(f32::NEG_INFINITY);
                let mut x = r * n;
                while x < (r + 1) * n {
                    let k = V::LANES.min((r + 1) * n - x);
                    // SAFETY: lanes x .. x + k of row r of the map.
                    let v = unsafe { load_lanes::<V>(map.add(x), k) };
                    vmax = vmax.max(if k == V::LANES {
                        v
                    } else {
                        v.keep_first(k, f32::NEG_INFINITY)
                    });
                    x += k;
                }
                stats[at(b, r)] = vmax.reduce_max();
            }
            // exp(x - max) in place, with each row's sum.
            let mut sums = [0f32; STAT_ROWS];
            let mut walk = FlatRows::new(r0, start, n);
            let mut sum = V::splat(0.0);
            let mut x = start;
            while x < end {
                let k = V::LANES.min(end - x);
                let vm = walk.per_lane::<V>(x, k, |r| stats[at(b, r.min(r1 - 1))]);
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
                walk.add(&mut sum, e, x, k, |r, total| sums[r - r0] = total);
                x += k;
            }
            for r in r0..r1 {
                stats[at(b, r) + 1] = 1.0 / sums[r - r0];
            }
            // Scale by 1 / sum.
            let mut walk = FlatRows::new(r0, start, n);
            let mut x = start;
            while x < end {
                let k = V::LANES.min(end - x);
                let vinv = walk.per_lane::<V>(x, k, |r| stats[at(b, r.min(r1 - 1)) + 1]);
                // SAFETY: lanes x .. x + k of the map.
                unsafe { store_lanes(load_lanes::<V>(map.add(x), k).mul(vinv), map.add(x), k) };
                walk.step(x, k);
                x += k;
            }
        }
    }
}

/// [`mix_exp_flat`] with the forward's statistics, for the `B` heads `h0 ..`.
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
    // Row r's max (i = 0) and 1 / sum (i = 1) for head h0 + b (the last row stands in for the
    // one past it).
    let stat = |b: usize, r: usize, i: usize| stats[2 * ((h0 + b) * rows + r.min(rows - 1)) + i];
    // SAFETY: map h0 + b lies inside `dst` (caller).
    let d_maps: [*mut f32; B] = std::array::from_fn(|b| unsafe { d.add((h0 + b) * len) });
    let mut walk = FlatRows::new(0, 0, n);
    let mut x = 0;
    while x < len {
        // SAFETY: lanes x .. len of every map lie inside `src` (caller).
        let (acc, step, vectors) = unsafe { mix_step::<V, B>(s, w, &bias, heads, len, x, len) };
        let k = step.min(V::LANES);
        for u in 0..vectors {
            let xu = x + u * V::LANES;
            for (b, acc) in acc.iter().enumerate() {
                let vmax = walk.per_lane::<V>(xu, k, |r| stat(b, r, 0));
                let vinv = walk.per_lane::<V>(xu, k, |r| stat(b, r, 1));
                // SAFETY: lanes xu .. xu + k of map h0 + b lie inside `dst`.
                unsafe { store_lanes(exp(acc[u].sub(vmax)).mul(vinv), d_maps[b].add(xu), k) };
            }
            walk.step(xu, k);
        }
        x += step;
    }
}

/// Rows whose dot products [`softmax_backward`] holds at once (on the stack).
const DOT_ROWS: usize = 64;

/// The softmax backward of `rows` rows of `n` (`p` the softmax, `dp` its gradient), written
/// (`=`, not added) into `ds`: `ds = p * (dp - sum_j dp_j p_j)` per row. For rows of at least
/// one vector the rows are taken as one flat run, [`DOT_ROWS`] at a time: one pass for the row
/// dot products, one for `ds`. Unlike the per-row kernel (`crate::softmax::softmax_backward`),
/// no row ends in a partial vector, and each row's reduction is off the next row's path.
///
/// # Safety
/// `ds`, `dp`, `p` hold `rows * n` floats; the vector type's ISA is enabled.
#[inline(always)]
pub(super) unsafe fn softmax_backward<V: SimdF32>(
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
        // The dot product of each row (rows counted from r0).
        let mut walk = FlatRows::new(0, start, n);
        let mut acc = V::splat(0.0);
        let mut x = start;
        while x < end {
            let k = V::LANES.min(end - x);
            // SAFETY: lanes x .. x + k lie inside the buffers (end <= rows * n).
            let prod = unsafe { load_lanes::<V>(g.add(x), k).mul(load_lanes::<V>(y.add(x), k)) };
            walk.add(&mut acc, prod, x, k, |r, total| dots[r] = total);
            x += k;
        }
        // ds = p (dp - dot), each lane with its row's dot.
        let mut walk = FlatRows::new(0, start, n);
        let mut x = start;
        while x < end {
            let k = V::LANES.min(end - x);
            let dot = walk.per_lane::<V>(x, k, |r| dots[r.min(r1 - r0 - 1)]);
            // SAFETY: as above.
            unsafe {
                let (gv, yv) = (load_lanes::<V>(g.add(x), k), load_lanes::<V>(y.add(x), k));
                store_lanes(yv.mul(gv.sub(dot)), d.add(x), k);
            }
            walk.step(x, k);
            x += k;
        }
    }
}
