//! f32 GEMM on Transformer-shaped problems, once per code path this CPU supports.
//!
//! Throughput is reported as elements = floating-point operations (2 per multiply-add), so
//! criterion's "elem/s" reads as FLOP/s. Every path's output is checked against the f64
//! reference before it is timed.
//!
//! `cargo bench --bench gemm_f32` (filter e.g. `-- 128x384x1536`, `-- gemm_f32_small` for the
//! small training shapes, or `-- gemm_f32_fused` for B pre-packed and the bias epilogue);
//! `LITHE_THREADS` is ignored: each benchmark pins its thread count in its name.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lithe::kernels::reference::{sgemm_bias_ref, sgemm_ref};
use lithe::kernels::{BSource, GemmOptions, Isa, MatMut, MatRef, PackedB, sgemm_fused, sgemm_with};
use std::hint::black_box;

/// (name, M, K, N): BERT-base/MiniLM Linear layers at 128 tokens, a square reference, and a
/// one-row product with a row-major B (a GEMV, which takes the row sweep).
const SHAPES: [(&str, usize, usize, usize); 5] = [
    ("qkv_proj", 128, 384, 1152),
    ("ffn_up", 128, 384, 1536),
    ("ffn_down", 128, 1536, 384),
    ("square", 1024, 1024, 1024),
    ("gemv", 1, 384, 1536),
];

fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32
                / (1 << 24) as f32
                - 0.5
        })
        .collect()
}

fn validate(opts: &GemmOptions) {
    // A tall product and a one-row one (the row sweep of a row-major B).
    for (m, k, n) in [(37, 129, 70), (1, 129, 70)] {
        validate_shape(opts, m, k, n);
    }
}

fn validate_shape(opts: &GemmOptions, m: usize, k: usize, n: usize) {
    let (a, b) = (values(m * k, 1), values(k * n, 2));
    let (mut got, mut want) = (vec![0.0; m * n], vec![0.0; m * n]);
    let (av, bv) = (
        MatRef::row_major(&a, m, k).unwrap(),
        MatRef::row_major(&b, k, n).unwrap(),
    );
    sgemm_with(
        opts,
        1.0,
        av,
        bv,
        0.0,
        MatMut::row_major(&mut got, m, n).unwrap(),
    )
    .unwrap();
    sgemm_ref(
        1.0,
        av,
        bv,
        0.0,
        MatMut::row_major(&mut want, m, n).unwrap(),
    );
    let err: f32 = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f32::max);
    assert!(err < 1e-4, "{opts:?}: max abs error {err} before timing");
}

fn bench_gemm(c: &mut Criterion) {
    for (name, m, k, n) in SHAPES {
        let mut group = c.benchmark_group(format!("gemm_f32/{name}/{m}x{k}x{n}"));
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        group.sample_size(if m * n * k > 1 << 28 { 10 } else { 30 });
        let (a, b) = (values(m * k, 3), values(k * n, 4));
        let mut out = vec![0.0f32; m * n];
        for isa in Isa::available() {
            for threads in [1, 2] {
                let opts = GemmOptions {
                    isa: Some(isa),
                    threads: Some(threads),
                };
                if isa == Isa::Scalar && m * n * k > 1 << 26 {
                    continue; // minutes per sample; the scalar path is for correctness
                }
                validate(&opts);
                group.bench_function(
                    BenchmarkId::new(isa.name(), format!("t{threads}")),
                    |bench| {
                        bench.iter(|| {
                            let (av, bv) = (
                                MatRef::row_major(&a, m, k).unwrap(),
                                MatRef::row_major(&b, k, n).unwrap(),
                            );
                            sgemm_with(
                                &opts,
                                1.0,
                                black_box(av),
                                black_box(bv),
                                0.0,
                                MatMut::row_major(&mut out, m, n).unwrap(),
                            )
                            .unwrap();
                        })
                    },
                );
            }
        }
        group.finish();
    }
}

/// (name, M, K, N, A transposed, B transposed): the GEMMs of one training step of a tiny ViT
/// (3200 tokens of width 64, MLP 256, attention heads of 16 over 50 tokens) in the layouts the
/// model issues them: Linear forward `X W^T`, input gradient `dY W`, weight gradient `dY^T X`,
/// and attention per (batch, head); then a ViT-S attention head (65 tokens, width 64), whose
/// score matrix ends in a 1-column panel and whose 65 rows end in a partial tile.
const SMALL_SHAPES: [(&str, usize, usize, usize, bool, bool); 11] = [
    ("fwd_x_wt", 3200, 64, 64, false, true),
    ("fwd_fc2_x_wt", 3200, 256, 64, false, true),
    ("bwd_dx_dy_w", 3200, 64, 256, false, false),
    ("bwd_dw_dyt_x", 64, 3200, 64, true, false),
    ("bwd_dw_fc1_dyt_x", 256, 3200, 64, true, false),
    ("attn_q_kt", 50, 16, 50, false, true),
    ("attn_p_v", 50, 50, 16, false, false),
    ("attn_pt_do", 50, 50, 16, true, false),
    ("attn_ds_k", 50, 50, 16, false, false),
    ("vit_attn_q_kt", 65, 64, 65, false, true),
    ("vit_attn_pt_do", 65, 65, 64, true, false),
];

