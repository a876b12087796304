//! lithe: train, compress and run Transformers on hand-written kernels.
pub use lithe_kernels as kernels;
#[cfg(feature = "cuda")]
pub mod cuda;
