//! The int8 Bert and Vit forwards.

use std::path::Path;

use super::{QuantPlan, Workspace};
use crate::embed::Pooling;
use crate::error::{Error, Result};

/// What a forward takes.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    /// [B, C, S, S] pixels, row-major.
    Images {
        /// The pixels, `batch * C * S * S` of them.
        pixels: &'a [f32],
        /// Number of images B.
        batch: usize,
    },
    /// [B, T] token ids; `lengths[b]` real tokens of sample b (the rest is padding), None = all
    /// real.
    Tokens {
        /// Token ids, `batch * seq` of them.
        ids: &'a [u32],
        /// Number of sequences B.
        batch: usize,
        /// Padded sequence length T.
        seq: usize,
        /// Real tokens per sequence (each in 1..=seq), or None when none is padded.
        lengths: Option<&'a [usize]>,
    },
}

/// Which architecture an [`Int8Model`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// Post-LN text encoder with a pooler.
    Bert,
    /// Pre-LN image Transformer on patches (optionally DeiT's distillation token).
    Vit,
}

/// A Bert or Vit with every Linear in int8.
pub struct Int8Model {
    pub(crate) kind: ModelKind,
}

impl Int8Model {
    /// Lowers a Vit; each Linear's input is quantized as `plan` says.
    pub fn from_vit(vit: &crate::nn::Vit, plan: &QuantPlan) -> Result<Self> {
        let _ = (vit, plan);
        Err(Error::invalid("Int8Model::from_vit", "not yet implemented"))
    }

    /// Lowers a Bert; each Linear's input is quantized as `plan` says.
    pub fn from_bert(bert: &crate::nn::Bert, plan: &QuantPlan) -> Result<Self> {
        let _ = (bert, plan);
        Err(Error::invalid(
            "Int8Model::from_bert",
            "not yet implemented",
        ))
    }

    /// The architecture.
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// Number of logits per sample.
    pub fn num_classes(&self) -> usize {
        0
    }

    /// Width H of the hidden states.
    pub fn hidden_size(&self) -> usize {
        0
    }

    /// Longest sequence: Bert, the position table; Vit, tokens per image.
    pub fn max_seq(&self) -> usize {
        0
    }

    /// Vit: the input image shape `[C, S, S]`; Bert: None.
    pub fn image_shape(&self) -> Option<[usize; 3]> {
        None
    }

    /// Allocates every buffer a forward of up to `max_batch` samples of up to `max_seq` tokens
    /// needs.
    pub fn workspace(&self, max_batch: usize, max_seq: usize) -> Result<Workspace> {
        let _ = (max_batch, max_seq);
        Err(Error::invalid(
            "Int8Model::workspace",
            "not yet implemented",
        ))
    }

    /// Logits [B, classes] (Vit: class-token head (DeiT: mean of both heads); Bert:
    /// pooler+classifier).
    pub fn forward<'w>(&self, ws: &'w mut Workspace, input: Input<'_>) -> Result<&'w [f32]> {
        let _ = (ws, input);
        Err(Error::invalid("Int8Model::forward", "not yet implemented"))
    }

    /// Final hidden states [B, T, H] (Bert: after the last block; Vit: after the final
    /// LayerNorm).
    pub fn hidden<'w>(&self, ws: &'w mut Workspace, input: Input<'_>) -> Result<&'w [f32]> {
        let _ = (ws, input);
        Err(Error::invalid("Int8Model::hidden", "not yet implemented"))
    }

    /// Sentence embeddings [B, H], pooled (mean over real tokens, or CLS) and L2-normalized.
    pub fn embed<'w>(
        &self,
        ws: &'w mut Workspace,
        input: Input<'_>,
        pooling: Pooling,
    ) -> Result<&'w [f32]> {
        let _ = (ws, input, pooling);
        Err(Error::invalid("Int8Model::embed", "not yet implemented"))
    }

    /// Writes the model as safetensors.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let _ = path;
        Err(Error::invalid("Int8Model::save", "not yet implemented"))
    }

    /// Reads a model [`Int8Model::save`] wrote, validating every tensor.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let _ = path;
        Err(Error::invalid("Int8Model::load", "not yet implemented"))
    }

    /// Bytes of the stored model: int8 weights, scales and the f32 parts.
    pub fn weight_bytes(&self) -> usize {
        0
    }
}

/// Lowering of a trained f32 model to the int8 engine.
pub trait ToInt8 {
    /// The int8 model, each Linear's input quantized as `plan` says.
    fn to_int8(&self, plan: &QuantPlan) -> Result<Int8Model>;
}

impl ToInt8 for crate::nn::Vit {
    fn to_int8(&self, plan: &QuantPlan) -> Result<Int8Model> {
        Int8Model::from_vit(self, plan)
    }
}

impl ToInt8 for crate::nn::Bert {
    fn to_int8(&self, plan: &QuantPlan) -> Result<Int8Model> {
        Int8Model::from_bert(self, plan)
    }
}
