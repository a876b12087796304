//! The Transformer block in its two arrangements (BERT's post-LN, ViT's pre-LN), its MLP, and
//! the stack of blocks.
//!
//! Legend: B = batch, T = tokens, H = hidden width, I = MLP width, nh = heads.

use super::attention::{AttentionMask, AttentionParts, MultiHeadAttention};
use super::linear::{Init, LayerNorm, Linear};
use super::{Module, join};
use crate::autograd::{Graph, Param, Var};
use crate::error::{Error, Result};
use crate::tensor::Rng;
use lithe_kernels::gelu::GeluKind;

/// `Linear(H -> I) -> GELU -> Linear(I -> H) -> dropout`, named as Hugging Face:
/// `intermediate.dense` and `output.dense`.
#[derive(Clone, Debug)]
pub struct Mlp {
    /// `[I, H]` (`intermediate.dense`).
    pub fc1: Linear,
    /// `[H, I]` (`output.dense`).
    pub fc2: Linear,
    /// Exact (erf) or tanh GELU.
    pub act: GeluKind,
    /// Dropout on the output during training.
    pub dropout: f32,
}

impl Mlp {
    /// An MLP `hidden -> inner -> hidden`.
    pub fn new(
        hidden: usize,
        inner: usize,
        act: GeluKind,
        dropout: f32,
        init: Init,
        rng: &mut Rng,
    ) -> Self {
        Mlp {
            fc1: Linear::new(hidden, inner, true, init, rng),
            fc2: Linear::new(inner, hidden, true, init, rng),
            act,
            dropout,
        }
    }

    /// `x[B, T, H] -> [B, T, H]`.
    pub fn forward(&self, g: &Graph, x: Var) -> Result<Var> {
        self.forward_masked(g, x, None)
    }

    /// [`Mlp::forward`] with `neurons[I]` multiplying each neuron's activation: 0 removes a
    /// neuron exactly as deleting its `fc1` row and `fc2` column would (elastic width, pruning).
    pub fn forward_masked(&self, g: &Graph, x: Var, neurons: Option<Var>) -> Result<Var> {
        let mut h = g.gelu(self.fc1.forward(g, x)?, self.act)?; // [B, T, I]
        if let Some(m) = neurons {
            h = g.mul(h, m)?; // [I] broadcasts over [B, T, I]
        }
        let y = self.fc2.forward(g, h)?; // [B, T, H]
        g.dropout(y, self.dropout)
    }
}

impl Module for Mlp {
    fn named_params_with_prefix(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        self.fc1
            .named_params_with_prefix(&join(prefix, "intermediate.dense"), out);
        self.fc2
            .named_params_with_prefix(&join(prefix, "output.dense"), out);
    }

    fn visit_linears_with_prefix(&self, prefix: &str, f: &mut dyn FnMut(&str, &Linear)) {
        f(&join(prefix, "intermediate.dense"), &self.fc1);
        f(&join(prefix, "output.dense"), &self.fc2);
    }
}

/// Where a block's LayerNorms sit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormPlacement {
    /// BERT: `x = LN(x + Attn(x)); x = LN(x + Mlp(x))`. Names: `attention.output.LayerNorm`,
    /// `output.LayerNorm`.
    Post,
    /// ViT: `x = x + Attn(LN(x)); x = x + Mlp(LN(x))`. Names: `layernorm_before`,
    /// `layernorm_after`.
    Pre,
}

/// Shape of a block: widths, heads, activation, dropout, LayerNorm placement and epsilon.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockConfig {
    /// Hidden width H.
    pub hidden: usize,
    /// Attention heads nh.
    pub heads: usize,
    /// Width d of one head; `None`: H / nh.
    pub head_dim: Option<usize>,
    /// MLP width I.
    pub inner: usize,
    /// GELU flavour of the MLP.
    pub act: GeluKind,
    /// Dropout after the attention output and the MLP output.
    pub hidden_dropout: f32,
    /// Dropout on attention probabilities.
    pub attention_dropout: f32,
    /// LayerNorm epsilon.
    pub eps: f32,
    /// Post-LN (BERT) or pre-LN (ViT).
    pub norm: NormPlacement,
}

/// What one block computed: its output and its attention's intermediate values.
#[derive(Clone, Copy, Debug)]
pub struct BlockTrace {
    /// `[B, T, H]`: the block's output.
    pub output: Var,
    /// The attention's Q, K, V, probabilities and context.
    pub attention: AttentionParts,
}

