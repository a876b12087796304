//! The depthwise convolution written once over [`SimdF32`], forward and backward, and its entry
//! points per ISA (the vector types of the element-wise kernels, one `#[target_feature]` each).
//!
//! Shapes as in `crate::dwconv`: activations `[B, H, W, C]`, filter `[k, k, C]`, bias `[C]`;
//! `p = (k - 1) / 2`. The public wrappers have checked every length and that `k` is odd before
//! these run, which is what makes the unchecked vector loads below sound.
//!
//! Channels last makes every tap one contiguous C-vector FMA, so the vectors run over channels
//! (`V::LANES` at a time, then one masked tail). Each output row is cut into column tiles of
//! `J` in {8, 4, 2, 1} columns times `M` channel vectors, `J * M = 8` where the channels allow,
//! whose accumulators stay in registers across all `k x k` taps: eight independent FMA chains
//! hide the FMA latency even in the narrow tiles at the end of a 7- or 14-wide row, and each
//! tap's weight vectors are loaded once per `J` FMAs. Borders are handled by clipping, never by
//! a padded copy: tap rows outside the grid are skipped for the whole output row, and per tile
//! the tap columns split into a middle range valid for all `J` columns (no checks) and at most
//! `p` columns on each side where each column is checked. For `k = 3` (a compile-time `K`) the
//! tiles keep a tap row's weights (or tap sums) in registers and load each input vector once
//! for all taps that read it, which moves the bound from the load ports to the FMAs.
//!
//! `dinp` is the same correlation run on `dout` with the flipped filter
//! (`dinp[r, s] += sum_{u,v} weight[k-1-u, k-1-v] dout[r+u-p, s+v-p]`), so forward and
//! input-gradient share one tile. `dweight` and `dbias` walk the same tiles, hold the tile's
//! `dout` vectors in registers and add, per tap, the tile's `J` products into `dweight`.

use super::simd::SimdF32;
use crate::dwconv::DwConvShape;

/// Loads `n` lanes at `p`: a full vector if `FULL`, else the first `n < LANES` (masked).
///
/// # Safety
/// `p` is readable for `LANES` (if `FULL`) or `n` f32.
#[inline(always)]
unsafe fn ld<V: SimdF32, const FULL: bool>(p: *const f32, n: usize) -> V {
    // SAFETY: the caller's contract.
    unsafe { if FULL { V::load(p) } else { V::load_tail(p, n) } }
}

/// Stores `n` lanes of `v` at `p` (see [`ld`]).
///
/// # Safety
/// `p` is writable for `LANES` (if `FULL`) or `n` f32.
#[inline(always)]
unsafe fn st<V: SimdF32, const FULL: bool>(v: V, p: *mut f32, n: usize) {
    // SAFETY: the caller's contract.
    unsafe { if FULL { v.store(p) } else { v.store_tail(p, n) } }
}

/// Loads `M` consecutive channel vectors at `p` (see [`ld`]).
///
/// # Safety
/// `p` is readable for `M * LANES` (if `FULL`) or `n` f32.
#[inline(always)]
unsafe fn vectors<V: SimdF32, const M: usize, const FULL: bool>(p: *const f32, n: usize) -> [V; M] {
    // SAFETY: the caller's contract.
    std::array::from_fn(|m| unsafe { ld::<V, FULL>(p.add(m * V::LANES), n) })
}

/// `d[m] += t[0][m] + t[1][m]` for `M` consecutive channel vectors at `d` (the two partial
/// sums of a tap's gradient).
///
/// # Safety
/// `d` is readable and writable for `M * LANES` (if `FULL`) or `n` f32.
#[inline(always)]
unsafe fn add_sums<V: SimdF32, const M: usize, const FULL: bool>(
    d: *mut f32,
    t: [[V; M]; 2],
    n: usize,
) {
    for (m, (t0, t1)) in t[0].iter().zip(&t[1]).enumerate() {
        // SAFETY: the caller's contract.
        unsafe {
            let dm = d.add(m * V::LANES);
            st::<V, FULL>(ld::<V, FULL>(dm, n).add(t0.add(*t1)), dm, n);
        }
    }
}

