//! The fused transform attention against the f64 reference: forward and every gradient.
//!
//! Each proptest case draws B in 1..=3, H in 1..=6, N from {1, 2, 3, R - 1, R, R + 1} (around
//! the R = `BLOCK_ROWS` query block, so one or two blocks) or random in 1..=R + 8, d from {1, 3, 8, 16} or random in 1..=17, a scale
//! in [0.5, 1.5) / sqrt(d) (so logits are of order 1, as in a trained model),
//! random mixes (`pre`, `post` near the identity plus noise, random biases), and a keep policy:
//! none, uniform in [0, 1], or hard 0/1. The kernels run on the process-wide path
//! (`LITHE_ISA` picks another).
//!
//! Accuracy bound: Frobenius-relative, `||got - ref|| <= RTOL * ||ref|| + floor * sqrt(len)`
//! with RTOL = 1e-5 and a per-element floor `ATOL * N * sqrt(B)`, ATOL = 2e-7 (for the mix and
//! policy gradients at least `B N^2 * 2^-24`, the rounding of a running sum). The floor is for
//! the mix and policy gradients: each of their entries sums B*N^2 map entries whose exact total
//! can be far smaller than the terms (a softmax gradient sums to zero along every row, so e.g.
//! `dpre[h,g] = sum dS'_h S_g` cancels, and `dpost_bias` sums dO.V products of both signs),
//! and the f32 rounding of such a sum is a random walk of about `sqrt(B N^2) * 6e-8 * |term|`
//! that scales with the terms (here of order 1), not with the result. A wrong or missing term
//! is off by the size of a term, far above the floor. Gradient buffers start with random
//! contents, so the `+=` contract is checked too.
//!
//! `PROPTEST_CASES` sets the case count (default 64).

use lithe_kernels::KernelError;
use lithe_kernels::reference as r;
use lithe_kernels::transform_attention::{
    BLOCK_ROWS, HeadMix, TransformAttentionGrads, TransformAttentionShape,
    transform_attention_backward, transform_attention_forward,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const RTOL: f64 = 1e-5;
const ATOL: f64 = 2e-7;
/// f32's unit roundoff, 2^-24.
const SUM_ULP: f64 = 1.0 / (1u64 << 24) as f64;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// A small seeded generator (xorshift64*), so a case is its shape plus a seed.
struct Gen(u64);

impl Gen {
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32) / (1u64 << 24) as f32
    }

    /// Uniform in [-1, 1) times `amp`.
    fn vec(&mut self, len: usize, amp: f32) -> Vec<f32> {
        (0..len)
            .map(|_| amp * (2.0 * self.uniform() - 1.0))
            .collect()
    }
}

#[derive(Clone, Copy, Debug)]
enum Policy {
    None,
    Soft,
    Hard,
}

/// One problem: sizes, inputs, mixes and policy.
struct Problem {
    shape: TransformAttentionShape,
    scale: f32,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    pre: Vec<f32>,
    pre_bias: Vec<f32>,
    post: Vec<f32>,
    post_bias: Vec<f32>,
    keep: Option<Vec<f32>>,
}

impl Problem {
    fn new(shape: TransformAttentionShape, policy: Policy, seed: u64) -> Problem {
        let mut g = Gen(seed | 1);
        let h = shape.heads;
        let len = shape.activation_len().unwrap();
        let near_identity = |g: &mut Gen| -> Vec<f32> {
            let mut m = g.vec(h * h, 0.5);
            for i in 0..h {
                m[i * h + i] += 1.0;
            }
            m
        };
        let keep = match policy {
            Policy::None => None,
            Policy::Soft => Some(
                (0..shape.batch * shape.tokens)
                    .map(|_| g.uniform())
                    .collect(),
            ),
            Policy::Hard => Some(
                (0..shape.batch * shape.tokens)
                    .map(|_| if g.uniform() < 0.5 { 0.0 } else { 1.0 })
                    .collect(),
            ),
        };
        Problem {
            shape,
            scale: (0.5 + g.uniform()) / (shape.head_dim as f32).sqrt(),
            q: g.vec(len, 1.5),
            k: g.vec(len, 1.5),
            v: g.vec(len, 1.0),
            pre: near_identity(&mut g),
            pre_bias: g.vec(h, 0.5),
            post: near_identity(&mut g),
            post_bias: g.vec(h, 0.5),
            keep,
        }
    }

    fn mix(&self) -> HeadMix<'_> {
        HeadMix {
            pre: &self.pre,
            pre_bias: &self.pre_bias,
            post: &self.post,
            post_bias: &self.post_bias,
        }
    }
}

