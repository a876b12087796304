//! The transform-attention benchmark case, shared by `benches/transform_attention.rs` (criterion)
//! and `examples/transform_attention_ratio.rs` (fused and composite interleaved): random inputs
//! for one shape and one forward (+ backward) through either implementation.

use lithe::kernels::transform_attention::TransformAttentionShape;
use lithe::{Graph, HeadMix, Rng, Tensor, Var};

/// `Graph::transform_attention` or `Graph::transform_attention_composite`.
pub type Build = fn(&Graph, Var, Var, Var, usize, f32, HeadMix, Option<Var>) -> lithe::Result<Var>;

/// The fused op and the composite one, by name.
pub const IMPLS: [(&str, Build); 2] = [
    ("fused", Graph::transform_attention as Build),
    ("composite", Graph::transform_attention_composite),
];

/// Random inputs of one shape (near-identity head mixes, a uniform keep policy).
pub struct Case {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mix: [Tensor; 4],
    keep: Tensor,
    heads: usize,
    scale: f32,
}

impl Case {
    /// Inputs for `s` from a fixed seed.
    pub fn new(s: &TransformAttentionShape) -> Case {
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
    pub fn run(&self, build: Build, grad: bool, policy: bool) -> Tensor {
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