/// Tap ranges of one tile of `j_len` output columns starting at `j0` in output row `i`:
/// `(u_lo, u_hi)`, the tap rows whose input row `i + u - p` is inside the grid, and
/// `(v_lo, v_hi)`, the tap columns whose input column `j + v - p` is inside the grid for every
/// column `j` of the tile. Taps `v < v_lo` or `v >= v_hi` are valid for some columns only.
#[inline(always)]
fn tap_ranges(s: &DwConvShape, i: usize, j0: usize, j_len: usize) -> (usize, usize, usize, usize) {
    let (k, p) = (s.k, s.padding());
    let u_lo = p.saturating_sub(i);
    let u_hi = k.min(s.height + p - i);
    let v_lo = p.saturating_sub(j0);
    // Valid for the last column j0 + J - 1: v < W + p - (j0 + J - 1); j0 + J <= W keeps it > p.
    let v_hi = k.min(s.width + p + 1 - j0 - j_len).max(v_lo);
    (u_lo, u_hi, v_lo, v_hi)
}

/// Independent accumulators a tile aims for: FMA latency (4 cycles) times FMA ports (2) on
/// current x86 cores. A tile of `J` columns therefore takes `M = 8 / J` channel vectors where
/// the channels allow, so narrow tiles (the 4-, 2- and 1-column ends of 7- and 14-wide rows)
/// keep eight chains in flight instead of being latency-bound.
const CHAINS: usize = 8;

/// One tile of the correlation:
/// `dst[j0 + jj] (=|+=) sum_{u,v} w(u, v) * src[i+u-p, j0+jj+v-p]` for `jj < J`, over `M`
/// channel vectors (`M * LANES` channels if `FULL`, else `M == 1` and the first `n < LANES`).
///
/// Pointers, all already offset to the tile's first channel `c0`:
/// `dst` = dst[b, i, 0, c0] (a `[W, C]` row), `init` = bias + c0 (forward: `=` bias + taps) or null
/// (backward: `+=` onto dst), `src` = src[b, 0, 0, c0] (a `[H, W, C]` grid), `w0` = the weight of
/// tap (0, 0) and `wstep` the offset from one tap to the next in (u, v) row-major order
/// (`+C`, or `-C` from the last tap for the flipped filter).
///
/// # Safety
/// `s` is the checked shape of the buffers behind the pointers; `j0 + J <= W`, `i < H`;
/// `n == LANES` if `FULL`, else `M == 1` and `0 < n < LANES`; `c0 + M * n <= C`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn conv_tile<V: SimdF32, const J: usize, const M: usize, const FULL: bool>(
    dst: *mut f32,
    init: *const f32,
    src: *const f32,
    w0: *const f32,
    wstep: isize,
    s: &DwConvShape,
    i: usize,
    j0: usize,
    n: usize,
) {
    let (c, k, p, width, l) = (s.channels, s.k, s.padding(), s.width, V::LANES);
    let (u_lo, u_hi, v_lo, v_hi) = tap_ranges(s, i, j0, J);
    // SAFETY (whole body): every offset below addresses row i + u - p in [0, H), column
    // j0 + jj + v - p in [0, W) (by `tap_ranges` or the explicit check), tap u * k + v < k^2,
    // channels c0 + m * LANES + lane < c0 + M * n <= C: inside the buffers whose lengths the
    // wrapper checked.
    unsafe {
        let dst = dst.add(j0 * c);
        let mut acc = [[V::splat(0.0); M]; J];
        for (jj, a) in acc.iter_mut().enumerate() {
            for (m, am) in a.iter_mut().enumerate() {
                *am = if init.is_null() {
                    ld::<V, FULL>(dst.add(jj * c + m * l), n)
                } else {
                    ld::<V, FULL>(init.add(m * l), n)
                };
            }
        }
        for u in u_lo..u_hi {
            // src[b, i + u - p, 0, c0] and the weight of tap (u, 0).
            let row = src.add((i + u - p) * width * c);
            let wrow = w0.offset(wstep * (u * k) as isize);
            // Border taps: valid for some columns of the tile only.
            for v in (0..v_lo).chain(v_hi..k) {
                let wv = vectors::<V, M, FULL>(wrow.offset(wstep * v as isize), n);
                for (jj, a) in acc.iter_mut().enumerate() {
                    let col = j0 + jj + v;
                    if col >= p && col - p < width {
                        let x = row.add((col - p) * c);
                        for (m, am) in a.iter_mut().enumerate() {
                            *am = ld::<V, FULL>(x.add(m * l), n).mul_add(wv[m], *am);
                        }
                    }
                }
            }
            // Middle taps: valid for every column, no checks.
            for v in v_lo..v_hi {
                let wv = vectors::<V, M, FULL>(wrow.offset(wstep * v as isize), n);
                let x = row.add((j0 + v - p) * c);
                for (jj, a) in acc.iter_mut().enumerate() {
                    for (m, am) in a.iter_mut().enumerate() {
                        *am = ld::<V, FULL>(x.add(jj * c + m * l), n).mul_add(wv[m], *am);
                    }
                }
            }
        }
        for (jj, a) in acc.iter().enumerate() {
            for (m, am) in a.iter().enumerate() {
                st::<V, FULL>(*am, dst.add(jj * c + m * l), n);
            }
        }
    }
}

