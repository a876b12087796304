//! The element-wise kernels written once over [`SimdF32`]: softmax, log-softmax, LayerNorm and
//! GELU, forward and backward side by side (llm.c argument order). Each ISA file instantiates
//! them inside its own `#[target_feature]` entry points with [`elementwise_entry_points!`].
//!
//! Shapes: row-wise kernels see `rows x cols` row-major buffers; the public wrappers
//! (`crate::softmax`, `crate::layernorm`, `crate::gelu`) have checked every length before these
//! run, which is what makes the unchecked vector loads below sound. Forward writes (`=`),
//! backward accumulates (`+=`).
//!
//! Every row is walked in vector steps of `V::LANES`, then one partial step for the tail with
//! masked loads and stores (nothing outside the row is touched). Reductions keep 4 independent
//! accumulators so the add/max latency does not bound the loop.

use super::simd::{SimdF32, exp, load_lanes, normal_cdf, sigmoid_and_exp_neg, store_lanes};
use crate::gelu::GeluKind;

/// Loads `k` lanes of `s` at `i` (`k == LANES`: a full vector; else a masked tail).
///
/// # Safety
/// `i + k <= s.len()` and `0 < k <= LANES`.
#[inline(always)]
unsafe fn ld<V: SimdF32>(s: &[f32], i: usize, k: usize) -> V {
    debug_assert!(k > 0 && k <= V::LANES && i + k <= s.len());
    // SAFETY: the caller guarantees `i + k <= s.len()`.
    unsafe { load_lanes(s.as_ptr().add(i), k) }
}

/// Stores `k` lanes of `v` into `s` at `i`.
///
/// # Safety
/// `i + k <= s.len()` and `0 < k <= LANES`.
#[inline(always)]
unsafe fn st<V: SimdF32>(v: V, s: &mut [f32], i: usize, k: usize) {
    debug_assert!(k > 0 && k <= V::LANES && i + k <= s.len());
    // SAFETY: the caller guarantees `i + k <= s.len()`.
    unsafe { store_lanes(v, s.as_mut_ptr().add(i), k) }
}

/// Calls `body(i, k)` over `0..n` in vector steps: `k == LANES` for full vectors, then once with
/// `0 < k < LANES` for the tail. Every call has `i + k <= n`.
#[inline(always)]
fn for_each<V: SimdF32>(n: usize, mut body: impl FnMut(usize, usize)) {
    let l = V::LANES;
    let mut i = 0;
    while i + l <= n {
        body(i, l);
        i += l;
    }
    if i < n {
        body(i, n - i);
    }
}

/// Reduces `K` quantities over `0..n` in vector steps: `term(i, k)` gives the `K` vectors at
/// offset `i` (`k` lanes valid, `i + k <= n`); their padding lanes are replaced by `fill` and
/// everything is folded with `combine` into 4 interleaved accumulators per quantity.
#[inline(always)]
fn fold<V: SimdF32, const K: usize>(
    n: usize,
    fill: f32,
    combine: impl Fn(V, V) -> V,
    mut term: impl FnMut(usize, usize) -> [V; K],
) -> [V; K] {
    let l = V::LANES;
    let mut acc = [[V::splat(fill); K]; 4];
    let mut i = 0;
    while i + 4 * l <= n {
        for (u, a) in acc.iter_mut().enumerate() {
            let t = term(i + u * l, l);
            for q in 0..K {
                a[q] = combine(a[q], t[q]);
            }
        }
        i += 4 * l;
    }
    while i + l <= n {
        let t = term(i, l);
        for q in 0..K {
            acc[0][q] = combine(acc[0][q], t[q]);
        }
        i += l;
    }
    if i < n {
        let t = term(i, n - i);
        for q in 0..K {
            acc[1][q] = combine(acc[1][q], t[q].keep_first(n - i, fill));
        }
    }
    let mut out = [V::splat(fill); K];
    for q in 0..K {
        out[q] = combine(combine(acc[0][q], acc[1][q]), combine(acc[2][q], acc[3][q]));
    }
    out
}

