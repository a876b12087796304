//! Fused multi-head attention: `softmax(scale * Q K^T + key_bias) V` over heads stored side by
//! side in `[B, T, H]`, one op on the tape instead of the dozen (head split/merge copies, scaling,
//! two batched matmuls, softmax) the composite form records.
//!
//! Shapes: `q`, `k`, `v`, output `[B, T, H]`; `key_bias` `[B, 1, 1, T]` or `[B, T]` (a constant);
//! the saved probabilities `[B, heads, T, T]`.

use crate::autograd::{Graph, Var};
use crate::error::{Error, Result};
use crate::tensor::{self, AttentionGrads, attention_backward};

impl Graph {
    /// Multi-head scaled dot-product attention with an optional additive key bias (the key
    /// padding mask). The bias must not need a gradient ([`Error::InvalidArgument`] otherwise);
    /// shapes as in the module docs ([`Error::Shape`]).
    pub fn attention(
        &self,
        q: Var,
        k: Var,
        v: Var,
        heads: usize,
        scale: f32,
        key_bias: Option<Var>,
    ) -> Result<Var> {
        let bias = match key_bias {
            Some(b) if self.requires_grad(b)? => {
                return Err(Error::invalid(
                    "attention",
                    "the key bias is a constant mask; it cannot take a gradient",
                ));
            }
            Some(b) => Some(self.value(b)?),
            None => None,
        };
        let (qv, kv, vv) = (self.value(q)?, self.value(k)?, self.value(v)?);
        let (out, probs) = tensor::attention(&qv, &kv, &vv, heads, scale, bias.as_ref())?;
        self.record("attention", out, &[q, k, v], move |d, dout, ins, _out| {
            let [dq, dk, dv] = d else {
                unreachable!("attention has three inputs")
            };
            let grads = AttentionGrads {
                dq: dq.sum_mut(),
                dk: dk.sum_mut(),
                dv: dv.sum_mut(),
            };
            attention_backward(dout, ins[0], ins[1], ins[2], &probs, heads, scale, grads)
        })
    }
}
