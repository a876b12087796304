//! Scalar references: the plainest correct version of every kernel, written for clarity, used as
//! the oracle by the property tests. Never used on a hot path.

use crate::dwconv::DwConvShape;
use crate::gemm::{MatMut, MatRef};

mod head_mix;
pub use head_mix::{add_head_dots_ref, mix_heads_ref};

/// `C = alpha * A * B + beta * C` as a triple loop with f64 accumulation. `beta == 0` does not
/// read C. Shapes must agree (this is a test oracle: it panics on misuse).
pub fn sgemm_ref(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: MatMut<'_>) {
    sgemm_bias_ref(alpha, a, b, beta, None, c);
}

/// [`sgemm_ref`] plus `bias[j]` added to column j of every row (the fused epilogue's oracle).
pub fn sgemm_bias_ref(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    bias: Option<&[f32]>,
    mut c: MatMut<'_>,
) {
    let (m, n, k) = (a.rows(), b.cols(), a.cols());
    assert!(
        b.rows() == k && c.rows() == m && c.cols() == n && bias.is_none_or(|v| v.len() == n),
        "sgemm_ref: shape mismatch"
    );
    let (rs, cs) = (c.row_stride(), c.col_stride());
    let out = c.data_mut();
    for i in 0..m {
        for j in 0..n {
            let mut dot = 0.0f64;
            for p in 0..k {
                dot += a.at(i, p) as f64 * b.at(p, j) as f64;
            }
            let dst = &mut out[i * rs + j * cs];
            let mut v = alpha as f64 * dot;
            if beta != 0.0 {
                v += beta as f64 * *dst as f64;
            }
            if let Some(bias) = bias {
                v += bias[j] as f64;
            }
            *dst = v as f32;
        }
    }
}

/// Row softmax: `out = exp(x - max) / sum(exp(x - max))`, computed in f64.
pub fn softmax_forward_ref(out: &mut [f32], inp: &[f32], cols: usize) {
    for (o, x) in out.chunks_exact_mut(cols).zip(inp.chunks_exact(cols)) {
        let max = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let max = if x.iter().any(|v| v.is_nan()) {
            f64::NAN
        } else {
            max
        };
        let sum: f64 = x.iter().map(|&v| (v as f64 - max).exp()).sum();
        for (o, &v) in o.iter_mut().zip(x) {
            *o = ((v as f64 - max).exp() / sum) as f32;
        }
    }
}

/// Row log-softmax: `out = x - max - ln(sum(exp(x - max)))`, computed in f64.
pub fn log_softmax_forward_ref(out: &mut [f32], inp: &[f32], cols: usize) {
    for (o, x) in out.chunks_exact_mut(cols).zip(inp.chunks_exact(cols)) {
        let max = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let max = if x.iter().any(|v| v.is_nan()) {
            f64::NAN
        } else {
            max
        };
        let lse = max + x.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
        for (o, &v) in o.iter_mut().zip(x) {
            *o = (v as f64 - lse) as f32;
        }
    }
}

/// `dinp += y * (dout - sum(dout * y))` per row.
pub fn softmax_backward_ref(dinp: &mut [f32], dout: &[f32], y: &[f32], cols: usize) {
    for ((d, g), y) in dinp
        .chunks_exact_mut(cols)
        .zip(dout.chunks_exact(cols))
        .zip(y.chunks_exact(cols))
    {
        let dot: f64 = g.iter().zip(y).map(|(&g, &y)| g as f64 * y as f64).sum();
        for ((d, &g), &y) in d.iter_mut().zip(g).zip(y) {
            *d += (y as f64 * (g as f64 - dot)) as f32;
        }
    }
}

/// `dinp += dout - exp(y) * sum(dout)` per row.
pub fn log_softmax_backward_ref(dinp: &mut [f32], dout: &[f32], y: &[f32], cols: usize) {
    for ((d, g), y) in dinp
        .chunks_exact_mut(cols)
        .zip(dout.chunks_exact(cols))
        .zip(y.chunks_exact(cols))
    {
        let sum: f64 = g.iter().map(|&g| g as f64).sum();
        for ((d, &g), &y) in d.iter_mut().zip(g).zip(y) {
            *d += (g as f64 - (y as f64).exp() * sum) as f32;
        }
    }
}