/// Maximum of a row (NaN may or may not survive; callers get NaN through `x - max`).
#[inline(always)]
fn row_max<V: SimdF32>(x: &[f32]) -> f32 {
    let [m] = fold::<V, 1>(
        x.len(),
        f32::NEG_INFINITY,
        V::max,
        #[inline(always)]
        |i, k| {
            // SAFETY: `fold` yields `i + k <= x.len()`.
            [unsafe { ld::<V>(x, i, k) }]
        },
    );
    m.reduce_max()
}

/// `out[r, :] = softmax(inp[r, :])`. out, inp: (rows, cols).
///
/// Three passes over the row (it stays in L1): max, `e = exp(x - max)` stored into `out` while
/// summing, then `out *= 1 / sum`. A NaN anywhere in the row makes `sum` NaN, hence the whole row;
/// an all-`-inf` row gives `-inf - -inf = NaN` everywhere, as PyTorch.
#[inline(always)]
pub(crate) fn softmax_forward<V: SimdF32>(out: &mut [f32], inp: &[f32], cols: usize) {
    for (o, x) in out.chunks_exact_mut(cols).zip(inp.chunks_exact(cols)) {
        let vmax = V::splat(row_max::<V>(x));
        let [sum] = fold::<V, 1>(
            cols,
            0.0,
            V::add,
            #[inline(always)]
            |i, k| {
                // SAFETY: `fold` yields `i + k <= cols`, the length of both rows.
                unsafe {
                    let e = exp(ld::<V>(x, i, k).sub(vmax));
                    st(e, o, i, k);
                    [e]
                }
            },
        );
        let inv = V::splat(1.0 / sum.reduce_add());
        for_each::<V>(
            cols,
            #[inline(always)]
            |i, k| {
                // SAFETY: `for_each` yields `i + k <= cols`.
                unsafe { st(ld::<V>(o, i, k).mul(inv), o, i, k) }
            },
        );
    }
}

/// `dinp[r, :] += y * (dout - sum(dout * y))`. dinp, dout, y: (rows, cols).
#[inline(always)]
pub(crate) fn softmax_backward<V: SimdF32>(dinp: &mut [f32], dout: &[f32], y: &[f32], cols: usize) {
    let rows = dinp
        .chunks_exact_mut(cols)
        .zip(dout.chunks_exact(cols))
        .zip(y.chunks_exact(cols));
    for ((d, g), y) in rows {
        let [dot] = fold::<V, 1>(
            cols,
            0.0,
            V::add,
            #[inline(always)]
            |i, k| {
                // SAFETY: `fold` yields `i + k <= cols`.
                unsafe { [ld::<V>(g, i, k).mul(ld::<V>(y, i, k))] }
            },
        );
        let dot = V::splat(dot.reduce_add());
        for_each::<V>(
            cols,
            #[inline(always)]
            |i, k| {
                // SAFETY: `for_each` yields `i + k <= cols`.
                unsafe {
                    let yv = ld::<V>(y, i, k);
                    let t = ld::<V>(g, i, k).sub(dot);
                    st(yv.mul_add(t, ld::<V>(d, i, k)), d, i, k);
                }
            },
        );
    }
}

/// `out[r, :] = log_softmax(inp[r, :]) = (x - max) - ln(sum(exp(x - max)))`. out, inp: (rows,
/// cols). Subtracting `max` first keeps `x - max` exact near the maximum.
#[inline(always)]
pub(crate) fn log_softmax_forward<V: SimdF32>(out: &mut [f32], inp: &[f32], cols: usize) {
    for (o, x) in out.chunks_exact_mut(cols).zip(inp.chunks_exact(cols)) {
        let vmax = V::splat(row_max::<V>(x));
        let [sum] = fold::<V, 1>(
            cols,
            0.0,
            V::add,
            #[inline(always)]
            |i, k| {
                // SAFETY: `fold` yields `i + k <= cols`.
                [exp(unsafe { ld::<V>(x, i, k) }.sub(vmax))]
            },
        );
        let lse = V::splat(sum.reduce_add().ln());
        for_each::<V>(
            cols,
            #[inline(always)]
            |i, k| {
                // SAFETY: `for_each` yields `i + k <= cols`, the length of both rows.
                unsafe { st(ld::<V>(x, i, k).sub(vmax).sub(lse), o, i, k) }
            },
        );
    }
}

