//! MiniViT's depthwise-transform attention: the fused op against the composite form (the same
//! maths as a chain of existing autograd ops, materializing every `[B, H, N, N]` map), forward
//! alone and forward + backward, on one thread.
//!
//! Shapes: DeiT-Tiny/Small/Base widths (H = 3, 6, 12 heads of d = 64) at N = 65 (a 8x8 grid
//! plus the class token) and N = 197 (224px images, 16px patches), B = 1 and 2. Throughput is
//! the forward's FLOPs (both GEMMs and both head mixes), so "elem/s" reads as FLOP/s. Before
//! timing, each shape's fused output is checked against the composite's.
//!
//! `cargo bench --bench transform_attention` (filter e.g. `-- n197`).

use common::transform_attention::{Case, IMPLS};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lithe::Graph;
use lithe::kernels::transform_attention::TransformAttentionShape;
use std::hint::black_box;

mod common {
    pub mod transform_attention;
}

fn bench(c: &mut Criterion) {
    lithe::kernels::threads::set_num_threads(1);
    let mut group = c.benchmark_group("transform_attention");
    for tokens in [65, 197] {
        for heads in [3, 6, 12] {
            for batch in [1, 2] {
                let shape = TransformAttentionShape {
                    batch,
                    tokens,
                    heads,
                    head_dim: 64,
                };
                let case = Case::new(&shape);
                let fused = case.run(Graph::transform_attention, false, true);
                let composite = case.run(Graph::transform_attention_composite, false, true);
                let err = fused.max_abs_diff(&composite).unwrap();
                assert!(err < 1e-4, "fused and composite disagree by {err}");
                group.throughput(Throughput::Elements(shape.forward_flops() as u64));
                let name = format!("n{tokens}_h{heads}_b{batch}");
                for policy in [false, true] {
                    for (pass, grad) in [("fwd", false), ("fwd_bwd", true)] {
                        let tag = if policy { "policy_" } else { "" };
                        for (impl_name, build) in IMPLS {
                            group.bench_function(
                                BenchmarkId::new(format!("{impl_name}_{tag}{pass}"), &name),
                                |bch| bch.iter(|| black_box(case.run(build, grad, policy))),
                            );
                        }
                    }
                }
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
