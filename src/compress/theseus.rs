//! BERT-of-Theseus (Xu et al., 2020): progressive module replacement.
//!
//! The predecessor's `L` blocks are cut into `n` contiguous groups of `L / n` blocks; successor
//! module `i` (one block) stands in for group `i`. During replacement training each batch draws,
//! per module, `r_i ~ Bernoulli(p(t))`: module `i` runs the successor block when `r_i` is true,
//! the predecessor group otherwise. The predecessor is frozen (its blocks, and also the
//! embeddings, pooler and classifier, which both sides share), so only the successor blocks
//! learn; they learn to work inside the predecessor's context, which acts as a regulariser and
//! as a soft teacher without any distillation loss. The rate follows
//! `p(t) = min(1, k t + b)` ([`ReplaceSchedule::Linear`]) or stays constant. At the end the
//! successor blocks, with copies of the shared embeddings and head, form the compact model
//! ([`Theseus::successor`]), which is then fine-tuned alone.
//!
//! The successor blocks start as copies of the predecessor's first `n` blocks.
//!
//! Legend: B = batch, T = tokens, H = hidden width, C = classes.

use crate::autograd::{Graph, Param, Var};
use crate::error::{Error, Result};
use crate::nn::copy::{copy_block, copy_embedding, copy_layernorm, copy_linear, unfreeze};
use crate::nn::{AttentionMask, Bert, BertEmbeddings, Block, Encoder, Module, join};
use crate::tensor::Rng;

/// The replacement rate `p(t)` at training step `t` (0-based).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReplaceSchedule {
    /// `p(t) = p` for every step.
    Constant(f64),
    /// `p(t) = min(1, slope * t + base)`: the rate grows until every module is replaced.
    Linear {
        /// `k`, the growth per step (finite, `>= 0`).
        slope: f64,
        /// `b`, the rate at step 0 (in `[0, 1]`).
        base: f64,
    },
}

impl ReplaceSchedule {
    /// The linear schedule from `base` that reaches 1 at step `steps` (`k = (1 - b) / steps`):
    /// the paper's choice of `k`, with every module replaced by the end of replacement
    /// training. Errors as [`ReplaceSchedule::validate`], and for `steps == 0`.
    pub fn reaching_one(base: f64, steps: usize) -> Result<Self> {
        if steps == 0 {
            return Err(Error::invalid(
                "ReplaceSchedule::reaching_one",
                "the schedule needs at least one step",
            ));
        }
        let s = ReplaceSchedule::Linear {
            slope: (1.0 - base) / steps as f64,
            base,
        };
        s.validate()?;
        Ok(s)
    }

    /// [`Error::InvalidArgument`] unless rates (`p`, `b`) are in `[0, 1]` and the slope is
    /// finite and non-negative.
    pub fn validate(&self) -> Result<()> {
        const OP: &str = "ReplaceSchedule";
        let rate_ok = |p: f64| (0.0..=1.0).contains(&p);
        match *self {
            ReplaceSchedule::Constant(p) if !rate_ok(p) => Err(Error::invalid(
                OP,
                format!("replacement rate {p} must be in [0, 1]"),
            )),
            ReplaceSchedule::Linear { base, .. } if !rate_ok(base) => Err(Error::invalid(
                OP,
                format!("base rate {base} must be in [0, 1]"),
            )),
            ReplaceSchedule::Linear { slope, .. } if !(slope.is_finite() && slope >= 0.0) => Err(
                Error::invalid(OP, format!("slope {slope} must be finite and >= 0")),
            ),
            _ => Ok(()),
        }
    }

    /// `p(t)`, in `[0, 1]` for a valid schedule.
    pub fn rate_at(&self, step: usize) -> f64 {
        match *self {
            ReplaceSchedule::Constant(p) => p,
            ReplaceSchedule::Linear { slope, base } => (slope * step as f64 + base).min(1.0),
        }
    }
}

/// A frozen predecessor BERT and the successor blocks that progressively replace its block
/// groups.
#[derive(Clone, Debug)]
pub struct Theseus {
    predecessor: Bert,
    successors: Vec<Block>,
    group: usize,
}

impl Theseus {
    /// Freezes every parameter of `predecessor` (clones of it share them, so the caller's copy
    /// is frozen too) and makes `n_successor` successor blocks, copies of its first
    /// `n_successor` blocks, each replacing `depth / n_successor` contiguous predecessor blocks.
    ///
    /// Errors: [`Error::InvalidArgument`] for zero successors, more successors than predecessor
    /// blocks, or a count that does not divide the depth.
    pub fn new(predecessor: Bert, n_successor: usize) -> Result<Self> {
        const OP: &str = "Theseus::new";
        let depth = predecessor.blocks().len();
        if n_successor == 0 {
            return Err(Error::invalid(OP, "needs at least one successor module"));
        }
        if n_successor > depth {
            return Err(Error::invalid(
                OP,
                format!("{n_successor} successor modules for {depth} predecessor blocks"),
            ));
        }
        if !depth.is_multiple_of(n_successor) {
            return Err(Error::invalid(
                OP,
                format!(
                    "{n_successor} successor modules do not divide {depth} predecessor blocks \
                     into equal groups"
                ),
            ));
        }
        for (_, p) in predecessor.named_params() {
            p.set_requires_grad(false);
        }
        let successors = predecessor.blocks()[..n_successor]
            .iter()
            .map(copy_block)
            .collect::<Result<Vec<_>>>()?;
        // Copies of frozen blocks are frozen: the successors are what trains.
        successors.iter().for_each(unfreeze);
        Ok(Theseus {
            group: depth / n_successor,
            predecessor,
            successors,
        })
    }