/// `dinp[r, :] += dout - exp(y) * sum(dout)`. dinp, dout, y: (rows, cols).
#[inline(always)]
pub(crate) fn log_softmax_backward<V: SimdF32>(
    dinp: &mut [f32],
    dout: &[f32],
    y: &[f32],
    cols: usize,
) {
    let rows = dinp
        .chunks_exact_mut(cols)
        .zip(dout.chunks_exact(cols))
        .zip(y.chunks_exact(cols));
    for ((d, g), y) in rows {
        let [sum] = fold::<V, 1>(
            cols,
            0.0,
            V::add,
            #[inline(always)]
            |i, k| {
                // SAFETY: `fold` yields `i + k <= cols`.
                [unsafe { ld::<V>(g, i, k) }]
            },
        );
        let neg_sum = V::splat(-sum.reduce_add());
        for_each::<V>(
            cols,
            #[inline(always)]
            |i, k| {
                // SAFETY: `for_each` yields `i + k <= cols`.
                unsafe {
                    let p = exp(ld::<V>(y, i, k));
                    let dv = ld::<V>(d, i, k).add(ld::<V>(g, i, k));
                    st(p.mul_add(neg_sum, dv), d, i, k);
                }
            },
        );
    }
}

/// LayerNorm forward. out, inp: (rows, cols); weight, bias: (cols); mean, rstd: (rows).
///
/// Corrected two-pass statistics: `m0 = sum(x) / n`, then `d = x - m0` (exact when x is close to
/// m0, and otherwise rounded relative to d itself), `r = sum(d) / n` absorbs m0's rounding, and
/// `var = sum(d^2) / n - r^2`. This keeps rows like `80 + 1e-3 * noise` accurate in f32.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn layernorm_forward<V: SimdF32>(
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    cols: usize,
    eps: f32,
) {
    let n = cols as f32;
    let rows = out.chunks_exact_mut(cols).zip(inp.chunks_exact(cols));
    for ((o, x), (mean_r, rstd_r)) in rows.zip(mean.iter_mut().zip(rstd.iter_mut())) {
        let [s] = fold::<V, 1>(
            cols,
            0.0,
            V::add,
            #[inline(always)]
            |i, k| {
                // SAFETY: `fold` yields `i + k <= cols`.
                [unsafe { ld::<V>(x, i, k) }]
            },
        );
        let m0 = s.reduce_add() / n;
        let vm0 = V::splat(m0);
        let [sd, sdd] = fold::<V, 2>(
            cols,
            0.0,
            V::add,
            #[inline(always)]
            |i, k| {
                // SAFETY: `fold` yields `i + k <= cols`.
                let d = unsafe { ld::<V>(x, i, k) }.sub(vm0);
                [d, d.mul(d)]
            },
        );
        let r = sd.reduce_add() / n;
        let var = (sdd.reduce_add() / n - r * r).max(0.0);
        let rs = 1.0 / (var + eps).sqrt();
        *mean_r = m0 + r;
        *rstd_r = rs;
        let (vr, vrs) = (V::splat(r), V::splat(rs));
        for_each::<V>(
            cols,
            #[inline(always)]
            |i, k| {
                // SAFETY: `for_each` yields `i + k <= cols`, the length of the rows, weight and bias.
                unsafe {
                    let xhat = ld::<V>(x, i, k).sub(vm0).sub(vr).mul(vrs);
                    let y = xhat.mul_add(ld::<V>(weight, i, k), ld::<V>(bias, i, k));
                    st(y, o, i, k);
                }
            },
        );
    }
}

