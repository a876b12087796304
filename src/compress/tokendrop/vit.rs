//! [`DynamicVit`]: a ViT (or DeiT) with token predictors, run masked for training and gathered
//! for inference.
//!
//! Legend: B = batch, C = hidden width, P = prefix tokens (class, and DeiT's distillation
//! token), N = patch tokens, T = P + N, k_s = tokens kept after stage s.

use super::TokenDropConfig;
use super::predictor::{Predictor, gumbel_keep};
use crate::autograd::{Graph, Param, Var};
use crate::error::{Error, Result};
use crate::io::ConfigFile;
use crate::nn::{Linear, Module, Vit, VitConfig, deit_logits, join};
use crate::tensor::{Rng, Tensor};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A DynamicViT's configuration, stored flat in one `config.json` (`model_type`
/// `"dynamicvit"`, the [`VitConfig`] fields, then `token_drop_stages` and `token_keep_ratio`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DynamicVitConfig {
    /// The backbone's shape.
    #[serde(flatten)]
    pub vit: VitConfig,
    /// Where the predictors sit and the keep ratio.
    #[serde(flatten)]
    pub token_drop: TokenDropConfig,
}

impl ConfigFile for DynamicVitConfig {
    const MODEL_TYPE: &'static str = "dynamicvit";
}

/// How the masked forward decides which tokens to keep at each stage.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KeepRule {
    /// Training: a hard Gumbel-softmax sample at temperature `tau` with a straight-through
    /// gradient ([`gumbel_keep`]).
    Gumbel {
        /// Softmax temperature (DynamicViT uses 1).
        tau: f32,
    },
    /// The inference rule without gathering: of the tokens still kept, the `k_s` with the
    /// highest keep log-probability (ties to the lower index), as a constant policy.
    TopK,
}

/// What [`DynamicVit::forward_masked`] returns.
#[derive(Clone, Debug)]
pub struct MaskedOutput {
    /// Class logits `[B, classes]` (DeiT: the mean of both heads).
    pub logits: Var,
    /// Final-LayerNormed tokens `[B, T, C]`, every token in its place (dropped ones too).
    pub features: Var,
    /// The keep policy after each stage, `[B, N]` (1 = kept), cumulative over stages.
    pub decisions: Vec<Var>,
}

/// What [`DynamicVit::forward_gather`] returns.
#[derive(Clone, Debug)]
pub struct GatherOutput {
    /// Class logits `[B, classes]` (DeiT: the mean of both heads).
    pub logits: Var,
    /// Final-LayerNormed tokens `[B, P + k_last, C]`: the prefix tokens, then the kept patch
    /// tokens in their original order.
    pub features: Var,
    /// After each stage, the kept patch tokens' original positions (in `0..N`) per sample,
    /// ascending: `kept[s][b]` has `k_s` entries.
    pub kept: Vec<Vec<Vec<usize>>>,
}

/// A [`Vit`] with a [`Predictor`] before each stage's block. Parameter names: the backbone's
/// (as [`Vit`]'s) and `score_predictor.{s}.*` for stage `s` (as in the DynamicViT reference).
///
/// **When the gathered forward equals the masked one.** With the policy set to the top-k
/// selection ([`KeepRule::TopK`]), every kept token's row is the same in both forwards up to the
/// policy softmax's `eps`: a kept query's policy weights are `G_ij = D_j`, so it attends to
/// exactly the kept keys, which is what attention over the gathered tokens computes; the
/// predictors' global means are means over the kept tokens in both; LayerNorms and MLPs act per
/// token. So the class logits and the kept tokens' features are equal exactly when `eps = 0`,
/// and with DynamicViT's `eps = 1e-6` each kept probability moves by at most
/// `eps (1 + 1/N) / sum_j exp(S_ij - m_i) D_j` (relative), negligible unless a dropped key
/// dominates a kept query's logits. Dropped tokens' rows differ (the gathered forward does not
/// compute them) and never reach a kept row.
#[derive(Clone, Debug)]
pub struct DynamicVit {
    /// The configuration.
    pub config: DynamicVitConfig,
    /// The backbone.
    pub vit: Vit,
    /// One predictor per stage.
    pub predictors: Vec<Predictor>,
}

