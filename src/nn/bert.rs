//! BERT: embeddings, a post-LN encoder, the pooler and a classification head, with the
//! Hugging Face `BertModel` parameter names (prefix-less, as in sentence-transformers' MiniLM
//! safetensors), plus sentence-embedding pooling.
//!
//! Two ALBERT options ([`BertConfig::embedding_size`], [`BertConfig::num_hidden_groups`]):
//! embedding tables of width E < H followed by a Linear E -> H
//! (`encoder.embedding_hidden_mapping_in`), and layers that share blocks ([`Encoder`]).
//!
//! Legend: B = batch, T = tokens, H = hidden width, E = embedding width (H without ALBERT's
//! factorized embedding), V = vocabulary, C = classes.
//! Token ids are passed flat, row-major `[B, T]`, with their shape `[B, T]` alongside.

use super::attention::AttentionMask;
use super::block::{BlockConfig, BlockTrace, Encoder, NormPlacement};
use super::config::BertConfig;
use super::linear::{Embedding, INIT_STD, Init, LayerNorm, Linear};
use super::{Module, join};
use crate::autograd::{Graph, Param, Var};
use crate::error::{Error, Result};
use crate::tensor::Rng;

/// Word + position + token-type embeddings, then LayerNorm and dropout, at width E.
#[derive(Clone, Debug)]
pub struct BertEmbeddings {
    /// `[V, E]`.
    pub word_embeddings: Embedding,
    /// `[max_position_embeddings, E]`.
    pub position_embeddings: Embedding,
    /// `[type_vocab_size, E]`.
    pub token_type_embeddings: Embedding,
    /// Named `LayerNorm` (capitalised, as in Hugging Face).
    pub layer_norm: LayerNorm,
    /// Dropout on the output during training.
    pub dropout: f32,
}

/// [`Error::Shape`] unless `ids` fills `[B, T]`.
fn check_ids(op: &'static str, ids: &[usize], [b, t]: [usize; 2]) -> Result<()> {
    if ids.len() != b * t {
        return Err(Error::shape(
            op,
            format!("{} ids for [{b}, {t}]", ids.len()),
        ));
    }
    Ok(())
}

impl BertEmbeddings {
    /// Tables of width E ([`BertConfig::embedding_width`]) drawn from `N(0, 0.02^2)`,
    /// LayerNorm ones/zeros.
    pub fn new(c: &BertConfig, rng: &mut Rng) -> Self {
        let init = Init::Normal(INIT_STD);
        let e = c.embedding_width();
        BertEmbeddings {
            word_embeddings: Embedding::new(c.vocab_size, e, init, rng),
            position_embeddings: Embedding::new(c.max_position_embeddings, e, init, rng),
            token_type_embeddings: Embedding::new(c.type_vocab_size, e, init, rng),
            layer_norm: LayerNorm::new(e, c.layer_norm_eps),
            dropout: c.hidden_dropout_prob,
        }
    }

    /// `ids[B, T] -> [B, T, E]`; positions are `0..T`, token types default to 0.
    /// Errors: [`Error::Shape`] if `ids` or `token_types` do not fill `[B, T]` or T exceeds the
    /// position table, [`Error::Index`] for an id or type out of range.
    pub fn forward(
        &self,
        g: &Graph,
        ids: &[usize],
        shape: [usize; 2],
        token_types: Option<&[usize]>,
    ) -> Result<Var> {
        const OP: &str = "BertEmbeddings::forward";
        let [b, t] = shape;
        check_ids(OP, ids, shape)?;
        if t > self.position_embeddings.rows() {
            return Err(Error::shape(
                OP,
                format!(
                    "{t} tokens, position table has {} rows",
                    self.position_embeddings.rows()
                ),
            ));
        }
        let e = self.layer_norm.weight.shape()[0];
        let words = g.reshape(self.word_embeddings.forward(g, ids)?, &[b, t, e])?; // [B, T, E]
        let positions: Vec<usize> = (0..t).collect();
        let pos = self.position_embeddings.forward(g, &positions)?; // [T, E], broadcast over B
        let types = match token_types {
            Some(tt) => {
                check_ids(OP, tt, shape)?;
                g.reshape(self.token_type_embeddings.forward(g, tt)?, &[b, t, e])? // [B, T, E]
            }
            None => self.token_type_embeddings.forward(g, &[0])?, // [1, E], broadcast
        };
        let x = g.add(g.add(words, pos)?, types)?;
        let x = self.layer_norm.forward(g, x)?;
        g.dropout(x, self.dropout)
    }
}

