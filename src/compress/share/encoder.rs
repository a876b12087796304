//! The shared-weight encoder: groups of pre-LN blocks on one set of attention and MLP weights,
//! each layer with its own LayerNorms and weight transformations.

use super::ShareConfig;
use crate::autograd::{Graph, HeadMix, Param, Var};
use crate::error::{Error, Result};
use crate::nn::copy::{copy_attention, copy_layernorm, copy_mlp};
use crate::nn::join;
use crate::nn::{Block, Encoder, Linear, Module, NormPlacement};
use crate::tensor::Tensor;

/// A head mix on the tape of [`Graph::transform_attention`]: `weight [nh, nh]` (init identity)
/// and `bias [nh]` (init zero). Named `weight` and `bias`.
#[derive(Clone, Debug)]
pub struct HeadMixWeights {
    /// `[nh, nh]`: row h holds the weights of every head g in head h's mix.
    pub weight: Param,
    /// `[nh]`.
    pub bias: Param,
}

impl HeadMixWeights {
    /// The identity mix of `heads` heads with zero bias.
    pub fn identity(heads: usize) -> Self {
        let mut eye = Tensor::zeros(&[heads, heads]);
        for h in 0..heads {
            eye.data_mut()[h * heads + h] = 1.0;
        }
        HeadMixWeights {
            weight: Param::new(eye),
            bias: Param::new(Tensor::zeros(&[heads])),
        }
    }
}

impl Module for HeadMixWeights {
    fn named_params_with_prefix(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        out.push((join(prefix, "weight"), self.weight.clone()));
        out.push((join(prefix, "bias"), self.bias.clone()));
    }
}

/// A depthwise convolution over the token grid ([`Graph::dwconv`]): `weight [k, k, H]` and
/// `bias [H]`, both initialised to zero so `u + DWConv(u)` starts as `u`.
#[derive(Clone, Debug)]
pub struct DepthwiseConv {
    /// `[k, k, H]`: one `k x k` filter per channel.
    pub weight: Param,
    /// `[H]`.
    pub bias: Param,
}

impl DepthwiseConv {
    /// A zero filter of size `k x k` over `channels` channels, zero bias.
    pub fn zeros(k: usize, channels: usize) -> Self {
        DepthwiseConv {
            weight: Param::new(Tensor::zeros(&[k, k, channels])),
            bias: Param::new(Tensor::zeros(&[channels])),
        }
    }
}

impl Module for DepthwiseConv {
    fn named_params_with_prefix(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        out.push((join(prefix, "weight"), self.weight.clone()));
        out.push((join(prefix, "bias"), self.bias.clone()));
    }
}

/// One layer's weight transformations, named `transform.attention_pre`,
/// `transform.attention_post` and `transform.dwconv`.
#[derive(Clone, Debug)]
pub struct LayerTransform {
    /// Mix of the attention logits across heads, before the softmax.
    pub attention_pre: HeadMixWeights,
    /// Mix of the attention probabilities across heads, after the softmax.
    pub attention_post: HeadMixWeights,
    /// Convolution over the grid tokens of the MLP input (after its LayerNorm), with a residual.
    pub dwconv: DepthwiseConv,
}

impl LayerTransform {
    /// The identity transformation for `heads` heads and width `channels`, convolution `k x k`.
    pub fn identity(heads: usize, channels: usize, k: usize) -> Self {
        LayerTransform {
            attention_pre: HeadMixWeights::identity(heads),
            attention_post: HeadMixWeights::identity(heads),
            dwconv: DepthwiseConv::zeros(k, channels),
        }
    }

    /// The head mixes on `g`'s tape.
    fn head_mix(&self, g: &Graph) -> HeadMix {
        HeadMix {
            pre: g.param(&self.attention_pre.weight),
            pre_bias: g.param(&self.attention_pre.bias),
            post: g.param(&self.attention_post.weight),
            post_bias: g.param(&self.attention_post.bias),
        }
    }
}

impl Module for LayerTransform {
    fn named_params_with_prefix(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        self.attention_pre
            .named_params_with_prefix(&join(prefix, "attention_pre"), out);
        self.attention_post
            .named_params_with_prefix(&join(prefix, "attention_post"), out);
        self.dwconv
            .named_params_with_prefix(&join(prefix, "dwconv"), out);
    }
}

/// One layer of a [`SharedEncoder`].
#[derive(Clone, Debug)]
pub struct SharedLayer {
    /// A pre-LN block whose `attention` and `mlp` hold the SAME parameters ([`Param`] clones) as
    /// every other layer of its group, and whose `attn_norm` (`layernorm_before`) and `mlp_norm`
    /// (`layernorm_after`) are its own.
    pub block: Block,
    /// The layer's own weight transformations (`None` when the encoder has none).
    pub transform: Option<LayerTransform>,
}

/// What one shared layer computed, for relation distillation (MiniViT, MiniLMv2).
#[derive(Clone, Copy, Debug)]
pub struct SharedLayerTrace {
    /// `[B, T, H]`: the layer's output.
    pub output: Var,
    /// `[B, T, H]`: the query projection, heads side by side, before the `1 / sqrt(d)` scale.
    pub query: Var,
    /// `[B, T, H]`: the key projection.
    pub key: Var,
    /// `[B, T, H]`: the value projection.
    pub value: Var,
}

