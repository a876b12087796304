//! The operands of the block GEMMs that are packed once per sample and read by every block:
//! [`pack_heads`] (one sample's heads, buffers recycled through a per-thread pool) and
//! [`PackedKeys`] (the forward's packed `K^T`, kept for the backward).

use super::{SERIAL_GEMM, TransformAttentionShape, gemm_cols};
use crate::{KernelError, PackedB};
use std::cell::RefCell;

thread_local! {
    /// Packed-head buffers this thread has finished with, for the next call to fill again: a
    /// fresh allocation per head per call went back to the OS on every free and page-faulted in
    /// again (a third of the backward at N = 197, H = 12).
    static HEAD_POOL: RefCell<Vec<Vec<PackedB>>> = const { RefCell::new(Vec::new()) };
}

/// Buffers the pool keeps per thread (the backward holds three sets at once).
const HEAD_POOL_SLOTS: usize = 4;

/// One sample's heads packed by [`pack_heads`]; the buffers go back to this thread's pool on
/// drop.
#[derive(Default)]
pub(crate) struct PackedHeads(Vec<PackedB>);

impl std::ops::Deref for PackedHeads {
    type Target = [PackedB];
    fn deref(&self) -> &[PackedB] {
        &self.0
    }
}

impl Drop for PackedHeads {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let heads = std::mem::take(&mut self.0);
        HEAD_POOL.with_borrow_mut(|pool| {
            if pool.len() < HEAD_POOL_SLOTS {
                pool.push(heads);
            }
        });
    }
}

/// Every head of the first `tokens` tokens of one sample's `[N, H*d]` activation packed once as
/// the B operand of the block GEMMs (`tokens x d`, or its transpose `d x tokens` when
/// `transpose`): each block's GEMMs read it in place instead of packing it again, and write
/// their block row-major. The storage comes from this thread's pool.
pub(crate) fn pack_heads(
    x: &[f32],
    shape: &TransformAttentionShape,
    transpose: bool,
    tokens: usize,
) -> Result<PackedHeads, KernelError> {
    let mut heads = PackedHeads(HEAD_POOL.with_borrow_mut(Vec::pop).unwrap_or_default());
    heads.0.truncate(shape.heads);
    for h in 0..shape.heads {
        let m = shape.head(x, h, 0, tokens)?;
        let m = if transpose { m.t() } else { m };
        match heads.0.get_mut(h) {
            Some(packed) => packed.repack(m, &SERIAL_GEMM)?,
            None => heads.0.push(PackedB::pack(m, &SERIAL_GEMM)?),
        }
    }
    Ok(heads)
}

/// Every head's `K^T` of each sample of a batch, packed as the score GEMMs read it (the first
/// `gemm_cols(N)` tokens: see `super::times_tokens_t`). The forward can keep it
/// ([`super::transform_attention_forward_with_stats`]) so that the backward's recomputation of
/// the scores reads it instead of packing `K` again. It holds about the size of `K` (exactly
/// so at N = 65, where 64 tokens are packed).
#[derive(Default)]
pub struct PackedKeys {
    samples: Vec<PackedHeads>,
}

impl PackedKeys {
    /// An empty set, for the forward to fill.
    pub fn new() -> PackedKeys {
        PackedKeys::default()
    }

    /// Samples held.
    pub fn samples(&self) -> usize {
        self.samples.len()
    }

    /// [`KernelError::LengthMismatch`] unless these are the keys of a batch of `shape`.
    pub(crate) fn check(
        &self,
        what: &str,
        shape: &TransformAttentionShape,
    ) -> Result<(), KernelError> {
        let fits = |heads: &PackedHeads| {
            heads.len() == shape.heads
                && heads
                    .iter()
                    .all(|p| p.rows() == shape.head_dim && p.cols() == gemm_cols(shape.tokens))
        };
        if self.samples.len() != shape.batch || !self.samples.iter().all(fits) {
            return Err(KernelError::LengthMismatch(format!(
                "{what}: the packed keys hold {} samples, not the B = {} samples of H = {} heads of d x N = {} x {} a forward of shape {shape:?} saves",
                self.samples.len(),
                shape.batch,
                shape.heads,
                shape.head_dim,
                shape.tokens
            )));
        }
        Ok(())
    }

    /// Drops every sample's keys (their buffers go back to the pool).
    pub(crate) fn clear(&mut self) {
        self.samples.clear();
    }

    /// Keeps the packed `K^T` heads of the next sample.
    pub(crate) fn push(&mut self, heads: PackedHeads) {
        self.samples.push(heads);
    }

    /// The packed `K^T` heads of sample `b`.
    pub(crate) fn sample(&self, b: usize) -> &[PackedB] {
        &self.samples[b]
    }
}

impl std::fmt::Debug for PackedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedKeys")
            .field("samples", &self.samples.len())
            .finish()
    }
}
