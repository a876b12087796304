//! Layers and models: Linear, LayerNorm, Embedding, attention, MLP, Transformer blocks, and the
//! two models lithe trains and compresses, `Bert` and `Vit`.
//!
//! Every module exposes its parameters by name ([`Module::named_params`]) with the Hugging Face
//! tensor names for BERT (`embeddings.word_embeddings.weight`,
//! `encoder.layer.0.attention.self.query.weight`, ...), so the safetensors files lithe writes
//! load in PyTorch and the other way round, and so the compression passes can find every Linear,
//! every head and every block by walking the tree.

mod config;

pub use config::{BertConfig, VitConfig};

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
}

/// Joins a dotted parameter-name prefix and a local name: `join("encoder.layer.0", "weight")`.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}