impl DynamicVit {
    /// `vit` with fresh predictors (from `rng`) placed as `token_drop` says. The config is
    /// `vit.config` with `token_drop`. Errors: [`TokenDropConfig::validate`], and
    /// [`Predictor::new`]'s when the width is not a multiple of 4.
    pub fn new(vit: Vit, token_drop: &TokenDropConfig, rng: &mut Rng) -> Result<Self> {
        token_drop.validate(vit.blocks().len())?;
        let c = vit.config.hidden_size;
        let predictors = token_drop
            .stages
            .iter()
            .map(|_| Predictor::new(c, rng))
            .collect::<Result<_>>()?;
        Ok(DynamicVit {
            config: DynamicVitConfig {
                vit: vit.config.clone(),
                token_drop: token_drop.clone(),
            },
            vit,
            predictors,
        })
    }

    /// Prefix tokens P (class, and the distillation token).
    pub fn prefix(&self) -> usize {
        1 + usize::from(self.vit.embeddings.distillation_token.is_some())
    }

    /// Patch tokens N.
    pub fn num_patches(&self) -> usize {
        self.vit.embeddings.num_patches()
    }

    /// Patch tokens kept after each stage at inference ([`TokenDropConfig::keep_counts`]).
    pub fn keep_counts(&self) -> Vec<usize> {
        self.config.token_drop.keep_counts(self.num_patches())
    }

    /// Stage index of the predictor before block `block`, if any.
    fn stage_at(&self, block: usize) -> Option<usize> {
        self.config
            .token_drop
            .stages
            .iter()
            .position(|&s| s == block)
    }

    /// The training forward: every token stays in place, each stage's predictor decides a
    /// keep policy (`rule`), and blocks from the first stage on run the policy-masked
    /// attention ([`crate::nn::Block::forward_policy`]; the prefix tokens are always kept).
    pub fn forward_masked(&self, g: &Graph, images: Var, rule: KeepRule) -> Result<MaskedOutput> {
        let x = self.vit.embeddings.forward(g, images)?; // [B, T, C]
        let shape = g.shape(x)?;
        let (b, t, p) = (shape[0], shape[1], self.prefix());
        let n = t - p;
        let counts = self.keep_counts();
        let mut prev = g.constant(Tensor::ones(&[b, n])); // [B, N]
        let prefix_keep = g.constant(Tensor::ones(&[b, p])); // [B, P]
        let mut policy = None; // [B, T]
        let mut decisions = Vec::with_capacity(counts.len());
        let mut h = x;
        for (i, block) in self.vit.blocks().iter().enumerate() {
            if let Some(s) = self.stage_at(i) {
                let spatial = g.slice(h, 1, p, t)?; // [B, N, C]
                let log_probs = self.predictors[s].forward(g, spatial, prev)?; // [B, N, 2]
                let keep = match rule {
                    KeepRule::Gumbel { tau } => gumbel_keep(g, log_probs, prev, tau)?,
                    KeepRule::TopK => top_k_policy(g, log_probs, prev, counts[s])?,
                };
                decisions.push(keep);
                prev = keep;
                policy = Some(g.concat(&[prefix_keep, keep], 1)?);
            }
            h = match policy {
                Some(d) => block.forward_policy(g, h, d)?,
                None => block.forward(g, h, None, None)?,
            };
        }
        let features = self.vit.layernorm.forward(g, h)?;
        let (cls, dist) = self.vit.heads(g, features)?;
        Ok(MaskedOutput {
            logits: deit_logits(g, cls, dist)?,
            features,
            decisions,
        })
    }

