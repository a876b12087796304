//! MiniViT's depthwise-transform attention on tensors: shape checks, buffers, and samples in
//! parallel on lithe's pool over the fused kernels of
//! [`lithe_kernels::transform_attention`] (which state the maths).
//!
//! Shapes: `q`, `k`, `v`, the output and their gradients `[B, N, H*d]`; `pre`, `post` `[H, H]`;
//! `pre_bias`, `post_bias` `[H]`; `keep` `[B, N]`.

use super::Tensor;
use crate::error::{Error, Result};
use lithe_kernels::threads;
use lithe_kernels::transform_attention::{
    self as kernel, HeadMix, PackedKeys, TransformAttentionGrads, TransformAttentionShape,
};
use std::cell::RefCell;

const OP: &str = "transform_attention";

/// The head-mixing transforms of one layer as tensors: `pre [H, H]`, `pre_bias [H]`,
/// `post [H, H]`, `post_bias [H]`.
#[derive(Clone, Copy, Debug)]
pub struct TransformMix<'a> {
    /// Pre-softmax mix `A [H, H]`.
    pub pre: &'a Tensor,
    /// Pre-softmax bias `a [H]`.
    pub pre_bias: &'a Tensor,
    /// Post-softmax mix `B [H, H]`.
    pub post: &'a Tensor,
    /// Post-softmax bias `b [H]`.
    pub post_bias: &'a Tensor,
}

impl<'a> TransformMix<'a> {
    fn slices(&self) -> HeadMix<'a> {
        HeadMix {
            pre: self.pre.data(),
            pre_bias: self.pre_bias.data(),
            post: self.post.data(),
            post_bias: self.post_bias.data(),
        }
    }
}

/// Checks every shape and returns the kernel shape ([`Error::Shape`] otherwise).
fn check(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    mix: &TransformMix<'_>,
    keep: Option<&Tensor>,
) -> Result<TransformAttentionShape> {
    let [batch, tokens, width] = q.shape()[..] else {
        return Err(Error::shape(
            OP,
            format!("q must be [B, N, H*d], got {:?}", q.shape()),
        ));
    };
    if k.shape() != q.shape() || v.shape() != q.shape() {
        return Err(Error::shape(
            OP,
            format!(
                "q {:?}, k {:?}, v {:?} must agree",
                q.shape(),
                k.shape(),
                v.shape()
            ),
        ));
    }
    if heads == 0 || width == 0 || !width.is_multiple_of(heads) {
        return Err(Error::shape(
            OP,
            format!("{heads} heads do not divide width {width}"),
        ));
    }
    for (name, t, want) in [
        ("pre", mix.pre, &[heads, heads][..]),
        ("pre_bias", mix.pre_bias, &[heads][..]),
        ("post", mix.post, &[heads, heads][..]),
        ("post_bias", mix.post_bias, &[heads][..]),
    ] {
        if t.shape() != want {
            return Err(Error::shape(
                OP,
                format!("{name} must be {want:?}, got {:?}", t.shape()),
            ));
        }
    }
    if let Some(d) = keep
        && d.shape() != [batch, tokens]
    {
        return Err(Error::shape(
            OP,
            format!(
                "keep policy must be [B, N] = [{batch}, {tokens}], got {:?}",
                d.shape()
            ),
        ));
    }
    Ok(TransformAttentionShape {
        batch,
        tokens,
        heads,
        head_dim: width / heads,
    })
}

thread_local! {
    /// Kernel scratch reused across calls: a fresh buffer of a MiB or more per call went back
    /// to the OS on every free and page-faulted in again.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `len` floats of this thread's scratch (any contents).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with_borrow_mut(|scratch| {
        if scratch.len() < len {
            scratch.resize(len, 0.0);
        }
        f(&mut scratch[..len])
    })
}

/// The same shape for one sample.
fn one_sample(s: TransformAttentionShape) -> TransformAttentionShape {
    TransformAttentionShape { batch: 1, ..s }
}

/// Depthwise-transform attention: `[B, N, H*d]` output of the fused forward, samples in
/// parallel. [`Error::Shape`] when the shapes do not fit.
pub fn transform_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    scale: f32,
    mix: &TransformMix<'_>,
    keep: Option<&Tensor>,
) -> Result<Tensor> {
    Ok(transform_attention_with_stats(q, k, v, heads, scale, mix, keep)?.0)
}

