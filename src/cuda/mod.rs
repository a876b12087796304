//! CUDA backend (feature `cuda`): fp16 tensor-core kernels compiled at run time with NVRTC.
//!
//! - [`CudaDevice`] opens a GPU (returning an error, never panicking, when there is no driver
//!   or device), owns the stream every launcher uses and caches the kernel modules.
//! - [`DeviceTensor`]: contiguous row-major fp16 (`half::f16`) device memory.
//! - Launchers, one per kernel, each mirroring its kernel's signature, checking shapes and
//!   returning [`Result`]: [`gemm`] (tensor-core GEMM with bias / GELU epilogues),
//!   [`attention`] (fused FlashAttention-2-style forward with key padding mask),
//!   [`layernorm`], [`softmax_rows`], [`gelu`], [`add`], [`embedding_gather`],
//!   [`transform_attention`] (MiniViT's fused head-mixing attention with a keep policy).
//! - [`CudaEncoder`]: a whole BERT encoder forward in fp16 from a CPU [`crate::nn::Bert`].
//! - [`ptx`]: the embedded kernel sources and the NVRTC compile cache (usable without a GPU).
//!
//! Layouts, precisions and preconditions are written at the top of each `cuda/*.cu` file.

mod attention;
mod device;
mod elementwise;
mod encoder;
mod error;
mod gemm;
pub mod ptx;
mod transform_attention;

pub use attention::{
    AttnPath, attention, attention_auto_path, attention_path_supported, attention_with,
};
pub use device::{CudaDevice, DeviceTensor, driver_available};
pub use elementwise::{
    add, embedding_gather, embedding_gather_checked, gelu, layernorm, softmax_rows,
};
pub use encoder::CudaEncoder;
pub use error::{CudaError, Result};
pub use gemm::{
    BLayout, Epilogue, GemmPath, gemm, gemm_auto_path, gemm_tma_supported, gemm_uses_tensor_cores,
    gemm_with,
};
pub use half::f16;
pub use transform_attention::{
    HeadMix, TRANSFORM_ATTENTION_HEADS, TRANSFORM_ATTENTION_MAX_HEADS, transform_attention,
    transform_attention_smem_bytes, transform_attention_supported,
};
