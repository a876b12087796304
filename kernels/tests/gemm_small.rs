//! The f32 and int8 GEMMs on small shapes, through every driver feature that does pointer
//! arithmetic: tile edges (M and N one below, at and one above the tile), transposed and
//! padded operands, column-major C, a packed B with a bias, a K that crosses the K block, two
//! threads splitting M or N (at the drivers' parallel threshold), and the int8 epilogues (dequantize with GELU, requantize) and small-M (skinny)
//! kernels. Each result is checked against `reference.rs`. The f32 product into uninitialized
//! memory runs the same paths; under Miri, a read of its C before the write would be reported.
//!
//! The shapes are kept small so that this file also runs under Miri (`scripts/miri`), which
//! interprets every instruction; `gemm_paths.rs` and `gemm_i8_paths.rs` cover larger and random
//! shapes natively.

use lithe_kernels::gelu::GeluKind;
use lithe_kernels::gemm::KernelSet;
use lithe_kernels::gemm::driver::{gemm_fused, gemm_fused_uninit};
use lithe_kernels::gemm_i8::{Activation, Dequant, Scale};
use lithe_kernels::reference::{dequant_f64, gemm_i8_ref, quantize_ref, sgemm_bias_ref};
use lithe_kernels::{
    BSource, GemmOptions, I8GemmOptions, I8Isa, Isa, MatMut, MatRef, PackedB, PackedI8B, gemm_i8,
    gemm_i8_dequant, gemm_i8_requant,
};

fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let h = (i as u32 ^ seed).wrapping_mul(2_654_435_761);
            (h >> 16) as f32 / 32768.0 - 1.0
        })
        .collect()
}

fn int8s(len: usize, seed: u32) -> Vec<i8> {
    values(len, seed)
        .iter()
        .map(|v| (v * 127.0).round() as i8)
        .collect()
}

/// Every f32 kernel set this CPU runs, one with a K block of 7 (so K = 9 crosses it) and a
/// portable 3x5 tile.
fn kernel_sets() -> Vec<KernelSet> {
    let mut sets: Vec<KernelSet> = Isa::available()
        .into_iter()
        .map(|isa| KernelSet::for_isa(isa).unwrap())
        .collect();
    let first = sets[0];
    sets.push(first.with_blocking(2 * first.mr, 7, 2 * first.nr));
    sets.push(KernelSet::portable::<3, 5>());
    sets
}

fn cview(c: &mut [f32], m: usize, n: usize, col_major: bool) -> MatMut<'_> {
    if col_major {
        MatMut::col_major(c, m, n).unwrap()
    } else {
        MatMut::row_major(c, m, n).unwrap()
    }
}

#[test]
fn f32_small_shapes_every_path() {
    for ks in kernel_sets() {
        let ms = [1, ks.mr - 1, ks.mr + 1];
        let ns = [1, ks.nr - 1, ks.nr + 1];
        for (case, (&m, &n)) in ms.iter().zip(&ns).enumerate() {
            for k in [1, 9] {
                for (ta, tb, c_col, pad) in [(false, false, false, 0), (true, true, true, 2)] {
                    let (a_rows, a_cols) = if ta { (k, m) } else { (m, k) };
                    let (b_rows, b_cols) = if tb { (n, k) } else { (k, n) };
                    let a_data = values(a_rows * (a_cols + pad), 1 + case as u32);
                    let b_data = values(b_rows * (b_cols + pad), 2);
                    let a = MatRef::new(&a_data, a_rows, a_cols, a_cols + pad, 1).unwrap();
                    let b = MatRef::new(&b_data, b_rows, b_cols, b_cols + pad, 1).unwrap();
                    let (a, b) = (if ta { a.t() } else { a }, if tb { b.t() } else { b });
                    let bias = values(n, 3);
                    let c0 = values(m * n, 4);
                    let mut want = c0.clone();
                    sgemm_bias_ref(0.5, a, b, 1.5, Some(&bias), cview(&mut want, m, n, c_col));
                    for threads in [1, 2] {
                        let mut got = c0.clone();
                        let bs = BSource::View(b);
                        let c = cview(&mut got, m, n, c_col);
                        gemm_fused(&ks, threads, 0.5, a, bs, 1.5, Some(&bias), c).unwrap();
                        for (x, y) in got.iter().zip(&want) {
                            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{m}x{k}x{n}");
                        }
                    }
                }
            }
        }
    }
    // Two threads split N, then M: the drivers go parallel from 2^17 multiply-adds.
    for (m, k, n) in [(16, 64, 128), (128, 64, 16)] {
        let ks = KernelSet::scalar();
        let (a_data, b_data) = (values(m * k, 12), values(k * n, 13));
        let a = MatRef::row_major(&a_data, m, k).unwrap();
        let b = MatRef::row_major(&b_data, k, n).unwrap();
        let (mut got, mut want) = (vec![f32::NAN; m * n], vec![0.0; m * n]);
        let c = MatMut::row_major(&mut got, m, n).unwrap();
        gemm_fused(&ks, 2, 1.0, a, BSource::View(b), 0.0, None, c).unwrap();
        sgemm_bias_ref(1.0, a, b, 0.0, None, cview(&mut want, m, n, false));
        for (x, y) in got.iter().zip(&want) {
            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{m}x{k}x{n}");
        }
    }
    // A packed B with the active kernels.
    let (m, k, n) = (5, 9, 11);
    let (a_data, b_data, bias) = (values(m * k, 5), values(k * n, 6), values(n, 7));
    let a = MatRef::row_major(&a_data, m, k).unwrap();
    let b = MatRef::row_major(&b_data, k, n).unwrap();
    let opts = GemmOptions::default();
    let packed = PackedB::pack(b, &opts).unwrap();
    let (mut got, mut want) = (vec![f32::NAN; m * n], vec![0.0; m * n]);
    let c = MatMut::row_major(&mut got, m, n).unwrap();
    lithe_kernels::sgemm_fused(&opts, 1.0, a, BSource::Packed(&packed), 0.0, Some(&bias), c)
        .unwrap();
    sgemm_bias_ref(
        1.0,
        a,
        b,
        0.0,
        Some(&bias),
        MatMut::row_major(&mut want, m, n).unwrap(),
    );
    for (x, y) in got.iter().zip(&want) {
        assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()));
    }
}

