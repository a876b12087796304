//! DynamicViT's token predictor: a keep/drop score per token from its own features and the
//! policy-weighted mean of every kept token's features, and the hard Gumbel-softmax decision
//! trained through it.
//!
//! Legend: B = batch, N = patch tokens (class/distillation tokens excluded), C = hidden width.

use crate::autograd::{Graph, Param, Var};
use crate::error::{Error, Result};
use crate::nn::{INIT_STD, Init, LayerNorm, Linear, Module, join};
use crate::tensor::{Rng, Tensor};
use lithe_kernels::gelu::GeluKind;

/// `LN -> Linear(C, C) -> GELU`, then `[local half | policy-weighted global mean of the other
/// half] -> Linear(C, C/2) -> GELU -> Linear(C/2, C/4) -> GELU -> Linear(C/4, 2) ->
/// log-softmax`. Output column 0 is the log-probability of keeping the token, column 1 of
/// dropping it. Parameter names follow the DynamicViT reference (`in_conv.0` the LayerNorm,
/// `in_conv.1`, `out_conv.0`, `out_conv.2`, `out_conv.4` the Linears).
#[derive(Clone, Debug)]
pub struct Predictor {
    /// `in_conv.0`: LayerNorm over C.
    pub norm: LayerNorm,
    /// `in_conv.1`: `[C, C]`.
    pub in_proj: Linear,
    /// `out_conv.0`: `[C/2, C]`.
    pub hidden: Linear,
    /// `out_conv.2`: `[C/4, C/2]`.
    pub narrow: Linear,
    /// `out_conv.4`: `[2, C/4]`.
    pub score: Linear,
}

impl Predictor {
    /// A fresh predictor for width `c` (truncated `N(0, 0.02^2)` weights, zero biases).
    /// [`Error::InvalidArgument`] unless `c` is a positive multiple of 4.
    pub fn new(c: usize, rng: &mut Rng) -> Result<Self> {
        if c == 0 || !c.is_multiple_of(4) {
            return Err(Error::invalid(
                "Predictor::new",
                format!("width {c} must be a positive multiple of 4"),
            ));
        }
        let init = Init::TruncNormal(INIT_STD);
        Ok(Predictor {
            norm: LayerNorm::new(c, 1e-5),
            in_proj: Linear::new(c, c, true, init, rng),
            hidden: Linear::new(c, c / 2, true, init, rng),
            narrow: Linear::new(c / 2, c / 4, true, init, rng),
            score: Linear::new(c / 4, 2, true, init, rng),
        })
    }

    /// Width C the predictor reads.
    pub fn width(&self) -> usize {
        self.in_proj.in_features()
    }

    /// Keep/drop log-probabilities `[B, N, 2]` of tokens `x[B, N, C]` under the current policy
    /// `policy[B, N]` (1 = kept so far, 0 = dropped; it weights the global mean). A sample whose
    /// policy is all zero gets a zero global half. [`Error::Shape`] when the shapes do not fit.
    pub fn forward(&self, g: &Graph, x: Var, policy: Var) -> Result<Var> {
        const OP: &str = "Predictor::forward";
        let [b, n] = self.token_dims(OP, g, x)?;
        let ps = g.shape(policy)?;
        if ps != [b, n] {
            return Err(Error::shape(
                OP,
                format!("policy {ps:?}, expected [B, N] = [{b}, {n}]"),
            ));
        }
        let gelu = GeluKind::Erf;
        let h = self.in_conv(g, x)?; // [B, N, C]
        let (c, half) = (self.width(), self.width() / 2);
        let local = g.slice(h, 2, 0, half)?; // [B, N, C/2]
        let rest = g.slice(h, 2, half, c)?; // [B, N, C/2]
        let weights = g.reshape(policy, &[b, n, 1])?;
        let total = g.sum(g.mul(rest, weights)?, &[1], true)?; // [B, 1, C/2]
        // The policy's sum as a constant floor of 1e-6 keeps an all-dropped sample finite.
        let count = g.add_scalar(g.sum(weights, &[1], true)?, 1e-6)?; // [B, 1, 1]
        let global = g.div(total, count)?; // [B, 1, C/2]
        let global = g.index_select(global, 1, &vec![0; n])?; // [B, N, C/2]
        let joined = g.concat(&[local, global], 2)?; // [B, N, C]
        let y = g.gelu(self.hidden.forward(g, joined)?, gelu)?; // [B, N, C/2]
        let y = g.gelu(self.narrow.forward(g, y)?, gelu)?; // [B, N, C/4]
        g.log_softmax(self.score.forward(g, y)?) // [B, N, 2]
    }

