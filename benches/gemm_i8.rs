//! int8 GEMM (`C_i32 = A_s8 * B_s8^T`, B packed once) on Transformer-shaped problems, once per
//! int8 path this CPU supports, with 1 and 2 threads.
//!
//! Throughput is reported as elements = integer operations (2 per multiply-accumulate), so
//! criterion's "elem/s" reads as OP/s. Every path's output is checked exactly against the
//! scalar reference before it is timed.
//!
//! `cargo bench --bench gemm_i8` (filter e.g. `-- 1x384x1536`); `LITHE_THREADS` is ignored:
//! each benchmark pins its thread count in its name.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lithe::kernels::reference::gemm_i8_ref;
use lithe::kernels::{I8GemmOptions, I8Isa, PackedI8B, gemm_i8};
use std::hint::black_box;

/// (name, M, K, N): MiniLM/BERT Linear layers at 128 tokens, batch-1 decode, a square.
const SHAPES: [(&str, usize, usize, usize); 4] = [
    ("ffn_up", 128, 384, 1536),
    ("ffn_down", 128, 1536, 384),
    ("decode_ffn_up", 1, 384, 1536),
    ("square", 1024, 1024, 1024),
];

fn values(len: usize, seed: u32) -> Vec<i8> {
    (0..len)
        .map(|i| {
            let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13;
            (h % 255) as i32 as i8
        })
        .map(|v| v.max(-127))
        .collect()
}

fn validate(isa: I8Isa, opts: &I8GemmOptions) {
    let (m, k, n) = (37, 129, 70);
    let (a, b) = (values(m * k, 1), values(n * k, 2));
    let packed = PackedI8B::pack(&b, n, k, isa).unwrap();
    let (mut got, mut want) = (vec![0; m * n], vec![0; m * n]);
    gemm_i8(&a, k, m, &packed, &mut got, n, opts).unwrap();
    gemm_i8_ref(&a, k, &b, k, m, n, k, &mut want, n);
    assert_eq!(got, want, "{isa}: wrong sums before timing");
}

fn bench_gemm_i8(c: &mut Criterion) {
    for (name, m, k, n) in SHAPES {
        let mut group = c.benchmark_group(format!("gemm_i8/{name}/{m}x{k}x{n}"));
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        group.sample_size(if m * n * k > 1 << 28 { 10 } else { 30 });
        let (a, b) = (values(m * k, 3), values(n * k, 4));
        let mut out = vec![0i32; m * n];
        for isa in I8Isa::available() {
            if isa == I8Isa::Scalar && m * n * k > 1 << 26 {
                continue; // seconds per sample; the scalar path is for correctness
            }
            let packed = PackedI8B::pack(&b, n, k, isa).unwrap();
            for threads in [1, 2] {
                let opts = I8GemmOptions {
                    threads: Some(threads),
                    ..Default::default()
                };
                validate(isa, &opts);
                group.bench_function(
                    BenchmarkId::new(isa.name(), format!("t{threads}")),
                    |bench| {
                        bench.iter(|| {
                            gemm_i8(black_box(&a), k, m, &packed, &mut out, n, &opts).unwrap();
                        })
                    },
                );
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench_gemm_i8);
criterion_main!(benches);