/// LayerNorm backward, accumulating. dinp, dout, inp: (rows, cols); dweight, dbias, weight:
/// (cols); mean, rstd: (rows), as saved by the forward.
///
/// Per row, pass 1 accumulates `dbias += dout`, `dweight += dout * xhat` and the two row means
/// of `dy = dout * w` and `dy * xhat`; pass 2 writes
/// `dinp += rstd * (dy - mean(dy) - xhat * mean(dy * xhat))`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn layernorm_backward<V: SimdF32>(
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    mean: &[f32],
    rstd: &[f32],
    cols: usize,
) {
    let n = cols as f32;
    let rows = dinp
        .chunks_exact_mut(cols)
        .zip(dout.chunks_exact(cols))
        .zip(inp.chunks_exact(cols));
    for (((d, g), x), (&mu, &rs)) in rows.zip(mean.iter().zip(rstd)) {
        let (vmu, vrs) = (V::splat(mu), V::splat(rs));
        let [sdy, sdyx] = fold::<V, 2>(
            cols,
            0.0,
            V::add,
            #[inline(always)]
            |i, k| {
                // SAFETY: `fold` yields `i + k <= cols`, the length of every buffer touched.
                unsafe {
                    let gv = ld::<V>(g, i, k);
                    let xhat = ld::<V>(x, i, k).sub(vmu).mul(vrs);
                    st(ld::<V>(dbias, i, k).add(gv), dbias, i, k);
                    st(gv.mul_add(xhat, ld::<V>(dweight, i, k)), dweight, i, k);
                    let dy = gv.mul(ld::<V>(weight, i, k));
                    [dy, dy.mul(xhat)]
                }
            },
        );
        let mdy = V::splat(sdy.reduce_add() / n);
        let neg_mdyx = V::splat(-sdyx.reduce_add() / n);
        for_each::<V>(
            cols,
            #[inline(always)]
            |i, k| {
                // SAFETY: `for_each` yields `i + k <= cols`.
                unsafe {
                    let xhat = ld::<V>(x, i, k).sub(vmu).mul(vrs);
                    let dy = ld::<V>(g, i, k).mul(ld::<V>(weight, i, k));
                    let t = xhat.mul_add(neg_mdyx, dy.sub(mdy));
                    st(t.mul_add(vrs, ld::<V>(d, i, k)), d, i, k);
                }
            },
        );
    }
}

/// 2 sqrt(2/pi): the tanh GELU is `x * sigmoid(2u)`, `2u = x (C2 + C2 K x^2)`.
const GELU_C2: f32 = 1.595_769;
const GELU_K: f32 = 0.044_715;
/// Beyond |x| = 10 the tanh GELU's sigmoid is 0 or 1 to within 1.2e-38 (2u = +-87.3); the
/// kernels clamp x there so that `x^2` cannot overflow and `x * s` cannot turn a saturated
/// `e^{-2u}` into garbage for huge |x|.
const TANH_GELU_XMAX: f32 = 10.0;

/// `x` clamped to `[-TANH_GELU_XMAX, TANH_GELU_XMAX]`, NaN kept.
#[inline(always)]
fn clamp_tanh_gelu<V: SimdF32>(x: V) -> V {
    V::splat(TANH_GELU_XMAX).min(V::splat(-TANH_GELU_XMAX).max(x))
}

/// 1 / sqrt(2 pi).
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// `out = gelu(inp)`. out, inp: (n).
///
/// Erf: `x * Phi(x)` with `Phi` through erfc (relatively accurate in the lower tail). Tanh:
/// `0.5 x (1 + tanh(u)) = x * sigmoid(2u)`, which has no cancellation for negative x; for
/// x < -10 the result is -0 (the true value is under 1.3e-37 in magnitude).
#[inline(always)]
pub(crate) fn gelu_forward<V: SimdF32>(out: &mut [f32], inp: &[f32], kind: GeluKind) {
    let n = inp.len();
    match kind {
        GeluKind::Erf => for_each::<V>(
            n,
            #[inline(always)]
            |i, k| {
                // SAFETY: `for_each` yields `i + k <= n`, the length of both buffers.
                unsafe {
                    let x = ld::<V>(inp, i, k);
                    st(x.mul(normal_cdf(x).0), out, i, k);
                }
            },
        ),
        GeluKind::Tanh => for_each::<V>(
            n,
            #[inline(always)]
            |i, k| {
                // SAFETY: as above.
                unsafe {
                    let x = ld::<V>(inp, i, k);
                    let xc = clamp_tanh_gelu(x);
                    let v = xc
                        .mul(xc)
                        .mul_add(V::splat(GELU_C2 * GELU_K), V::splat(GELU_C2));
                    let (s, _) = sigmoid_and_exp_neg(xc.mul(v));
                    let s = V::select_lt(x, V::splat(-TANH_GELU_XMAX), V::splat(0.0), s);
                    st(x.mul(s), out, i, k);
                }
            },
        ),
    }
}