/// What the forward keeps for [`transform_attention_backward`]: the softmax statistics of every
/// row (`[B, H, N, 2]`: row max and `1 / sum exp`) and each sample's packed `K^T`, which the
/// backward reuses instead of recomputing and repacking them.
pub(crate) struct TransformSaved {
    stats: Vec<f32>,
    keys: Vec<PackedKeys>,
}

/// [`transform_attention`] and what its backward reuses.
pub(crate) fn transform_attention_with_stats(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    scale: f32,
    mix: &TransformMix<'_>,
    keep: Option<&Tensor>,
) -> Result<(Tensor, TransformSaved)> {
    let shape = check(q, k, v, heads, mix, keep)?;
    let mut out = vec![0f32; q.numel()];
    let (n, len) = (shape.tokens, shape.tokens * shape.width());
    let stats_len = 2 * shape.heads * n;
    let mut stats = vec![0f32; shape.batch * stats_len];
    // One (here empty) set of keys per sample even when no sample has any work.
    let mut keys: Vec<PackedKeys> = (0..shape.batch).map(|_| PackedKeys::new()).collect();
    if shape.batch > 0 && len > 0 {
        let sample = one_sample(shape);
        let slices = mix.slices();
        let (qd, kd, vd) = (q.data(), k.data(), v.data());
        let keep = keep.map(Tensor::data);
        let items: Vec<_> = out
            .chunks_mut(len)
            .zip(stats.chunks_mut(stats_len.max(1)))
            .enumerate()
            .collect();
        keys = threads::map(items, |(b, (out_b, stats_b))| -> Result<PackedKeys> {
            let at = b * len..(b + 1) * len;
            let mut keys_b = PackedKeys::new();
            with_scratch(sample.forward_scratch_len(), |scratch| {
                kernel::transform_attention_forward_with_stats(
                    out_b,
                    stats_b,
                    Some(&mut keys_b),
                    &qd[at.clone()],
                    &kd[at.clone()],
                    &vd[at],
                    &slices,
                    keep.map(|d| &d[b * n..(b + 1) * n]),
                    &sample,
                    scale,
                    scratch,
                )
            })?;
            Ok(keys_b)
        })
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    }
    Ok((
        Tensor::from_vec(out, q.shape())?,
        TransformSaved { stats, keys },
    ))
}

/// Where [`transform_attention_backward`] adds the gradients (`None`: not wanted).
#[derive(Default)]
pub(crate) struct TransformGrads<'a> {
    pub dq: Option<&'a mut Tensor>,
    pub dk: Option<&'a mut Tensor>,
    pub dv: Option<&'a mut Tensor>,
    pub dpre: Option<&'a mut Tensor>,
    pub dpre_bias: Option<&'a mut Tensor>,
    pub dpost: Option<&'a mut Tensor>,
    pub dpost_bias: Option<&'a mut Tensor>,
    pub dkeep: Option<&'a mut Tensor>,
}

/// One optional `[B, ...]` gradient split into per-sample chunks of `len` (all `None` when not
/// wanted).
fn per_sample(grad: Option<&mut Tensor>, batch: usize, len: usize) -> Vec<Option<&mut [f32]>> {
    match grad {
        Some(g) => g.data_mut().chunks_mut(len.max(1)).map(Some).collect(),
        None => (0..batch).map(|_| None).collect(),
    }
}