    /// The frozen predecessor.
    pub fn predecessor(&self) -> &Bert {
        &self.predecessor
    }

    /// The successor blocks, first to last.
    pub fn successor_blocks(&self) -> &[Block] {
        &self.successors
    }

    /// Number of successor modules.
    pub fn num_successors(&self) -> usize {
        self.successors.len()
    }

    /// Predecessor blocks each successor module replaces.
    pub fn group_size(&self) -> usize {
        self.group
    }

    /// The trainable parameters: the successor blocks', named as in [`Theseus::successor`]
    /// (`encoder.layer.{i}.*`).
    pub fn successor_params(&self) -> Vec<(String, Param)> {
        let mut out = Vec::new();
        for (i, block) in self.successors.iter().enumerate() {
            block.named_params_with_prefix(&join("encoder", &format!("layer.{i}")), &mut out);
        }
        out
    }

    /// One decision per module, each true with probability `p` (drawn from `rng` in module
    /// order). `p` outside `[0, 1]` acts as its nearest end.
    pub fn sample_replacements(&self, p: f64, rng: &mut Rng) -> Vec<bool> {
        (0..self.successors.len())
            .map(|_| rng.next_f64() < p)
            .collect()
    }

    /// Class logits `[B, C]` of `ids[B, T]` with module `i` run by its successor block where
    /// `replace[i]`, by its predecessor group otherwise; embeddings, pooler and classifier are
    /// the predecessor's. Arguments as [`Bert::forward_logits`].
    ///
    /// Errors: [`Error::Shape`] unless `replace` has one entry per module, or as
    /// [`Bert::forward_logits`].
    pub fn forward_logits(
        &self,
        g: &Graph,
        ids: &[usize],
        shape: [usize; 2],
        token_types: Option<&[usize]>,
        mask: Option<&AttentionMask>,
        replace: &[bool],
    ) -> Result<Var> {
        const OP: &str = "Theseus::forward_logits";
        if replace.len() != self.successors.len() {
            return Err(Error::shape(
                OP,
                format!(
                    "{} replacement decisions for {} modules",
                    replace.len(),
                    self.successors.len()
                ),
            ));
        }
        let x = self.predecessor.embed(g, ids, shape, token_types)?; // [B, T, H]
        // [B, 1, 1, T], shared by every block.
        let bias = match mask {
            Some(m) => {
                m.expect(OP, shape[0], shape[1])?;
                Some(g.constant(m.additive_bias()))
            }
            None => None,
        };
        let groups = self.predecessor.blocks().chunks(self.group);
        let mut h = x;
        for ((successor, group), &swap) in self.successors.iter().zip(groups).zip(replace) {
            if swap {
                h = successor.forward(g, h, bias, None)?;
            } else {
                for block in group {
                    h = block.forward(g, h, bias, None)?;
                }
            }
        }
        self.predecessor.classify(g, h) // [B, C]
    }

    /// The successor blocks under the predecessor's embeddings and head, sharing their
    /// parameters (no copy): what [`Theseus::forward_logits`] computes with every module
    /// replaced, as a [`Bert`] for evaluation.
    pub fn successor_view(&self) -> Bert {
        let mut config = self.predecessor.config.clone();
        config.num_hidden_layers = self.successors.len();
        config.num_hidden_groups = None;
        Bert {
            config,
            embeddings: self.predecessor.embeddings.clone(),
            embedding_mapping: self.predecessor.embedding_mapping.clone(),
            encoder: Encoder {
                layers: self.successors.clone(),
            },
            pooler: self.predecessor.pooler.clone(),
            classifier: self.predecessor.classifier.clone(),
        }
    }

    /// The compact model: copies of the predecessor's embeddings, pooler and classifier and of
    /// the successor blocks (`num_hidden_layers` = the number of modules), every parameter its
    /// own and trainable, independent of the predecessor and of this `Theseus`.
    pub fn successor(&self) -> Result<Bert> {
        let blocks = self
            .successors
            .iter()
            .map(copy_block)
            .collect::<Result<Vec<_>>>()?;
        bert_with_blocks(&self.predecessor, blocks)
    }
}

/// A BERT made of copies of `bert`'s embeddings, pooler and classifier around `blocks`
/// (already the caller's own), its config's depth set to `blocks.len()`; every parameter
/// trainable.
pub(crate) fn bert_with_blocks(bert: &Bert, blocks: Vec<Block>) -> Result<Bert> {
    let e = &bert.embeddings;
    let mut config = bert.config.clone();
    config.num_hidden_layers = blocks.len();
    // The blocks are the caller's own, one per layer: no cross-layer sharing is left.
    config.num_hidden_groups = None;
    let compact = Bert {
        config,
        embeddings: BertEmbeddings {
            word_embeddings: copy_embedding(&e.word_embeddings),
            position_embeddings: copy_embedding(&e.position_embeddings),
            token_type_embeddings: copy_embedding(&e.token_type_embeddings),
            layer_norm: copy_layernorm(&e.layer_norm),
            dropout: e.dropout,
        },
        embedding_mapping: bert
            .embedding_mapping
            .as_ref()
            .map(copy_linear)
            .transpose()?,
        encoder: Encoder { layers: blocks },
        pooler: copy_linear(&bert.pooler)?,
        classifier: copy_linear(&bert.classifier)?,
    };
    unfreeze(&compact);
    Ok(compact)
}
