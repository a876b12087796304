//! Vision Transformer (and DeiT with its distillation token): patch embedding, pre-LN encoder,
//! final LayerNorm, classification head(s). Parameter names follow Hugging Face `ViTModel` /
//! `ViTForImageClassification` (prefix-less), and `DeiTForImageClassificationWithTeacher` for
//! the distillation token and head.
//!
//! Legend: B = batch, C = channels, S = image side, p = patch side, g = S / p,
//! N = g * g patches, T = tokens = N + 1 (+ 1 with the distillation token), H = hidden width.

use super::block::{Block, BlockConfig, BlockTrace, Encoder, NormPlacement};
use super::config::VitConfig;
use super::linear::{INIT_STD, Init, LayerNorm, Linear, trunc_normal};
use super::{Module, join};
use crate::autograd::{Graph, Param, Var};
use crate::error::{Error, Result};
use crate::tensor::Rng;
use lithe_kernels::gelu::GeluKind;

/// Images to tokens: non-overlapping `p x p` patches through a linear projection (a convolution
/// with stride = kernel = p written as a gather + [`Linear`]), then the class token (and DeiT's
/// distillation token) in front and learned position embeddings added.
///
/// The projection is stored as a Linear weight `[H, C * p * p]` whose columns run over
/// `(channel, row in patch, column in patch)`, i.e. exactly the memory layout of PyTorch's
/// `Conv2d.weight[H, C, p, p]`: reshaping one into the other is free.
#[derive(Clone, Debug)]
pub struct PatchEmbedding {
    /// `embeddings.cls_token`: `[1, 1, H]`.
    pub cls_token: Param,
    /// `embeddings.distillation_token`: `[1, 1, H]` (DeiT only).
    pub distillation_token: Option<Param>,
    /// `embeddings.patch_embeddings.projection`: weight `[H, C * p * p]`, bias `[H]`.
    pub projection: Linear,
    /// `embeddings.position_embeddings`: `[1, T, H]`.
    pub position_embeddings: Param,
    /// Patch side p.
    pub patch_size: usize,
    /// Image side S.
    pub image_size: usize,
    /// Input channels C.
    pub channels: usize,
    /// Dropout on the output during training.
    pub dropout: f32,
}

impl PatchEmbedding {
    /// A patch embedding for `c`, everything drawn from a truncated `N(0, 0.02^2)`.
    /// [`Error::InvalidArgument`] unless p divides S.
    pub fn new(c: &VitConfig, rng: &mut Rng) -> Result<Self> {
        if c.patch_size == 0 || !c.image_size.is_multiple_of(c.patch_size) {
            return Err(Error::invalid(
                "PatchEmbedding::new",
                format!(
                    "patch size {} does not divide image size {}",
                    c.patch_size, c.image_size
                ),
            ));
        }
        let h = c.hidden_size;
        let side = c.image_size / c.patch_size;
        let tokens = side * side + 1 + usize::from(c.distillation_token);
        let patch = c.num_channels * c.patch_size * c.patch_size;
        Ok(PatchEmbedding {
            cls_token: Param::new(trunc_normal(&[1, 1, h], INIT_STD, rng)),
            distillation_token: c
                .distillation_token
                .then(|| Param::new(trunc_normal(&[1, 1, h], INIT_STD, rng))),
            projection: Linear::new(patch, h, true, Init::TruncNormal(INIT_STD), rng),
            position_embeddings: Param::new(trunc_normal(&[1, tokens, h], INIT_STD, rng)),
            patch_size: c.patch_size,
            image_size: c.image_size,
            channels: c.num_channels,
            dropout: c.hidden_dropout_prob,
        })
    }

    /// Number of patches N.
    pub fn num_patches(&self) -> usize {
        let side = self.image_size / self.patch_size;
        side * side
    }

    /// `images[B, C, S, S] -> patches[B, N, C * p * p]`, patches in row-major grid order, each
    /// flattened as `(channel, row, column)`.
    pub fn patchify(&self, g: &Graph, images: Var) -> Result<Var> {
        let shape = g.shape(images)?;
        let (s, p, c) = (self.image_size, self.patch_size, self.channels);
        let [b, ch, hh, ww] = shape[..] else {
            return Err(Error::shape(
                "PatchEmbedding::patchify",
                format!("images must be [B, C, S, S], got {shape:?}"),
            ));
        };
        if (ch, hh, ww) != (c, s, s) {
            return Err(Error::shape(
                "PatchEmbedding::patchify",
                format!("images {shape:?}, expected [B, {c}, {s}, {s}]"),
            ));
        }
        let side = s / p;
        let x = g.reshape(images, &[b, c, side, p, side, p])?; // [B, C, gy, py, gx, px]
        let x = g.permute(x, &[0, 2, 4, 1, 3, 5])?; // [B, gy, gx, C, py, px]
        g.reshape(x, &[b, side * side, c * p * p]) // [B, N, C*p*p]
    }