/// [`conv_tile`] for a kernel size `K` known at compile time (the common `k = 3`): per tap row,
/// the `K` weight vectors stay in registers and each input vector of the row segment
/// `j0 - p .. j0 + J + p` is loaded once and used by every tap that reads it, instead of once
/// per tap. That cuts the loads per FMA from about 1 to about `1 / K`, so the FMAs, not the
/// load ports, bound the tile. Input columns outside the grid are skipped (one check per
/// loaded vector). Terms are summed in the same order as in [`conv_tile`].
///
/// # Safety
/// As [`conv_tile`], and `K == s.k`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn conv_tile_k<
    V: SimdF32,
    const J: usize,
    const M: usize,
    const FULL: bool,
    const K: usize,
>(
    dst: *mut f32,
    init: *const f32,
    src: *const f32,
    w0: *const f32,
    wstep: isize,
    s: &DwConvShape,
    i: usize,
    j0: usize,
    n: usize,
) {
    let (c, p, width, l) = (s.channels, K / 2, s.width, V::LANES);
    let (u_lo, u_hi, _, _) = tap_ranges(s, i, j0, J);
    // SAFETY (whole body): as in `conv_tile`; input column `col - p` is checked to lie in
    // [0, W) before its load.
    unsafe {
        let dst = dst.add(j0 * c);
        let mut acc = [[V::splat(0.0); M]; J];
        for (jj, a) in acc.iter_mut().enumerate() {
            for (m, am) in a.iter_mut().enumerate() {
                *am = if init.is_null() {
                    ld::<V, FULL>(dst.add(jj * c + m * l), n)
                } else {
                    ld::<V, FULL>(init.add(m * l), n)
                };
            }
        }
        for u in u_lo..u_hi {
            let row = src.add((i + u - p) * width * c);
            let wrow = w0.offset(wstep * (u * K) as isize);
            let wv: [[V; M]; K] =
                std::array::from_fn(|v| vectors::<V, M, FULL>(wrow.offset(wstep * v as isize), n));
            // Input column j0 + q - p feeds output column j0 + jj through tap v = q - jj.
            for q in 0..J + K - 1 {
                let col = j0 + q;
                if col < p || col - p >= width {
                    continue;
                }
                let xv = vectors::<V, M, FULL>(row.add((col - p) * c), n);
                for (v, wvv) in wv.iter().enumerate() {
                    if q >= v && q - v < J {
                        let a = &mut acc[q - v];
                        for (am, (xm, wm)) in a.iter_mut().zip(xv.iter().zip(wvv)) {
                            *am = xm.mul_add(*wm, *am);
                        }
                    }
                }
            }
        }
        for (jj, a) in acc.iter().enumerate() {
            for (m, am) in a.iter().enumerate() {
                st::<V, FULL>(*am, dst.add(jj * c + m * l), n);
            }
        }
    }
}

