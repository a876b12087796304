//! Per-ISA code: one file per instruction set, each compiled only for its target architecture
//! and entered only after run-time detection. Nothing outside `arch` contains intrinsics.

#[cfg(target_arch = "aarch64")]
pub mod aarch64_neon;
pub mod portable;
#[cfg(target_arch = "x86_64")]
pub mod x86_avx2;
#[cfg(target_arch = "x86_64")]
pub mod x86_avx512;