    /// `images[B, C, S, S] -> tokens[B, T, H]`: `[cls, (dist), patches] + positions`.
    pub fn forward(&self, g: &Graph, images: Var) -> Result<Var> {
        let b = g.shape(images)?.first().copied().unwrap_or(0);
        let patches = self.patchify(g, images)?; // [B, N, C*p*p]
        let patches = self.projection.forward(g, patches)?; // [B, N, H]
        // Tokens repeated over the batch by a gather (whose backward sums over B).
        let repeat = vec![0usize; b];
        let mut parts = vec![g.index_select(g.param(&self.cls_token), 0, &repeat)?]; // [B, 1, H]
        if let Some(d) = &self.distillation_token {
            parts.push(g.index_select(g.param(d), 0, &repeat)?); // [B, 1, H]
        }
        parts.push(patches);
        let x = g.concat(&parts, 1)?; // [B, T, H]
        let x = g.add(x, g.param(&self.position_embeddings))?;
        g.dropout(x, self.dropout)
    }
}

impl Module for PatchEmbedding {
    fn named_params_with_prefix(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        out.push((join(prefix, "cls_token"), self.cls_token.clone()));
        if let Some(d) = &self.distillation_token {
            out.push((join(prefix, "distillation_token"), d.clone()));
        }
        self.projection
            .named_params_with_prefix(&join(prefix, "patch_embeddings.projection"), out);
        out.push((
            join(prefix, "position_embeddings"),
            self.position_embeddings.clone(),
        ));
    }

    fn visit_linears_with_prefix(&self, prefix: &str, f: &mut dyn FnMut(&str, &Linear)) {
        f(
            &join(prefix, "patch_embeddings.projection"),
            &self.projection,
        );
    }
}

/// A ViT image classifier; with `distillation_token`, DeiT's two-headed variant.
#[derive(Clone, Debug)]
pub struct Vit {
    /// The configuration it was built from.
    pub config: VitConfig,
    /// `embeddings.*`.
    pub embeddings: PatchEmbedding,
    /// `encoder.layer.{i}.*`, pre-LN blocks.
    pub encoder: Encoder,
    /// `layernorm`: the final LayerNorm.
    pub layernorm: LayerNorm,
    /// `classifier`: `[classes, H]` on the class token.
    pub classifier: Linear,
    /// `distillation_classifier`: `[classes, H]` on the distillation token (DeiT only).
    pub distillation_classifier: Option<Linear>,
}

impl Vit {
    /// A freshly initialised model (truncated `N(0, 0.02^2)` weights, zero biases, LayerNorms
    /// 1/0, exact GELU, no attention dropout). [`Error::InvalidArgument`] unless p divides S and
    /// the heads divide H, or for more than [`MAX_PARAMS`](super::MAX_PARAMS)
    /// parameters.
    pub fn new(c: &VitConfig, rng: &mut Rng) -> Result<Self> {
        c.check_size()?;
        let init = Init::TruncNormal(INIT_STD);
        let block = BlockConfig {
            hidden: c.hidden_size,
            heads: c.num_attention_heads,
            head_dim: Some(c.head_dim()?),
            inner: c.intermediate_size,
            act: GeluKind::Erf,
            hidden_dropout: c.hidden_dropout_prob,
            attention_dropout: 0.0,
            eps: c.layer_norm_eps,
            norm: NormPlacement::Pre,
        };
        let embeddings = PatchEmbedding::new(c, rng)?;
        let encoder = Encoder::new(c.num_hidden_layers, &block, init, rng)?;
        let h = c.hidden_size;
        Ok(Vit {
            config: c.clone(),
            embeddings,
            encoder,
            layernorm: LayerNorm::new(h, c.layer_norm_eps),
            classifier: Linear::new(h, c.num_labels, true, init, rng),
            distillation_classifier: c
                .distillation_token
                .then(|| Linear::new(h, c.num_labels, true, init, rng)),
        })
    }

    /// The blocks, first to last.
    pub fn blocks(&self) -> &[Block] {
        &self.encoder.layers
    }

    /// Final-LayerNormed tokens `[B, T, H]` of `images[B, C, S, S]`.
    pub fn forward_features(&self, g: &Graph, images: Var) -> Result<Var> {
        let x = self.embeddings.forward(g, images)?; // [B, T, H]
        let x = self.encoder.forward(g, x, None, None)?;
        self.layernorm.forward(g, x)
    }

