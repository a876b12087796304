//! The arena of one int8 forward, sized once for the largest batch and sequence.
//!
//! Legend: B = max batch, T = max tokens, H = hidden width, A = widest attention, I = widest MLP,
//! d = widest head, P = values per image patch (Vit), N = patches per image, C = classes.

use crate::error::{Error, Result};

/// The widths a model needs buffers for; a workspace only serves models with the same needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Widths {
    pub(crate) hidden: usize,
    pub(crate) attn: usize,
    /// Widest head d.
    pub(crate) head_dim: usize,
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
    /// `[slots, T, d]`: one head's context per slot, before it joins `ctx`.
    pub(crate) head_ctx: Vec<f32>,
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

/// The most bytes one workspace may take: 64 GiB. A request beyond it (a bogus batch size, a
/// sequence length read from a corrupt file) is an error before the buffer that would cross it
/// is allocated, rather than an out-of-memory abort. A request below it that the allocator
/// cannot serve is an error too.
pub const MAX_WORKSPACE_BYTES: usize = 64 << 30;

impl Workspace {
    /// Every buffer for `widths` at `max_batch` x `max_seq`; [`Error::InvalidArgument`] when a
    /// size overflows, the total exceeds [`MAX_WORKSPACE_BYTES`] or the allocation fails.
    pub(crate) fn new(widths: Widths, max_batch: usize, max_seq: usize) -> Result<Workspace> {
        let (b, t) = (max_batch, max_seq);
        let Widths {
            hidden: h,
            attn: a,
            head_dim: hd,
            inner: i,
            patch: p,
            patches: n,
            classes: c,
            drop_width: d,
            drop_stages: stages,
        } = widths;
        let mut budget = Budget { b, t, bytes: 0 };
        let rows = budget.count(&[b, t])?;
        let slots = attention_slots();
        // Token dropping scores the patch tokens of every sample at once.
        let dropped = if stages > 0 {
            budget.count(&[b, n])?
        } else {
            0
        };
        let (global, order) = if stages > 0 { (h / 2, n) } else { (0, 0) };
        let wide = h.max(a).max(i).max(p);
        Ok(Workspace {
            widths,
            max_batch,
            max_seq,
            x: budget.zeros(&[rows, h])?,
            tmp: budget.zeros(&[rows, h])?,
            qkv: budget.zeros(&[rows, 3, a])?,
            ctx: budget.zeros(&[rows, a])?,
            inner: budget.zeros(&[rows, i])?,
            // Sized for the thread count set now (`lithe_kernels::threads`); more threads later
            // run the heads on this many at a time.
            scores: budget.zeros(&[slots, t, t])?,
            probs: budget.zeros(&[slots, t, t])?,
            head_ctx: budget.zeros(&[slots, t, hd])?,
            q8: budget.zeros(&[rows, wide])?,
            row_scales: budget.zeros(&[rows.max(dropped)])?,
            mean: budget.zeros(&[rows])?,
            rstd: budget.zeros(&[rows])?,
            patches: budget.zeros(&[b, n, p])?,
            pooled_in: budget.zeros(&[b, h])?,
            pooled: budget.zeros(&[b, h])?,
            logits: budget.zeros(&[b, c])?,
            logits2: budget.zeros(&[b, c])?,
            embeddings: budget.zeros(&[b, h])?,
            drop_a: budget.zeros(&[dropped, d])?,
            drop_b: budget.zeros(&[dropped, d])?,
            drop_global: budget.zeros(&[global])?,
            keep_scores: budget.zeros(&[dropped])?,
            order: budget.zeros(&[order])?,
            kept: budget.zeros(&[stages, dropped])?,
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

const OP: &str = "Int8Model::workspace";

/// The bytes a workspace's buffers take so far, each buffer checked for overflow and against
/// [`MAX_WORKSPACE_BYTES`] before it is allocated.
struct Budget {
    /// The request, for the error message.
    b: usize,
    t: usize,
    bytes: usize,
}

impl Budget {
    fn too_big(&self) -> Error {
        Error::invalid(
            OP,
            format!(
                "a workspace for batch {} x {} tokens exceeds {} GiB",
                self.b,
                self.t,
                MAX_WORKSPACE_BYTES >> 30
            ),
        )
    }

    /// The product of `factors`, or the error if it overflows.
    fn count(&self, factors: &[usize]) -> Result<usize> {
        factors
            .iter()
            .try_fold(1usize, |acc, &f| acc.checked_mul(f))
            .ok_or_else(|| self.too_big())
    }

    /// A zeroed buffer of `factors`' product elements, added to the budget first; an error
    /// (instead of the abort of `vec![0; len]`) if it would cross the limit or the allocator
    /// cannot provide it.
    fn zeros<T: Clone + Default>(&mut self, factors: &[usize]) -> Result<Vec<T>> {
        let len = self.count(factors)?;
        self.bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|bytes| self.bytes.checked_add(bytes))
            .filter(|&total| total <= MAX_WORKSPACE_BYTES)
            .ok_or_else(|| self.too_big())?;
        let mut v = Vec::new();
        v.try_reserve_exact(len).map_err(|e| {
            Error::invalid(
                OP,
                format!("cannot allocate a workspace buffer of {len} elements: {e}"),
            )
        })?;
        v.resize(len, T::default());
        Ok(v)
    }
}

/// Attention maps a workspace holds: one per thread of lithe's pool when it is created.
fn attention_slots() -> usize {
    lithe_kernels::threads::num_threads().max(1)
}
