//! AVX-VNNI int8 kernels: `vpdpbusd` on ymm (the VEX-encoded form, for CPUs with AVX-VNNI but
//! no AVX-512, and as a forced path on CPUs with both).
//!
//! `vpdpbusd` multiplies unsigned by signed bytes and adds four products into each i32 lane, so
//! A is packed as `a + 128` (u8) and each column's sum starts at `-128 * sum_k B[n, k]`
//! (precomputed when B is packed): exact in i32, no i16 intermediate.
//!
//! Tile 6 x 16: 12 ymm accumulators, 2 ymm of B per depth group of 4 and one broadcast dword of
//! A per row.

use super::x86_ymm_i8::ymm_i8_kernels;
use crate::I8Isa;
use crate::gemm_i8::pack::{self, S8, U8Biased};
use crate::gemm_i8::{AFeed, I8Kernels, I8UkernelParams, SkinnyKernel};
use std::arch::x86_64::*;

pub use super::x86_ymm_i8::{MR, NR};

/// Depth values per group (one i32 lane's worth of bytes).
const KG: usize = 4;

/// The AVX-VNNI kernel table.
pub fn kernels() -> I8Kernels {
    I8Kernels {
        isa: I8Isa::AvxVnni,
        mr: MR,
        nr: NR,
        kg: KG,
        a_bytes: 1,
        b_bytes: 1,
        colsum_factor: -128,
        b_block_bytes: 384 << 10,
        a_feed: AFeed::Packed(super::x86_avx2_pack_i8::pack_a_6x4_u8biased),
        pack_b: pack::pack_b::<NR, KG, S8>,
        ukernel: ukernel_6x16_vnni,
        tile_state: None,
        skinny: Some(SkinnyKernel {
            max_m: 4,
            kernel: skinny_16_vnni,
            pack_rows: Some(pack::pack_rows::<KG, U8Biased>),
            kg: KG,
            colsum_factor: -128,
        }),
    }
}

/// One depth group: four u8 x s8 products added into each i32 lane (`vpdpbusd`).
#[target_feature(enable = "avx2,avxvnni")]
fn dot(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(acc, a, b)
}

ymm_i8_kernels!("avx2,avxvnni", dot, ukernel_6x16_vnni, skinny_16_vnni);
