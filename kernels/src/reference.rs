//! Scalar references: the plainest correct version of every kernel, written for clarity, used as
//! the oracle by the property tests. Never used on a hot path.

use crate::gemm::{MatMut, MatRef};

mod dwconv;
mod head_mix;
mod transform_attention;
pub use dwconv::{dwconv_backward_ref, dwconv_forward_f64, dwconv_forward_ref};
pub use head_mix::{add_head_dots_ref, mix_heads_ref};
pub use transform_attention::{transform_attention_backward_ref, transform_attention_forward_ref};

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
