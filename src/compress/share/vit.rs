//! MiniViT: a ViT (or DeiT) whose encoder multiplexes its weights ([`SharedEncoder`]), with the
//! teacher's patch embedding, final LayerNorm and head(s); saved and loaded as safetensors plus a
//! `config.json` ([`MiniVitConfig`]).
//!
//! Legend: B = batch, C = channels, S = image side, T = tokens, H = hidden width.

use super::ShareConfig;
use super::encoder::{SharedEncoder, SharedLayerTrace, share_layers};
use crate::autograd::{Graph, Param, Var};
use crate::error::{Error, Result};
use crate::io::ConfigFile;
use crate::nn::copy::{copy_layernorm, copy_linear, copy_param};
use crate::nn::{
    LayerNorm, Linear, Module, PatchEmbedding, Vit, VitConfig, deit_logits, join, token_heads,
};
use crate::tensor::Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A MiniViT's configuration: the ViT it has the shape of and how its encoder shares weights,
/// stored flat in one `config.json` (`model_type` `"minivit"`, the [`VitConfig`] fields, then
/// `share_layers`, `weight_transforms`, `dwconv_kernel`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MiniVitConfig {
    /// The shape of the model: patches, widths, depth, heads, classes, distillation token.
    #[serde(flatten)]
    pub vit: VitConfig,
    /// How the encoder multiplexes its weights.
    #[serde(flatten)]
    pub share: ShareConfig,
}

impl ConfigFile for MiniVitConfig {
    const MODEL_TYPE: &'static str = "minivit";
}

/// A ViT image classifier whose encoder is a [`SharedEncoder`]; DeiT's two heads when the
/// distillation token is present. Parameter names: as [`Vit`]'s (`embeddings.*`, `layernorm`,
/// `classifier`, `distillation_classifier`) around the encoder's (`encoder.group.{g}.*`,
/// `encoder.layer.{i}.*`, see [`SharedEncoder`]).
#[derive(Clone, Debug)]
pub struct MiniVit {
    /// The configuration ([`MiniVit::config`]).
    pub config: MiniVitConfig,
    /// `embeddings.*`.
    pub embeddings: PatchEmbedding,
    /// `encoder.*`.
    pub encoder: SharedEncoder,
    /// `layernorm`: the final LayerNorm.
    pub layernorm: LayerNorm,
    /// `classifier`: `[classes, H]` on the class token.
    pub classifier: Linear,
    /// `distillation_classifier`: `[classes, H]` on the distillation token (DeiT only).
    pub distillation_classifier: Option<Linear>,
}

impl MiniVit {
    /// The student of `vit` (MiniViT's weight distillation starts from the teacher's weights):
    /// copies of its embeddings, final LayerNorm and head(s), and its encoder multiplexed by
    /// [`share_layers`] on the patch grid. Shares no parameter with `vit`. The config is
    /// `vit.config` with `config`: a teacher reshaped after it was built (pruned heads or
    /// neurons) gives a model that [`MiniVit::load`] cannot rebuild from its config. Errors as
    /// [`share_layers`].
    pub fn from_vit(vit: &Vit, config: &ShareConfig) -> Result<MiniVit> {
        let e = &vit.embeddings;
        if e.patch_size == 0 {
            return Err(Error::invalid("MiniVit::from_vit", "patch size is 0"));
        }
        let embeddings = PatchEmbedding {
            cls_token: copy_param(&e.cls_token),
            distillation_token: e.distillation_token.as_ref().map(copy_param),
            projection: copy_linear(&e.projection)?,
            position_embeddings: copy_param(&e.position_embeddings),
            ..e.clone()
        };
        let side = e.image_size / e.patch_size;
        let prefix = 1 + usize::from(e.distillation_token.is_some());
        let encoder = share_layers(&vit.encoder, (side, side), prefix, config)?;
        Ok(MiniVit {
            config: MiniVitConfig {
                vit: vit.config.clone(),
                share: *config,
            },
            embeddings,
            encoder,
            layernorm: copy_layernorm(&vit.layernorm),
            classifier: copy_linear(&vit.classifier)?,
            distillation_classifier: vit
                .distillation_classifier
                .as_ref()
                .map(copy_linear)
                .transpose()?,
        })
    }

    /// A freshly initialised model of `config` (a [`Vit::new`] from `rng`, multiplexed): the
    /// layout [`MiniVit::load`] fills. Errors as [`Vit::new`] and [`share_layers`].
    pub fn new(config: &MiniVitConfig, rng: &mut Rng) -> Result<MiniVit> {
        MiniVit::from_vit(&Vit::new(&config.vit, rng)?, &config.share)
    }

    /// The configuration: the ViT shape and the sharing.
    pub fn config(&self) -> &MiniVitConfig {
        &self.config
    }

    /// Final-LayerNormed tokens `[B, T, H]` of `images[B, C, S, S]`.
    pub fn forward_features(&self, g: &Graph, images: Var) -> Result<Var> {
        let x = self.embeddings.forward(g, images)?; // [B, T, H]
        let x = self.encoder.forward(g, x)?;
        self.layernorm.forward(g, x)
    }

    /// The heads on final features `[B, T, H]`: class-token logits `[B, classes]` and, with the
    /// distillation token, its logits `[B, classes]` (as [`Vit::heads`]).
    pub fn heads(&self, g: &Graph, features: Var) -> Result<(Var, Option<Var>)> {
        token_heads(
            g,
            features,
            &self.classifier,
            self.distillation_classifier.as_ref(),
        )
    }

    /// Both heads' logits for `images[B, C, S, S]`; see [`MiniVit::heads`].
    pub fn forward_heads(&self, g: &Graph, images: Var) -> Result<(Var, Option<Var>)> {
        let features = self.forward_features(g, images)?;
        self.heads(g, features)
    }

    /// Class logits `[B, classes]`; with the distillation token, the mean of the two heads
    /// (DeiT's inference rule, as [`Vit::forward_logits`]).
    pub fn forward_logits(&self, g: &Graph, images: Var) -> Result<Var> {
        let (cls, dist) = self.forward_heads(g, images)?;
        deit_logits(g, cls, dist)
    }

    /// [`MiniVit::forward_logits`] with every encoder layer's trace (output and raw Q, K, V),
    /// for relation distillation.
    pub fn forward_traced(&self, g: &Graph, images: Var) -> Result<(Var, Vec<SharedLayerTrace>)> {
        let x = self.embeddings.forward(g, images)?; // [B, T, H]
        let traces = self.encoder.forward_traced(g, x)?;
        let last = traces.last().map_or(x, |t| t.output);
        let features = self.layernorm.forward(g, last)?;
        let (cls, dist) = self.heads(g, features)?;
        Ok((deit_logits(g, cls, dist)?, traces))
    }

    /// Saves the model into `dir` (created if needed): `model.safetensors` and `config.json`
    /// ([`crate::train::save_run`]).
    pub fn save(&self, dir: &Path) -> Result<()> {
        crate::train::save_run(dir, self, &self.config, None)
    }

    /// Loads a model saved by [`MiniVit::save`]: the config, then every parameter by name
    /// (strictly: a missing or extra tensor is an error, see
    /// [`crate::io::load_into_module`]).
    pub fn load(dir: &Path) -> Result<MiniVit> {
        let config: MiniVitConfig = crate::io::load_config(dir.join("config.json"))?;
        let model = MiniVit::new(&config, &mut Rng::new(0))?;
        crate::io::load_into_module(&model, dir.join("model.safetensors"), true)?;
        Ok(model)
    }
}

impl Module for MiniVit {
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