impl Module for BertEmbeddings {
    fn named_params_with_prefix(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        self.word_embeddings
            .named_params_with_prefix(&join(prefix, "word_embeddings"), out);
        self.position_embeddings
            .named_params_with_prefix(&join(prefix, "position_embeddings"), out);
        self.token_type_embeddings
            .named_params_with_prefix(&join(prefix, "token_type_embeddings"), out);
        self.layer_norm
            .named_params_with_prefix(&join(prefix, "LayerNorm"), out);
    }
}

/// The Hugging Face ALBERT name of the factorized embedding's E -> H Linear.
const MAPPING: &str = "encoder.embedding_hidden_mapping_in";

/// A BERT encoder with pooler and a sequence-classification head (`classifier` on the pooled
/// `[CLS]`, as `BertForSequenceClassification`).
#[derive(Clone, Debug)]
pub struct Bert {
    /// The configuration it was built from.
    pub config: BertConfig,
    /// `embeddings.*`, at width E.
    pub embeddings: BertEmbeddings,
    /// `encoder.embedding_hidden_mapping_in`: `[H, E]`, ALBERT's factorized embedding (present
    /// exactly when [`BertConfig::embedding_size`] is set), applied to the embeddings' output.
    pub embedding_mapping: Option<Linear>,
    /// `encoder.layer.{g}.*`, post-LN blocks (shared between layers under
    /// [`BertConfig::num_hidden_groups`]).
    pub encoder: Encoder,
    /// `pooler.dense`: `[H, H]`, followed by tanh on the `[CLS]` token.
    pub pooler: Linear,
    /// `classifier`: `[C, H]`.
    pub classifier: Linear,
}

impl Bert {
    /// A freshly initialised model (weights `N(0, 0.02^2)`, biases 0, LayerNorms 1/0).
    /// [`Error::InvalidArgument`] for an unknown `hidden_act`, heads that do not divide H, an
    /// `embedding_size` of 0, `num_hidden_groups` that does not divide the layers, or more than
    /// [`MAX_PARAMS`](super::MAX_PARAMS) parameters.
    pub fn new(c: &BertConfig, rng: &mut Rng) -> Result<Self> {
        c.check_size()?;
        let layer_groups = c.layer_groups()?;
        let init = Init::Normal(INIT_STD);
        let block = BlockConfig {
            hidden: c.hidden_size,
            heads: c.num_attention_heads,
            head_dim: Some(c.head_dim()?),
            inner: c.intermediate_size,
            act: c.gelu_kind()?,
            hidden_dropout: c.hidden_dropout_prob,
            attention_dropout: c.attention_probs_dropout_prob,
            eps: c.layer_norm_eps,
            norm: NormPlacement::Post,
        };
        let embeddings = BertEmbeddings::new(c, rng);
        let embedding_mapping = c
            .embedding_size
            .map(|e| Linear::new(e, c.hidden_size, true, init, rng));
        let encoder = Encoder::new_shared(&layer_groups, &block, init, rng)?;
        Ok(Bert {
            config: c.clone(),
            embeddings,
            embedding_mapping,
            encoder,
            pooler: Linear::new(c.hidden_size, c.hidden_size, true, init, rng),
            classifier: Linear::new(c.hidden_size, c.num_labels, true, init, rng),
        })
    }

    /// The blocks, first to last (one per layer; layers sharing a block hold clones of it).
    pub fn blocks(&self) -> &[super::Block] {
        &self.encoder.layers
    }

    /// The encoder's input `[B, T, H]`: the embeddings of `ids[B, T]`, mapped from E to H when
    /// the embedding is factorized.
    pub fn embed(
        &self,
        g: &Graph,
        ids: &[usize],
        shape: [usize; 2],
        token_types: Option<&[usize]>,
    ) -> Result<Var> {
        let x = self.embeddings.forward(g, ids, shape, token_types)?; // [B, T, E]
        match &self.embedding_mapping {
            Some(mapping) => mapping.forward(g, x), // [B, T, H]
            None => Ok(x),
        }
    }

    /// Last hidden state `[B, T, H]` of `ids[B, T]` (flat, with `shape = [B, T]`);
    /// `token_types` default to 0, `mask` hides padded keys.
    pub fn forward_hidden(
        &self,
        g: &Graph,
        ids: &[usize],
        shape: [usize; 2],
        token_types: Option<&[usize]>,
        mask: Option<&AttentionMask>,
    ) -> Result<Var> {
        let x = self.embed(g, ids, shape, token_types)?; // [B, T, H]
        self.encoder.forward(g, x, mask, None)
    }