/// The `J x M` vectors of `dout` at columns `j0..j0 + J` of one output row (channels from 0),
/// with their sums added into `dbias`: the first step of both filter-gradient tiles.
///
/// # Safety
/// As [`conv_tile`]: `dy` is the output row, `db` holds C values, `n` the valid lanes of the
/// last vector.
#[inline(always)]
unsafe fn dout_tile_and_bias_grad<V: SimdF32, const J: usize, const M: usize, const FULL: bool>(
    dy: *const f32,
    db: *mut f32,
    c: usize,
    j0: usize,
    n: usize,
) -> [[V; M]; J] {
    let l = V::LANES;
    let mut g = [[V::splat(-0.0); M]; J];
    // SAFETY: the tile's columns lie in the row and its channel vectors in C (caller).
    unsafe {
        for (jj, gj) in g.iter_mut().enumerate() {
            for (m, gm) in gj.iter_mut().enumerate() {
                *gm = ld::<V, FULL>(dy.add((j0 + jj) * c + m * l), n);
            }
        }
        for m in 0..M {
            let mut sum = ld::<V, FULL>(db.add(m * l), n);
            for gj in &g {
                sum = sum.add(gj[m]);
            }
            st::<V, FULL>(sum, db.add(m * l), n);
        }
    }
    g
}

/// One tile of the filter and bias gradients, over `M` channel vectors as in [`conv_tile`]:
/// `dw[u, v] += sum_jj dy[i, j0+jj] * x[i+u-p, j0+jj+v-p]` (valid taps) and
/// `db += sum_jj dy[i, j0+jj]`.
///
/// Pointers, all offset to channel `c0`: `dw` = dw[0, 0, c0], `db` = db + c0,
/// `dy` = dy[b, i, 0, c0] (a `[W, C]` row), `x` = x[b, 0, 0, c0] (a `[H, W, C]` grid).
///
/// # Safety
/// As [`conv_tile`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn wgrad_tile<V: SimdF32, const J: usize, const M: usize, const FULL: bool>(
    dw: *mut f32,
    db: *mut f32,
    dy: *const f32,
    x: *const f32,
    s: &DwConvShape,
    i: usize,
    j0: usize,
    n: usize,
) {
    let (c, k, p, width, l) = (s.channels, s.k, s.padding(), s.width, V::LANES);
    let (u_lo, u_hi, v_lo, v_hi) = tap_ranges(s, i, j0, J);
    // -0.0 is the additive identity for every x (including +0.0 and -0.0), so sums seeded with
    // it are exactly the sums of their terms.
    let zero = V::splat(-0.0);
    // SAFETY (whole body): as in `conv_tile`; tap (u, v) of dw is at (u * k + v) * C < k^2 C.
    unsafe {
        let g = dout_tile_and_bias_grad::<V, J, M, FULL>(dy, db, c, j0, n);
        // dw[u, v, c0..] += t0 + t1: two chains per channel vector (even and odd columns), so
        // an 8-column tile's one vector still has two sums in flight; taps are independent.
        for u in u_lo..u_hi {
            let row = x.add((i + u - p) * width * c);
            let dwrow = dw.add(u * k * c);
            for v in (0..v_lo).chain(v_hi..k) {
                let mut t = [[zero; M]; 2];
                for (jj, gj) in g.iter().enumerate() {
                    let col = j0 + jj + v;
                    if col >= p && col - p < width {
                        let xv = row.add((col - p) * c);
                        for (m, gm) in gj.iter().enumerate() {
                            let prod = ld::<V, FULL>(xv.add(m * l), n);
                            t[jj % 2][m] = gm.mul_add(prod, t[jj % 2][m]);
                        }
                    }
                }
                add_sums::<V, M, FULL>(dwrow.add(v * c), t, n);
            }
            for v in v_lo..v_hi {
                let xv = row.add((j0 + v - p) * c);
                let mut t = [[zero; M]; 2];
                for (jj, gj) in g.iter().enumerate() {
                    for (m, gm) in gj.iter().enumerate() {
                        let prod = ld::<V, FULL>(xv.add(jj * c + m * l), n);
                        t[jj % 2][m] = gm.mul_add(prod, t[jj % 2][m]);
                    }
                }
                add_sums::<V, M, FULL>(dwrow.add(v * c), t, n);
            }
        }
    }
}