/// `dinp += gelu'(inp) * dout`. dinp, inp, dout: (n).
///
/// Erf: `gelu' = Phi(x) + x phi(x)`. Tanh: with `s = sigmoid(2u)`,
/// `gelu' = s + x s (1 - s) d(2u)/dx`, `1 - s = e^{-2u} s`.
#[inline(always)]
pub(crate) fn gelu_backward<V: SimdF32>(
    dinp: &mut [f32],
    inp: &[f32],
    dout: &[f32],
    kind: GeluKind,
) {
    let n = inp.len();
    match kind {
        GeluKind::Erf => for_each::<V>(
            n,
            #[inline(always)]
            |i, k| {
                // SAFETY: `for_each` yields `i + k <= n`, the length of all three buffers.
                unsafe {
                    let x = ld::<V>(inp, i, k);
                    let (cdf, a) = normal_cdf(x);
                    let pdf = exp(V::splat(0.0).sub(a.mul(a))).mul(V::splat(INV_SQRT_2PI));
                    let grad = x.mul_add(pdf, cdf);
                    st(
                        grad.mul_add(ld::<V>(dout, i, k), ld::<V>(dinp, i, k)),
                        dinp,
                        i,
                        k,
                    );
                }
            },
        ),
        GeluKind::Tanh => for_each::<V>(
            n,
            #[inline(always)]
            |i, k| {
                // SAFETY: as above.
                unsafe {
                    // gelu' is 0 or 1 to f32 precision beyond the clamp (|gelu' - step| < 1e-35).
                    let x = clamp_tanh_gelu(ld::<V>(inp, i, k));
                    let x2 = x.mul(x);
                    let v = x2.mul_add(V::splat(GELU_C2 * GELU_K), V::splat(GELU_C2));
                    let (s, e) = sigmoid_and_exp_neg(x.mul(v));
                    let dv = x2.mul_add(V::splat(3.0 * GELU_C2 * GELU_K), V::splat(GELU_C2));
                    let grad = x.mul(s).mul(e.mul(s)).mul_add(dv, s);
                    st(
                        grad.mul_add(ld::<V>(dout, i, k), ld::<V>(dinp, i, k)),
                        dinp,
                        i,
                        k,
                    );
                }
            },
        ),
    }
}