/// LayerNorm forward in f64; saves mean and rstd per row.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_forward_ref(
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    cols: usize,
    eps: f32,
) {
    for (r, (o, x)) in out
        .chunks_exact_mut(cols)
        .zip(inp.chunks_exact(cols))
        .enumerate()
    {
        let mu = x.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
        let var = x.iter().map(|&v| (v as f64 - mu).powi(2)).sum::<f64>() / cols as f64;
        let rs = 1.0 / (var + eps as f64).sqrt();
        for (j, (o, &v)) in o.iter_mut().zip(x).enumerate() {
            *o = ((v as f64 - mu) * rs * weight[j] as f64 + bias[j] as f64) as f32;
        }
        mean[r] = mu as f32;
        rstd[r] = rs as f32;
    }
}

/// LayerNorm backward in f64, accumulating into `dinp`, `dweight`, `dbias`.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward_ref(
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
    let rows = inp.len() / cols;
    for r in 0..rows {
        let x = &inp[r * cols..(r + 1) * cols];
        let g = &dout[r * cols..(r + 1) * cols];
        let (mu, rs) = (mean[r] as f64, rstd[r] as f64);
        let xhat = |j: usize| (x[j] as f64 - mu) * rs;
        let mut mean_dy = 0.0f64;
        let mut mean_dy_xhat = 0.0f64;
        for j in 0..cols {
            let dy = g[j] as f64 * weight[j] as f64;
            mean_dy += dy;
            mean_dy_xhat += dy * xhat(j);
        }
        mean_dy /= cols as f64;
        mean_dy_xhat /= cols as f64;
        for j in 0..cols {
            dbias[j] += g[j];
            dweight[j] += (g[j] as f64 * xhat(j)) as f32;
            let dy = g[j] as f64 * weight[j] as f64;
            dinp[r * cols + j] += (rs * (dy - mean_dy - xhat(j) * mean_dy_xhat)) as f32;
        }
    }
}