/// `gemm_fused_uninit` into a vector's spare capacity (never written before): every value is
/// written, with the bits of `gemm_fused` at beta = 0, on tile edges, K = 0, a K that crosses
/// the K block, a bias or none, B as a view or packed, and one or two threads (splitting N,
/// then M).
#[test]
fn f32_uninitialized_output_every_path() {
    let mut sets = vec![(KernelSet::scalar(), vec![(16, 64, 128), (128, 64, 16)])];
    for ks in kernel_sets() {
        let small = [(1, 1), (ks.mr - 1, ks.nr + 1), (ks.mr + 1, ks.nr - 1)];
        let shapes = small
            .iter()
            .flat_map(|&(m, n)| [0, 1, 9].map(|k| (m, k, n)));
        sets.push((ks, shapes.collect()));
    }
    for (ks, shapes) in sets {
        for (m, k, n) in shapes {
            let (a_data, b_data, bias) = (values(m * k, 14), values(k * n, 15), values(n, 16));
            let a = MatRef::row_major(&a_data, m, k).unwrap();
            let b = MatRef::row_major(&b_data, k, n).unwrap();
            let packed = PackedB::pack_for(&ks, b).unwrap();
            // The two shapes at the parallel threshold run threaded only, with a bias (Miri
            // interprets them slowly).
            let parallel = m * k * n >= 1 << 17;
            let biases = if parallel {
                &[true][..]
            } else {
                &[false, true]
            };
            let thread_counts = if parallel { &[2][..] } else { &[1, 2] };
            for bias in biases.iter().map(|&on| on.then_some(&bias[..])) {
                for bs in [BSource::View(b), BSource::Packed(&packed)] {
                    for &threads in thread_counts {
                        let mut want = vec![f32::NAN; m * n];
                        let c = MatMut::row_major(&mut want, m, n).unwrap();
                        gemm_fused(&ks, threads, 0.5, a, bs, 0.0, bias, c).unwrap();
                        let mut got: Vec<f32> = Vec::with_capacity(m * n);
                        let spare = &mut got.spare_capacity_mut()[..m * n];
                        gemm_fused_uninit(&ks, threads, 0.5, a, bs, bias, spare).unwrap();
                        // SAFETY: on Ok, gemm_fused_uninit initialized all m * n values.
                        unsafe { got.set_len(m * n) };
                        let same = got
                            .iter()
                            .zip(&want)
                            .all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(same, "{:?} {m}x{k}x{n} {threads} threads", ks.isa);
                    }
                }
            }
        }
    }
}

#[test]
fn int8_small_shapes_every_path() {
    for isa in I8Isa::available() {
        // M = 1 and 2 take the skinny kernel where a path has one; 9 the tiled one.
        // (64, 32, 64): 2^17 multiply-adds, where two threads split the work.
        for (m, k, n) in [(1, 5, 7), (2, 33, 17), (9, 4, 3), (9, 40, 20), (64, 32, 64)] {
            let (a, w) = (int8s(m * k, 8), int8s(n * k, 9));
            let packed = PackedI8B::pack(&w, n, k, isa).unwrap();
            let mut want = vec![0i32; m * n];
            gemm_i8_ref(&a, k, &w, k, m, n, k, &mut want, n);
            for threads in [1, 2] {
                let opts = I8GemmOptions {
                    threads: Some(threads),
                    kernels: None,
                };
                let mut c = vec![0i32; m * n];
                gemm_i8(&a, k, m, &packed, &mut c, n, &opts).unwrap();
                assert_eq!(c, want, "{} {m}x{k}x{n}", isa.name());

                let (w_scales, bias) = (values(n, 10), values(n, 11));
                let w_scales: Vec<f32> = w_scales.iter().map(|s| 0.01 + s.abs() * 0.01).collect();
                let rows: Vec<f32> = (0..m).map(|i| 0.02 + i as f32 * 0.001).collect();
                let dq = Dequant {
                    a_scale: Scale::PerRow(&rows),
                    w_scales: &w_scales,
                    bias: Some(&bias),
                    act: Activation::Gelu(GeluKind::Erf),
                };
                let mut y = vec![0f32; m * n];
                gemm_i8_dequant(&a, k, m, &packed, &dq, &mut y, n, &opts).unwrap();
                let mut q = vec![0i8; m * n];
                gemm_i8_requant(&a, k, m, &packed, &dq, 0.05, &mut q, n, &opts).unwrap();
                for i in 0..m {
                    for j in 0..n {
                        let e = dequant_f64(want[i * n + j], rows[i], w_scales[j], bias[j], dq.act);
                        let got = y[i * n + j] as f64;
                        assert!((got - e).abs() <= 1e-4 * (1.0 + e.abs()), "{got} vs {e}");
                        // Requantized from the same f32 value (a rounding tie may go either way).
                        let r = quantize_ref(y[i * n + j], 0.05);
                        assert!((q[i * n + j] as i32 - r as i32).abs() <= 1);
                    }
                }
            }
        }
    }
}
