//! Model compression: methods that take a trained [`crate::nn`] model and make it smaller or
//! faster to run.
//!
//! - [`qat`]: quantization-aware training (Q8BERT) and post-training quantization, ending in an
//!   [`crate::int8::Int8Model`].
//! - [`distill`]: distillation losses: soft-label KD and MiniLMv2 / MiniViT relations.

pub mod distill;
pub mod qat;