/// erf in f64 (Abramowitz-Stegun 7.1.26 is too coarse for an oracle; this is the
/// series/continued-fraction pair, accurate to ~1e-15).
pub fn erf_f64(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let ax = x.abs();
    let r = if ax < 2.5 {
        // Maclaurin series: erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1)).
        let mut term = ax;
        let mut sum = ax;
        let x2 = ax * ax;
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= -x2 / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else if ax < 6.0 {
        // Continued fraction for erfc (Lentz), converges quickly for x >= 2.5.
        let x2 = ax * ax;
        let mut f = ax;
        let mut c = ax;
        let mut d = 0.0;
        for n in 1..200 {
            let an = n as f64 * 0.5;
            d = ax + an * d;
            d = if d == 0.0 { 1e-300 } else { 1.0 / d };
            c = ax + an / c;
            let delta = c * d;
            f *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        1.0 - (-x2).exp() / (f * std::f64::consts::PI.sqrt())
    } else {
        1.0
    };
    r.copysign(x)
}

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;

fn gelu_and_grad_f64(x: f64, kind: crate::gelu::GeluKind) -> (f64, f64) {
    match kind {
        crate::gelu::GeluKind::Erf => {
            let cdf = 0.5 * (1.0 + erf_f64(x / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            (x * cdf, cdf + x * pdf)
        }
        crate::gelu::GeluKind::Tanh => {
            let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
            let t = u.tanh();
            let du = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
            (
                0.5 * x * (1.0 + t),
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du,
            )
        }
    }
}

/// `out = gelu(inp)` in f64.
pub fn gelu_forward_ref(out: &mut [f32], inp: &[f32], kind: crate::gelu::GeluKind) {
    for (o, &x) in out.iter_mut().zip(inp) {
        *o = gelu_and_grad_f64(x as f64, kind).0 as f32;
    }
}

/// `dinp += gelu'(inp) * dout` in f64.
pub fn gelu_backward_ref(dinp: &mut [f32], inp: &[f32], dout: &[f32], kind: crate::gelu::GeluKind) {
    for ((d, &x), &g) in dinp.iter_mut().zip(inp).zip(dout) {
        *d += (gelu_and_grad_f64(x as f64, kind).1 * g as f64) as f32;
    }
}

/// GELU of `x` in f64.
pub fn gelu_f64(x: f64, kind: crate::gelu::GeluKind) -> f64 {
    gelu_and_grad_f64(x, kind).0
}

/// int8 GEMM oracle: `c[i * ldc + j] = sum_p a[i * lda + p] * b[j * ldb + p]` for `i < m`,
/// `j < n`, `p < k`, summed in i64 and then converted (it panics if a sum leaves i32, which
/// needs K > 133,000 at the extremes).
#[allow(clippy::too_many_arguments)]
pub fn gemm_i8_ref(
    a: &[i8],
    lda: usize,
    b: &[i8],
    ldb: usize,
    m: usize,
    n: usize,
    k: usize,
    c: &mut [i32],
    ldc: usize,
) {
    for i in 0..m {
        for j in 0..n {
            let dot: i64 = (0..k)
                .map(|p| a[i * lda + p] as i64 * b[j * ldb + p] as i64)
                .sum();
            c[i * ldc + j] = i32::try_from(dot).expect("gemm_i8_ref: sum overflows i32");
        }
    }
}

/// The dequantize epilogue of one sum in f64: `act(s_a * s_w * acc + bias)`.
pub fn dequant_f64(
    acc: i32,
    s_a: f32,
    s_w: f32,
    bias: f32,
    act: crate::gemm_i8::Activation,
) -> f64 {
    let y = s_a as f64 * s_w as f64 * acc as f64 + bias as f64;
    match act {
        crate::gemm_i8::Activation::None => y,
        crate::gemm_i8::Activation::Gelu(kind) => gelu_f64(y, kind),
    }
}

/// Symmetric quantization of one value: `clamp(round_half_even(x / scale), -127, 127)`, the
/// quotient rounded to f32 first (the contract of the vector kernels, which divide in f32).
pub fn quantize_ref(x: f32, scale: f32) -> i8 {
    let quotient = x / scale;
    let mut q = quotient.trunc();
    let frac = quotient - q;
    if frac.abs() > 0.5 || (frac.abs() == 0.5 && q % 2.0 != 0.0) {
        q += frac.signum();
    }
    q.clamp(-127.0, 127.0) as i8
}

/// The input position `(row, col)` that tap `(u, v)` of output `(i, j)` reads, or `None` where
/// the tap falls in the zero padding. `p = (k - 1) / 2`.
fn dwconv_tap(s: &DwConvShape, i: usize, j: usize, u: usize, v: usize) -> Option<(usize, usize)> {
    let p = s.padding();
    let (r, c) = ((i + u).checked_sub(p)?, (j + v).checked_sub(p)?);
    (r < s.height && c < s.width).then_some((r, c))
}

/// Index of `[b, i, j, c]` in a `[B, H, W, C]` buffer.
fn dwconv_at(s: &DwConvShape, b: usize, i: usize, j: usize, c: usize) -> usize {
    ((b * s.height + i) * s.width + j) * s.channels + c
}

/// Depthwise convolution forward in f64 on f64 buffers (the finite-difference tests
/// differentiate this): `out[b,i,j,c] = bias[c] + sum_{u,v} w[u,v,c] * inp[b, i+u-p, j+v-p, c]`
/// over the taps inside the grid. out, inp: `[B, H, W, C]`; weight: `[k, k, C]`; bias: `[C]`.
pub fn dwconv_forward_f64(
    out: &mut [f64],
    inp: &[f64],
    weight: &[f64],
    bias: &[f64],
    s: DwConvShape,
) {
    let (k, ch) = (s.k, s.channels);
    for b in 0..s.batch {
        for i in 0..s.height {
            for j in 0..s.width {
                for c in 0..ch {
                    let mut acc = bias[c];
                    for u in 0..k {
                        for v in 0..k {
                            if let Some((r, q)) = dwconv_tap(&s, i, j, u, v) {
                                acc +=
                                    weight[(u * k + v) * ch + c] * inp[dwconv_at(&s, b, r, q, c)];
                            }
                        }
                    }
                    out[dwconv_at(&s, b, i, j, c)] = acc;
                }
            }
        }
    }
}

/// Depthwise convolution forward, computed in f64 (see [`dwconv_forward_f64`]).
pub fn dwconv_forward_ref(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    s: DwConvShape,
) {
    let wide = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let mut o = vec![0.0f64; out.len()];
    dwconv_forward_f64(&mut o, &wide(inp), &wide(weight), &wide(bias), s);
    for (d, v) in out.iter_mut().zip(o) {
        *d = v as f32;
    }
}

/// Depthwise convolution backward in f64, accumulating (each sum, seeded with the old value, is
/// rounded to f32 once): `dbias[c] += sum dout[.., c]`,
/// `dweight[u,v,c] += sum_{b,i,j} dout[b,i,j,c] * inp[b, i+u-p, j+v-p, c]`,
/// `dinp[b,r,q,c] += sum` of `weight[u,v,c] * dout[b,i,j,c]` over the outputs `(i, j)` whose tap
/// `(u, v)` reads `(r, q)` (written as a scatter: the definition, not the flipped-filter form the
/// kernels use). dinp, dout, inp: `[B, H, W, C]`; dweight, weight: `[k, k, C]`; dbias: `[C]`.
#[allow(clippy::too_many_arguments)]
pub fn dwconv_backward_ref(
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    s: DwConvShape,
) {
    let (k, ch) = (s.k, s.channels);
    let mut dx: Vec<f64> = dinp.iter().map(|&v| v as f64).collect();
    let mut dw: Vec<f64> = dweight.iter().map(|&v| v as f64).collect();
    let mut db: Vec<f64> = dbias.iter().map(|&v| v as f64).collect();
    for b in 0..s.batch {
        for i in 0..s.height {
            for j in 0..s.width {
                for c in 0..ch {
                    let g = dout[dwconv_at(&s, b, i, j, c)] as f64;
                    db[c] += g;
                    for u in 0..k {
                        for v in 0..k {
                            if let Some((r, q)) = dwconv_tap(&s, i, j, u, v) {
                                let at = dwconv_at(&s, b, r, q, c);
                                let t = (u * k + v) * ch + c;
                                dw[t] += g * inp[at] as f64;
                                dx[at] += g * weight[t] as f64;
                            }
                        }
                    }
                }
            }
        }
    }
    for (d, v) in dinp.iter_mut().zip(dx) {
        *d = v as f32;
    }
    for (d, v) in dweight.iter_mut().zip(dw) {
        *d = v as f32;
    }
    for (d, v) in dbias.iter_mut().zip(db) {
        *d = v as f32;
    }
}

/// The f64 maps of one transform-attention sample (see [`crate::transform_attention`]), each
/// `[H][N][N]` flattened: `s` the logits, `mixed` the pre-mixed logits, `probs` the
/// (policy) softmax, `exps` `exp(S' - m)` (the policy softmax's numerators before the gate),
/// `sums` `sum_j E + eps` per `[H][N]` row (policy) and `out_maps` the post-mixed `P'`.
struct TransformMaps {
    s: Vec<f64>,
    probs: Vec<f64>,
    exps: Vec<f64>,
    sums: Vec<f64>,
    out_maps: Vec<f64>,
}

/// The keep gate `G[i, j]`: 1 without a policy, `D_j` off the diagonal and 1 on it with one.
fn transform_gate(keep: Option<&[f32]>, i: usize, j: usize) -> f64 {
    match keep {
        Some(d) if i != j => d[j] as f64,
        _ => 1.0,
    }
}

/// Sample `b`'s maps, computed straight from the definitions in f64.
fn transform_maps(
    q: &[f32],
    k: &[f32],
    mix: &crate::transform_attention::HeadMix<'_>,
    keep: Option<&[f32]>,
    s: &crate::transform_attention::TransformAttentionShape,
    scale: f32,
    b: usize,
) -> TransformMaps {
    let (n, nh, hd, w) = (s.tokens, s.heads, s.head_dim, s.width());
    let at = |h: usize, i: usize, j: usize| (h * n + i) * n + j;
    let mut logits = vec![0.0f64; nh * n * n];
    for g in 0..nh {
        for i in 0..n {
            for j in 0..n {
                let mut dot = 0.0f64;
                for c in 0..hd {
                    dot += q[(b * n + i) * w + g * hd + c] as f64
                        * k[(b * n + j) * w + g * hd + c] as f64;
                }
                logits[at(g, i, j)] = scale as f64 * dot;
            }
        }
    }
    let mut probs = vec![0.0f64; nh * n * n];
    let mut exps = vec![0.0f64; nh * n * n];
    let mut sums = vec![0.0f64; nh * n];
    let mut out_maps = vec![0.0f64; nh * n * n];
    let keep_b = keep.map(|d| &d[b * n..(b + 1) * n]);
    let eps = crate::transform_attention::POLICY_EPS as f64;
    for h in 0..nh {
        for i in 0..n {
            let mixed: Vec<f64> = (0..n)
                .map(|j| {
                    let mut x = mix.pre_bias[h] as f64;
                    for g in 0..nh {
                        x += mix.pre[h * nh + g] as f64 * logits[at(g, i, j)];
                    }
                    x
                })
                .collect();
            let max = mixed.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            for j in 0..n {
                exps[at(h, i, j)] = (mixed[j] - max).exp();
            }
            let gated: Vec<f64> = (0..n)
                .map(|j| exps[at(h, i, j)] * transform_gate(keep_b, i, j))
                .collect();
            let total: f64 = gated.iter().sum();
            for j in 0..n {
                probs[at(h, i, j)] = match keep_b {
                    None => gated[j] / total,
                    Some(_) => (gated[j] + eps / n as f64) / (total + eps),
                };
            }
            sums[h * n + i] = total + eps;
        }
    }
    for h in 0..nh {
        for i in 0..n {
            for j in 0..n {
                let mut x = mix.post_bias[h] as f64 * transform_gate(keep_b, i, j);
                for g in 0..nh {
                    x += mix.post[h * nh + g] as f64 * probs[at(g, i, j)];
                }
                out_maps[at(h, i, j)] = x;
            }
        }
    }
    TransformMaps {
        s: logits,
        probs,
        exps,
        sums,
        out_maps,
    }
}

/// Transform attention forward (see [`crate::transform_attention`]) from the definitions, every
/// map of a sample materialized in f64. out, q, k, v: `[B, N, H*d]`; keep: `[B, N]`.
#[allow(clippy::too_many_arguments)]
pub fn transform_attention_forward_ref(
    out: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mix: &crate::transform_attention::HeadMix<'_>,
    keep: Option<&[f32]>,
    s: &crate::transform_attention::TransformAttentionShape,
    scale: f32,
) {
    let (n, nh, hd, w) = (s.tokens, s.heads, s.head_dim, s.width());
    for b in 0..s.batch {
        let maps = transform_maps(q, k, mix, keep, s, scale, b);
        for h in 0..nh {
            for i in 0..n {
                for c in 0..hd {
                    let mut acc = 0.0f64;
                    for j in 0..n {
                        acc += maps.out_maps[(h * n + i) * n + j]
                            * v[(b * n + j) * w + h * hd + c] as f64;
                    }
                    out[(b * n + i) * w + h * hd + c] = acc as f32;
                }
            }
        }
    }
}

/// Transform attention backward from the chain rule written out in f64, accumulating (`+=`) into
/// every gradient given (see [`crate::transform_attention::backward`] for the formulas). The row
/// max of the policy softmax is a constant.
#[allow(clippy::too_many_arguments)]
pub fn transform_attention_backward_ref(
    grads: crate::transform_attention::TransformAttentionGrads<'_>,
    dout: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mix: &crate::transform_attention::HeadMix<'_>,
    keep: Option<&[f32]>,
    s: &crate::transform_attention::TransformAttentionShape,
    scale: f32,
) {
    let (n, nh, hd, w) = (s.tokens, s.heads, s.head_dim, s.width());
    let at = |h: usize, i: usize, j: usize| (h * n + i) * n + j;
    let wide = |g: &Option<&mut [f32]>, len: usize| -> Vec<f64> {
        match g {
            Some(g) => g.iter().map(|&x| x as f64).collect(),
            None => vec![0.0; len],
        }
    };
    let act = s.activation_len().unwrap_or(0);
    let (mut dq, mut dk, mut dv) = (
        wide(&grads.dq, act),
        wide(&grads.dk, act),
        wide(&grads.dv, act),
    );
    let (mut dpre, mut dpre_bias) = (wide(&grads.dpre, nh * nh), wide(&grads.dpre_bias, nh));
    let (mut dpost, mut dpost_bias) = (wide(&grads.dpost, nh * nh), wide(&grads.dpost_bias, nh));
    let mut dkeep = wide(&grads.dkeep, s.batch * n);
    for b in 0..s.batch {
        let maps = transform_maps(q, k, mix, keep, s, scale, b);
        let keep_b = keep.map(|d| &d[b * n..(b + 1) * n]);
        let row = |t: usize| (b * n + t) * w;
        // dP'_h[i,j] = dO_h[i,:] . V_h[j,:];  dV_h[j,:] += sum_i P'_h[i,j] dO_h[i,:]
        let mut dout_maps = vec![0.0f64; nh * n * n];
        for h in 0..nh {
            for i in 0..n {
                for j in 0..n {
                    for c in 0..hd {
                        let (o, x) = (row(i) + h * hd + c, row(j) + h * hd + c);
                        dout_maps[at(h, i, j)] += dout[o] as f64 * v[x] as f64;
                        dv[x] += maps.out_maps[at(h, i, j)] * dout[o] as f64;
                    }
                }
            }
        }
        // Post mix and bias; dG from the bias; dP_g = sum_h post[h,g] dP'_h
        let mut dgate = vec![0.0f64; n * n];
        let mut dprobs = vec![0.0f64; nh * n * n];
        for h in 0..nh {
            for i in 0..n {
                for j in 0..n {
                    let dp = dout_maps[at(h, i, j)];
                    dpost_bias[h] += dp * transform_gate(keep_b, i, j);
                    dgate[i * n + j] += mix.post_bias[h] as f64 * dp;
                    for g in 0..nh {
                        dpost[h * nh + g] += dp * maps.probs[at(g, i, j)];
                        dprobs[at(g, i, j)] += mix.post[h * nh + g] as f64 * dp;
                    }
                }
            }
        }
        // Softmax (or policy softmax) backward to dS'
        let mut dmixed = vec![0.0f64; nh * n * n];
        for h in 0..nh {
            for i in 0..n {
                let t: f64 = (0..n)
                    .map(|j| dprobs[at(h, i, j)] * maps.probs[at(h, i, j)])
                    .sum();
                for j in 0..n {
                    let dp = dprobs[at(h, i, j)];
                    match keep_b {
                        None => dmixed[at(h, i, j)] = maps.probs[at(h, i, j)] * (dp - t),
                        Some(_) => {
                            // P_j = (E_j + eps/N) / (sum E + eps), E_j = exps_j G_j
                            let de = (dp - t) / maps.sums[h * n + i];
                            let e = maps.exps[at(h, i, j)];
                            dmixed[at(h, i, j)] = de * e * transform_gate(keep_b, i, j);
                            dgate[i * n + j] += de * e;
                        }
                    }
                }
            }
        }
        // Pre mix and bias; dS_g = sum_h pre[h,g] dS'_h
        let mut dlogits = vec![0.0f64; nh * n * n];
        for h in 0..nh {
            for i in 0..n {
                for j in 0..n {
                    let ds = dmixed[at(h, i, j)];
                    dpre_bias[h] += ds;
                    for g in 0..nh {
                        dpre[h * nh + g] += ds * maps.s[at(g, i, j)];
                        dlogits[at(g, i, j)] += mix.pre[h * nh + g] as f64 * ds;
                    }
                }
            }
        }
        // dQ_g[i,:] += scale sum_j dS_g[i,j] K_g[j,:];  dK_g[j,:] += scale sum_i dS_g[i,j] Q_g[i,:]
        for g in 0..nh {
            for i in 0..n {
                for j in 0..n {
                    let ds = scale as f64 * dlogits[at(g, i, j)];
                    for c in 0..hd {
                        let (x, y) = (row(i) + g * hd + c, row(j) + g * hd + c);
                        dq[x] += ds * k[y] as f64;
                        dk[y] += ds * q[x] as f64;
                    }
                }
            }
        }
        // dD_j: G[i,j] = D_j only off the diagonal
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    dkeep[b * n + j] += dgate[i * n + j];
                }
            }
        }
    }
    let store = |g: Option<&mut [f32]>, x: Vec<f64>| {
        if let Some(g) = g {
            for (d, v) in g.iter_mut().zip(x) {
                *d = v as f32;
            }
        }
    };
    store(grads.dq, dq);
    store(grads.dk, dk);
    store(grads.dv, dv);
    store(grads.dpre, dpre);
    store(grads.dpre_bias, dpre_bias);
    store(grads.dpost, dpost);
    store(grads.dpost_bias, dpost_bias);
    store(grads.dkeep, dkeep);
}
