//! The GEMM entry points allocate nothing once warm: f32 (`sgemm_with` on a view, `sgemm_fused`
//! on a packed B with a bias) and int8 (`gemm_i8`, `gemm_i8_dequant` per tensor and per row with
//! GELU, `gemm_i8_requant`), on every kernel path this CPU runs, including the small-M
//! (skinny) int8 path, on one thread. The first call may grow a thread-local packing buffer;
//! the next calls of the same or smaller size reuse it. On more than one thread a call
//! allocates a few small job objects in rayon's `broadcast` (3 for the two f32 calls of the
//! 64x96x128 case on two threads), so the promise is made for one thread, the setting of the
//! int8 engine's allocation tests.

#[path = "common/count_alloc.rs"]
mod count_alloc;
use count_alloc::allocations_in;

use lithe::kernels::gelu::GeluKind;
use lithe::kernels::gemm_i8::{Activation, Dequant, Scale};
use lithe::kernels::{
    BSource, GemmOptions, I8GemmOptions, I8Isa, Isa, MatMut, MatRef, PackedB, PackedI8B, gemm_i8,
    gemm_i8_dequant, gemm_i8_requant, sgemm_fused, sgemm_with,
};

fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 16) as f32 / 65536.0 - 0.5
        })
        .collect()
}

fn int8s(len: usize, seed: u32) -> Vec<i8> {
    values(len, seed)
        .iter()
        .map(|v| (v * 250.0) as i8)
        .collect()
}

/// (m, k, n): a tile-sized problem, odd edges, a deep K, and one row (decode).
const SHAPES: [(usize, usize, usize); 4] =
    [(64, 96, 128), (17, 33, 65), (8, 700, 40), (1, 384, 256)];

#[test]
fn f32_gemm_allocates_nothing_when_warm() {
    let isas = Isa::available();
    assert!(!isas.is_empty());
    let threads = 1;
    for isa in isas {
        let opts = GemmOptions {
            isa: Some(isa),
            threads: Some(threads),
        };
        for (m, k, n) in SHAPES {
            let (a, b, bias) = (values(m * k, 1), values(k * n, 2), values(n, 3));
            let mut c = vec![0f32; m * n];
            let av = MatRef::row_major(&a, m, k).unwrap();
            let bv = MatRef::row_major(&b, k, n).unwrap();
            let packed = PackedB::pack(bv, &opts).unwrap();
            let run = |c: &mut [f32]| {
                sgemm_with(&opts, 1.0, av, bv, 0.0, MatMut::row_major(c, m, n).unwrap()).unwrap();
                sgemm_fused(
                    &opts,
                    1.0,
                    av,
                    BSource::Packed(&packed),
                    1.0,
                    Some(&bias),
                    MatMut::row_major(c, m, n).unwrap(),
                )
                .unwrap();
            };
            run(&mut c);
            let count = allocations_in(|| run(&mut c));
            assert_eq!(
                count,
                0,
                "f32 {} {m}x{k}x{n}: {count} allocations",
                isa.name()
            );
        }
    }
}

#[test]
fn int8_gemm_allocates_nothing_when_warm() {
    let isas = I8Isa::available();
    assert!(!isas.is_empty());
    let threads = 1;
    for isa in isas {
        let opts = I8GemmOptions {
            threads: Some(threads),
            kernels: None,
        };
        for (m, k, n) in SHAPES {
            let (a, w) = (int8s(m * k, 4), int8s(n * k, 5));
            let packed = PackedI8B::pack(&w, n, k, isa).unwrap();
            let (w_scales, bias, rows) = (vec![0.01f32; n], values(n, 6), vec![0.02f32; m]);
            let (mut c, mut y, mut q) = (vec![0i32; m * n], vec![0f32; m * n], vec![0i8; m * n]);
            let per_tensor = Dequant {
                a_scale: Scale::PerTensor(0.03),
                w_scales: &w_scales,
                bias: Some(&bias),
                act: Activation::None,
            };
            let per_row = Dequant {
                a_scale: Scale::PerRow(&rows),
                w_scales: &w_scales,
                bias: None,
                act: Activation::Gelu(GeluKind::Tanh),
            };
            let mut run = || {
                gemm_i8(&a, k, m, &packed, &mut c, n, &opts).unwrap();
                gemm_i8_dequant(&a, k, m, &packed, &per_tensor, &mut y, n, &opts).unwrap();
                gemm_i8_dequant(&a, k, m, &packed, &per_row, &mut y, n, &opts).unwrap();
                gemm_i8_requant(&a, k, m, &packed, &per_row, 0.05, &mut q, n, &opts).unwrap();
            };
            run();
            let count = allocations_in(&mut run);
            assert_eq!(
                count,
                0,
                "int8 {} {m}x{k}x{n}: {count} allocations",
                isa.name()
            );
        }
    }
}

#[test]
fn the_counter_counts() {
    assert!(allocations_in(|| drop(std::hint::black_box(vec![1u8; 10]))) >= 1);
}