fn bench_small(c: &mut Criterion) {
    for (name, m, k, n, ta, tb) in SMALL_SHAPES {
        let mut group = c.benchmark_group(format!("gemm_f32_small/{name}/{m}x{k}x{n}"));
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        group.sample_size(30);
        let (a, b) = (values(m * k, 5), values(k * n, 6));
        let mut out = vec![0.0f32; m * n];
        for isa in Isa::available() {
            let opts = GemmOptions {
                isa: Some(isa),
                threads: Some(1),
            };
            group.bench_function(BenchmarkId::new(isa.name(), "t1"), |bench| {
                bench.iter(|| {
                    let av = if ta {
                        MatRef::row_major(&a, k, m).unwrap().t()
                    } else {
                        MatRef::row_major(&a, m, k).unwrap()
                    };
                    let bv = if tb {
                        MatRef::row_major(&b, n, k).unwrap().t()
                    } else {
                        MatRef::row_major(&b, k, n).unwrap()
                    };
                    let cv = MatMut::row_major(&mut out, m, n).unwrap();
                    sgemm_with(&opts, 1.0, black_box(av), black_box(bv), 0.0, cv).unwrap();
                })
            });
        }
        group.finish();
    }
}

/// (name, M, K, N): Linear layers `X W^T` with `W` stored `[N, K]` row-major (so B is a
/// column-major view), B packed on every call (`view`) or once at load (`packed`).
const PACKED_SHAPES: [(&str, usize, usize, usize); 3] = [
    ("ffn_up", 128, 384, 1536),
    ("ffn_down", 128, 1536, 384),
    ("ffn_up_1tok", 1, 384, 1536),
];

/// Max abs difference of `sgemm_fused` from the f64 reference (checked before timing).
fn fused_error(opts: &GemmOptions, m: usize, k: usize, n: usize, packed: bool) -> f32 {
    let (a, w, bias) = (values(m * k, 7), values(n * k, 8), values(n, 9));
    let (av, wt) = (
        MatRef::row_major(&a, m, k).unwrap(),
        MatRef::row_major(&w, n, k).unwrap().t(),
    );
    let pb = PackedB::pack(wt, opts).unwrap();
    let b = if packed {
        BSource::Packed(&pb)
    } else {
        BSource::View(wt)
    };
    let (mut got, mut want) = (vec![f32::NAN; m * n], vec![0.0; m * n]);
    let cv = MatMut::row_major(&mut got, m, n).unwrap();
    sgemm_fused(opts, 1.0, av, b, 0.0, Some(&bias), cv).unwrap();
    let cv = MatMut::row_major(&mut want, m, n).unwrap();
    sgemm_bias_ref(1.0, av, wt, 0.0, Some(&bias), cv);
    got.iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f32::max)
}

fn bench_fused(c: &mut Criterion) {
    let isa = Isa::best();
    let opts = GemmOptions {
        isa: Some(isa),
        threads: Some(1),
    };
    for (name, m, k, n) in PACKED_SHAPES {
        let mut group = c.benchmark_group(format!("gemm_f32_fused/{name}/{m}x{k}x{n}"));
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        group.sample_size(30);
        let (a, w) = (values(m * k, 3), values(n * k, 4));
        let wt = MatRef::row_major(&w, n, k).unwrap().t();
        let packed = PackedB::pack(wt, &opts).unwrap();
        let mut out = vec![0.0f32; m * n];
        for (label, b) in [
            ("view", BSource::View(wt)),
            ("packed", BSource::Packed(&packed)),
        ] {
            let err = fused_error(&opts, m.min(40), k, n, label == "packed");
            assert!(err < 1e-3, "{label}: max abs error {err} before timing");
            group.bench_function(BenchmarkId::new(format!("{isa}_{label}"), "t1"), |bench| {
                bench.iter(|| {
                    let av = MatRef::row_major(&a, m, k).unwrap();
                    let cv = MatMut::row_major(&mut out, m, n).unwrap();
                    sgemm_fused(&opts, 1.0, black_box(av), black_box(b), 0.0, None, cv).unwrap();
                })
            });
        }
        group.finish();
    }
    // A Linear layer's bias (3200 tokens, 64 -> 256): filled into C then accumulated with
    // beta = 1, against added in the micro-kernel epilogue.
    let (m, k, n) = (3200, 64, 256);
    let mut group = c.benchmark_group(format!("gemm_f32_fused/bias_fc1/{m}x{k}x{n}"));
    group.throughput(Throughput::Elements((2 * m * n * k) as u64));
    group.sample_size(30);
    let (a, w, bias) = (values(m * k, 5), values(n * k, 6), values(n, 7));
    let wt = MatRef::row_major(&w, n, k).unwrap().t();
    let mut out = vec![0.0f32; m * n];
    let err = fused_error(&opts, 40, k, n, false);
    assert!(err < 1e-3, "bias: max abs error {err} before timing");
    group.bench_function(
        BenchmarkId::new(format!("{isa}_fill_beta1"), "t1"),
        |bench| {
            bench.iter(|| {
                for row in out.chunks_exact_mut(n) {
                    row.copy_from_slice(&bias);
                }
                let av = MatRef::row_major(&a, m, k).unwrap();
                let cv = MatMut::row_major(&mut out, m, n).unwrap();
                sgemm_with(&opts, 1.0, black_box(av), black_box(wt), 1.0, cv).unwrap();
            })
        },
    );
    group.bench_function(BenchmarkId::new(format!("{isa}_fused"), "t1"), |bench| {
        bench.iter(|| {
            let av = MatRef::row_major(&a, m, k).unwrap();
            let cv = MatMut::row_major(&mut out, m, n).unwrap();
            let b = BSource::View(black_box(wt));
            sgemm_fused(&opts, 1.0, black_box(av), b, 0.0, Some(&bias), cv).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, bench_gemm, bench_small, bench_fused);
criterion_main!(benches);