    /// The inference forward: at each stage keep the `k_s` patch tokens with the highest keep
    /// log-probability ([`Predictor::keep_margin`]) and gather them (with the prefix tokens), so later blocks run on
    /// `P + k_s` tokens. Equal to [`DynamicVit::forward_masked`] with [`KeepRule::TopK`] on the
    /// kept tokens, as the type's docs state.
    pub fn forward_gather(&self, g: &Graph, images: Var) -> Result<GatherOutput> {
        let mut h = self.vit.embeddings.forward(g, images)?; // [B, T, C]
        let shape = g.shape(h)?;
        let (b, c, p) = (shape[0], shape[2], self.prefix());
        let counts = self.keep_counts();
        let mut positions: Vec<Vec<usize>> = vec![(0..shape[1] - p).collect(); b];
        let mut kept = Vec::with_capacity(counts.len());
        for (i, block) in self.vit.blocks().iter().enumerate() {
            if let Some(s) = self.stage_at(i) {
                let n = positions[0].len();
                let spatial = g.slice(h, 1, p, p + n)?; // [B, n, C]
                let margins = g.value(self.predictors[s].keep_margin(g, spatial)?)?; // [B, n]
                let k = counts[s];
                let mut rows = Vec::with_capacity(b * (p + k));
                let alive = vec![true; n];
                for (bi, pos) in positions.iter_mut().enumerate() {
                    let scores = &margins.data()[bi * n..(bi + 1) * n];
                    let chosen = top_k(scores, &alive, k); // ascending, in 0..n
                    let base = bi * (p + n);
                    rows.extend(base..base + p);
                    rows.extend(chosen.iter().map(|&j| base + p + j));
                    *pos = chosen.iter().map(|&j| pos[j]).collect();
                }
                let flat = g.reshape(h, &[b * (p + n), c])?;
                h = g.reshape(g.index_select(flat, 0, &rows)?, &[b, p + k, c])?; // [B, P+k, C]
                kept.push(positions.clone());
            }
            h = block.forward(g, h, None, None)?;
        }
        let features = self.vit.layernorm.forward(g, h)?;
        let (cls, dist) = self.vit.heads(g, features)?;
        Ok(GatherOutput {
            logits: deit_logits(g, cls, dist)?,
            features,
            kept,
        })
    }

    /// Class logits `[B, classes]` of the inference forward ([`DynamicVit::forward_gather`]).
    pub fn forward_logits(&self, g: &Graph, images: Var) -> Result<Var> {
        Ok(self.forward_gather(g, images)?.logits)
    }

    /// Saves the model into `dir` (created if needed): `model.safetensors` and `config.json`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        crate::train::save_run(dir, self, &self.config, None)
    }

    /// Loads a model saved by [`DynamicVit::save`] (strictly: a missing or extra tensor is an
    /// error).
    pub fn load(dir: &Path) -> Result<Self> {
        let config: DynamicVitConfig = crate::io::load_config(dir.join("config.json"))?;
        let mut rng = Rng::new(0);
        let vit = Vit::new(&config.vit, &mut rng)?;
        let model = DynamicVit::new(vit, &config.token_drop, &mut rng)?;
        crate::io::load_into_module(&model, dir.join("model.safetensors"), true)?;
        Ok(model)
    }
}

/// The constant keep policy `[B, N]` that keeps, of the tokens `prev` keeps (> 0.5), the `k`
/// with the highest keep log-probability `log_probs[.., .., 0]`.
fn top_k_policy(g: &Graph, log_probs: Var, prev: Var, k: usize) -> Result<Var> {
    let (lp, prev) = (g.value(log_probs)?, g.value(prev)?);
    let &[b, n, _] = lp.shape() else {
        return Err(Error::shape(
            "top_k_policy",
            "log-probabilities must be [B, N, 2]",
        ));
    };
    let mut policy = vec![0.0f32; b * n];
    for bi in 0..b {
        let scores: Vec<f32> = lp.data()[bi * n * 2..(bi + 1) * n * 2]
            .chunks_exact(2)
            .map(|r| r[0])
            .collect();
        let alive: Vec<bool> = prev.data()[bi * n..(bi + 1) * n]
            .iter()
            .map(|&d| d > 0.5)
            .collect();
        for j in top_k(&scores, &alive, k) {
            policy[bi * n + j] = 1.0;
        }
    }
    Ok(g.constant(Tensor::from_vec(policy, &[b, n])?))
}

/// Indices of the `k` highest `scores` among those `alive` (ties to the lower index), in
/// ascending index order. Fewer when fewer are alive.
fn top_k(scores: &[f32], alive: &[bool], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).filter(|&j| alive[j]).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(k);
    order.sort_unstable();
    order
}

impl Module for DynamicVit {
    fn named_params_with_prefix(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        self.vit.named_params_with_prefix(prefix, out);
        for (s, pred) in self.predictors.iter().enumerate() {
            pred.named_params_with_prefix(&join(prefix, &format!("score_predictor.{s}")), out);
        }
    }

    fn visit_linears_with_prefix(&self, prefix: &str, f: &mut dyn FnMut(&str, &Linear)) {
        self.vit.visit_linears_with_prefix(prefix, f);
        for (s, pred) in self.predictors.iter().enumerate() {
            pred.visit_linears_with_prefix(&join(prefix, &format!("score_predictor.{s}")), f);
        }
    }
}