    /// `[B, N]` of tokens `x`, or [`Error::Shape`] unless `x` is `[B, N, C]`.
    fn token_dims(&self, op: &'static str, g: &Graph, x: Var) -> Result<[usize; 2]> {
        let xs = g.shape(x)?;
        match xs[..] {
            [b, n, c] if c == self.width() => Ok([b, n]),
            _ => Err(Error::shape(
                op,
                format!("tokens {xs:?}, expected [B, N, {}]", self.width()),
            )),
        }
    }

    /// `in_conv`: `GELU(Linear(LN(x)))`, `[B, N, C] -> [B, N, C]`.
    fn in_conv(&self, g: &Graph, x: Var) -> Result<Var> {
        g.gelu(
            self.in_proj.forward(g, self.norm.forward(g, x)?)?,
            GeluKind::Erf,
        )
    }

    /// The inference-time score of tokens `x[B, N, C]` that are all kept so far:
    /// `logit_keep - logit_drop` `[B, N]`, which orders tokens as the keep log-probability of
    /// [`Predictor::forward`] with an all-ones policy does (`log p_keep = -softplus(-margin)`
    /// increases with it). Cheaper than that forward: the global half is a plain mean, and
    /// `out_conv.0` is split into its local and global column blocks, so the per-sample global
    /// term is computed once and broadcast instead of concatenated to every token.
    pub fn keep_margin(&self, g: &Graph, x: Var) -> Result<Var> {
        const OP: &str = "Predictor::keep_margin";
        let [b, n] = self.token_dims(OP, g, x)?;
        if n == 0 {
            return Err(Error::shape(OP, "no token to score"));
        }
        let gelu = GeluKind::Erf;
        let h = self.in_conv(g, x)?; // [B, N, C]
        let (c, half) = (self.width(), self.width() / 2);
        let local = g.slice(h, 2, 0, half)?; // [B, N, C/2]
        let global = g.mean(g.slice(h, 2, half, c)?, &[1], true)?; // [B, 1, C/2]
        let w = g.param(&self.hidden.weight); // [C/2, C]: columns [local | global]
        let w_local = g.slice(w, 1, 0, half)?;
        let w_global = g.slice(w, 1, half, c)?;
        let bias = self.hidden.bias.as_ref().map(|p| g.param(p));
        let y = g.add(
            g.linear(local, w_local, None)?,   // [B, N, C/2]
            g.linear(global, w_global, bias)?, // [B, 1, C/2]
        )?;
        let y = g.gelu(y, gelu)?;
        let y = g.gelu(self.narrow.forward(g, y)?, gelu)?; // [B, N, C/4]
        let logits = self.score.forward(g, y)?; // [B, N, 2]
        let keep = g.slice(logits, 2, 0, 1)?;
        let drop = g.slice(logits, 2, 1, 2)?;
        g.reshape(g.sub(keep, drop)?, &[b, n]) // [B, N]
    }
}

impl Module for Predictor {
    fn named_params_with_prefix(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        self.norm
            .named_params_with_prefix(&join(prefix, "in_conv.0"), out);
        self.in_proj
            .named_params_with_prefix(&join(prefix, "in_conv.1"), out);
        self.hidden
            .named_params_with_prefix(&join(prefix, "out_conv.0"), out);
        self.narrow
            .named_params_with_prefix(&join(prefix, "out_conv.2"), out);
        self.score
            .named_params_with_prefix(&join(prefix, "out_conv.4"), out);
    }

    fn visit_linears_with_prefix(&self, prefix: &str, f: &mut dyn FnMut(&str, &Linear)) {
        f(&join(prefix, "in_conv.1"), &self.in_proj);
        f(&join(prefix, "out_conv.0"), &self.hidden);
        f(&join(prefix, "out_conv.2"), &self.narrow);
        f(&join(prefix, "out_conv.4"), &self.score);
    }
}

/// The hard Gumbel-softmax keep decision `[B, N]` of `log_probs[B, N, 2]` with a
/// straight-through gradient, multiplied by the previous decision `prev[B, N]`:
///
/// `y = softmax((log_probs + G) / tau)` with `G = -ln(-ln U)`, `U ~ Uniform(0, 1)` drawn from
/// the graph's generator; the value is the one-hot `argmax` (keep = 1 when column 0 wins) and
/// the gradient is that of `y` (`hard - stop_gradient(y) + y`).
/// [`Error::InvalidArgument`] unless `tau` is finite and positive.
pub fn gumbel_keep(g: &Graph, log_probs: Var, prev: Var, tau: f32) -> Result<Var> {
    if !(tau.is_finite() && tau > 0.0) {
        return Err(Error::invalid(
            "gumbel_keep",
            format!("tau = {tau} must be finite and positive"),
        ));
    }
    let shape = g.shape(log_probs)?;
    let [b, n, 2] = shape[..] else {
        return Err(Error::shape(
            "gumbel_keep",
            format!("log-probabilities must be [B, N, 2], got {shape:?}"),
        ));
    };
    let noise = gumbel_noise(g, b * n * 2);
    let noisy = g.add(log_probs, g.constant(Tensor::from_vec(noise, &[b, n, 2])?))?;
    let soft = g.softmax(g.mul_scalar(noisy, 1.0 / tau)?)?; // [B, N, 2]
    let soft_keep = g.reshape(g.slice(soft, 2, 0, 1)?, &[b, n])?; // [B, N]
    let soft_value = g.value(soft_keep)?;
    let hard: Vec<f32> = g
        .value(noisy)?
        .data()
        .chunks_exact(2)
        .map(|p| f32::from(p[0] >= p[1]))
        .collect();
    // hard - stop_gradient(soft) + soft: the value is exactly `hard` (soft - soft = 0).
    let straight = g.sub(soft_keep, g.constant(soft_value))?;
    let keep = g.add(straight, g.constant(Tensor::from_vec(hard, &[b, n])?))?;
    g.mul(keep, prev)
}

