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

/// bert-base-uncased's sizes (30522 tokens, H = 768, 12 layers of 12 heads, FFN 3072, 512
/// positions); every optional field as a `config.json` without it deserialises. Tests and
/// examples spell out the sizes they change and take the rest from here:
/// `BertConfig { hidden_size: 16, ..BertConfig::default() }`.
impl Default for BertConfig {
    fn default() -> BertConfig {
        BertConfig {
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: default_hidden_act(),
            max_position_embeddings: 512,
            type_vocab_size: default_type_vocab_size(),
            layer_norm_eps: default_layer_norm_eps(),
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            num_labels: default_num_labels(),
            embedding_size: None,
            num_hidden_groups: None,
            attention_head_size: None,
        }
    }
}

impl BertConfig {
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

    /// The number of parameters a model of this config has (distinct ALBERT blocks counted
    /// once), computed without overflow. [`Error::InvalidArgument`] if it exceeds
    /// [`MAX_PARAMS`], the layers exceed [`MAX_LAYERS`], or a size is inconsistent (see
    /// [`BertConfig::head_dim`], [`BertConfig::layer_groups`]). [`Bert::new`](super::Bert::new)
    /// checks it before allocating anything, so a corrupt `config.json` (a hidden size of 2^40)
    /// is an error, not an allocation failure.
    pub fn num_params(&self) -> Result<usize> {
        const OP: &str = "BertConfig";
        check_layers(OP, self.num_hidden_layers)?;
        self.layer_groups()?;
        let d = self.head_dim()?;
        let (h, e) = (self.hidden_size, self.embedding_width());
        let blocks = self.num_hidden_groups.unwrap_or(self.num_hidden_layers);
        let count = (|| {
            let tables = add(&[
                self.vocab_size,
                self.max_position_embeddings,
                self.type_vocab_size,
                2,
            ])?;
            let mapping = match self.embedding_size {
                Some(_) => add(&[e.checked_mul(h)?, h])?,
                None => 0,
            };
            let head = add(&[
                h.checked_mul(h)?,
                h,
                self.num_labels.checked_mul(h)?,
                self.num_labels,
            ])?;
            let block = block_params(h, self.num_attention_heads, d, self.intermediate_size)?;
            add(&[
                tables.checked_mul(e)?,
                mapping,
                blocks.checked_mul(block)?,
                head,
            ])
        })();
        within_limit(OP, count)
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

/// ViT-Base/16's sizes (224-pixel RGB images, 16-pixel patches, H = 768, 12 layers of 12 heads,
/// MLP 3072, 1000 classes); every optional field as a `config.json` without it deserialises.
impl Default for VitConfig {
    fn default() -> VitConfig {
        VitConfig {
            image_size: 224,
            patch_size: 16,
            num_channels: 3,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            num_labels: 1000,
            layer_norm_eps: default_vit_eps(),
            hidden_dropout_prob: 0.0,
            distillation_token: false,
            attention_head_size: None,
        }
    }
}

impl VitConfig {
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

impl VitConfig {
    /// The number of parameters a model of this config has, computed without overflow.
    /// [`Error::InvalidArgument`] if it exceeds [`MAX_PARAMS`], the layers exceed
    /// [`MAX_LAYERS`], or a size is inconsistent (heads that do not divide H, a patch size that
    /// does not divide the image). [`Vit::new`](super::Vit::new) checks it before allocating
    /// anything.
    pub fn num_params(&self) -> Result<usize> {
        const OP: &str = "VitConfig";
        check_layers(OP, self.num_hidden_layers)?;
        let d = self.head_dim()?;
        if self.patch_size == 0 || !self.image_size.is_multiple_of(self.patch_size) {
            return Err(Error::invalid(
                OP,
                format!(
                    "patch size {} does not divide image size {}",
                    self.patch_size, self.image_size
                ),
            ));
        }
        let h = self.hidden_size;
        let heads = 1 + usize::from(self.distillation_token);
        let side = self.image_size / self.patch_size;
        let count = (|| {
            let tokens = side.checked_mul(side)?.checked_add(heads)?;
            let patch = self
                .num_channels
                .checked_mul(self.patch_size)?
                .checked_mul(self.patch_size)?;
            let classifier = add(&[self.num_labels.checked_mul(h)?, self.num_labels])?;
            let block = block_params(h, self.num_attention_heads, d, self.intermediate_size)?;
            add(&[
                // class (and distillation) tokens, position embeddings, final LayerNorm
                add(&[heads, tokens, 2])?.checked_mul(h)?,
                add(&[patch.checked_mul(h)?, h])?,
                self.num_hidden_layers.checked_mul(block)?,
                heads.checked_mul(classifier)?,
            ])
        })();
        within_limit(OP, count)
    }
}

/// The most parameters a config may describe: 2^32 (16 GiB of f32 weights, before gradients
/// and optimizer state), far beyond any model trained or run here, yet small enough that a
/// corrupt or hostile config is rejected before anything is allocated.
pub const MAX_PARAMS: usize = 1 << 32;

/// The most layers a config may describe (ALBERT shares blocks, so the parameter count alone
/// does not bound them, while each layer still costs memory and time).
pub const MAX_LAYERS: usize = 1 << 12;

fn check_layers(op: &'static str, layers: usize) -> Result<()> {
    if layers > MAX_LAYERS {
        return Err(Error::invalid(
            op,
            format!("{layers} layers exceed the limit of {MAX_LAYERS}"),
        ));
    }
    Ok(())
}

/// The sum of `terms`, None on overflow.
fn add(terms: &[usize]) -> Option<usize> {
    terms.iter().try_fold(0usize, |a, &t| a.checked_add(t))
}

/// Parameters of one block of width `h` with `heads` heads of width `d` and an MLP of width
/// `inner`: Q/K/V and output projections, the MLP, two LayerNorms, all with biases.
fn block_params(h: usize, heads: usize, d: usize, inner: usize) -> Option<usize> {
    let a = heads.checked_mul(d)?;
    add(&[
        a.checked_mul(h)?.checked_mul(4)?,
        a.checked_mul(3)?,
        inner.checked_mul(h)?.checked_mul(2)?,
        inner,
        h.checked_mul(6)?,
    ])
}

/// `count` if it is known (no overflow) and at most [`MAX_PARAMS`].
fn within_limit(op: &'static str, count: Option<usize>) -> Result<usize> {
    match count {
        Some(n) if n <= MAX_PARAMS => Ok(n),
        Some(n) => Err(Error::invalid(
            op,
            format!("{n} parameters exceed the limit of {MAX_PARAMS}"),
        )),
        None => Err(Error::invalid(op, "the parameter count overflows")),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults' optional fields are exactly what a `config.json` that leaves them out
    /// deserialises to (the defaults add only the sizes).
    #[test]
    fn defaults_match_a_config_json_without_optional_fields() {
        let bert: BertConfig = serde_json::from_str(
            r#"{"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
                "num_attention_heads": 12, "intermediate_size": 3072,
                "max_position_embeddings": 512}"#,
        )
        .unwrap();
        assert_eq!(bert, BertConfig::default());
        let vit: VitConfig = serde_json::from_str(
            r#"{"image_size": 224, "patch_size": 16, "num_channels": 3, "hidden_size": 768,
                "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                "num_labels": 1000}"#,
        )
        .unwrap();
        assert_eq!(vit, VitConfig::default());
        assert_eq!(BertConfig::default().num_params().unwrap(), 109_483_778);
    }
}
