//! DynamicViT: learned, input-dependent token dropping for ViTs (Rao et al., 2021).
//!
//! Small [`Predictor`]s inserted before chosen blocks score every patch token; training keeps or
//! drops each token by a hard Gumbel-softmax decision whose product over stages is the keep
//! policy, and attention runs under the policy-masked softmax of
//! [`crate::Graph::transform_attention`] so dropped tokens stop influencing kept ones while the
//! shapes stay fixed (and the decisions stay differentiable). At inference each stage keeps the
//! `ceil(rho_s N)` best-scoring tokens and *gathers* them, so later blocks really run on fewer
//! tokens ([`DynamicVit::forward_gather`]).
//!
//! - [`TokenDropConfig`]: where the predictors sit and the keep ratio rho (stage `s` keeps
//!   `rho^(s+1)` of the patches, cumulatively);
//! - [`Predictor`] and [`gumbel_keep`]: the scorer and its training-time decision;
//! - [`DynamicVit`]: a [`crate::nn::Vit`] with predictors, its masked (training) and gathered
//!   (inference) forwards, save and load;
//! - [`TokenDropLoss`] and [`token_drop_loss`]: DynamicViT's objective (cross-entropy, keep-ratio
//!   loss, KL to the full teacher, MSE to the teacher's kept tokens).

mod loss;
mod predictor;
mod vit;

pub use loss::{TeacherTargets, TokenDropLoss, token_drop_loss};
pub use predictor::{Predictor, gumbel_keep};
pub use vit::{DynamicVit, DynamicVitConfig, GatherOutput, KeepRule, MaskedOutput};

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Where the token predictors sit and how many tokens each stage keeps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenDropConfig {
    /// Indices of the blocks a predictor runs before, strictly increasing, each below the
    /// depth. Stage `s` is the `s`-th of them.
    #[serde(rename = "token_drop_stages")]
    pub stages: Vec<usize>,
    /// rho in `(0, 1]`: stage `s` keeps `ceil(rho^(s+1) N)` of the N patch tokens in total.
    #[serde(rename = "token_keep_ratio")]
    pub keep_ratio: f32,
}

impl TokenDropConfig {
    /// DynamicViT's placement scaled to `depth` blocks (the paper drops before blocks 3, 6 and
    /// 9 of 12): before blocks `round(depth k / 4)`, k = 1..3, without repeats or block 0.
    pub fn default_stages(depth: usize) -> Vec<usize> {
        let mut stages: Vec<usize> = (1..=3)
            .map(|k| (depth as f64 * k as f64 / 4.0).round() as usize)
            .filter(|&s| s >= 1 && s < depth)
            .collect();
        stages.dedup();
        stages
    }

    /// The config with [`TokenDropConfig::default_stages`] for `depth` blocks.
    pub fn new(depth: usize, keep_ratio: f32) -> Self {
        TokenDropConfig {
            stages: TokenDropConfig::default_stages(depth),
            keep_ratio,
        }
    }

    /// [`Error::InvalidArgument`] unless there is a stage, the stages are strictly increasing and
    /// below `depth`, and the keep ratio is in `(0, 1]`.
    pub fn validate(&self, depth: usize) -> Result<()> {
        const OP: &str = "TokenDropConfig";
        if !(self.keep_ratio > 0.0 && self.keep_ratio <= 1.0) {
            return Err(Error::invalid(
                OP,
                format!("keep ratio {} must be in (0, 1]", self.keep_ratio),
            ));
        }
        if self.stages.is_empty() {
            return Err(Error::invalid(
                OP,
                format!("no pruning stage (a model of depth {depth} needs at least 2 blocks)"),
            ));
        }
        if self.stages.windows(2).any(|w| w[0] >= w[1]) || self.stages.iter().any(|&s| s >= depth) {
            return Err(Error::invalid(
                OP,
                format!(
                    "stages {:?} must be strictly increasing block indices below the depth {depth}",
                    self.stages
                ),
            ));
        }
        Ok(())
    }

    /// The cumulative keep ratio of each stage: `[rho, rho^2, rho^3, ...]`.
    pub fn stage_ratios(&self) -> Vec<f32> {
        (1..=self.stages.len())
            .map(|s| self.keep_ratio.powi(s as i32))
            .collect()
    }

    /// Tokens kept after each stage at inference, out of `patches`: `ceil(rho_s patches)`,
    /// at least 1 and never more than the stage before.
    pub fn keep_counts(&self, patches: usize) -> Vec<usize> {
        let mut prev = patches;
        self.stage_ratios()
            .into_iter()
            .map(|r| {
                // The product is rounded to 1e-4 first so that 0.7 * 50 = 35.000004 keeps 35.
                let want = ((r as f64 * patches as f64 * 1e4).round() / 1e4).ceil() as usize;
                prev = want.clamp(1.min(patches), prev);
                prev
            })
            .collect()
    }
}