/// `len` draws of the standard Gumbel distribution, `-ln(-ln U)`, from the graph's generator.
fn gumbel_noise(g: &Graph, len: usize) -> Vec<f32> {
    g.with_rng(|rng| {
        (0..len)
            .map(|_| {
                // U in [1e-12, 1 - 1e-12]: both logs stay finite.
                let u = rng.next_f64().clamp(1e-12, 1.0 - 1e-12);
                -(-u.ln()).ln() as f32
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Log-probabilities `[1, n, 2]` with keep probability `p` everywhere.
    fn constant_log_probs(n: usize, p: f32) -> Tensor {
        let row = [p.ln(), (1.0 - p).ln()];
        Tensor::from_vec(row.repeat(n), &[1, n, 2]).unwrap()
    }

    #[test]
    fn hard_decisions_follow_the_keep_probability() {
        // Gumbel-max: argmax(log p + G) is a sample of p.
        let n = 20_000;
        let g = Graph::with_seed(3);
        let lp = g.constant(constant_log_probs(n, 0.3));
        let keep = gumbel_keep(&g, lp, g.constant(Tensor::ones(&[1, n])), 1.0).unwrap();
        let keep = g.value(keep).unwrap();
        assert!(keep.data().iter().all(|&v| v == 0.0 || v == 1.0));
        let rate = keep.data().iter().sum::<f32>() / n as f32;
        // 0.3 +- 4.4 standard deviations (0.0032 each).
        assert!((rate - 0.3).abs() < 0.014, "keep rate {rate}");
        // A previous decision of 0 stays 0.
        let prev = g.constant(Tensor::zeros(&[1, n]));
        let keep = gumbel_keep(&g, lp, prev, 1.0).unwrap();
        assert!(g.value(keep).unwrap().data().iter().all(|&v| v == 0.0));
        assert!(gumbel_keep(&g, lp, prev, 0.0).is_err());
    }

    #[test]
    fn gradient_is_the_soft_sample_s() {
        // d keep_j / d log_probs[j, 0] = s_j (1 - s_j) / tau and the opposite for column 1, with
        // s_j = softmax((log_probs_j + G_j) / tau)[0]: the noise is redrawn from the same seed.
        let (n, tau, seed) = (7, 0.5, 9);
        let mut rng = Rng::new(1);
        let lp: Vec<f32> = (0..n * 2).map(|_| rng.normal() as f32).collect();
        let w: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        let g = Graph::with_seed(seed);
        let x = g.variable(Tensor::from_vec(lp.clone(), &[1, n, 2]).unwrap());
        let keep = gumbel_keep(&g, x, g.constant(Tensor::ones(&[1, n])), tau).unwrap();
        let weighted = g
            .mul(
                keep,
                g.constant(Tensor::from_vec(w.clone(), &[1, n]).unwrap()),
            )
            .unwrap();
        g.backward(g.sum_all(weighted).unwrap()).unwrap();
        let grad = g.grad(x).unwrap().unwrap();
        let noise = gumbel_noise(&Graph::with_seed(seed), n * 2);
        for j in 0..n {
            let a = (lp[2 * j] + noise[2 * j]) as f64 / tau as f64;
            let b = (lp[2 * j + 1] + noise[2 * j + 1]) as f64 / tau as f64;
            let s = 1.0 / (1.0 + (b - a).exp());
            let want = w[j] as f64 * s * (1.0 - s) / tau as f64;
            let got = grad.data()[2 * j] as f64;
            assert!(
                (got - want).abs() < 1e-5 * (1.0 + want.abs()),
                "{j}: {got} vs {want}"
            );
            assert!((grad.data()[2 * j + 1] as f64 + want).abs() < 1e-5 * (1.0 + want.abs()));
        }
    }
}
