//! AVX2 int8 kernels: operands sign-extended to i16 at pack time, multiplied with `vpmaddwd`.
//!
//! Why not `vpmaddubsw`: it multiplies u8 by s8 and adds each pair of products into a
//! *saturating* i16, so it needs the sign trick (`|a|` times `sign(a) * b`) and one more
//! instruction per product vector. Instead A and B are packed as i16 (B once, at load) in pairs
//! of consecutive depth values, and `vpmaddwd` multiplies i16 x i16 into exact i32 products and
//! adds each adjacent pair in i32: the largest pair sum is 2 * 127 * 127 = 32258, and no i16
//! intermediate exists, so nothing can saturate (`vpmaddwd` itself only wraps for
//! (-32768)^2 + (-32768)^2, impossible for sign-extended bytes). It reaches the same
//! multiply-port throughput as the `vpmaddubsw` + `vpmaddwd` chain (16 products per
//! multiply uop either way) at the cost of twice the B bytes, which stream from L2.
//!
//! Either way an exact product costs 4 vector instructions per 32 multiply-adds, against 3 for
//! the saturating `vpmaddubsw` chain, and an Intel core issues them on 3 ports (the multiplies on
//! 2): at most 0.75 of that chain. The one 3-instruction form found, `vpmaddubsw(|b|, sign(b) *
//! a)` with A packed in all 16 sign patterns of each depth quad and each B quad pointing at its
//! pattern, was measured on a Sapphire Rapids core at 147-169 GOP/s for the tile alone (151 with
//! the 16-fold A panel held in L1), below this path's 175 GOP/s at 1024^3.
//!
//! Tile 6 x 16: 12 ymm accumulators, 2 ymm of B per depth pair and one broadcast dword (a pair
//! of i16) of A per row.

use super::x86_ymm_i8::ymm_i8_kernels;
use crate::I8Isa;
use crate::gemm_i8::pack::{self, I16};
use crate::gemm_i8::{AFeed, I8Kernels, I8UkernelParams, SkinnyKernel};
use std::arch::x86_64::*;

pub use super::x86_ymm_i8::{MR, NR};

/// Depth values per group (one i32 lane holds two i16).
const KG: usize = 2;

/// The AVX2 kernel table.
pub fn kernels() -> I8Kernels {
    I8Kernels {
        isa: I8Isa::Avx2,
        mr: MR,
        nr: NR,
        kg: KG,
        a_bytes: 2,
        b_bytes: 2,
        colsum_factor: 0,
        b_block_bytes: 384 << 10,
        a_feed: AFeed::Packed(super::x86_avx2_pack_i8::pack_a_6x2_i16),
        pack_b: pack::pack_b::<NR, KG, I16>,
        ukernel: ukernel_6x16,
        tile_state: None,
        skinny: Some(SkinnyKernel {
            max_m: 4,
            kernel: skinny_16,
            pack_rows: Some(pack::pack_rows::<KG, I16>),
            kg: KG,
            colsum_factor: 0,
        }),
    }
}

/// One depth pair: i16 x i16 products added pairwise into i32 (`vpmaddwd`), then accumulated.
#[target_feature(enable = "avx2")]
fn dot(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
}

ymm_i8_kernels!("avx2", dot, ukernel_6x16, skinny_16);