/// Gradients whose every entry sums `B * N^2` map entries that cancel (see the module docs).
const CANCELLING: [&str; 5] = ["dpre", "dpre_bias", "dpost", "dpost_bias", "dkeep"];

fn frobenius_check(
    what: &str,
    got: &[f32],
    want: &[f32],
    shape: &TransformAttentionShape,
) -> Result<(), TestCaseError> {
    let (mut err, mut norm) = (0.0f64, 0.0f64);
    for (&x, &y) in got.iter().zip(want) {
        err += (x as f64 - y as f64).powi(2);
        norm += (y as f64).powi(2);
    }
    let (err, norm) = (err.sqrt(), norm.sqrt());
    let (b, n) = (shape.batch as f64, shape.tokens as f64);
    let mut floor = ATOL * n * b.sqrt();
    if CANCELLING.contains(&what) {
        // A running f32 sum of B N^2 terms of order 1 rounds at every partial sum, and the
        // partial sums grow to sqrt(B N^2) terms: its error reaches the order of
        // B N^2 * 2^-24 (measured: 1.9e-5 on a 3 x 32 x 32 dpost_bias, a tenth of this floor).
        floor = floor.max(SUM_ULP * b * n * n);
    }
    let bound = RTOL * norm + floor * (got.len() as f64).sqrt();
    prop_assert!(
        err <= bound,
        "{what}: ||got - ref|| = {err:e}, bound {bound:e} (||ref|| = {norm:e})"
    );
    Ok(())
}

/// The gradient buffers of a problem, filled with random prior contents.
struct GradBufs {
    bufs: Vec<Vec<f32>>,
}

const GRAD_NAMES: [&str; 8] = [
    "dq",
    "dk",
    "dv",
    "dpre",
    "dpre_bias",
    "dpost",
    "dpost_bias",
    "dkeep",
];

impl GradBufs {
    fn new(p: &Problem, seed: u64) -> GradBufs {
        let mut g = Gen(seed ^ 0x9e37_79b9_7f4a_7c15);
        let (act, h) = (p.shape.activation_len().unwrap(), p.shape.heads);
        let keep_len = if p.keep.is_some() {
            p.shape.batch * p.shape.tokens
        } else {
            0
        };
        let lens = [act, act, act, h * h, h, h * h, h, keep_len];
        GradBufs {
            bufs: lens.iter().map(|&l| g.vec(l, 0.1)).collect(),
        }
    }

    fn grads(&mut self, with_keep: bool) -> TransformAttentionGrads<'_> {
        let [dq, dk, dv, dpre, dpre_bias, dpost, dpost_bias, dkeep] = &mut self.bufs[..] else {
            unreachable!()
        };
        TransformAttentionGrads {
            dq: Some(dq),
            dk: Some(dk),
            dv: Some(dv),
            dpre: Some(dpre),
            dpre_bias: Some(dpre_bias),
            dpost: Some(dpost),
            dpost_bias: Some(dpost_bias),
            dkeep: with_keep.then_some(&mut dkeep[..]),
        }
    }
}

fn run_case(p: &Problem, seed: u64) -> Result<(), TestCaseError> {
    let s = p.shape;
    let len = s.activation_len().unwrap();
    let keep = p.keep.as_deref();
    let mut out = vec![f32::NAN; len];
    let mut want = vec![0f32; len];
    let mut scratch = vec![f32::NAN; s.backward_scratch_len()];
    transform_attention_forward(
        &mut out,
        &p.q,
        &p.k,
        &p.v,
        &p.mix(),
        keep,
        &s,
        p.scale,
        &mut scratch[..s.forward_scratch_len()],
    )
    .map_err(|e| TestCaseError::fail(format!("forward: {e}")))?;
    r::transform_attention_forward_ref(&mut want, &p.q, &p.k, &p.v, &p.mix(), keep, &s, p.scale);
    frobenius_check("forward", &out, &want, &s)?;

    let dout = Gen(seed.wrapping_add(7)).vec(len, 1.0);
    let mut got = GradBufs::new(p, seed);
    let mut reference = GradBufs::new(p, seed);
    transform_attention_backward(
        got.grads(keep.is_some()),
        &dout,
        &p.q,
        &p.k,
        &p.v,
        &p.mix(),
        keep,
        &s,
        p.scale,
        &mut scratch,
    )
    .map_err(|e| TestCaseError::fail(format!("backward: {e}")))?;
    r::transform_attention_backward_ref(
        reference.grads(keep.is_some()),
        &dout,
        &p.q,
        &p.k,
        &p.v,
        &p.mix(),
        keep,
        &s,
        p.scale,
    );
    for ((name, g), w) in GRAD_NAMES.iter().zip(&got.bufs).zip(&reference.bufs) {
        frobenius_check(name, g, w, &s)?;
    }
    Ok(())
}