/// Stamps out one ISA's entry points: safe-to-call-after-detection `unsafe fn`s with that ISA's
/// `#[target_feature]`, each instantiating the generic body above with the ISA's vector type, and
/// a `kernels()` constructor for the dispatch table. Only the attribute differs between ISAs,
/// which is why this is a macro and the bodies are generics.
macro_rules! elementwise_entry_points {
    ($isa:expr, $vec:ty, $($features:literal)?) => {
        use crate::arch::elementwise as generic;
        use crate::elementwise::ElementwiseKernels;
        use crate::gelu::GeluKind;

        /// The dispatch table of this ISA.
        ///
        /// # Safety
        /// The ISA must be supported by this CPU (checked by `ElementwiseKernels::for_isa`).
        pub(crate) unsafe fn kernels() -> ElementwiseKernels {
            ElementwiseKernels {
                isa: $isa,
                softmax_forward,
                softmax_backward,
                log_softmax_forward,
                log_softmax_backward,
                layernorm_forward,
                layernorm_backward,
                gelu_forward,
                gelu_backward,
                mix_heads,
                add_head_dots,
            }
        }

        /// # Safety
        /// The ISA is present; lengths are checked by `crate::head_mix::add_head_dots`.
        $(#[target_feature(enable = $features)])?
        unsafe fn add_head_dots(acc: &mut [f32], a: &[f32], b: &[f32], heads: usize, len: usize) {
            unsafe { crate::arch::head_mix::add_head_dots::<$vec>(acc, a, b, heads, len) }
        }

        /// # Safety
        /// The ISA is present; lengths are checked by `crate::head_mix::mix_heads`.
        $(#[target_feature(enable = $features)])?
        unsafe fn mix_heads(
            dst: &mut [f32],
            src: &[f32],
            m: &[f32],
            bias: Option<&[f32]>,
            heads: usize,
            len: usize,
            transpose: bool,
        ) {
            unsafe {
                crate::arch::head_mix::mix_heads::<$vec>(dst, src, m, bias, heads, len, transpose)
            }
        }

        /// # Safety
        /// The ISA is present; lengths are checked by `crate::softmax::softmax_forward`.
        $(#[target_feature(enable = $features)])?
        unsafe fn softmax_forward(out: &mut [f32], inp: &[f32], cols: usize) {
            generic::softmax_forward::<$vec>(out, inp, cols)
        }

        /// # Safety
        /// The ISA is present; lengths are checked by `crate::softmax::softmax_backward`.
        $(#[target_feature(enable = $features)])?
        unsafe fn softmax_backward(dinp: &mut [f32], dout: &[f32], y: &[f32], cols: usize) {
            generic::softmax_backward::<$vec>(dinp, dout, y, cols)
        }

        /// # Safety
        /// The ISA is present; lengths are checked by `crate::softmax::log_softmax_forward`.
        $(#[target_feature(enable = $features)])?
        unsafe fn log_softmax_forward(out: &mut [f32], inp: &[f32], cols: usize) {
            generic::log_softmax_forward::<$vec>(out, inp, cols)
        }

        /// # Safety
        /// The ISA is present; lengths are checked by `crate::softmax::log_softmax_backward`.
        $(#[target_feature(enable = $features)])?
        unsafe fn log_softmax_backward(dinp: &mut [f32], dout: &[f32], y: &[f32], cols: usize) {
            generic::log_softmax_backward::<$vec>(dinp, dout, y, cols)
        }

        /// # Safety
        /// The ISA is present; lengths are checked by `crate::layernorm::layernorm_forward`.
        #[allow(clippy::too_many_arguments)]
        $(#[target_feature(enable = $features)])?
        unsafe fn layernorm_forward(
            out: &mut [f32],
            mean: &mut [f32],
            rstd: &mut [f32],
            inp: &[f32],
            weight: &[f32],
            bias: &[f32],
            cols: usize,
            eps: f32,
        ) {
            generic::layernorm_forward::<$vec>(out, mean, rstd, inp, weight, bias, cols, eps)
        }

        /// # Safety
        /// The ISA is present; lengths are checked by `crate::layernorm::layernorm_backward`.
        #[allow(clippy::too_many_arguments)]
        $(#[target_feature(enable = $features)])?
        unsafe fn layernorm_backward(
            dinp: &mut [f32],
            dweight: &mut [f32],
            dbias: &mut [f32],
            dout: &[f32],
            inp: &[f32],
            weight: &[f32],
            mean: &[f32],
            rstd: &[f32],
            cols: usize,
        ) {
            generic::layernorm_backward::<$vec>(
                dinp, dweight, dbias, dout, inp, weight, mean, rstd, cols,
            )
        }

        /// # Safety
        /// The ISA is present; lengths are checked by `crate::gelu::gelu_forward`.
        $(#[target_feature(enable = $features)])?
        unsafe fn gelu_forward(out: &mut [f32], inp: &[f32], kind: GeluKind) {
            generic::gelu_forward::<$vec>(out, inp, kind)
        }

        /// # Safety
        /// The ISA is present; lengths are checked by `crate::gelu::gelu_backward`.
        $(#[target_feature(enable = $features)])?
        unsafe fn gelu_backward(dinp: &mut [f32], inp: &[f32], dout: &[f32], kind: GeluKind) {
            generic::gelu_backward::<$vec>(dinp, inp, dout, kind)
        }
    };
}
pub(crate) use elementwise_entry_points;
