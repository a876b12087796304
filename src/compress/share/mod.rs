//! MiniViT weight multiplexing (DESIGN.md, "Weight sharing" and "Fused depthwise-transform
//! attention"): consecutive pre-LN blocks share their attention (Q, K, V, output projection) and
//! MLP weights, while every layer keeps its own LayerNorms and, optionally, its own small weight
//! transformations, so the layers of a group can still differ:
//!
//! - a pre-softmax head mix `A [nh, nh]` + bias `a [nh]` and a post-softmax head mix
//!   `B [nh, nh]` + bias `b [nh]` ([`crate::Graph::transform_attention`]);
//! - a depthwise `k x k` convolution over the patch-token grid, with a residual, applied to the
//!   MLP input after its LayerNorm: `u = LN2(x); u = u + DWConv(u)` on the grid tokens (the class
//!   and distillation tokens in front pass through), then `x = x + Mlp(u)`
//!   ([`crate::Graph::dwconv`]).
//!
//! The transforms start as the identity (A = B = I, zero biases, zero filter), and the shared
//! weights start as a copy of each group's first layer, so a freshly shared encoder computes
//! exactly what the plain encoder whose layers all equal their group's first layer computes (with
//! every layer's own LayerNorms). Training then recovers what sharing lost, typically by
//! distillation from the model it was made from ([`MiniVit::from_vit`] keeps the teacher's
//! embeddings and heads).
//!
//! Every layer holds handles ([`crate::Param`] clones) to its group's weights, so one backward
//! accumulates a shared weight's gradient over every use. [`crate::nn::Module::named_params`]
//! lists each shared tensor once (under `encoder.group.{g}`), so an optimizer updates it once
//! per step (AdamW refuses a parameter listed twice).
//!
//! ```no_run
//! use lithe::compress::share::{MiniVit, ShareConfig};
//! use lithe::nn::{Module, Vit, VitConfig};
//! # fn main() -> lithe::Result<()> {
//! let config = VitConfig {
//!     image_size: 8, patch_size: 2, num_channels: 1, hidden_size: 64, num_hidden_layers: 6,
//!     num_attention_heads: 4, intermediate_size: 128, num_labels: 10, layer_norm_eps: 1e-6,
//!     hidden_dropout_prob: 0.0, distillation_token: false,
//!     attention_head_size: None,
//! };
//! let teacher = Vit::new(&config, &mut lithe::Rng::new(0))?;
//! let student = MiniVit::from_vit(&teacher, &ShareConfig { share: 2, ..ShareConfig::default() })?;
//! assert!(student.num_params() < teacher.num_params());
//! student.save(std::path::Path::new("minivit"))?;
//! let again = MiniVit::load(std::path::Path::new("minivit"))?;
//! # Ok(()) }
//! ```
//!
//! Legend: B = batch, T = tokens (prefix tokens + gh * gw grid tokens), H = hidden width,
//! nh = heads, d = H / nh, k = convolution kernel size.

mod encoder;
mod vit;

pub use encoder::{
    DepthwiseConv, HeadMixWeights, LayerTransform, SharedEncoder, SharedLayer, SharedLayerTrace,
    share_layers,
};
pub use vit::{MiniVit, MiniVitConfig};

use serde::{Deserialize, Serialize};

fn default_kernel() -> usize {
    3
}

/// How [`share_layers`] multiplexes an encoder's weights. Serialised in a [`MiniVitConfig`] as
/// `share_layers`, `weight_transforms` and `dwconv_kernel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareConfig {
    /// Consecutive layers per group sharing one set of weights (at least 1; 1 shares nothing,
    /// the depth or more shares one set among all layers). A depth that it does not divide
    /// leaves the last group shorter.
    #[serde(rename = "share_layers")]
    pub share: usize,
    /// Gives every layer its own head mixes (pre- and post-softmax) and MLP-side depthwise
    /// convolution; without them the layers of a group differ only by their LayerNorms.
    #[serde(rename = "weight_transforms")]
    pub transforms: bool,
    /// Kernel size k of the depthwise convolution (odd).
    #[serde(rename = "dwconv_kernel", default = "default_kernel")]
    pub kernel: usize,
}

impl Default for ShareConfig {
    /// MiniViT's setting: groups of 2 layers, transforms on, 3 x 3 convolution.
    fn default() -> Self {
        ShareConfig {
            share: 2,
            transforms: true,
            kernel: 3,
        }
    }
}