/// One Transformer block.
#[derive(Clone, Debug)]
pub struct Block {
    /// Self-attention (named `attention.*`).
    pub attention: MultiHeadAttention,
    /// LayerNorm around the attention: after the residual (post-LN) or before it (pre-LN).
    pub attn_norm: LayerNorm,
    /// The MLP.
    pub mlp: Mlp,
    /// LayerNorm around the MLP.
    pub mlp_norm: LayerNorm,
    /// Dropout after the attention output projection.
    pub hidden_dropout: f32,
    /// Post-LN or pre-LN.
    pub norm: NormPlacement,
}

impl Block {
    /// A freshly initialised block; [`Error::InvalidArgument`] unless the heads divide H.
    pub fn new(c: &BlockConfig, init: Init, rng: &mut Rng) -> Result<Self> {
        let self_name = match c.norm {
            NormPlacement::Post => "self",
            NormPlacement::Pre => "attention",
        };
        let attention = match c.head_dim {
            None => MultiHeadAttention::new(
                c.hidden,
                c.heads,
                c.attention_dropout,
                self_name,
                init,
                rng,
            )?,
            Some(d) => MultiHeadAttention::with_head_dim(
                c.hidden,
                c.heads,
                d,
                c.attention_dropout,
                self_name,
                init,
                rng,
            )?,
        };
        Ok(Block {
            attention,
            attn_norm: LayerNorm::new(c.hidden, c.eps),
            mlp: Mlp::new(c.hidden, c.inner, c.act, c.hidden_dropout, init, rng),
            mlp_norm: LayerNorm::new(c.hidden, c.eps),
            hidden_dropout: c.hidden_dropout,
            norm: c.norm,
        })
    }

    /// `x[B, T, H] -> [B, T, H]`; `attn_bias` and `head_mask` as in
    /// [`MultiHeadAttention::forward`].
    pub fn forward(
        &self,
        g: &Graph,
        x: Var,
        attn_bias: Option<Var>,
        head_mask: Option<Var>,
    ) -> Result<Var> {
        self.forward_masked(g, x, attn_bias, head_mask, None)
    }

    /// [`Block::forward`] with `neurons[I]` also multiplying the MLP's activations
    /// ([`Mlp::forward_masked`]): the block with some heads and neurons switched off.
    pub fn forward_masked(
        &self,
        g: &Graph,
        x: Var,
        attn_bias: Option<Var>,
        head_mask: Option<Var>,
        neurons: Option<Var>,
    ) -> Result<Var> {
        self.residuals(g, x, neurons, |h| {
            let out = self.attention.forward(g, h, attn_bias, head_mask)?;
            g.dropout(out, self.hidden_dropout)
        })
    }

    /// `x[B, T, H] -> [B, T, H]` with the attention under a keep policy `keep[B, T]`
    /// ([`MultiHeadAttention::forward_policy`]): DynamicViT's training-time token dropping.
    pub fn forward_policy(&self, g: &Graph, x: Var, keep: Var) -> Result<Var> {
        self.residuals(g, x, None, |h| {
            let out = self.attention.forward_policy(g, h, keep)?;
            g.dropout(out, self.hidden_dropout)
        })
    }

    /// The block around its attention: `attend` maps the attention input to its (dropped-out)
    /// output; the norms, residuals and MLP are the same for the fast and the traced forward.
    /// `neurons` masks the MLP's activations ([`Mlp::forward_masked`]).
    fn residuals(
        &self,
        g: &Graph,
        x: Var,
        neurons: Option<Var>,
        attend: impl FnOnce(Var) -> Result<Var>,
    ) -> Result<Var> {
        match self.norm {
            NormPlacement::Post => {
                let a = attend(x)?;
                let x = self.attn_norm.forward(g, g.add(x, a)?)?; // LN(x + Attn(x))
                let y = self.mlp.forward_masked(g, x, neurons)?;
                self.mlp_norm.forward(g, g.add(x, y)?) // LN(x + Mlp(x))
            }
            NormPlacement::Pre => {
                let a = attend(self.attn_norm.forward(g, x)?)?;
                let x = g.add(x, a)?; // x + Attn(LN(x))
                let y = self
                    .mlp
                    .forward_masked(g, self.mlp_norm.forward(g, x)?, neurons)?;
                g.add(x, y) // x + Mlp(LN(x))
            }
        }
    }

    /// [`Block::forward`] with the attention's intermediate values.
    pub fn forward_traced(
        &self,
        g: &Graph,
        x: Var,
        attn_bias: Option<Var>,
        head_mask: Option<Var>,
    ) -> Result<BlockTrace> {
        let mut parts = None;
        let output = self.residuals(g, x, None, |h| {
            let p = parts.insert(self.attention.forward_parts(g, h, attn_bias, head_mask)?);
            p.output = g.dropout(p.output, self.hidden_dropout)?;
            Ok(p.output)
        })?;
        let attention = parts.expect("residuals calls attend once");
        Ok(BlockTrace { output, attention })
    }
}