/// A stack of pre-LN layers multiplexing the weights of groups of [`ShareConfig::share`]
/// consecutive layers (module docs). Built by [`share_layers`].
///
/// Parameter names (under `encoder.` in [`super::MiniVit`]): the shared weights of group `g`
/// as a ViT block names them, without the LayerNorms (`group.{g}.attention.attention.query`,
/// `group.{g}.attention.output.dense`, `group.{g}.intermediate.dense`,
/// `group.{g}.output.dense`), listed once; then per layer `i` of the group,
/// `layer.{i}.layernorm_before`, `layer.{i}.layernorm_after` and `layer.{i}.transform.*`.
#[derive(Clone, Debug)]
pub struct SharedEncoder {
    /// The layers, first to last; layer `i` belongs to group `i / config.share`.
    pub layers: Vec<SharedLayer>,
    /// How the weights are shared.
    pub config: ShareConfig,
    /// The patch-token grid `(rows, columns)` the convolution runs on.
    pub grid: (usize, usize),
    /// Tokens in front of the grid tokens (class, distillation) that the convolution skips.
    pub prefix_tokens: usize,
}

/// Multiplexes the weights of `encoder` (module docs): layers `g * share ..` form group `g`,
/// which gets one copy of its FIRST layer's attention and MLP weights, held by every layer of
/// the group; each layer gets a copy of its own LayerNorms and, with `config.transforms`, identity
/// transforms (head mixes of the layer's head count, a zero `k x k` filter over the width). The
/// grid tokens are the last `grid.0 * grid.1` of each sequence, after `prefix_tokens` tokens
/// (1 for ViT's class token, 2 with DeiT's distillation token). `encoder` is not changed and
/// shares nothing with the result.
///
/// Errors: [`Error::InvalidArgument`] for `config.share == 0`, an even or zero kernel size, a
/// post-LN encoder, or dropout on the attention probabilities (the fused attention here has
/// none); [`Error::Shape`] when a layer's LayerNorms are not as wide as its group's weights.
pub fn share_layers(
    encoder: &Encoder,
    grid: (usize, usize),
    prefix_tokens: usize,
    config: &ShareConfig,
) -> Result<SharedEncoder> {
    const OP: &str = "share_layers";
    if config.share == 0 {
        return Err(Error::invalid(OP, "groups must hold at least one layer"));
    }
    if config.kernel.is_multiple_of(2) {
        return Err(Error::invalid(
            OP,
            format!("convolution kernel size {} must be odd", config.kernel),
        ));
    }
    let mut layers = Vec::with_capacity(encoder.layers.len());
    for (i, block) in encoder.layers.iter().enumerate() {
        if block.norm != NormPlacement::Pre {
            return Err(Error::invalid(
                OP,
                format!("layer {i} is post-LN; MiniViT multiplexes pre-LN (ViT) blocks"),
            ));
        }
        if block.attention.dropout != 0.0 {
            return Err(Error::invalid(
                OP,
                format!("layer {i} has attention-probability dropout, which is not supported"),
            ));
        }
        let (attention, mlp) = if i % config.share == 0 {
            (copy_attention(&block.attention)?, copy_mlp(&block.mlp)?)
        } else {
            let first: &SharedLayer = &layers[i - i % config.share];
            (first.block.attention.clone(), first.block.mlp.clone())
        };
        let width = attention.dense.out_features();
        let norms = [&block.attn_norm, &block.mlp_norm];
        if let Some(n) = norms.iter().find(|n| n.weight.shape() != [width]) {
            return Err(Error::shape(
                OP,
                format!(
                    "layer {i}: LayerNorm {:?} does not fit its group's width {width}",
                    n.weight.shape()
                ),
            ));
        }
        let transform = config
            .transforms
            .then(|| LayerTransform::identity(attention.heads, width, config.kernel));
        layers.push(SharedLayer {
            block: Block {
                attention,
                attn_norm: copy_layernorm(&block.attn_norm),
                mlp,
                mlp_norm: copy_layernorm(&block.mlp_norm),
                hidden_dropout: block.hidden_dropout,
                norm: NormPlacement::Pre,
            },
            transform,
        });
    }
    Ok(SharedEncoder {
        layers,
        config: *config,
        grid,
        prefix_tokens,
    })
}

impl SharedEncoder {
    /// Number of weight groups, `ceil(depth / share)`.
    pub fn num_groups(&self) -> usize {
        self.layers.len().div_ceil(self.config.share.max(1))
    }

    /// The group of layer `layer`.
    pub fn group_of(&self, layer: usize) -> usize {
        layer / self.config.share.max(1)
    }

    /// `x[B, T, H] -> [B, T, H]` through every layer; [`Error::Shape`] unless
    /// `T = prefix_tokens + grid.0 * grid.1`.
    pub fn forward(&self, g: &Graph, x: Var) -> Result<Var> {
        self.check_input(g, x)?;
        let mut h = x;
        for layer in &self.layers {
            h = self.layer_forward(g, layer, h)?.output;
        }
        Ok(h)
    }

