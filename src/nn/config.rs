//! Model configurations, serialised as the Hugging Face `config.json` fields.

use crate::error::{Error, Result};
use lithe_kernels::gelu::GeluKind;
use serde::{Deserialize, Serialize};

fn default_layer_norm_eps() -> f32 {
    1e-12
}

fn default_hidden_act() -> String {
    "gelu".into()
}

fn default_type_vocab_size() -> usize {
    2
}

fn default_num_labels() -> usize {
    2
}

/// A BERT encoder (and its pooler / classification head), with the Hugging Face field names so
/// a model directory's `config.json` deserialises directly. Unknown fields are ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size (rows of the word-embedding table).
    pub vocab_size: usize,
    /// Hidden width H.
    pub hidden_size: usize,
    /// Number of Transformer blocks.
    pub num_hidden_layers: usize,
    /// Attention heads per block (H must be a multiple).
    pub num_attention_heads: usize,
    /// FFN width.
    pub intermediate_size: usize,
    /// `"gelu"` (erf) or `"gelu_new"` / `"gelu_pytorch_tanh"` (tanh approximation).
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    /// Longest sequence (rows of the position-embedding table).
    pub max_position_embeddings: usize,
    /// Rows of the token-type (segment) embedding table.
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f32,
    /// Dropout after embeddings, attention output and FFN output during training.
    #[serde(default)]
    pub hidden_dropout_prob: f32,
    /// Dropout on attention probabilities during training.
    #[serde(default)]
    pub attention_probs_dropout_prob: f32,
    /// Classes of the classification head.
    #[serde(default = "default_num_labels")]
    pub num_labels: usize,
    /// ALBERT's factorized embedding: the embedding tables and their LayerNorm have width E
    /// (`embedding_size`), and `encoder.embedding_hidden_mapping_in` maps E to H. `None`: the
    /// tables have width H and there is no mapping (BERT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_size: Option<usize>,
    /// ALBERT's cross-layer sharing: the `num_hidden_layers` layers use `num_hidden_groups`
    /// distinct blocks, layer `i` the block `i / (num_hidden_layers / num_hidden_groups)`
    /// (1 shares one block across all layers). `None`: every layer has its own block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_hidden_groups: Option<usize>,
    /// Width d of one attention head when it is not `hidden_size / num_attention_heads`: a
    /// model whose heads were pruned keeps its heads' width while it has fewer of them, so its
    /// Q/K/V projections are `[num_attention_heads * d, H]`. `None`: `d = H / nh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_head_size: Option<usize>,
}

/// The most parameters a model built from a config may have: 2^34 (64 GiB of f32, far beyond
/// any model lithe trains or runs). A config asking for more (a corrupt or hostile
/// `config.json`) is an error before anything is allocated.
pub const MAX_PARAMS: usize = 1 << 34;

/// [`Error::InvalidArgument`] naming `op` unless the sum of the products in `terms` is at most
/// [`MAX_PARAMS`] (every product and the sum checked for overflow).
fn check_params(op: &'static str, terms: &[&[usize]]) -> Result<()> {
    let total = terms.iter().try_fold(0usize, |acc, factors| {
        let term = factors.iter().try_fold(1usize, |p, &f| p.checked_mul(f))?;
        acc.checked_add(term)
    });
    match total {
        Some(n) if n <= MAX_PARAMS => Ok(()),
        _ => Err(Error::invalid(
            op,
            format!("the model would have more than {MAX_PARAMS} parameters"),
        )),
    }
}

impl BertConfig {
    /// [`Error::InvalidArgument`] if the model would have more than [`MAX_PARAMS`]
    /// parameters (an upper bound: every table, block and head counted).
    pub fn check_size(&self) -> Result<()> {
        let (h, e, i) = (
            self.hidden_size,
            self.embedding_width(),
            self.intermediate_size,
        );
        // Saturating: an overflow still exceeds MAX_PARAMS below.
        let a = self.num_attention_heads.saturating_mul(
            self.attention_head_size
                .unwrap_or(h / self.num_attention_heads.max(1)),
        );
        let l = self.num_hidden_layers;
        check_params(
            "BertConfig",
            &[
                &[self.vocab_size, e],
                &[self.max_position_embeddings, e],
                &[self.type_vocab_size, e],
                &[e, h],
                &[l, 4, h, a],
                &[l, 2, h, i],
                &[l, 8, h.max(a).max(i)],
                &[h, h],
                &[h, self.num_labels],
            ],
        )
    }

    /// Width d of one attention head ([`BertConfig::attention_head_size`], else H / nh).
    /// [`Error::InvalidArgument`] for zero heads or a width the heads do not divide.
    pub fn head_dim(&self) -> Result<usize> {
        head_dim(
            "BertConfig",
            self.hidden_size,
            self.num_attention_heads,
            self.attention_head_size,
        )
    }

    /// Width E of the embedding tables: `embedding_size`, or H without a factorized embedding.
    pub fn embedding_width(&self) -> usize {
        self.embedding_size.unwrap_or(self.hidden_size)
    }

