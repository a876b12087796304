//! `lithe-kernels`: the CPU compute under lithe.
//!
//! Everything here works on plain slices: no tensor type, no allocation on the hot path (packing
//! buffers are per-thread and grow once). Each kernel has a scalar twin in
//! [`reference`](mod@reference) that the property tests use as the oracle, and each SIMD path is
//! chosen at run time (see [`isa`]).
//!
//! - [`gemm`]: f32 `C = alpha * op(A) * op(B) + beta * C` with BLIS-style packing, per-ISA
//!   micro-kernels (AVX2+FMA, AVX-512F, NEON, portable) and a threaded driver.
//! - [`gemm_i8`](mod@gemm_i8): int8 `C_i32 = A_s8 * B_s8^T` on weights packed once, exact on every path
//!   (AVX2, AVX-VNNI, AVX512-VNNI, AMX-INT8, NEON, NEON dotprod, portable), with fused dequantize / GELU /
//!   requantize epilogues; [`quantize`]: f32 <-> s8.
//! - [`head_mix`]: mixing of per-head maps across heads (MiniViT's head transforms).
//! - [`softmax`], [`layernorm`], [`gelu`]: row-wise and element-wise kernels for Transformers,
//!   with per-ISA fast paths (AVX2+FMA, AVX-512F, NEON, portable) dispatched through
//!   [`elementwise::ElementwiseKernels`].
//! - [`dwconv`]: depthwise `k x k` convolution over a channels-last token grid, forward and
//!   backward (MiniViT's MLP-side transformation), on the same per-ISA vectors.
//! - [`transform_attention`]: MiniViT's depthwise-transform attention (head mixes before and
//!   after the softmax, optional DynamicViT keep policy), fused per block of query rows, forward
//!   and backward.

pub mod arch;
pub mod dwconv;
pub mod elementwise;
pub mod error;
pub mod gelu;
pub mod gemm;
pub mod gemm_i8;
pub mod head_mix;
pub mod isa;
pub mod layernorm;
pub mod quantize;
pub mod reference;
pub mod softmax;
pub mod threads;
pub mod transform_attention;

pub use elementwise::ElementwiseKernels;
pub use error::KernelError;
pub use gemm::{
    BSource, GemmOptions, MatMut, MatRef, PackedB, sgemm, sgemm_fused, sgemm_fused_uninit,
    sgemm_with,
};
pub use gemm_i8::{I8GemmOptions, PackedI8B, gemm_i8, gemm_i8_dequant, gemm_i8_requant};
pub use isa::{I8Isa, Isa};
