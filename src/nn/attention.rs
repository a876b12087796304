//! Multi-head self-attention with Hugging Face BERT/ViT's separate query/key/value projections,
//! a key padding mask, a per-head mask (FastFormers' head-importance hook) and attention dropout.
//!
//! Legend: B = batch, T = tokens, H = hidden width, nh = heads, d = H / nh (head width).
//! All heads run in one batched GEMM on `[B, nh, T, d]`; there is no per-head loop.

use super::linear::{Init, Linear};
use super::{Module, join};
use crate::autograd::{Graph, Param, Var};
use crate::error::{Error, Result};
use crate::tensor::{Rng, Tensor};

/// Added to the attention logits of padded keys. Large enough that `exp` underflows to exactly
/// 0 after the softmax subtracts the row maximum, small enough to stay finite when added.
pub const MASKED_LOGIT: f32 = -1e9;

/// Which tokens of a `[B, T]` batch are real (`true`) and which are padding (`false`), the
/// Hugging Face `attention_mask` as booleans.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttentionMask {
    batch: usize,
    seq: usize,
    valid: Vec<bool>, // [B, T]
}

impl AttentionMask {
    /// From per-token flags `valid[B * T]` (row-major `[B, T]`); [`Error::Shape`] if the length
    /// is not `batch * seq`.
    pub fn from_flags(valid: &[bool], batch: usize, seq: usize) -> Result<Self> {
        if valid.len() != batch * seq {
            return Err(Error::shape(
                "AttentionMask::from_flags",
                format!("{} flags for [{batch}, {seq}]", valid.len()),
            ));
        }
        Ok(AttentionMask {
            batch,
            seq,
            valid: valid.to_vec(),
        })
    }

    /// From sequence lengths: sample `b` has real tokens `0..lengths[b]` and padding after.
    /// [`Error::InvalidArgument`] if a length exceeds `seq`.
    pub fn from_lengths(lengths: &[usize], seq: usize) -> Result<Self> {
        if let Some(&l) = lengths.iter().find(|&&l| l > seq) {
            return Err(Error::invalid(
                "AttentionMask::from_lengths",
                format!("length {l} > sequence length {seq}"),
            ));
        }
        let valid = lengths
            .iter()
            .flat_map(|&l| (0..seq).map(move |t| t < l))
            .collect();
        Ok(AttentionMask {
            batch: lengths.len(),
            seq,
            valid,
        })
    }

    /// Batch size B.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Sequence length T.
    pub fn seq(&self) -> usize {
        self.seq
    }

    /// The flags, row-major `[B, T]`.
    pub fn flags(&self) -> &[bool] {
        &self.valid
    }

    /// [`Error::Shape`] unless the mask is `[batch, seq]`.
    pub fn expect(&self, op: &'static str, batch: usize, seq: usize) -> Result<()> {
        if (self.batch, self.seq) != (batch, seq) {
            return Err(Error::shape(
                op,
                format!(
                    "mask is [{}, {}], tokens are [{batch}, {seq}]",
                    self.batch, self.seq
                ),
            ));
        }
        Ok(())
    }

    /// The additive logit bias `[B, 1, 1, T]`: 0 for real keys, [`MASKED_LOGIT`] for padding;
    /// broadcasts over heads and queries.
    pub fn additive_bias(&self) -> Tensor {
        let data = self
            .valid
            .iter()
            .map(|&v| if v { 0.0 } else { MASKED_LOGIT })
            .collect();
        Tensor::from_vec(data, &[self.batch, 1, 1, self.seq]).expect("B * T flags")
    }

    /// 1 for real tokens, 0 for padding, as `[B, T, 1]` (for masked means over tokens).
    pub fn weights(&self) -> Tensor {
        let data = self.valid.iter().map(|&v| f32::from(u8::from(v))).collect();
        Tensor::from_vec(data, &[self.batch, self.seq, 1]).expect("B * T flags")
    }
}

/// The intermediate values of one attention call, all on the graph (for distillation losses on
/// attention maps or Q/K/V relations, and for inspection). Shapes in the field docs.
#[derive(Clone, Copy, Debug)]
pub struct AttentionParts {
    /// `[B, T, H]`: the output projection of the context (what the block adds).
    pub output: Var,
    /// `[B, nh, T, d]`, already scaled by `1 / sqrt(d)`.
    pub query: Var,
    /// `[B, nh, T, d]`.
    pub key: Var,
    /// `[B, nh, T, d]`.
    pub value: Var,
    /// `[B, nh, T, T]`: softmax probabilities (before attention dropout).
    pub probs: Var,
    /// `[B, nh, T, d]`: per-head context `probs @ value`, after the head mask.
    pub context: Var,
}