/// [`wgrad_tile`] for a kernel size `K` known at compile time (the common `k = 3`): per tap
/// row, the `K` tap sums stay in registers and each input vector of the row segment
/// `j0 - p .. j0 + J + p` is loaded once for every tap that reads it. With one channel vector
/// (`M == 1`) each tap keeps two sums (even and odd columns), so the row's `K` taps have `2K`
/// chains in flight; with more vectors the `K * M` sums are enough.
///
/// # Safety
/// As [`conv_tile`], and `K == s.k`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn wgrad_tile_k<
    V: SimdF32,
    const J: usize,
    const M: usize,
    const FULL: bool,
    const K: usize,
>(
    dw: *mut f32,
    db: *mut f32,
    dy: *const f32,
    x: *const f32,
    s: &DwConvShape,
    i: usize,
    j0: usize,
    n: usize,
) {
    let (c, p, width) = (s.channels, K / 2, s.width);
    let (u_lo, u_hi, _, _) = tap_ranges(s, i, j0, J);
    // -0.0: the additive identity (see `wgrad_tile`).
    let zero = V::splat(-0.0);
    // SAFETY (whole body): as in `conv_tile_k`; tap (u, v) of dw is at (u * K + v) * C.
    unsafe {
        let g = dout_tile_and_bias_grad::<V, J, M, FULL>(dy, db, c, j0, n);
        for u in u_lo..u_hi {
            let row = x.add((i + u - p) * width * c);
            let dwrow = dw.add(u * K * c);
            // t[chain][v][m]: the sums of tap (u, v).
            let mut t = [[[zero; M]; K]; 2];
            for q in 0..J + K - 1 {
                let col = j0 + q;
                if col < p || col - p >= width {
                    continue;
                }
                let xv = vectors::<V, M, FULL>(row.add((col - p) * c), n);
                // `v` picks the tap and, with `q`, the column and chain: an index, not an item.
                #[allow(clippy::needless_range_loop)]
                for v in 0..K {
                    if q >= v && q - v < J {
                        let jj = q - v;
                        let chain = if M == 1 { jj % 2 } else { 0 };
                        let tv = &mut t[chain][v];
                        for (tm, (gm, xm)) in tv.iter_mut().zip(g[jj].iter().zip(&xv)) {
                            *tm = gm.mul_add(*xm, *tm);
                        }
                    }
                }
            }
            for (v, (t0, t1)) in t[0].iter().zip(&t[1]).enumerate() {
                add_sums::<V, M, FULL>(dwrow.add(v * c), [*t0, *t1], n);
            }
        }
    }
}

/// Calls `tile(j0, J)` over the columns `0..width` of a row in tiles of 8, then at most one each
/// of 4, 2 and 1 (`J` as a const generic so each tile's accumulators are registers).
macro_rules! for_each_tile {
    ($width:expr, |$j0:ident, $jc:ident| $tile:expr) => {{
        let width = $width;
        let mut $j0 = 0;
        while $j0 + 8 <= width {
            {
                const $jc: usize = 8;
                $tile;
            }
            $j0 += 8;
        }
        if $j0 + 4 <= width {
            {
                const $jc: usize = 4;
                $tile;
            }
            $j0 += 4;
        }
        if $j0 + 2 <= width {
            {
                const $jc: usize = 2;
                $tile;
            }
            $j0 += 2;
        }
        if $j0 < width {
            {
                const $jc: usize = 1;
                $tile;
            }
        }
    }};
}

