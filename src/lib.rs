//! lithe: train, compress and run Transformers on hand-written kernels.
//!
//! - [`tensor`]: the contiguous f32 [`Tensor`] and its forward maths on `lithe-kernels`;
//! - [`autograd`]: the tape ([`Graph`]), value handles ([`Var`]), parameters ([`Param`]) and
//!   every op with its backward;
//! - [`nn`]: layers and models ([`nn::Bert`], [`nn::Vit`]) with Hugging Face parameter names;
//! - [`data`]: dataset readers;
//! - [`compress`]: quantization-aware training and post-training quantization;
//! - [`io`]: safetensors weights, JSON configs, Hugging Face BERT directories;
//! - [`int8`]: the int8 inference engine a trained model is lowered into;
//! - [`train`]: training loops (ViT on images, BERT on text), evaluation, saving a run;
//! - [`error`]: the one error type, [`Error`];
//! - `check` (feature `check`, on by default): numerical-equivalence testing of fast paths;
//! - [`alloc`]: glibc malloc thresholds that keep freed tensor memory for reuse;
//! - `cuda` (feature `cuda`): fp16 tensor-core kernels on NVIDIA GPUs;
//! - `ffi` (feature `capi`): the C ABI of the int8 runtime (`include/lithe.h`).
pub use lithe_kernels as kernels;

pub mod alloc;
pub mod autograd;
#[cfg(feature = "check")]
pub mod check;
pub mod compress;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod data;
pub mod embed;
pub mod error;
#[cfg(feature = "capi")]
pub mod ffi;
pub mod int8;
pub mod io;
pub mod nn;
pub mod optim;
pub mod tensor;
pub mod train;

pub use autograd::{CrossEntropyOptions, Graph, HeadMix, Param, Var};
pub use error::{Error, Result};
pub use lithe_kernels::gelu::GeluKind;
pub use optim::{AdamW, AdamWConfig, Optimizer, Sgd, SgdConfig};
pub use tensor::{Rng, Tensor};
