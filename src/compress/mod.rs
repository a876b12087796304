//! Model compression: methods that take a trained [`crate::nn`] model and make it smaller or
//! faster to run.
//!
//! - [`qat`]: quantization-aware training (Q8BERT) and post-training quantization, ending in an
//!   [`crate::int8::Int8Model`].
//! - [`distill`]: distillation losses: soft-label KD and MiniLMv2 / MiniViT relations.
//! - [`prune`]: magnitude pruning, and structured pruning of heads and neurons that shrinks
//!   the weight matrices.
//! - [`elastic`]: OFA / DynaBERT elastic width and depth: one supernet, many sub-networks.
//! - [`share`]: MiniViT weight multiplexing: groups of blocks share their weights, each layer
//!   keeps its LayerNorms and small weight transformations.
//! - [`theseus`]: BERT-of-Theseus: successor blocks progressively replace groups of a frozen
//!   predecessor's blocks, then form a smaller BERT.
//! - [`tokendrop`]: DynamicViT: learned token dropping, masked while training and gathered at
//!   inference.

pub mod distill;
pub mod elastic;
pub mod prune;
pub mod qat;
pub mod share;
pub mod theseus;
pub mod tokendrop;
