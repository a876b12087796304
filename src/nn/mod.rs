//! Layers and models: Linear, LayerNorm, Embedding, attention, MLP, Transformer blocks, and the
//! two models lithe trains and compresses, `Bert` and `Vit`.
//!
//! Every module exposes its parameters by name ([`Module::named_params`]) with the Hugging Face
//! tensor names for BERT (`embeddings.word_embeddings.weight`,
//! `encoder.layer.0.attention.self.query.weight`, ...), so the safetensors files lithe writes
//! load in PyTorch and the other way round, and so the compression passes can find every Linear,
//! every head and every block by walking the tree.

//! The tree, with the Hugging Face names in brackets:
//!
//! - [`Bert`]: [`BertEmbeddings`] (`embeddings`), [`Encoder`] (`encoder`) of post-LN [`Block`]s
//!   (`encoder.layer.{i}`), pooler [`Linear`] (`pooler.dense`), head (`classifier`);
//! - [`Vit`]: [`PatchEmbedding`] (`embeddings`), [`Encoder`] of pre-LN blocks, final
//!   [`LayerNorm`] (`layernorm`), head(s) (`classifier`, `distillation_classifier`);
//! - a [`Block`] holds a [`MultiHeadAttention`] (`attention`), an [`Mlp`]
//!   (`intermediate.dense`, `output.dense`) and two [`LayerNorm`]s.
//!
//! Every struct's fields are public, so compression passes can read, replace or shrink any
//! layer; [`Module::visit_linears`] enumerates every [`Linear`] with its name. Dropout is active
//! only on a training graph ([`crate::Graph::is_training`]) with gradients on.

mod attention;
mod bert;
mod block;
mod config;
pub(crate) mod copy;
mod linear;
mod vit;

pub use attention::{AttentionMask, AttentionParts, MASKED_LOGIT, MultiHeadAttention};
pub use bert::{Bert, BertEmbeddings, l2_normalize, mean_pool};
pub use block::{Block, BlockConfig, BlockTrace, Encoder, LayerRun, Mlp, NormPlacement};
pub use config::{BertConfig, MAX_PARAMS, VitConfig};
pub use linear::{
    Embedding, INIT_STD, Init, InputQuant, LayerNorm, Linear, LinearQuant, trunc_normal,
};
pub use vit::{PatchEmbedding, Vit, deit_logits, token_heads};

use crate::autograd::Param;

/// Anything with trainable parameters.
pub trait Module {
    /// Every parameter with its full dotted name (`prefix` + local name), in a stable order.
    fn named_params_with_prefix(&self, prefix: &str, out: &mut Vec<(String, Param)>);

    /// Every parameter with its full dotted name, in a stable order.
    fn named_params(&self) -> Vec<(String, Param)> {
        let mut out = Vec::new();
        self.named_params_with_prefix("", &mut out);
        out
    }

    /// Total number of scalar parameters.
    fn num_params(&self) -> usize {
        self.named_params().iter().map(|(_, p)| p.numel()).sum()
    }

    /// Calls `f(name, linear)` for every [`Linear`] inside, named like its parameters without
    /// the `.weight` / `.bias` suffix (`prefix` + local name). Modules without Linears keep the
    /// default, which visits nothing.
    fn visit_linears_with_prefix(&self, prefix: &str, f: &mut dyn FnMut(&str, &Linear)) {
        let _ = (prefix, f);
    }

    /// Calls `f(name, linear)` for every [`Linear`] inside, in parameter order
    /// (`encoder.layer.0.attention.self.query`, ...).
    fn visit_linears(&self, f: &mut dyn FnMut(&str, &Linear)) {
        self.visit_linears_with_prefix("", f);
    }
}

/// Joins a dotted parameter-name prefix and a local name: `join("encoder.layer.0", "weight")`.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}
