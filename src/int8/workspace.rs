//! The arena of one int8 forward, sized once for the largest batch and sequence.
//!
//! Legend: B = max batch, T = max tokens, H = hidden width, A = widest attention, I = widest MLP,
//! P = values per image patch (Vit), N = patches per image, C = classes.

use crate::error::{Error, Result};

/// The widths a model needs buffers for; a workspace only serves models with the same needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Widths {
    pub(crate) hidden: usize,
    pub(crate) attn: usize,
    pub(crate) inner: usize,
    /// P (0 for Bert).
    pub(crate) patch: usize,
    /// N (0 for Bert).
    pub(crate) patches: usize,
    pub(crate) classes: usize,
    /// Widest activation of a token predictor (0 without token dropping).
    pub(crate) drop_width: usize,
    /// Token-dropping stages.
    pub(crate) drop_stages: usize,
}

/// Every buffer a forward needs, allocated by [`super::Int8Model::workspace`]; a forward with a
/// bigger batch or sequence, or on a model of other widths, is an error.
pub struct Workspace {
    pub(crate) widths: Widths,
    pub(crate) max_batch: usize,
    pub(crate) max_seq: usize,
    /// `[B*T, H]`: the residual stream.
    pub(crate) x: Vec<f32>,
    /// `[B*T, H]`: LayerNorm inputs / outputs and sub-layer outputs.
    pub(crate) tmp: Vec<f32>,
    /// `[B*T, 3A]`.
    pub(crate) qkv: Vec<f32>,
    /// `[B*T, A]`.
    pub(crate) ctx: Vec<f32>,
    /// `[B*T, I]`.
    pub(crate) inner: Vec<f32>,
    /// `[slots, T, T]`: one attention map per thread that may run heads at once.
    pub(crate) scores: Vec<f32>,
    /// `[slots, T, T]`.
    pub(crate) probs: Vec<f32>,
    /// `[B*T, max(H, A, I, P)]`.
    pub(crate) q8: Vec<i8>,
    /// `[B*T]` each.
    pub(crate) row_scales: Vec<f32>,
    pub(crate) mean: Vec<f32>,
    pub(crate) rstd: Vec<f32>,
    /// `[B*N, P]` (Vit).
    pub(crate) patches: Vec<f32>,
    /// `[B, H]` each: gathered class tokens and what the heads compute from them.
    pub(crate) pooled_in: Vec<f32>,
    pub(crate) pooled: Vec<f32>,
    /// `[B, C]` each (the second for DeiT's distillation head).
    pub(crate) logits: Vec<f32>,
    pub(crate) logits2: Vec<f32>,
    /// `[B, H]`: sentence embeddings.
    pub(crate) embeddings: Vec<f32>,
    /// `[B*N, D]` each, D = the widest predictor activation: token predictors' activations.
    pub(crate) drop_a: Vec<f32>,
    pub(crate) drop_b: Vec<f32>,
    /// `[H/2]`: one sample's global mean in a predictor.
    pub(crate) drop_global: Vec<f32>,
    /// `[B*N]`: keep scores of the current patch tokens.
    pub(crate) keep_scores: Vec<f32>,
    /// `[N]`: one sample's token order during selection.
    pub(crate) order: Vec<usize>,
    /// `[stages, B*N]`: per stage, the kept tokens' original positions `[B, k_s]`.
    pub(crate) kept: Vec<usize>,
    /// Batch of the last forward that dropped tokens (0 before any).
    pub(crate) dropped_batch: usize,
}