/// Adds the gradients of [`transform_attention`] for the output gradient `dout [B, N, H*d]`
/// (`+=`). `saved`: what [`transform_attention_with_stats`] returned for the same inputs
/// (`None`: recomputed). Samples run in parallel; each sample's share of the mix
/// gradients goes to its own buffer, summed afterwards. A policy gradient without a policy is
/// [`Error::InvalidArgument`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn transform_attention_backward(
    dout: &Tensor,
    saved: Option<&TransformSaved>,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    scale: f32,
    mix: &TransformMix<'_>,
    keep: Option<&Tensor>,
    grads: TransformGrads<'_>,
) -> Result<()> {
    let shape = check(q, k, v, heads, mix, keep)?;
    dout.expect_shape("transform_attention backward", q.shape())?;
    if let Some(saved) = saved
        && (saved.stats.len() != 2 * shape.batch * shape.heads * shape.tokens
            || saved.keys.len() != shape.batch)
    {
        return Err(Error::shape(
            OP,
            format!(
                "the saved forward holds {} floats of softmax statistics and the keys of {} samples, need 2*B*H*N = {} and B = {}",
                saved.stats.len(),
                saved.keys.len(),
                2 * shape.batch * shape.heads * shape.tokens,
                shape.batch
            ),
        ));
    }
    if grads.dkeep.is_some() && keep.is_none() {
        return Err(Error::invalid(OP, "a policy gradient needs a keep policy"));
    }
    let (batch, n, h) = (shape.batch, shape.tokens, shape.heads);
    let len = n * shape.width();
    if batch == 0 || len == 0 {
        return Ok(());
    }
    let TransformGrads {
        dq,
        dk,
        dv,
        dpre,
        dpre_bias,
        dpost,
        dpost_bias,
        dkeep,
    } = grads;
    // Which mix gradients are wanted: each sample adds into its own [pre | pre_bias | post |
    // post_bias] buffer.
    let wants = [
        dpre.is_some(),
        dpre_bias.is_some(),
        dpost.is_some(),
        dpost_bias.is_some(),
    ];
    let sample = one_sample(shape);
    let slices = mix.slices();
    let (go, qd, kd, vd) = (dout.data(), q.data(), k.data(), v.data());
    let keep = keep.map(Tensor::data);
    let work: Vec<_> = per_sample(dq, batch, len)
        .into_iter()
        .zip(per_sample(dk, batch, len))
        .zip(per_sample(dv, batch, len))
        .zip(per_sample(dkeep, batch, n))
        .enumerate()
        .collect();
    let partials: Vec<Vec<f32>> = threads::map(
        work,
        |(b, (((dq_b, dk_b), dv_b), dkeep_b))| -> Result<Vec<f32>> {
            let mut mix_grads = vec![0f32; 2 * h * h + 2 * h];
            let (dpre_b, rest) = mix_grads.split_at_mut(h * h);
            let (dpre_bias_b, rest) = rest.split_at_mut(h);
            let (dpost_b, dpost_bias_b) = rest.split_at_mut(h * h);
            let at = b * len..(b + 1) * len;
            let grads = TransformAttentionGrads {
                dq: dq_b,
                dk: dk_b,
                dv: dv_b,
                dpre: wants[0].then_some(dpre_b),
                dpre_bias: wants[1].then_some(dpre_bias_b),
                dpost: wants[2].then_some(dpost_b),
                dpost_bias: wants[3].then_some(dpost_bias_b),
                dkeep: dkeep_b,
            };
            let (dout_b, q_b, k_b, v_b) =
                (&go[at.clone()], &qd[at.clone()], &kd[at.clone()], &vd[at]);
            let keep_b = keep.map(|d| &d[b * n..(b + 1) * n]);
            with_scratch(sample.backward_scratch_len(), |scratch| match saved {
                Some(saved) => kernel::transform_attention_backward_with_stats(
                    grads,
                    dout_b,
                    &saved.stats[b * 2 * h * n..(b + 1) * 2 * h * n],
                    Some(&saved.keys[b]),
                    q_b,
                    k_b,
                    v_b,
                    &slices,
                    keep_b,
                    &sample,
                    scale,
                    scratch,
                ),
                None => kernel::transform_attention_backward(
                    grads, dout_b, q_b, k_b, v_b, &slices, keep_b, &sample, scale, scratch,
                ),
            })?;
            Ok(mix_grads)
        },
    )
    .into_iter()
    .collect::<Result<Vec<_>>>()?;
    let offsets = [0, h * h, h * h + h, 2 * h * h + h, 2 * h * h + 2 * h];
    for (i, grad) in [dpre, dpre_bias, dpost, dpost_bias].into_iter().enumerate() {
        let Some(grad) = grad else { continue };
        for p in &partials {
            for (d, &x) in grad
                .data_mut()
                .iter_mut()
                .zip(&p[offsets[i]..offsets[i + 1]])
            {
                *d += x;
            }
        }
    }
    Ok(())
}