/// Calls `block(c0, M, FULL, n)` over the `C` channels of a `J`-column tile: blocks of `M`
/// full vectors with `J * M <= CHAINS`, largest first (8, 4, 2, 1 vectors), then the masked
/// tail (`M = 1`, `n = C % LANES`).
macro_rules! for_each_channel_block {
    ($c:expr, $l:expr, $jc:ident, |$c0:ident, $mc:ident, $full:ident, $n:ident| $block:expr) => {{
        let (c, l) = ($c, $l);
        let mut $c0 = 0;
        for_each_channel_block!(@full c, l, $jc, $c0, $mc, $full, $n, $block, 8);
        for_each_channel_block!(@full c, l, $jc, $c0, $mc, $full, $n, $block, 4);
        for_each_channel_block!(@full c, l, $jc, $c0, $mc, $full, $n, $block, 2);
        for_each_channel_block!(@full c, l, $jc, $c0, $mc, $full, $n, $block, 1);
        if $c0 < c {
            const $mc: usize = 1;
            const $full: bool = false;
            let $n = c - $c0;
            $block;
        }
    }};
    (@full $cv:ident, $lv:ident, $jc:ident, $c0:ident, $mc:ident, $full:ident, $n:ident,
     $block:expr, $m:literal) => {
        if $jc * $m <= CHAINS {
            const $mc: usize = $m;
            const $full: bool = true;
            let $n = $lv;
            while $c0 + $mc * $lv <= $cv {
                $block;
                $c0 += $mc * $lv;
            }
        }
    };
}

/// The correlation over the whole batch: `dst (=|+=) corr(src, w)` (see [`conv_tile`]).
/// dst, src: `[B, H, W, C]`; w: `[k, k, C]`; `bias`: `[C]` for the forward (`=`), `None` for the
/// input gradient (`+=`, with the filter flipped when `flip`).
///
/// # Safety
/// The shape was checked against every buffer and `k` is odd.
#[inline(always)]
unsafe fn conv<V: SimdF32>(
    dst: &mut [f32],
    bias: Option<&[f32]>,
    src: &[f32],
    w: &[f32],
    flip: bool,
    s: &DwConvShape,
) {
    let c = s.channels;
    let (w0, wstep) = if flip {
        // SAFETY: k^2 >= 1, so the last tap (k^2 - 1) * C is inside w (C lanes, or none if C = 0,
        // when no load happens).
        (
            unsafe { w.as_ptr().add((s.k * s.k - 1) * c) },
            -(c as isize),
        )
    } else {
        (w.as_ptr(), c as isize)
    };
    let grid = s.height * s.width * c;
    for b in 0..s.batch {
        for i in 0..s.height {
            // SAFETY: b < B and i < H, so the offsets are inside src and dst; the tiles' own
            // offsets are covered by `conv_tile`'s contract, which the loops below keep
            // (j0 + J <= W, c0 + M * n <= C).
            unsafe {
                let drow = dst.as_mut_ptr().add(b * grid + i * s.width * c);
                let sgrid = src.as_ptr().add(b * grid);
                for_each_tile!(s.width, |j0, JC| {
                    for_each_channel_block!(c, V::LANES, JC, |c0, MC, FULL, n| {
                        let init = bias.map_or(std::ptr::null(), |bs| bs.as_ptr().add(c0));
                        let (d, x, wc) = (drow.add(c0), sgrid.add(c0), w0.add(c0));
                        if s.k == 3 {
                            conv_tile_k::<V, JC, MC, FULL, 3>(d, init, x, wc, wstep, s, i, j0, n);
                        } else {
                            conv_tile::<V, JC, MC, FULL>(d, init, x, wc, wstep, s, i, j0, n);
                        }
                    })
                });
            }
        }
    }
}

/// Forward: `out = bias + corr(inp, weight)`. out, inp: `[B, H, W, C]`; weight: `[k, k, C]`;
/// bias: `[C]`.
///
/// # Safety
/// The shape was checked against every buffer and `k` is odd.
#[inline(always)]
pub(crate) unsafe fn forward<V: SimdF32>(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    s: DwConvShape,
) {
    // SAFETY: the caller's contract.
    unsafe { conv::<V>(out, Some(bias), inp, weight, false, &s) }
}