/// Multi-head self-attention: `softmax(Q K^T / sqrt(d) + mask) V`, heads concatenated, then the
/// output `dense` projection. Parameter names follow Hugging Face: `{self_name}.query`,
/// `{self_name}.key`, `{self_name}.value` and `output.dense`, where `self_name` is `"self"` in
/// BERT and `"attention"` in ViT.
#[derive(Clone, Debug)]
pub struct MultiHeadAttention {
    /// `[H, H]` query projection.
    pub query: Linear,
    /// `[H, H]` key projection.
    pub key: Linear,
    /// `[H, H]` value projection.
    pub value: Linear,
    /// `[H, H]` output projection (`attention.output.dense`).
    pub dense: Linear,
    /// Number of heads nh (H must be a multiple).
    pub heads: usize,
    /// Dropout on the attention probabilities during training.
    pub dropout: f32,
    /// Name of the Q/K/V group: `"self"` (BERT) or `"attention"` (ViT).
    pub self_name: &'static str,
}

impl MultiHeadAttention {
    /// A layer of width `hidden` with `heads` heads of width `hidden / heads`;
    /// [`Error::InvalidArgument`] unless `heads` divides `hidden`.
    pub fn new(
        hidden: usize,
        heads: usize,
        dropout: f32,
        self_name: &'static str,
        init: Init,
        rng: &mut Rng,
    ) -> Result<Self> {
        if heads == 0 || !hidden.is_multiple_of(heads) {
            return Err(Error::invalid(
                "MultiHeadAttention::new",
                format!("{heads} heads do not divide hidden width {hidden}"),
            ));
        }
        Self::with_head_dim(hidden, heads, hidden / heads, dropout, self_name, init, rng)
    }

    /// A layer of width `hidden` with `heads` heads of width `head_dim`: Q/K/V are
    /// `[heads * head_dim, hidden]` and the output projection `[hidden, heads * head_dim]`
    /// (a model whose heads were pruned). [`Error::InvalidArgument`] for zero heads or width.
    pub fn with_head_dim(
        hidden: usize,
        heads: usize,
        head_dim: usize,
        dropout: f32,
        self_name: &'static str,
        init: Init,
        rng: &mut Rng,
    ) -> Result<Self> {
        if heads == 0 || head_dim == 0 {
            return Err(Error::invalid(
                "MultiHeadAttention::with_head_dim",
                format!("{heads} heads of width {head_dim}"),
            ));
        }
        let a = heads * head_dim;
        Ok(MultiHeadAttention {
            query: Linear::new(hidden, a, true, init, rng),
            key: Linear::new(hidden, a, true, init, rng),
            value: Linear::new(hidden, a, true, init, rng),
            dense: Linear::new(a, hidden, true, init, rng),
            heads,
            dropout,
            self_name,
        })
    }

    /// Width of one head, d = (width of the Q/K/V projections) / nh.
    pub fn head_dim(&self) -> usize {
        self.query.out_features() / self.heads
    }

    /// `x[B, T, H] -> [B, T, H]`. `attn_bias` is an additive logit bias broadcasting to
    /// `[B, nh, T, T]` (from [`AttentionMask::additive_bias`]: `[B, 1, 1, T]`); `head_mask`
    /// (`[nh]`) multiplies each head's context, so its gradient is FastFormers' head importance.
    pub fn forward(
        &self,
        g: &Graph,
        x: Var,
        attn_bias: Option<Var>,
        head_mask: Option<Var>,
    ) -> Result<Var> {
        // The fused op covers the common case; head masks (whose gradient is the point of
        // them), attention dropout while training, and a bias that is not a per-key constant
        // take the composite path, which is also the one that exposes every intermediate.
        let dropout_active = self.dropout > 0.0 && g.is_training() && g.grad_enabled();
        let per_key_bias = match attn_bias {
            None => true,
            Some(b) => {
                let (bs, xs) = (g.shape(b)?, g.shape(x)?);
                bs.len() == 4
                    && bs[1..3] == [1, 1]
                    && xs.len() == 3
                    && bs[0] == xs[0]
                    && bs[3] == xs[1]
                    && !g.requires_grad(b)?
            }
        };
        if head_mask.is_some() || dropout_active || !per_key_bias {
            return Ok(self.forward_parts(g, x, attn_bias, head_mask)?.output);
        }
        let scale = 1.0 / (self.head_dim() as f32).sqrt();
        let q = self.query.forward(g, x)?; // [B, T, H]
        let k = self.key.forward(g, x)?;
        let v = self.value.forward(g, x)?;
        let context = g.attention(q, k, v, self.heads, scale, attn_bias)?; // [B, T, H]
        self.dense.forward(g, context)
    }

