//! MiniViT's depthwise-transform attention: multi-head attention whose logits are mixed across
//! heads before the softmax and whose probabilities are mixed again after it, with an optional
//! DynamicViT keep policy.
//!
//! Shapes: `q`, `k`, `v` and the output are `[B, N, H*d]`, head `h` in the column block
//! `h*d .. (h+1)*d`; the mix is `pre [H, H]`, `pre_bias [H]`, `post [H, H]`, `post_bias [H]`;
//! the keep policy is `[B, N]` with values in `[0, 1]` (0 = key dropped). For sample `b`,
//! query `i`, key `j`:
//!
//! ```text
//! S_g[i,j]  = scale * Q_g[i,:] . K_g[j,:]
//! S'_h      = sum_g pre[h,g] S_g + pre_bias[h]
//! P_h       = softmax_j(S'_h)                                          (no policy)
//! G[i,j]    = D_j + (1 - D_j) [i == j]                                 (policy; G = 1 without)
//! P_h[i,j]  = (exp(S'_h[i,j] - m_i) G[i,j] + eps/N) / (sum_j exp(S'_h[i,j] - m_i) G[i,j] + eps)
//! P'_h      = sum_g post[h,g] P_g + post_bias[h] G
//! O_h       = P'_h V_h
//! ```
//!
//! with `m_i = max_j S'_h[i,j]` and `eps = 1e-6`. The row max only keeps `exp` in range: it is
//! treated as a constant (no gradient flows through it); the maths without `eps` does not depend
//! on it. Identity mixes with zero biases give plain multi-head attention.

use crate::autograd::{Graph, Var};
use crate::error::{Error, Result};
use crate::tensor::{Tensor, TransformGrads, TransformMix, transform_attention_backward};

/// The `eps` of the policy softmax (DynamicViT's value).
pub use lithe_kernels::transform_attention::POLICY_EPS;

/// Per-layer head-mixing transforms on the tape: `pre [H, H]`, `pre_bias [H]`, `post [H, H]`,
/// `post_bias [H]`.
#[derive(Clone, Copy, Debug)]
pub struct HeadMix {
    /// Pre-softmax mix `A [H, H]`: `S'_h = sum_g A[h,g] S_g + a[h]`.
    pub pre: Var,
    /// Pre-softmax bias `a [H]`.
    pub pre_bias: Var,
    /// Post-softmax mix `B [H, H]`: `P'_h = sum_g B[h,g] P_g + b[h] G`.
    pub post: Var,
    /// Post-softmax bias `b [H]`.
    pub post_bias: Var,
}

/// Sizes of one transform-attention call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TransformDims {
    pub batch: usize,
    pub tokens: usize,
    pub heads: usize,
    pub head_dim: usize,
}

impl Graph {
    /// Checks the shapes of a transform-attention call ([`Error::Shape`] when they do not fit).
    fn transform_attention_dims(
        &self,
        q: Var,
        k: Var,
        v: Var,
        heads: usize,
        mix: &HeadMix,
        keep: Option<Var>,
    ) -> Result<TransformDims> {
        const OP: &str = "transform_attention";
        let qs = self.shape(q)?;
        let [batch, tokens, width] = qs[..] else {
            return Err(Error::shape(
                OP,
                format!("q must be [B, N, H*d], got {qs:?}"),
            ));
        };
        let (ks, vs) = (self.shape(k)?, self.shape(v)?);
        if ks != qs || vs != qs {
            return Err(Error::shape(
                OP,
                format!("q {qs:?}, k {ks:?}, v {vs:?} must agree"),
            ));
        }
        if heads == 0 || !width.is_multiple_of(heads) {
            return Err(Error::shape(
                OP,
                format!("{heads} heads do not divide width {width}"),
            ));
        }
        for (name, var, want) in [
            ("pre", mix.pre, vec![heads, heads]),
            ("pre_bias", mix.pre_bias, vec![heads]),
            ("post", mix.post, vec![heads, heads]),
            ("post_bias", mix.post_bias, vec![heads]),
        ] {
            let got = self.shape(var)?;
            if got != want {
                return Err(Error::shape(
                    OP,
                    format!("{name} must be {want:?}, got {got:?}"),
                ));
            }
        }
        if let Some(d) = keep {
            let got = self.shape(d)?;
            if got != [batch, tokens] {
                return Err(Error::shape(
                    OP,
                    format!("keep policy must be [B, N] = [{batch}, {tokens}], got {got:?}"),
                ));
            }
        }
        Ok(TransformDims {
            batch,
            tokens,
            heads,
            head_dim: width / heads,
        })
    }

