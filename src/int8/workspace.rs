//! The arena of one int8 forward, sized once for the largest batch and sequence.
//!
//! Legend: B = max batch, T = max tokens, H = hidden width, A = widest attention, I = widest MLP,
//! P = values per image patch (Vit), N = patches per image, C = classes.

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
}

impl Workspace {
    pub(crate) fn new(widths: Widths, max_batch: usize, max_seq: usize) -> Workspace {
        let (b, t) = (max_batch, max_seq);
        let Widths {
            hidden: h,
            attn: a,
            inner: i,
            patch: p,
            patches: n,
            classes: c,
        } = widths;
        let rows = b * t;
        let maps = attention_slots() * t * t;
        Workspace {
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
        }
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

/// Attention maps a workspace holds: one per thread of lithe's pool when it is created.
fn attention_slots() -> usize {
    lithe_kernels::threads::num_threads().max(1)
}