    /// [`Vit::forward_features`] before the final LayerNorm, with per-layer head masks and every
    /// block's trace: `(embedding output [B, T, H], traces)`.
    pub fn forward_traced(
        &self,
        g: &Graph,
        images: Var,
        head_masks: Option<&[Var]>,
    ) -> Result<(Var, Vec<BlockTrace>)> {
        let x = self.embeddings.forward(g, images)?; // [B, T, H]
        let traces = self.encoder.forward_traced(g, x, None, head_masks)?;
        Ok((x, traces))
    }

    /// The heads on final features `[B, T, H]`: class-token logits `[B, classes]` and, with the
    /// distillation token, its logits `[B, classes]` (DeiT trains them on separate targets).
    pub fn heads(&self, g: &Graph, features: Var) -> Result<(Var, Option<Var>)> {
        token_heads(
            g,
            features,
            &self.classifier,
            self.distillation_classifier.as_ref(),
        )
    }

    /// Both heads' logits for `images[B, C, S, S]`; see [`Vit::heads`].
    pub fn forward_heads(&self, g: &Graph, images: Var) -> Result<(Var, Option<Var>)> {
        let features = self.forward_features(g, images)?;
        self.heads(g, features)
    }

    /// Class logits `[B, classes]` from the last block's output `[B, T, H]` (before the final
    /// LayerNorm, as [`Vit::forward_traced`] returns it): the rest of [`Vit::forward_logits`].
    pub fn logits_from_hidden(&self, g: &Graph, hidden: Var) -> Result<Var> {
        let features = self.layernorm.forward(g, hidden)?;
        let (cls, dist) = self.heads(g, features)?;
        deit_logits(g, cls, dist)
    }

    /// Class logits `[B, classes]`; with the distillation token, the mean of the two heads
    /// (DeiT's inference rule).
    pub fn forward_logits(&self, g: &Graph, images: Var) -> Result<Var> {
        let (cls, dist) = self.forward_heads(g, images)?;
        deit_logits(g, cls, dist)
    }
}

/// The classification heads on final features `[B, T, H]`: `classifier` on the class token
/// (token 0) and, when given, `distillation` on DeiT's distillation token (token 1), each
/// `[B, classes]`. [`Error::Shape`] unless the features are `[B, T, H]`.
pub fn token_heads(
    g: &Graph,
    features: Var,
    classifier: &Linear,
    distillation: Option<&Linear>,
) -> Result<(Var, Option<Var>)> {
    let shape = g.shape(features)?;
    let [b, _, h] = shape[..] else {
        return Err(Error::shape(
            "vit heads",
            format!("features must be [B, T, H], got {shape:?}"),
        ));
    };
    let token = |i: usize| -> Result<Var> {
        let t = g.slice(features, 1, i, i + 1)?; // [B, 1, H]
        g.reshape(t, &[b, h]) // [B, H]
    };
    let cls = classifier.forward(g, token(0)?)?;
    let dist = match distillation {
        Some(head) => Some(head.forward(g, token(1)?)?),
        None => None,
    };
    Ok((cls, dist))
}

/// DeiT's inference rule: the class head's logits, or the mean of the class and distillation
/// heads' logits.
pub fn deit_logits(g: &Graph, cls: Var, dist: Option<Var>) -> Result<Var> {
    match dist {
        None => Ok(cls),
        Some(dist) => g.mul_scalar(g.add(cls, dist)?, 0.5),
    }
}

impl Module for Vit {
    fn named_params_with_prefix(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        self.embeddings
            .named_params_with_prefix(&join(prefix, "embeddings"), out);
        self.encoder
            .named_params_with_prefix(&join(prefix, "encoder"), out);
        self.layernorm
            .named_params_with_prefix(&join(prefix, "layernorm"), out);
        self.classifier
            .named_params_with_prefix(&join(prefix, "classifier"), out);
        if let Some(d) = &self.distillation_classifier {
            d.named_params_with_prefix(&join(prefix, "distillation_classifier"), out);
        }
    }

    fn visit_linears_with_prefix(&self, prefix: &str, f: &mut dyn FnMut(&str, &Linear)) {
        self.embeddings
            .visit_linears_with_prefix(&join(prefix, "embeddings"), f);
        self.encoder
            .visit_linears_with_prefix(&join(prefix, "encoder"), f);
        f(&join(prefix, "classifier"), &self.classifier);
        if let Some(d) = &self.distillation_classifier {
            f(&join(prefix, "distillation_classifier"), d);
        }
    }
}
