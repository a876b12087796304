//! Pruning that makes models smaller and faster.
//!
//! - [`importance`](mod@importance): FastFormers' first-order importance of every attention head and MLP
//!   neuron over a dataset.
//! - [`shrink`]: a [`PrunePlan`] (what each layer keeps), its masks, and the physical shrink:
//!   [`prune_vit`] / [`prune_bert`] return a smaller dense model with fewer heads and neurons
//!   that saves, loads and runs in every engine.
//! - [`magnitude`]: unstructured magnitude pruning (per layer or global) on a gradual cubic
//!   sparsity schedule, with masks applied to the weights and their gradients.
//!
//! Elastic width and depth (OFA / DynaBERT), which orders heads and neurons by the same
//! importance, is [`crate::compress::elastic`].

pub mod importance;
pub mod magnitude;
pub mod shrink;

pub use importance::{Importance, importance};
pub use magnitude::{CubicSchedule, GradualPruning, MagnitudePruner, PruneScope};
pub use shrink::{PrunePlan, prune_bert, prune_vit, shrink_block, shrink_encoder};
