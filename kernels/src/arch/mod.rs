//! Per-ISA code: one file per instruction set, each compiled only for its target architecture
//! and entered only after run-time detection. Nothing outside `arch` contains intrinsics.
//!
//! GEMM micro-kernels: `portable`, `x86_avx2`, `x86_avx512` (its tiles for panels of a few
//! columns in `x86_avx512_edge`), `aarch64_neon`.
//! int8 GEMM micro-kernels: `portable_i8`, `x86_avx2_i8`, `x86_avxvnni_i8`, `x86_avx512vnni_i8`, `x86_amx_i8`,
//! `aarch64_neon_i8` (baseline and dotprod); the activation packing of the 6-row ymm tiles (AVX2,
//! AVX-VNNI) is in `x86_avx2_pack_i8` (the AVX512-VNNI tile reads A in place).
//! Element-wise kernels: written once in `elementwise` over the vector trait in `simd`, and
//! instantiated per ISA in `portable_elementwise`, `x86_avx2_elementwise`,
//! `x86_avx512_elementwise` and `aarch64_neon_elementwise`.
//! Depthwise convolution: written once in `dwconv` over the same vector trait, with its per-ISA
//! entry points in the same file; so are the head-mix passes of the fused transform attention
//! (`transform_attention`).

#[cfg(target_arch = "aarch64")]
pub mod aarch64_neon;
#[cfg(target_arch = "aarch64")]
pub(crate) mod aarch64_neon_elementwise;
#[cfg(target_arch = "aarch64")]
pub mod aarch64_neon_i8;
pub(crate) mod dwconv;
pub(crate) mod elementwise;
pub(crate) mod head_mix;
pub mod portable;
pub(crate) mod portable_elementwise;
pub mod portable_i8;
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) mod rows_sweep;
pub(crate) mod simd;
pub(crate) mod transform_attention;
#[cfg(target_arch = "x86_64")]
pub mod x86_amx_i8;
#[cfg(target_arch = "x86_64")]
pub mod x86_avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_avx2_elementwise;
#[cfg(target_arch = "x86_64")]
pub mod x86_avx2_i8;
#[cfg(target_arch = "x86_64")]
pub mod x86_avx2_pack_i8;
#[cfg(target_arch = "x86_64")]
pub mod x86_avx512;
#[cfg(target_arch = "x86_64")]
mod x86_avx512_edge;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_avx512_elementwise;
#[cfg(target_arch = "x86_64")]
pub mod x86_avx512vnni_i8;
#[cfg(target_arch = "x86_64")]
pub mod x86_avxvnni_i8;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_ymm_i8;
