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

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lithe::kernels::transform_attention::TransformAttentionShape;
use lithe::{Graph, HeadMix, Rng, Tensor, Var};
use std::hint::black_box;

type Build = fn(&Graph, Var, Var, Var, usize, f32, HeadMix, Option<Var>) -> lithe::Result<Var>;

struct Case {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mix: [Tensor; 4],
    keep: Tensor,
    heads: usize,
    scale: f32,
}

impl Case {
    fn new(s: &TransformAttentionShape) -> Case {
        let mut rng = Rng::new(1);
        let act = [s.batch, s.tokens, s.width()];
        let h = s.heads;
        let mut near_eye = || {
            let mut m = Tensor::uniform(&[h, h], -0.2, 0.2, &mut rng);
            for i in 0..h {
                m.data_mut()[i * h + i] += 1.0;
            }
            m
        };
        let (pre, post) = (near_eye(), near_eye());
        Case {
            q: Tensor::randn(&act, 0.0, 1.0, &mut rng),
            k: Tensor::randn(&act, 0.0, 1.0, &mut rng),
            v: Tensor::randn(&act, 0.0, 1.0, &mut rng),
            mix: [
                pre,
                Tensor::uniform(&[h], -0.1, 0.1, &mut rng),
                post,
                Tensor::uniform(&[h], -0.1, 0.1, &mut rng),
            ],
            keep: Tensor::uniform(&[s.batch, s.tokens], 0.0, 1.0, &mut rng),
            heads: h,
            scale: 1.0 / (s.head_dim as f32).sqrt(),
        }
    }

    /// One forward (and backward when `grad`), returning the output.
    fn run(&self, build: Build, grad: bool, policy: bool) -> Tensor {
        let g = Graph::new();
        g.set_grad_enabled(grad);
        let (q, k, v) = (
            g.variable(self.q.clone()),
            g.variable(self.k.clone()),
            g.variable(self.v.clone()),
        );
        let m: Vec<Var> = self.mix.iter().map(|t| g.variable(t.clone())).collect();
        let mix = HeadMix {
            pre: m[0],
            pre_bias: m[1],
            post: m[2],
            post_bias: m[3],
        };
        let keep = policy.then(|| g.variable(self.keep.clone()));
        let out = build(&g, q, k, v, self.heads, self.scale, mix, keep).unwrap();
        if grad {
            let w = Tensor::ones(&[self.q.shape()[0], self.q.shape()[1], self.q.shape()[2]]);
            g.backward_from(out, w).unwrap();
        }
        g.value(out).unwrap()
    }
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
                        for (impl_name, build) in [
                            ("fused", Graph::transform_attention as Build),
                            ("composite", Graph::transform_attention_composite),
                        ] {
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