impl Module for Block {
    fn named_params_with_prefix(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        let attention = join(prefix, "attention");
        match self.norm {
            NormPlacement::Post => {
                self.attention.named_params_with_prefix(&attention, out);
                self.attn_norm
                    .named_params_with_prefix(&join(prefix, "attention.output.LayerNorm"), out);
                self.mlp.named_params_with_prefix(prefix, out);
                self.mlp_norm
                    .named_params_with_prefix(&join(prefix, "output.LayerNorm"), out);
            }
            NormPlacement::Pre => {
                self.attn_norm
                    .named_params_with_prefix(&join(prefix, "layernorm_before"), out);
                self.attention.named_params_with_prefix(&attention, out);
                self.mlp_norm
                    .named_params_with_prefix(&join(prefix, "layernorm_after"), out);
                self.mlp.named_params_with_prefix(prefix, out);
            }
        }
    }

    fn visit_linears_with_prefix(&self, prefix: &str, f: &mut dyn FnMut(&str, &Linear)) {
        self.attention
            .visit_linears_with_prefix(&join(prefix, "attention"), f);
        self.mlp.visit_linears_with_prefix(prefix, f);
    }
}

impl Block {
    /// Whether `other` holds the very same parameters (handles to the same storage, not merely
    /// equal values): the two are one shared block.
    pub fn shares_weights_with(&self, other: &Block) -> bool {
        let (a, b) = (self.named_params(), other.named_params());
        a.len() == b.len() && a.iter().zip(&b).all(|((_, p), (_, q))| p.same_as(q))
    }
}

/// One layer of a sub-network run by [`Encoder::forward_subnet`].
#[derive(Clone, Copy, Debug)]
pub struct LayerRun {
    /// Index of the block in the encoder.
    pub layer: usize,
    /// `[nh]`: multiplies each head's context (`None`: every head on).
    pub heads: Option<Var>,
    /// `[I]`: multiplies each MLP neuron's activation (`None`: every neuron on).
    pub neurons: Option<Var>,
}

/// A stack of blocks, named `layer.{i}` (under `encoder.` in the models).
///
/// Layers may share one block (ALBERT's cross-layer sharing): such layers hold clones of the
/// same [`Block`], whose [`Param`]s are handles to the same storage, so a backward adds every
/// use's gradient into the one weight. The sharing is read from the parameters themselves
/// ([`Encoder::groups`]): [`Module::named_params`] lists each distinct block once, as
/// `layer.{g}` for its group `g`, so an optimizer steps a shared weight once and a saved model
/// stores it once. Without sharing, group `i` is layer `i` and nothing changes.
#[derive(Clone, Debug)]
pub struct Encoder {
    /// The blocks, first to last (layers of one group are clones of one block).
    pub layers: Vec<Block>,
}

impl Encoder {
    /// `depth` freshly initialised blocks.
    pub fn new(depth: usize, c: &BlockConfig, init: Init, rng: &mut Rng) -> Result<Self> {
        let layers = (0..depth)
            .map(|_| Block::new(c, init, rng))
            .collect::<Result<_>>()?;
        Ok(Encoder { layers })
    }

    /// `layer_groups.len()` layers where layer `i` runs the shared block `layer_groups[i]`
    /// (freshly initialised, one per group). Groups are numbered in order of first use:
    /// [`Error::InvalidArgument`] unless each new group is the next number (`[0, 0, 1, 1]`,
    /// not `[1, 1, 0, 0]`), the numbering [`Encoder::groups`] reads back.
    pub fn new_shared(
        layer_groups: &[usize],
        c: &BlockConfig,
        init: Init,
        rng: &mut Rng,
    ) -> Result<Self> {
        let mut blocks: Vec<Block> = Vec::new();
        let mut layers = Vec::with_capacity(layer_groups.len());
        for (i, &g) in layer_groups.iter().enumerate() {
            if g == blocks.len() {
                blocks.push(Block::new(c, init, rng)?);
            } else if g > blocks.len() {
                return Err(Error::invalid(
                    "Encoder::new_shared",
                    format!(
                        "layer {i} uses group {g} before group {} was used",
                        blocks.len()
                    ),
                ));
            }
            layers.push(blocks[g].clone());
        }
        Ok(Encoder { layers })
    }

    /// The group of each layer: layers that share one block (the same parameters) have the
    /// same group, numbered in order of first use. `[0, 1, ..., L-1]` without sharing.
    pub fn groups(&self) -> Vec<usize> {
        let mut groups: Vec<usize> = Vec::with_capacity(self.layers.len());
        let mut distinct = 0;
        for (i, layer) in self.layers.iter().enumerate() {
            let group = match (0..i).find(|&j| self.layers[j].shares_weights_with(layer)) {
                Some(j) => groups[j],
                None => {
                    distinct += 1;
                    distinct - 1
                }
            };
            groups.push(group);
        }
        groups
    }