impl Workspace {
    /// The buffers for `max_batch` samples of `max_seq` tokens; [`Error::InvalidArgument`] if
    /// they would exceed [`MAX_WORKSPACE_BYTES`] (sizes from a caller or a file are checked
    /// before anything is allocated).
    pub(crate) fn new(widths: Widths, max_batch: usize, max_seq: usize) -> Result<Workspace> {
        match bytes_needed(widths, max_batch, max_seq) {
            Some(bytes) if bytes <= MAX_WORKSPACE_BYTES => {}
            _ => {
                return Err(Error::invalid(
                    "Int8Model::workspace",
                    format!(
                        "a workspace for batch {max_batch} x {max_seq} tokens would exceed \
                         {MAX_WORKSPACE_BYTES} bytes"
                    ),
                ));
            }
        }
        let (b, t) = (max_batch, max_seq);
        let Widths {
            hidden: h,
            attn: a,
            inner: i,
            patch: p,
            patches: n,
            classes: c,
            drop_width: d,
            drop_stages: stages,
        } = widths;
        let rows = b * t;
        let maps = attention_slots() * t * t;
        // Token dropping scores the patch tokens of every sample at once.
        let dropped = if stages > 0 { b * n } else { 0 };
        Ok(Workspace {
            widths,
            max_batch,
            max_seq,
            x: vec![0.0; rows * h],
            tmp: vec![0.0; rows * h],
            qkv: vec![0.0; rows * 3 * a],
            ctx: vec![0.0; rows * a],
            inner: vec![0.0; rows * i],
            // Sized for the thread count set now (`lithe_kernels::threads`); more threads later
            // run the heads on this many at a time.
            scores: vec![0.0; maps],
            probs: vec![0.0; maps],
            q8: vec![0; rows * h.max(a).max(i).max(p)],
            row_scales: vec![0.0; rows.max(b * n)],
            mean: vec![0.0; rows],
            rstd: vec![0.0; rows],
            patches: vec![0.0; b * n * p],
            pooled_in: vec![0.0; b * h],
            pooled: vec![0.0; b * h],
            logits: vec![0.0; b * c],
            logits2: vec![0.0; b * c],
            embeddings: vec![0.0; b * h],
            drop_a: vec![0.0; dropped * d],
            drop_b: vec![0.0; dropped * d],
            drop_global: vec![0.0; if stages > 0 { h / 2 } else { 0 }],
            keep_scores: vec![0.0; dropped],
            order: vec![0; if stages > 0 { n } else { 0 }],
            kept: vec![0; stages * dropped],
            dropped_batch: 0,
        })
    }

    /// Largest batch this workspace serves.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Longest sequence this workspace serves.
    pub fn max_seq(&self) -> usize {
        self.max_seq
    }
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workspace")
            .field("max_batch", &self.max_batch)
            .field("max_seq", &self.max_seq)
            .field("widths", &self.widths)
            .finish_non_exhaustive()
    }
}

/// The largest workspace [`super::Int8Model::workspace`] allocates: 64 GiB, far beyond any
/// batch the int8 runtime serves, yet a bound that turns an absurd batch or sequence into an
/// error instead of an allocation failure.
pub const MAX_WORKSPACE_BYTES: usize = 1 << 36;

/// The bytes of every buffer [`Workspace::new`] allocates, None on overflow.
fn bytes_needed(widths: Widths, b: usize, t: usize) -> Option<usize> {
    let Widths {
        hidden: h,
        attn: a,
        inner: i,
        patch: p,
        patches: n,
        classes: c,
        drop_width: d,
        drop_stages: stages,
    } = widths;
    let rows = b.checked_mul(t)?;
    let maps = attention_slots().checked_mul(t)?.checked_mul(t)?;
    let dropped = if stages > 0 { b.checked_mul(n)? } else { 0 };
    let widest = h.max(a).max(i).max(p);
    // f32 buffers (x, tmp, qkv, ctx, inner; scores, probs; row scales, mean, rstd; patches;
    // pooled; logits; embeddings; predictor activations; keep scores), then usize ones
    // (order, kept), then the i8 one.
    let floats = [
        rows.checked_mul(
            h.checked_mul(2)?
                .checked_add(a.checked_mul(4)?)?
                .checked_add(i)?,
        )?,
        maps.checked_mul(2)?,
        rows.max(b.checked_mul(n)?)
            .checked_add(rows.checked_mul(2)?)?,
        b.checked_mul(n)?.checked_mul(p)?,
        b.checked_mul(h)?.checked_mul(3)?,
        b.checked_mul(c)?.checked_mul(2)?,
        dropped.checked_mul(d)?.checked_mul(2)?,
        dropped.checked_add(h / 2)?,
    ]
    .iter()
    .try_fold(0usize, |s, &v| s.checked_add(v))?;
    let indices = n.checked_add(stages.checked_mul(dropped)?)?;
    floats
        .checked_mul(size_of::<f32>())?
        .checked_add(indices.checked_mul(size_of::<usize>())?)?
        .checked_add(rows.checked_mul(widest)?)
}

/// Attention maps a workspace holds: one per thread of lithe's pool when it is created.
fn attention_slots() -> usize {
    lithe_kernels::threads::num_threads().max(1)
}
