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
/// sequence length read from a corrupt file) is an error before anything is allocated, rather
/// than an out-of-memory abort. A request below it that the allocator cannot serve is an error
/// too.
pub const MAX_WORKSPACE_BYTES: usize = 64 << 30;

/// `a * b`, or `None` on overflow.
fn mul(a: usize, b: usize) -> Option<usize> {
    a.checked_mul(b)
}

impl Workspace {
    /// Every buffer for `widths` at `max_batch` x `max_seq`; [`Error::InvalidArgument`] when a
    /// size overflows, the total exceeds [`MAX_WORKSPACE_BYTES`] or the allocation fails.
    pub(crate) fn new(widths: Widths, max_batch: usize, max_seq: usize) -> Result<Workspace> {
        const OP: &str = "Int8Model::workspace";
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
        let too_big = || {
            Error::invalid(
                OP,
                format!(
                    "a workspace for batch {b} x {t} tokens exceeds {} GiB",
                    MAX_WORKSPACE_BYTES >> 30
                ),
            )
        };
        let rows = mul(b, t).ok_or_else(too_big)?;
        let slots = attention_slots();
        let maps = mul(slots, mul(t, t).ok_or_else(too_big)?).ok_or_else(too_big)?;
        let head_maps = mul(slots, mul(t, hd).ok_or_else(too_big)?).ok_or_else(too_big)?;
        // Token dropping scores the patch tokens of every sample at once.
        let dropped = if stages > 0 {
            mul(b, n).ok_or_else(too_big)?
        } else {
            0
        };
        // Every f32/i8/usize buffer below, in bytes, summed with overflow checks first.
        let f32s = [
            mul(rows, h),
            mul(rows, h),
            mul(rows, mul(3, a).unwrap_or(usize::MAX)),
            mul(rows, a),
            mul(rows, i),
            Some(maps),
            Some(maps),
            Some(head_maps),
            Some(rows.max(dropped)),
            Some(rows),
            Some(rows),
            mul(b, n).and_then(|x| mul(x, p)),
            mul(b, h),
            mul(b, h),
            mul(b, c),
            mul(b, c),
            mul(b, h),
            mul(dropped, d),
            mul(dropped, d),
            Some(h),
            Some(dropped),
        ];
        let i8s = mul(rows, h.max(a).max(i).max(p));
        let usizes = mul(stages, dropped).and_then(|k| k.checked_add(n));
        let mut total_bytes = 0usize;
        for (count, width) in f32s
            .iter()
            .map(|&x| (x, 4))
            .chain([(i8s, 1), (usizes, std::mem::size_of::<usize>())])
        {
            total_bytes = count
                .and_then(|x| mul(x, width))
                .and_then(|x| total_bytes.checked_add(x))
                .filter(|&x| x <= MAX_WORKSPACE_BYTES)
                .ok_or_else(too_big)?;
        }
        let zeros = |len: usize| zeroed(OP, len);
        Ok(Workspace {
            widths,
            max_batch,
            max_seq,
            x: zeros(rows * h)?,
            tmp: zeros(rows * h)?,
            qkv: zeros(rows * 3 * a)?,
            ctx: zeros(rows * a)?,
            inner: zeros(rows * i)?,
            // Sized for the thread count set now (`lithe_kernels::threads`); more threads later
            // run the heads on this many at a time.
            scores: zeros(maps)?,
            probs: zeros(maps)?,
            head_ctx: zeros(head_maps)?,
            q8: zeroed(OP, rows * h.max(a).max(i).max(p))?,
            row_scales: zeros(rows.max(dropped))?,
            mean: zeros(rows)?,
            rstd: zeros(rows)?,
            patches: zeros(b * n * p)?,
            pooled_in: zeros(b * h)?,
            pooled: zeros(b * h)?,
            logits: zeros(b * c)?,
            logits2: zeros(b * c)?,
            embeddings: zeros(b * h)?,
            drop_a: zeros(dropped * d)?,
            drop_b: zeros(dropped * d)?,
            drop_global: zeros(if stages > 0 { h / 2 } else { 0 })?,
            keep_scores: zeros(dropped)?,
            order: zeroed(OP, if stages > 0 { n } else { 0 })?,
            kept: zeroed(OP, stages * dropped)?,
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

/// `len` zeros, or [`Error::InvalidArgument`] if the allocator cannot provide them (instead of
/// the abort of `vec![0; len]`).
fn zeroed<T: Clone + Default>(op: &'static str, len: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|e| {
        Error::invalid(
            op,
            format!("cannot allocate a workspace buffer of {len} elements: {e}"),
        )
    })?;
    v.resize(len, T::default());
    Ok(v)
}

/// Attention maps a workspace holds: one per thread of lithe's pool when it is created.
fn attention_slots() -> usize {
    lithe_kernels::threads::num_threads().max(1)
}