    /// Each distinct block once, with its group number, in order of first use.
    fn distinct_blocks(&self) -> impl Iterator<Item = (usize, &Block)> {
        let mut distinct = 0;
        let groups = self.groups().into_iter();
        groups.zip(&self.layers).filter(move |&(g, _)| {
            // Groups are numbered in order of first use: a group's first layer has the next one.
            let first = g == distinct;
            distinct += usize::from(first);
            first
        })
    }

    /// `x[B, T, H] -> [B, T, H]` through every block. `mask` (`[B, T]`) hides padded keys;
    /// `head_masks`, one `[nh]` per layer, multiply each head's context.
    pub fn forward(
        &self,
        g: &Graph,
        x: Var,
        mask: Option<&AttentionMask>,
        head_masks: Option<&[Var]>,
    ) -> Result<Var> {
        let bias = self.check_inputs(g, x, mask, head_masks)?;
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(g, h, bias, head_masks.map(|hm| hm[i]))?;
        }
        Ok(h)
    }

    /// `x[B, T, H] -> [B, T, H]` through a sub-network: the blocks `runs` name, in that order,
    /// each with optional masks on its heads (`[nh]`) and MLP neurons (`[I]`). Elastic depth
    /// skips layers; elastic width and pruning masks switch heads and neurons off.
    /// [`Error::InvalidArgument`] for a layer index past the last block.
    pub fn forward_subnet(
        &self,
        g: &Graph,
        x: Var,
        mask: Option<&AttentionMask>,
        runs: &[LayerRun],
    ) -> Result<Var> {
        let bias = self.check_inputs(g, x, mask, None)?;
        let mut h = x;
        for run in runs {
            let layer = self.layers.get(run.layer).ok_or_else(|| {
                Error::invalid(
                    "Encoder::forward_subnet",
                    format!("layer {} of {}", run.layer, self.layers.len()),
                )
            })?;
            h = layer.forward_masked(g, h, bias, run.heads, run.neurons)?;
        }
        Ok(h)
    }

    /// [`Encoder::forward`], returning every block's output and attention values (for layer-wise
    /// distillation). Empty for an encoder without blocks.
    pub fn forward_traced(
        &self,
        g: &Graph,
        x: Var,
        mask: Option<&AttentionMask>,
        head_masks: Option<&[Var]>,
    ) -> Result<Vec<BlockTrace>> {
        let bias = self.check_inputs(g, x, mask, head_masks)?;
        let mut traces = Vec::with_capacity(self.layers.len());
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            let trace = layer.forward_traced(g, h, bias, head_masks.map(|hm| hm[i]))?;
            h = trace.output;
            traces.push(trace);
        }
        Ok(traces)
    }

    /// Checks the input `[B, T, H]`, the mask and the head masks; returns the additive
    /// attention bias of the mask.
    fn check_inputs(
        &self,
        g: &Graph,
        x: Var,
        mask: Option<&AttentionMask>,
        head_masks: Option<&[Var]>,
    ) -> Result<Option<Var>> {
        let shape = g.shape(x)?;
        if shape.len() != 3 {
            return Err(Error::shape(
                "Encoder::forward",
                format!("input must be [B, T, H], got {shape:?}"),
            ));
        }
        if let Some(hm) = head_masks
            && hm.len() != self.layers.len()
        {
            return Err(Error::shape(
                "Encoder::forward",
                format!("{} head masks for {} layers", hm.len(), self.layers.len()),
            ));
        }
        // [B, 1, 1, T], built once and shared by every layer.
        match mask {
            Some(m) => {
                m.expect("Encoder::forward", shape[0], shape[1])?;
                Ok(Some(g.constant(m.additive_bias())))
            }
            None => Ok(None),
        }
    }
}

impl Module for Encoder {
    /// Each distinct block once, as `layer.{g}` for its group `g` (`layer.{i}` without sharing).
    fn named_params_with_prefix(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        for (g, layer) in self.distinct_blocks() {
            layer.named_params_with_prefix(&join(prefix, &format!("layer.{g}")), out);
        }
    }

    /// Each distinct block's Linears once, named as their parameters.
    fn visit_linears_with_prefix(&self, prefix: &str, f: &mut dyn FnMut(&str, &Linear)) {
        for (g, layer) in self.distinct_blocks() {
            layer.visit_linears_with_prefix(&join(prefix, &format!("layer.{g}")), f);
        }
    }
}