/// Backward, accumulating: `dinp += corr(dout, flipped weight)`, then `dweight`, `dbias` in one
/// pass over `dout` and `inp`. dinp, dout, inp: `[B, H, W, C]`; dweight, weight: `[k, k, C]`;
/// dbias: `[C]`.
///
/// # Safety
/// The shape was checked against every buffer and `k` is odd.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn backward<V: SimdF32>(
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    s: DwConvShape,
) {
    // SAFETY: the caller's contract.
    unsafe { conv::<V>(dinp, None, dout, weight, true, &s) };
    let c = s.channels;
    let grid = s.height * s.width * c;
    for b in 0..s.batch {
        for i in 0..s.height {
            // SAFETY: as in `conv`: b < B, i < H, and the loops keep j0 + J <= W,
            // c0 + M * n <= C.
            unsafe {
                let dyrow = dout.as_ptr().add(b * grid + i * s.width * c);
                let xgrid = inp.as_ptr().add(b * grid);
                let (dw, db) = (dweight.as_mut_ptr(), dbias.as_mut_ptr());
                for_each_tile!(s.width, |j0, JC| {
                    for_each_channel_block!(c, V::LANES, JC, |c0, MC, FULL, n| {
                        let (dwc, dbc) = (dw.add(c0), db.add(c0));
                        let (g, x) = (dyrow.add(c0), xgrid.add(c0));
                        if s.k == 3 {
                            wgrad_tile_k::<V, JC, MC, FULL, 3>(dwc, dbc, g, x, &s, i, j0, n);
                        } else {
                            wgrad_tile::<V, JC, MC, FULL>(dwc, dbc, g, x, &s, i, j0, n);
                        }
                    })
                });
            }
        }
    }
}

/// Stamps out one ISA's entry points: `unsafe fn forward` / `backward` with that ISA's
/// `#[target_feature]`, each instantiating the generic bodies above with the ISA's vector type
/// (only the attribute differs between ISAs, hence a macro around generics).
macro_rules! dwconv_entry_points {
    ($vec:ty, $($features:literal)?) => {
        use crate::dwconv::DwConvShape;

        /// # Safety
        /// The ISA is present; shape and lengths are checked by `crate::dwconv::dwconv_forward`.
        $(#[target_feature(enable = $features)])?
        pub(crate) unsafe fn forward(
            out: &mut [f32],
            inp: &[f32],
            weight: &[f32],
            bias: &[f32],
            s: DwConvShape,
        ) {
            // SAFETY: the caller's contract.
            unsafe { super::forward::<$vec>(out, inp, weight, bias, s) }
        }

        /// # Safety
        /// The ISA is present; shape and lengths are checked by `crate::dwconv::dwconv_backward`.
        #[allow(clippy::too_many_arguments)]
        $(#[target_feature(enable = $features)])?
        pub(crate) unsafe fn backward(
            dinp: &mut [f32],
            dweight: &mut [f32],
            dbias: &mut [f32],
            dout: &[f32],
            inp: &[f32],
            weight: &[f32],
            s: DwConvShape,
        ) {
            // SAFETY: the caller's contract.
            unsafe { super::backward::<$vec>(dinp, dweight, dbias, dout, inp, weight, s) }
        }
    };
}

/// The portable path (`Isa::Scalar`): the 8-lane plain-Rust vector LLVM auto-vectorises.
pub(crate) mod portable {
    dwconv_entry_points!(crate::arch::portable_elementwise::F32xP,);
}

/// AVX2 + FMA: one ymm register per vector, `vmaskmovps` tails.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    dwconv_entry_points!(crate::arch::x86_avx2_elementwise::F32x8, "avx2,fma");
}

/// AVX-512F: one zmm register per vector, mask-register tails.
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    dwconv_entry_points!(crate::arch::x86_avx512_elementwise::F32x16, "avx512f");
}

/// NEON: one q register per vector.
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon {
    dwconv_entry_points!(crate::arch::aarch64_neon_elementwise::F32x4, "neon");
}
