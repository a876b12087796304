//! The ops of the tape, one file per group, each op's backward closure directly inside its
//! forward (micrograd's habit), with llm.c's argument order: `(dinputs, dout, inputs, out)`.
//!
//! Every backward ADDS (`+=`) into the gradient slots of its inputs
//! ([`crate::autograd::GradSlot`]: unused when that input needs no gradient, an implicit zero
//! until the first add). Composite ops (e.g. [`crate::autograd::Graph::neg`],
//! [`crate::autograd::Graph::embedding`], [`crate::autograd::Graph::matmul_t`]) are written in
//! terms of other ops and have no backward of their own.
//!
//! - [`arith`]: add, sub, mul, div (broadcasting), scalar add/mul, neg, relu, tanh, exp, log,
//!   sqrt
//! - [`reduce`]: sum, mean over axes (keepdim), sum_all, mean_all
//! - [`layout`]: reshape, transpose, permute, slice, concat, index_select, scatter_add,
//!   embedding
//! - [`matmul`]: batched matmul with broadcast batch dims and transposed operands; linear
//! - [`attention`]: fused multi-head attention
//! - [`transform_attention`]: MiniViT's depthwise-transform attention (head mixes, keep policy)
//! - [`dwconv`]: depthwise convolution over a token grid
//! - [`nn`]: softmax, log_softmax, layernorm, gelu, dropout
//! - [`loss`]: cross_entropy, mse, kl_div
//! - [`quant`]: fake quantization per tensor and per row (straight-through estimator)

pub mod arith;
pub mod attention;
pub mod dwconv;
pub mod layout;
pub mod loss;
pub mod matmul;
pub mod nn;
pub mod quant;
pub mod reduce;
pub mod transform_attention;
