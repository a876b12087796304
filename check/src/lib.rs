//! Numerical-equivalence testing for fast paths: the kit lithe's own tests use, public so
//! that users can hold their kernels and models to the same standard.
//!
//! - [`strategy`]: proptest strategies that hit the hard cases on purpose: sizes 1, primes and
//!   tile edges ±1; signed zeros, subnormals and magnitudes near overflow; int8 operands at ±127
//!   and -128; NaN and infinities when asked.
//! - [`fill`], [`fill_i8`], [`edge_sizes`]: the same cases, deterministic, without proptest.
//! - [`Compare`], [`assert_close`], [`Exact`]: one result against its reference with the
//!   measures numerics people use ([`Measures`]: max absolute, max relative with a floor,
//!   relative Frobenius, ULP distance, cosine), bounded by a [`Tolerance`]. A failure names the
//!   worst element, its index (split along the shape) and both values.
//! - [`Traced`], [`check_equivalent`], [`assert_equivalent`]: a whole model on two engines (f32
//!   against int8 or fp16) over a data set, stage by stage, with a report that names the first
//!   stage out of tolerance and the stage where the error jumps. lithe implements [`Traced`]
//!   for its own engines in `lithe::check`.
//!
//! ```
//! use lithe_check::{Compare, Tolerance, fill};
//!
//! // A "fast" dot product (f32 accumulation) against an f64 reference.
//! let (a, b) = (fill(1000, 1), fill(1000, 2));
//! let fast: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
//! let reference = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum::<f64>() as f32;
//! Compare::new(&[fast], &[reference])
//!     .context("dot, n = 1000")
//!     .assert(&Tolerance::rel(1e-4, 1.0));
//! ```

mod compare;
mod equiv;
mod measure;
pub mod strategy;
mod tolerance;
mod values;

pub use compare::{Compare, Exact, Mismatch, Worst, assert_close, check_close};
pub use equiv::{
    EquivalenceError, EquivalenceReport, Stage, StageReport, TraceError, Traced, assert_equivalent,
    check_equivalent,
};
pub use measure::{Measures, ulp_distance};
pub use tolerance::Tolerance;
pub use values::{HARD_F32, edge_sizes, fill, fill_i8};