    /// [`Bert::forward_hidden`] with per-layer head masks (`[nh]` each, FastFormers) and every
    /// block's trace; returns `(encoder input [B, T, H] (see [`Bert::embed`]), traces)`.
    pub fn forward_traced(
        &self,
        g: &Graph,
        ids: &[usize],
        shape: [usize; 2],
        token_types: Option<&[usize]>,
        mask: Option<&AttentionMask>,
        head_masks: Option<&[Var]>,
    ) -> Result<(Var, Vec<BlockTrace>)> {
        let x = self.embed(g, ids, shape, token_types)?; // [B, T, H]
        let traces = self.encoder.forward_traced(g, x, mask, head_masks)?;
        Ok((x, traces))
    }

    /// The pooler: `tanh(dense(hidden[:, 0]))`, `[B, T, H] -> [B, H]`.
    pub fn pool(&self, g: &Graph, hidden: Var) -> Result<Var> {
        let shape = g.shape(hidden)?;
        let cls = g.slice(hidden, 1, 0, 1)?; // [B, 1, H]
        let cls = g.reshape(cls, &[shape[0], shape[2]])?; // [B, H]
        g.tanh(self.pooler.forward(g, cls)?)
    }

    /// The classification head on the pooled hidden state: `[B, H] -> [B, C]` (with dropout).
    pub fn classify(&self, g: &Graph, hidden: Var) -> Result<Var> {
        let pooled = self.pool(g, hidden)?; // [B, H]
        let pooled = g.dropout(pooled, self.config.hidden_dropout_prob)?;
        self.classifier.forward(g, pooled) // [B, C]
    }

    /// Class logits `[B, C]` of `ids[B, T]`.
    pub fn forward_logits(
        &self,
        g: &Graph,
        ids: &[usize],
        shape: [usize; 2],
        token_types: Option<&[usize]>,
        mask: Option<&AttentionMask>,
    ) -> Result<Var> {
        let hidden = self.forward_hidden(g, ids, shape, token_types, mask)?;
        self.classify(g, hidden)
    }
}

impl Module for Bert {
    fn named_params_with_prefix(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        self.embeddings
            .named_params_with_prefix(&join(prefix, "embeddings"), out);
        if let Some(mapping) = &self.embedding_mapping {
            mapping.named_params_with_prefix(&join(prefix, MAPPING), out);
        }
        self.encoder
            .named_params_with_prefix(&join(prefix, "encoder"), out);
        self.pooler
            .named_params_with_prefix(&join(prefix, "pooler.dense"), out);
        self.classifier
            .named_params_with_prefix(&join(prefix, "classifier"), out);
    }

    fn visit_linears_with_prefix(&self, prefix: &str, f: &mut dyn FnMut(&str, &Linear)) {
        if let Some(mapping) = &self.embedding_mapping {
            f(&join(prefix, MAPPING), mapping);
        }
        self.encoder
            .visit_linears_with_prefix(&join(prefix, "encoder"), f);
        f(&join(prefix, "pooler.dense"), &self.pooler);
        f(&join(prefix, "classifier"), &self.classifier);
    }
}

/// Masked mean over tokens (sentence-transformers' mean pooling): `hidden[B, T, H] -> [B, H]`,
/// `sum_t mask[b, t] hidden[b, t] / max(sum_t mask[b, t], 1e-9)`. Without a mask, the plain mean.
pub fn mean_pool(g: &Graph, hidden: Var, mask: Option<&AttentionMask>) -> Result<Var> {
    let shape = g.shape(hidden)?;
    if shape.len() != 3 {
        return Err(Error::shape(
            "mean_pool",
            format!("hidden must be [B, T, H], got {shape:?}"),
        ));
    }
    let Some(mask) = mask else {
        return g.mean(hidden, &[1], false);
    };
    mask.expect("mean_pool", shape[0], shape[1])?;
    let w = mask.weights(); // [B, T, 1]
    let counts: Vec<f32> = w
        .data()
        .chunks_exact(shape[1])
        .map(|row| 1.0 / row.iter().sum::<f32>().max(1e-9))
        .collect();
    let inv_counts = crate::tensor::Tensor::from_vec(counts, &[shape[0], 1])?; // [B, 1]
    let summed = g.sum(g.mul(hidden, g.constant(w))?, &[1], false)?; // [B, H]
    g.mul(summed, g.constant(inv_counts))
}

/// Rows scaled to unit L2 norm: `x[B, H] / max(||x[b]||, ~1e-12)` (PyTorch's `F.normalize`, with
/// the floor applied smoothly as `sqrt(||x||^2 + 1e-24)`).
pub fn l2_normalize(g: &Graph, x: Var) -> Result<Var> {
    let rank = g.shape(x)?.len();
    if rank == 0 {
        return Err(Error::shape("l2_normalize", "needs rank >= 1"));
    }
    let sq = g.sum(g.mul(x, x)?, &[rank - 1], true)?; // [B, 1]
    let norm = g.sqrt(g.add_scalar(sq, 1e-24)?)?;
    g.div(x, norm)
}