    /// `x[B, T, H] -> [B, T, H]` under a DynamicViT keep policy `keep[B, T]` (values in
    /// `[0, 1]`, 0 = dropped): every query attends to the kept keys and to itself, through the
    /// policy softmax of [`Graph::transform_attention`] with identity head mixes. Gradients reach
    /// the policy, which is how DynamicViT trains its token predictors. With an all-ones policy
    /// this is [`MultiHeadAttention::forward`] up to the softmax's `eps` (1e-6).
    pub fn forward_policy(&self, g: &Graph, x: Var, keep: Var) -> Result<Var> {
        let nh = self.heads;
        let mut eye = Tensor::zeros(&[nh, nh]);
        for h in 0..nh {
            eye.data_mut()[h * nh + h] = 1.0;
        }
        let mix = crate::autograd::HeadMix {
            pre: g.constant(eye.clone()),
            pre_bias: g.constant(Tensor::zeros(&[nh])),
            post: g.constant(eye),
            post_bias: g.constant(Tensor::zeros(&[nh])),
        };
        let scale = 1.0 / (self.head_dim() as f32).sqrt();
        let q = self.query.forward(g, x)?; // [B, T, H]
        let k = self.key.forward(g, x)?;
        let v = self.value.forward(g, x)?;
        let context = g.transform_attention(q, k, v, nh, scale, mix, Some(keep))?; // [B, T, H]
        self.dense.forward(g, context)
    }

    /// [`MultiHeadAttention::forward`], returning every intermediate value.
    pub fn forward_parts(
        &self,
        g: &Graph,
        x: Var,
        attn_bias: Option<Var>,
        head_mask: Option<Var>,
    ) -> Result<AttentionParts> {
        let shape = g.shape(x)?;
        let [b, t, _] = shape[..] else {
            return Err(Error::shape(
                "attention",
                format!("input must be [B, T, H], got {shape:?}"),
            ));
        };
        let (nh, d) = (self.heads, self.head_dim());
        // [B, T, nh * d] -> [B, nh, T, d]
        let split_heads = |y: Var| -> Result<Var> {
            let y = g.reshape(y, &[b, t, nh, d])?;
            g.permute(y, &[0, 2, 1, 3])
        };
        let q = self.query.forward(g, x)?;
        // Scale Q ([B, T, H]) rather than the logits ([B, nh, T, T]): fewer elements when T > d.
        let q = split_heads(g.mul_scalar(q, 1.0 / (d as f32).sqrt())?)?; // [B, nh, T, d]
        let k = split_heads(self.key.forward(g, x)?)?; // [B, nh, T, d]
        let v = split_heads(self.value.forward(g, x)?)?; // [B, nh, T, d]
        let mut logits = g.matmul_t(q, k)?; // [B, nh, T, T] = Q K^T
        if let Some(bias) = attn_bias {
            logits = g.add(logits, bias)?;
        }
        let probs = g.softmax(logits)?; // [B, nh, T, T]
        let dropped = g.dropout(probs, self.dropout)?;
        let mut context = g.matmul(dropped, v)?; // [B, nh, T, d]
        if let Some(m) = head_mask {
            let m = g.reshape(m, &[1, nh, 1, 1])?;
            context = g.mul(context, m)?;
        }
        let merged = g.permute(context, &[0, 2, 1, 3])?; // [B, T, nh, d]
        let merged = g.reshape(merged, &[b, t, nh * d])?; // [B, T, H]
        let output = self.dense.forward(g, merged)?; // [B, T, H]
        Ok(AttentionParts {
            output,
            query: q,
            key: k,
            value: v,
            probs,
            context,
        })
    }
}

impl Module for MultiHeadAttention {
    fn named_params_with_prefix(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        let qkv = join(prefix, self.self_name);
        self.query
            .named_params_with_prefix(&join(&qkv, "query"), out);
        self.key.named_params_with_prefix(&join(&qkv, "key"), out);
        self.value
            .named_params_with_prefix(&join(&qkv, "value"), out);
        self.dense
            .named_params_with_prefix(&join(prefix, "output.dense"), out);
    }

    fn visit_linears_with_prefix(&self, prefix: &str, f: &mut dyn FnMut(&str, &Linear)) {
        let qkv = join(prefix, self.self_name);
        f(&join(&qkv, "query"), &self.query);
        f(&join(&qkv, "key"), &self.key);
        f(&join(&qkv, "value"), &self.value);
        f(&join(prefix, "output.dense"), &self.dense);
    }
}