    /// Depthwise-transform attention (module docs) as one fused op on the tape. Gradients flow
    /// to `q`, `k`, `v`, every part of `mix` and the keep policy, each when it needs one.
    /// Errors: [`Error::Shape`] when the shapes do not fit.
    #[allow(clippy::too_many_arguments)]
    pub fn transform_attention(
        &self,
        q: Var,
        k: Var,
        v: Var,
        heads: usize,
        scale: f32,
        mix: HeadMix,
        keep: Option<Var>,
    ) -> Result<Var> {
        self.transform_attention_dims(q, k, v, heads, &mix, keep)?;
        let values =
            |vars: &[Var]| -> Result<Vec<Tensor>> { vars.iter().map(|&x| self.value(x)).collect() };
        let mut inputs = vec![q, k, v, mix.pre, mix.pre_bias, mix.post, mix.post_bias];
        inputs.extend(keep);
        let ins = values(&inputs)?;
        let tmix = TransformMix {
            pre: &ins[3],
            pre_bias: &ins[4],
            post: &ins[5],
            post_bias: &ins[6],
        };
        // The softmax statistics of every row ([B, H, N, 2]) and the packed keys are kept for
        // the backward.
        let (out, saved) = crate::tensor::transform_attention_with_stats(
            &ins[0],
            &ins[1],
            &ins[2],
            heads,
            scale,
            &tmix,
            ins.get(7),
        )?;
        self.record(
            "transform_attention",
            out,
            &inputs,
            move |d, dout, ins, _out| {
                let [dq, dk, dv, dpre, dpre_bias, dpost, dpost_bias, rest @ ..] = d else {
                    unreachable!("transform_attention has seven or eight inputs")
                };
                let grads = TransformGrads {
                    dq: dq.sum_mut(),
                    dk: dk.sum_mut(),
                    dv: dv.sum_mut(),
                    dpre: dpre.sum_mut(),
                    dpre_bias: dpre_bias.sum_mut(),
                    dpost: dpost.sum_mut(),
                    dpost_bias: dpost_bias.sum_mut(),
                    dkeep: rest.first_mut().and_then(|s| s.sum_mut()),
                };
                let tmix = TransformMix {
                    pre: ins[3],
                    pre_bias: ins[4],
                    post: ins[5],
                    post_bias: ins[6],
                };
                transform_attention_backward(
                    dout,
                    Some(&saved),
                    ins[0],
                    ins[1],
                    ins[2],
                    heads,
                    scale,
                    &tmix,
                    ins.get(7).copied(),
                    grads,
                )
            },
        )
    }

    /// The same maths as [`Graph::transform_attention`] written with existing ops (head split by
    /// reshape/permute, batched matmuls, head mixes as matmuls over `[B, H, N*N]`, softmax or the
    /// policy softmax from exp/mul/add/sum/div with the row max as a constant). It materializes
    /// every `[B, H, N, N]` map: the oracle for the fused op and the baseline of its bench.
    #[allow(clippy::too_many_arguments)]
    pub fn transform_attention_composite(
        &self,
        q: Var,
        k: Var,
        v: Var,
        heads: usize,
        scale: f32,
        mix: HeadMix,
        keep: Option<Var>,
    ) -> Result<Var> {
        let dims = self.transform_attention_dims(q, k, v, heads, &mix, keep)?;
        let TransformDims {
            batch: b,
            tokens: n,
            heads: h,
            head_dim: d,
        } = dims;
        // [B, N, H*d] -> [B, H, N, d]
        let split = |x: Var| -> Result<Var> {
            let x = self.reshape(x, &[b, n, h, d])?;
            self.permute(x, &[0, 2, 1, 3])
        };
        let (qh, kh, vh) = (split(q)?, split(k)?, split(v)?);
        // Mixes heads: [H, H] @ [B, H, N*N] -> [B, H, N, N]
        let mix_heads = |m: Var, x: Var| -> Result<Var> {
            let x = self.reshape(x, &[b, h, n * n])?;
            let y = self.matmul(m, x)?;
            self.reshape(y, &[b, h, n, n])
        };
        let logits = self.mul_scalar(self.matmul_t(qh, kh)?, scale)?; // [B, H, N, N]
        let pre_bias = self.reshape(mix.pre_bias, &[1, h, 1, 1])?;
        let mixed = self.add(mix_heads(mix.pre, logits)?, pre_bias)?; // S' [B, H, N, N]
        let post_bias = self.reshape(mix.post_bias, &[1, h, 1, 1])?;
        let (probs, bias) = match keep {
            None => (self.softmax(mixed)?, post_bias),
            Some(policy) => {
                // G[b, i, j] = D[b, j] (1 - [i == j]) + [i == j]: [B, 1, N, N]
                let mut eye = Tensor::zeros(&[1, 1, n, n]);
                let mut off_eye = Tensor::ones(&[1, 1, n, n]);
                for i in 0..n {
                    eye.data_mut()[i * n + i] = 1.0;
                    off_eye.data_mut()[i * n + i] = 0.0;
                }
                let policy = self.reshape(policy, &[b, 1, 1, n])?;
                let gate = self.add(
                    self.mul(policy, self.constant(off_eye))?,
                    self.constant(eye),
                )?;
                // The row max of S' as a constant: [B, H, N, 1]
                let sv = self.value(mixed)?;
                let row_max: Vec<f32> = sv
                    .data()
                    .chunks_exact(n.max(1))
                    .map(|row| row.iter().copied().fold(f32::NEG_INFINITY, f32::max))
                    .collect();
                let row_max = self.constant(Tensor::from_vec(row_max, &[b, h, n, 1])?);
                let e = self.mul(self.exp(self.sub(mixed, row_max)?)?, gate)?;
                let num = self.add_scalar(e, POLICY_EPS / n as f32)?;
                let den = self.add_scalar(self.sum(e, &[3], true)?, POLICY_EPS)?;
                (self.div(num, den)?, self.mul(post_bias, gate)?)
            }
        };
        let mixed_probs = self.add(mix_heads(mix.post, probs)?, bias)?; // P' [B, H, N, N]
        let out = self.matmul(mixed_probs, vh)?; // [B, H, N, d]
        let out = self.permute(out, &[0, 2, 1, 3])?;
        self.reshape(out, &[b, n, h * d])
    }
}
