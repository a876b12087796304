//! f32 GEMM on Transformer-shaped problems, once per code path this CPU supports.
//!
//! Throughput is reported as elements = floating-point operations (2 per multiply-add), so
//! criterion's "elem/s" reads as FLOP/s. Every path's output is checked against the f64
//! reference before it is timed.
//!
//! `cargo bench --bench gemm_f32` (filter e.g. `-- 128x384x1536`); `LITHE_THREADS` is ignored:
//! each benchmark pins its thread count in its name.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lithe::kernels::reference::sgemm_ref;
use lithe::kernels::{GemmOptions, Isa, MatMut, MatRef, sgemm_with};
use std::hint::black_box;

/// (name, M, K, N): BERT-base/MiniLM Linear layers at 128 tokens, and a square reference.
const SHAPES: [(&str, usize, usize, usize); 4] = [
    ("qkv_proj", 128, 384, 1152),
    ("ffn_up", 128, 384, 1536),
    ("ffn_down", 128, 1536, 384),
    ("square", 1024, 1024, 1024),
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
    let (m, k, n) = (37, 129, 70);
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

criterion_group!(benches, bench_gemm);
criterion_main!(benches);