    /// The block each layer uses (`[0, 1, ..., L-1]` without sharing; ALBERT's `i / (L / G)`
    /// with `num_hidden_groups = G`). [`Error::InvalidArgument`] unless G is in `1..=L` and
    /// divides L, or if `embedding_size` is 0.
    pub fn layer_groups(&self) -> Result<Vec<usize>> {
        const OP: &str = "BertConfig";
        let layers = self.num_hidden_layers;
        if self.embedding_size == Some(0) {
            return Err(Error::invalid(OP, "embedding_size must be > 0"));
        }
        let Some(groups) = self.num_hidden_groups else {
            return Ok((0..layers).collect());
        };
        if groups == 0 || groups > layers || !layers.is_multiple_of(groups) {
            return Err(Error::invalid(
                OP,
                format!(
                    "num_hidden_groups {groups} must be in 1..=num_hidden_layers and divide \
                     num_hidden_layers {layers}"
                ),
            ));
        }
        let per_group = layers / groups;
        Ok((0..layers).map(|i| i / per_group).collect())
    }

    /// The MLP's GELU: `"gelu"` is exact (erf); `"gelu_new"`, `"gelu_pytorch_tanh"` and
    /// `"gelu_fast"` are the tanh approximation; anything else is [`Error::InvalidArgument`].
    pub fn gelu_kind(&self) -> Result<GeluKind> {
        match self.hidden_act.as_str() {
            "gelu" => Ok(GeluKind::Erf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(GeluKind::Tanh),
            other => Err(Error::invalid(
                "BertConfig::gelu_kind",
                format!("unsupported hidden_act {other:?}"),
            )),
        }
    }
}

/// A Vision Transformer (pre-LN blocks) on square single- or multi-channel images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VitConfig {
    /// Image side in pixels.
    pub image_size: usize,
    /// Patch side in pixels (must divide `image_size`).
    pub patch_size: usize,
    /// Input channels.
    pub num_channels: usize,
    /// Hidden width.
    pub hidden_size: usize,
    /// Number of Transformer blocks.
    pub num_hidden_layers: usize,
    /// Attention heads per block.
    pub num_attention_heads: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Classes of the head.
    pub num_labels: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_vit_eps")]
    pub layer_norm_eps: f32,
    /// Dropout probability during training.
    #[serde(default)]
    pub hidden_dropout_prob: f32,
    /// Adds DeiT's distillation token (and its head) when true.
    #[serde(default)]
    pub distillation_token: bool,
    /// Width d of one attention head when it is not `hidden_size / num_attention_heads`: a
    /// model whose heads were pruned keeps its heads' width while it has fewer of them, so its
    /// Q/K/V projections are `[num_attention_heads * d, H]`. `None`: `d = H / nh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_head_size: Option<usize>,
}

impl VitConfig {
    /// [`Error::InvalidArgument`] if the model would have more than [`MAX_PARAMS`]
    /// parameters (an upper bound: every table, block and head counted).
    pub fn check_size(&self) -> Result<()> {
        let (h, i, l) = (
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
        );
        // Saturating: an overflow still exceeds MAX_PARAMS below.
        let a = self.num_attention_heads.saturating_mul(
            self.attention_head_size
                .unwrap_or(h / self.num_attention_heads.max(1)),
        );
        let side = self.image_size / self.patch_size.max(1);
        check_params(
            "VitConfig",
            &[
                &[self.num_channels, self.patch_size, self.patch_size, h],
                &[side, side, h],
                &[3, h],
                &[l, 4, h, a],
                &[l, 2, h, i],
                &[l, 8, h.max(a).max(i)],
                &[2, h, self.num_labels],
            ],
        )
    }

    /// Width d of one attention head ([`VitConfig::attention_head_size`], else H / nh).
    /// [`Error::InvalidArgument`] for zero heads or a width the heads do not divide.
    pub fn head_dim(&self) -> Result<usize> {
        head_dim(
            "VitConfig",
            self.hidden_size,
            self.num_attention_heads,
            self.attention_head_size,
        )
    }
}

/// Width of one attention head: `attention_head_size`, or `hidden / heads` when it is unset
/// (which then must divide evenly). [`Error::InvalidArgument`] for zero heads or widths.
fn head_dim(op: &'static str, hidden: usize, heads: usize, given: Option<usize>) -> Result<usize> {
    match given {
        _ if heads == 0 => Err(Error::invalid(op, "num_attention_heads must be > 0")),
        Some(0) => Err(Error::invalid(op, "attention_head_size must be > 0")),
        Some(d) => Ok(d),
        None if hidden.is_multiple_of(heads) && hidden > 0 => Ok(hidden / heads),
        None => Err(Error::invalid(
            op,
            format!("{heads} heads do not divide hidden width {hidden}"),
        )),
    }
}

fn default_vit_eps() -> f32 {
    1e-6
}