fn tokens() -> impl Strategy<Value = usize> {
    prop_oneof![
        2 => prop::sample::select(vec![1usize, 2, 3, BLOCK_ROWS - 1, BLOCK_ROWS, BLOCK_ROWS + 1]),
        1 => 1usize..=BLOCK_ROWS + 8,
    ]
}

fn head_dim() -> impl Strategy<Value = usize> {
    prop_oneof![
        2 => prop::sample::select(vec![1usize, 3, 8, 16]),
        1 => 1usize..=17,
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    prop::sample::select(vec![Policy::None, Policy::Soft, Policy::Hard])
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fused_matches_reference(
        batch in 1usize..=3,
        heads in 1usize..=6,
        tokens in tokens(),
        head_dim in head_dim(),
        policy in policy(),
        seed in any::<u64>(),
    ) {
        let shape = TransformAttentionShape { batch, tokens, heads, head_dim };
        run_case(&Problem::new(shape, policy, seed), seed)?;
    }
}

/// Without the mix gradients (a frozen mix), the backward takes the plain transposed mixes
/// instead of the ones fused with the mix-gradient dot products; the activation gradients must be
/// the same bits. The mixes are far from symmetric, so a mix applied untransposed shows.
#[test]
fn frozen_mix_gives_the_same_activation_gradients() {
    let shape = TransformAttentionShape {
        batch: 2,
        tokens: 37,
        heads: 5,
        head_dim: 7,
    };
    let mut p = Problem::new(shape, Policy::None, 9);
    let h = shape.heads;
    for (i, (pre, post)) in p.pre.iter_mut().zip(p.post.iter_mut()).enumerate() {
        // Lower triangle only: M != M^T.
        if i % h > i / h {
            *pre = 0.0;
            *post = 0.0;
        }
    }
    let len = shape.activation_len().unwrap();
    let dout = Gen(3).vec(len, 1.0);
    let run = |mix_grads: bool| -> Vec<Vec<f32>> {
        let mut bufs = GradBufs::new(&p, 4);
        let mut grads = bufs.grads(false);
        if !mix_grads {
            (grads.dpre, grads.dpre_bias, grads.dpost, grads.dpost_bias) = (None, None, None, None);
        }
        let mut scratch = vec![f32::NAN; shape.backward_scratch_len()];
        transform_attention_backward(
            grads,
            &dout,
            &p.q,
            &p.k,
            &p.v,
            &p.mix(),
            None,
            &shape,
            p.scale,
            &mut scratch,
        )
        .unwrap();
        bufs.bufs[..3].to_vec()
    };
    let (with, without) = (run(true), run(false));
    for (name, (a, b)) in ["dq", "dk", "dv"].iter().zip(with.iter().zip(&without)) {
        let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{name} differs without the mix gradients");
    }
}

/// Identity mixes with zero biases give plain multi-head attention: each head's softmax of
/// `scale Q_h K_h^T` (computed by the reference softmax) times `V_h`.
#[test]
fn identity_mix_is_plain_attention() {
    let shape = TransformAttentionShape {
        batch: 2,
        tokens: 37,
        heads: 3,
        head_dim: 5,
    };
    let mut p = Problem::new(shape, Policy::None, 5);
    let h = shape.heads;
    p.pre = vec![0.0; h * h];
    p.post = vec![0.0; h * h];
    for i in 0..h {
        p.pre[i * h + i] = 1.0;
        p.post[i * h + i] = 1.0;
    }
    p.pre_bias = vec![0.0; h];
    p.post_bias = vec![0.0; h];
    let (n, d, w) = (shape.tokens, shape.head_dim, shape.width());
    let len = shape.activation_len().unwrap();
    let mut want = vec![0f32; len];
    for b in 0..shape.batch {
        for head in 0..h {
            let mut logits = vec![0f32; n * n];
            for i in 0..n {
                for j in 0..n {
                    let dot: f64 = (0..d)
                        .map(|c| {
                            p.q[(b * n + i) * w + head * d + c] as f64
                                * p.k[(b * n + j) * w + head * d + c] as f64
                        })
                        .sum();
                    logits[i * n + j] = (p.scale as f64 * dot) as f32;
                }
            }
            let mut probs = vec![0f32; n * n];
            r::softmax_forward_ref(&mut probs, &logits, n);
            for i in 0..n {
                for c in 0..d {
                    let acc: f64 = (0..n)
                        .map(|j| {
                            probs[i * n + j] as f64 * p.v[(b * n + j) * w + head * d + c] as f64
                        })
                        .sum();
                    want[(b * n + i) * w + head * d + c] = acc as f32;
                }
            }
        }
    }
    let mut out = vec![0f32; len];
    let mut scratch = vec![0f32; shape.forward_scratch_len()];
    transform_attention_forward(
        &mut out,
        &p.q,
        &p.k,
        &p.v,
        &p.mix(),
        None,
        &shape,
        p.scale,
        &mut scratch,
    )
    .unwrap();
    frobenius_check("identity", &out, &want, &shape).unwrap();
}

#[test]
fn bad_lengths_are_errors() {
    let shape = TransformAttentionShape {
        batch: 2,
        tokens: 5,
        heads: 2,
        head_dim: 3,
    };
    let p = Problem::new(shape, Policy::Soft, 9);
    let len = shape.activation_len().unwrap();
    let keep = p.keep.as_deref();
    let mut out = vec![0f32; len];
    let mut scratch = vec![0f32; shape.backward_scratch_len()];
    let fwd = |out: &mut [f32],
               q: &[f32],
               mix: &HeadMix<'_>,
               keep: Option<&[f32]>,
               scratch: &mut [f32]| {
        transform_attention_forward(out, q, &p.k, &p.v, mix, keep, &shape, 0.5, scratch)
    };
    let is_len = |r: Result<(), KernelError>| matches!(r, Err(KernelError::LengthMismatch(_)));
    assert!(fwd(&mut out, &p.q, &p.mix(), keep, &mut scratch).is_ok());
    assert!(is_len(fwd(
        &mut out,
        &p.q[1..],
        &p.mix(),
        keep,
        &mut scratch
    )));
    assert!(is_len(fwd(
        &mut out[1..],
        &p.q,
        &p.mix(),
        keep,
        &mut scratch
    )));
    assert!(is_len(fwd(
        &mut out,
        &p.q,
        &p.mix(),
        Some(&[0.5; 3]),
        &mut scratch
    )));
    let short = shape.forward_scratch_len() - 1;
    assert!(is_len(fwd(
        &mut out,
        &p.q,
        &p.mix(),
        keep,
        &mut scratch[..short]
    )));
    let bad_mix = HeadMix {
        pre: &p.pre[1..],
        ..p.mix()
    };
    assert!(is_len(fwd(&mut out, &p.q, &bad_mix, keep, &mut scratch)));
    let bad_bias = HeadMix {
        post_bias: &p.pre,
        ..p.mix()
    };
    assert!(is_len(fwd(&mut out, &p.q, &bad_bias, keep, &mut scratch)));
    let zero_heads = TransformAttentionShape { heads: 0, ..shape };
    assert!(matches!(
        transform_attention_forward(
            &mut out,
            &p.q,
            &p.k,
            &p.v,
            &p.mix(),
            keep,
            &zero_heads,
            0.5,
            &mut scratch
        ),
        Err(KernelError::ShapeMismatch(_))
    ));
    // Backward: a short gradient, a wrong mix gradient, a policy gradient without a policy,
    // a short scratch.
    let dout = vec![1f32; len];
    let mut dq = vec![0f32; len - 1];
    let mut dpre = vec![0f32; 3];
    let mut dkeep = vec![0f32; shape.batch * shape.tokens];
    let bwd = |grads: TransformAttentionGrads<'_>, keep: Option<&[f32]>, scratch: &mut [f32]| {
        transform_attention_backward(
            grads,
            &dout,
            &p.q,
            &p.k,
            &p.v,
            &p.mix(),
            keep,
            &shape,
            0.5,
            scratch,
        )
    };
    let grads = TransformAttentionGrads {
        dq: Some(&mut dq),
        ..Default::default()
    };
    assert!(is_len(bwd(grads, keep, &mut scratch)));
    let grads = TransformAttentionGrads {
        dpre: Some(&mut dpre),
        ..Default::default()
    };
    assert!(is_len(bwd(grads, keep, &mut scratch)));
    let grads = TransformAttentionGrads {
        dkeep: Some(&mut dkeep),
        ..Default::default()
    };
    assert!(is_len(bwd(grads, None, &mut scratch)));
    let short = shape.backward_scratch_len() - 1;
    let grads = TransformAttentionGrads {
        dkeep: Some(&mut dkeep),
        ..Default::default()
    };
    assert!(is_len(bwd(grads, keep, &mut scratch[..short])));
    let grads = TransformAttentionGrads {
        dkeep: Some(&mut dkeep),
        ..Default::default()
    };
    assert!(bwd(grads, keep, &mut scratch).is_ok());
}