    /// [`SharedEncoder::forward`], returning every layer's output and raw Q, K, V projections.
    pub fn forward_traced(&self, g: &Graph, x: Var) -> Result<Vec<SharedLayerTrace>> {
        self.check_input(g, x)?;
        let mut traces = Vec::with_capacity(self.layers.len());
        let mut h = x;
        for layer in &self.layers {
            let trace = self.layer_forward(g, layer, h)?;
            h = trace.output;
            traces.push(trace);
        }
        Ok(traces)
    }

    fn check_input(&self, g: &Graph, x: Var) -> Result<()> {
        let shape = g.shape(x)?;
        let (gh, gw) = self.grid;
        let tokens = gh
            .checked_mul(gw)
            .and_then(|n| n.checked_add(self.prefix_tokens));
        match shape[..] {
            [_, t, _] if Some(t) == tokens => Ok(()),
            _ => Err(Error::shape(
                "SharedEncoder::forward",
                format!(
                    "input must be [B, T, H] with T = {} + {gh} x {gw} tokens, got {shape:?}",
                    self.prefix_tokens
                ),
            )),
        }
    }

    /// One pre-LN layer: `x = x + Attn(LN1(x))`, `u = LN2(x)`, `u = u + DWConv(u)` on the grid
    /// tokens (with transforms), `x = x + Mlp(u)`. Without transforms this is exactly
    /// [`Block::forward`]: the attention is the same fused op, in the same order.
    fn layer_forward(&self, g: &Graph, layer: &SharedLayer, x: Var) -> Result<SharedLayerTrace> {
        let block = &layer.block;
        let attention = &block.attention;
        let h = block.attn_norm.forward(g, x)?; // [B, T, H]
        let query = attention.query.forward(g, h)?; // [B, T, H]
        let key = attention.key.forward(g, h)?;
        let value = attention.value.forward(g, h)?;
        let scale = 1.0 / (attention.head_dim() as f32).sqrt();
        let heads = attention.heads;
        let context = match &layer.transform {
            Some(t) => {
                g.transform_attention(query, key, value, heads, scale, t.head_mix(g), None)?
            }
            None => g.attention(query, key, value, heads, scale, None)?,
        }; // [B, T, H]
        let a = attention.dense.forward(g, context)?;
        let a = g.dropout(a, block.hidden_dropout)?;
        let x = g.add(x, a)?; // x + Attn(LN1(x))
        let mut u = block.mlp_norm.forward(g, x)?; // [B, T, H]
        if let Some(t) = &layer.transform {
            u = self.grid_conv(g, u, &t.dwconv)?;
        }
        let y = block.mlp.forward(g, u)?;
        let output = g.add(x, y)?; // x + Mlp(u)
        Ok(SharedLayerTrace {
            output,
            query,
            key,
            value,
        })
    }

    /// `u + DWConv(u)` on the grid tokens of `u [B, T, H]`; the prefix tokens pass through.
    fn grid_conv(&self, g: &Graph, u: Var, conv: &DepthwiseConv) -> Result<Var> {
        let t = g.shape(u)?[1];
        let p = self.prefix_tokens;
        let tokens = if p == 0 { u } else { g.slice(u, 1, p, t)? }; // [B, N, H]
        let filtered = g.dwconv(
            tokens,
            g.param(&conv.weight),
            g.param(&conv.bias),
            self.grid,
        )?;
        let tokens = g.add(tokens, filtered)?;
        if p == 0 {
            return Ok(tokens);
        }
        g.concat(&[g.slice(u, 1, 0, p)?, tokens], 1) // [B, T, H]
    }
}

impl Module for SharedEncoder {
    fn named_params_with_prefix(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        let share = self.config.share.max(1);
        for (i, layer) in self.layers.iter().enumerate() {
            if i % share == 0 {
                // The group's weights, once, before its layers' own parameters.
                let group = join(prefix, &format!("group.{}", i / share));
                let block = &layer.block;
                block
                    .attention
                    .named_params_with_prefix(&join(&group, "attention"), out);
                block.mlp.named_params_with_prefix(&group, out);
            }
            let name = join(prefix, &format!("layer.{i}"));
            let block = &layer.block;
            block
                .attn_norm
                .named_params_with_prefix(&join(&name, "layernorm_before"), out);
            block
                .mlp_norm
                .named_params_with_prefix(&join(&name, "layernorm_after"), out);
            if let Some(t) = &layer.transform {
                t.named_params_with_prefix(&join(&name, "transform"), out);
            }
        }
    }

    fn visit_linears_with_prefix(&self, prefix: &str, f: &mut dyn FnMut(&str, &Linear)) {
        let share = self.config.share.max(1);
        for (i, layer) in self.layers.iter().enumerate().step_by(share) {
            let group = join(prefix, &format!("group.{}", i / share));
            layer
                .block
                .attention
                .visit_linears_with_prefix(&join(&group, "attention"), f);
            layer.block.mlp.visit_linears_with_prefix(&group, f);
        }
    }
}
