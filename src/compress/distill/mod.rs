//! Knowledge distillation losses (DESIGN.md, "Distillation"): a student is trained to match a
//! teacher's outputs or internal relations.
//!
//! - [`kd`]: soft-label KD, `KL(softmax(t / T) || softmax(s / T)) * T^2` per row
//!   ([`soft_kd`]), mixed with the labels as `(1 - alpha) CE + alpha KD` ([`kd_loss`]).
//! - [`deit`]: DeiT's distillation token: the class head learns from the labels, the
//!   distillation head from the teacher, softly or from its argmax ([`deit_loss`]).
//! - [`sparse`]: TinyViT's stored sparse logits: the teacher's top-k probabilities per sample
//!   written once to a file ([`SparseLogits`]), the student trained from it ([`sparse_kd`]).
//! - [`tinybert`]: TinyBERT's layer losses: embedding, hidden-state and attention-score MSE
//!   through a learned width projection, with a layer map, plus prediction KD
//!   ([`tinybert_loss`]).
//! - [`relation`]: MiniLMv2 / MiniViT relation distillation: self-attention relations between the
//!   query, key and value projections ([`attention_relation_loss`]) and hidden-state relations
//!   ([`hidden_relation_loss`]). Relations are `[T, T]` per sample (and per relation head), so
//!   the student's width may differ from the teacher's without a learned projection.
//!
//! The teacher usually runs on its own inference graph and its values enter the student's
//! graph as constants ([`crate::Graph::constant`]), so gradients reach the student only. The
//! losses make no assumption about that: a teacher value that requires a gradient gets its
//! true gradient.
//!
//! ```
//! use lithe::compress::distill::{Qkv, RelationConfig, attention_relation_loss};
//! use lithe::{Graph, Rng, Tensor};
//! # fn main() -> lithe::Result<()> {
//! let mut rng = Rng::new(0);
//! let g = Graph::new();
//! // One layer: student width 8, teacher width 12, B = 2, T = 5, 4 relation heads.
//! let mut proj = |w: usize, student: bool| {
//!     let t = Tensor::randn(&[2, 5, w], 0.0, 1.0, &mut rng);
//!     if student { g.variable(t) } else { g.constant(t) }
//! };
//! let s = Qkv { query: proj(8, true), key: proj(8, true), value: proj(8, true) };
//! let t = Qkv { query: proj(12, false), key: proj(12, false), value: proj(12, false) };
//! let loss = attention_relation_loss(&g, &[s], &[t], &RelationConfig::new(4), None)?;
//! g.backward(loss)?;
//! assert!(g.grad(s.query)?.is_some());
//! # Ok(()) }
//! ```

pub mod deit;
pub mod kd;
pub mod relation;
pub mod sparse;
pub mod tinybert;

pub use deit::{DeitTarget, argmax_rows, deit_loss};
pub use kd::{KdConfig, kd_loss, soft_kd};
pub use relation::{Qkv, QkvPart, RelationConfig, attention_relation_loss, hidden_relation_loss};
pub use sparse::{SparseLogits, sparse_kd};
pub use tinybert::{
    LayerOutputs, TinyBertConfig, WidthProjection, attention_mse, attention_scores, hidden_mse,
    tinybert_loss, uniform_layer_map,
};
