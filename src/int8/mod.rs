//! int8 inference: a trained [`crate::nn::Vit`] or [`crate::nn::Bert`] *lowered* into an engine
//! that owns packed int8 weights and never touches the autograd tape (DESIGN.md, "Int8
//! inference").
//!
//! - every Linear becomes an [`Int8Linear`]: weights quantized per output channel
//!   (`s_w[n] = max|W[n,:]| / 127`), packed once for the machine's int8 path, bias in f32;
//!   its input is quantized per tensor with a static scale (from QAT or calibration) or per row
//!   at run time ([`ActQuant`]); dequantize, bias and GELU are fused in the GEMM epilogue;
//! - embeddings, LayerNorm, softmax and the attention products stay in f32;
//! - a DynamicViT ([`Int8Model::from_dynamic_vit`]) keeps its token predictors in f32 and runs
//!   the blocks after each stage on the kept tokens only;
//! - a [`Workspace`] is sized once for the largest batch and sequence, and
//!   [`Int8Model::forward`] allocates nothing after that.
//!
//! Files: `linear` (one quantized layer), `block` (a Transformer block and its attention),
//! `model` (the Bert and Vit forwards), `parts` (embeddings and heads), `lower` (f32 model -> int8), `workspace` (the arena),
//! `io` (safetensors save/load), `tokendrop` (DynamicViT's token dropping).

use std::collections::HashMap;

mod block;
mod io;
mod linear;
mod lower;
mod model;
mod parts;
mod tokendrop;
mod workspace;

pub use linear::Int8Linear;
pub use model::{Input, Int8Model, ModelKind, ToInt8};
pub use workspace::{MAX_WORKSPACE_BYTES, Workspace};

/// How the input of one [`Int8Linear`] is quantized.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ActQuant {
    /// One scale for the whole tensor, fixed at conversion (`max|x| / 127` from QAT's EMA or
    /// from calibration).
    Static(f32),
    /// `max|row| / 127` per row, computed at run time.
    Dynamic,
}

/// Activation quantization per Linear, keyed by the Linear's name as
/// [`crate::nn::Module::visit_linears`] gives it (`encoder.layer.0.attention.self.query`).
/// Linears without an entry use [`QuantPlan::default_mode`].
#[derive(Clone, Debug)]
pub struct QuantPlan {
    /// Mode of the Linears the map does not name.
    pub default_mode: ActQuant,
    /// Per-Linear modes.
    pub acts: HashMap<String, ActQuant>,
}

impl QuantPlan {
    /// Every Linear quantizes its input per row at run time.
    pub fn dynamic() -> Self {
        QuantPlan {
            default_mode: ActQuant::Dynamic,
            acts: HashMap::new(),
        }
    }

    /// The mode of the Linear named `name`.
    pub fn get(&self, name: &str) -> ActQuant {
        self.acts.get(name).copied().unwrap_or(self.default_mode)
    }
}

/// The symmetric scale of a tensor whose largest magnitude is `max_abs`: `max_abs / 127`, or 1
/// for an all-zero tensor. The one formula QAT, calibration and the engine share, so they
/// quantize identically.
pub fn symmetric_scale(max_abs: f32) -> f32 {
    if max_abs > 0.0 { max_abs / 127.0 } else { 1.0 }
}
