//! Numerical-equivalence testing: the kit lithe's own tests use, for users' kernels and models.
//!
//! Everything of the `lithe-check` crate is here (strategies that aim at the hard cases,
//! [`Compare`] and [`assert_close`] with the worst element named, [`assert_equivalent`] for
//! whole models), plus lithe's inference engines as [`Traced`] engines: [`F32Engine`] (the
//! autograd models, the reference), [`Int8Engine`] and, with the `cuda` feature,
//! `CudaEngine`. Each traces the same stages: `embeddings`, `layer.i`, and `logits` where it
//! computes them.
//!
//! ```
//! use lithe::check::{F32Engine, Int8Engine, Sample, Tolerance, assert_equivalent};
//! use lithe::int8::{QuantPlan, ToInt8};
//! use lithe::nn::{Vit, VitConfig};
//! use lithe::Rng;
//!
//! let config = VitConfig {
//!     image_size: 8, patch_size: 4, num_channels: 1, hidden_size: 16,
//!     num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 32, num_labels: 3,
//!     layer_norm_eps: 1e-6, hidden_dropout_prob: 0.0, distillation_token: false,
//!     attention_head_size: None,
//! };
//! let vit = Vit::new(&config, &mut Rng::new(0))?;
//! let int8 = vit.to_int8(&QuantPlan::dynamic())?;
//! let samples: Vec<Sample> = (0..4)
//!     .map(|i| Sample::images(lithe::check::fill(2 * 64, i), 2))
//!     .collect();
//! let report = assert_equivalent(
//!     &mut Int8Engine::new(&int8, 2, 0)?,
//!     &mut F32Engine::vit(&vit),
//!     &samples,
//!     &Tolerance::cosine(0.99),
//! );
//! assert_eq!(report.stages.len(), 4); // embeddings, layer.0, layer.1, logits
//! # Ok::<(), lithe::Error>(())
//! ```

mod engines;

#[cfg(feature = "cuda")]
pub use engines::CudaEngine;
pub use engines::{F32Engine, Int8Engine, Sample};
pub use lithe_check::*;
