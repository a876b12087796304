//! The fused transform-attention op against its composite form (the same maths written with
//! existing ops) and against the plain attention op.
//!
//! Accuracy bound of fused vs composite, for the forward and every gradient (q, k, v, pre,
//! pre_bias, post, post_bias, keep): Frobenius-relative, `||fused - composite|| <= RTOL *
//! ||composite|| + ATOL * N * sqrt(B) * sqrt(len)` with RTOL = 1e-5, ATOL = 2e-7. Both sides are
//! f32; the floor covers the mix and policy gradients, sums of B*N^2 map entries that cancel
//! (see kernels/tests/transform_attention_paths.rs). Inputs keep logits of order 1
//! (scale = [0.5, 1.5) / sqrt(d)).
//!
//! `PROPTEST_CASES` sets the case count (default 32).

use lithe::{Error, Graph, HeadMix, Rng, Tensor, Var};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const RTOL: f64 = 1e-5;
const ATOL: f64 = 2e-7;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

fn eye(h: usize) -> Tensor {
    let mut t = Tensor::zeros(&[h, h]);
    for i in 0..h {
        t.data_mut()[i * h + i] = 1.0;
    }
    t
}

#[derive(Clone, Copy, Debug)]
enum Policy {
    None,
    Soft,
    Hard,
}

/// The inputs of one case: q, k, v, pre, pre_bias, post, post_bias, then the policy if any.
fn inputs(b: usize, n: usize, h: usize, d: usize, policy: Policy, seed: u64) -> Vec<Tensor> {
    let mut rng = Rng::new(seed);
    let act = [b, n, h * d];
    let near_eye = |rng: &mut Rng| {
        let mut m = Tensor::uniform(&[h, h], -0.5, 0.5, rng);
        m.add_assign(&eye(h)).unwrap();
        m
    };
    let mut xs = vec![
        Tensor::uniform(&act, -1.5, 1.5, &mut rng),
        Tensor::uniform(&act, -1.5, 1.5, &mut rng),
        Tensor::uniform(&act, -1.0, 1.0, &mut rng),
    ];
    xs.push(near_eye(&mut rng));
    xs.push(Tensor::uniform(&[h], -0.5, 0.5, &mut rng));
    xs.push(near_eye(&mut rng));
    xs.push(Tensor::uniform(&[h], -0.5, 0.5, &mut rng));
    match policy {
        Policy::None => {}
        Policy::Soft => xs.push(Tensor::uniform(&[b, n], 0.0, 1.0, &mut rng)),
        Policy::Hard => xs.push(
            Tensor::uniform(&[b, n], 0.0, 1.0, &mut rng).map(|x| if x < 0.5 { 0.0 } else { 1.0 }),
        ),
    }
    xs
}

type Build = fn(&Graph, Var, Var, Var, usize, f32, HeadMix, Option<Var>) -> lithe::Result<Var>;

/// The output and the gradient of every input of `build` for the output gradient `w`.
fn run(build: Build, xs: &[Tensor], heads: usize, scale: f32, w: &Tensor) -> Vec<Tensor> {
    let g = Graph::new();
    let v: Vec<Var> = xs.iter().map(|t| g.variable(t.clone())).collect();
    let mix = HeadMix {
        pre: v[3],
        pre_bias: v[4],
        post: v[5],
        post_bias: v[6],
    };
    let out = build(&g, v[0], v[1], v[2], heads, scale, mix, v.get(7).copied()).unwrap();
    g.backward_from(out, w.clone()).unwrap();
    let mut res = vec![g.value(out).unwrap()];
    res.extend(v.iter().map(|&x| g.grad(x).unwrap().unwrap()));
    res
}

fn close(what: &str, got: &Tensor, want: &Tensor, n: usize, b: usize) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.shape(), want.shape());
    let (mut err, mut norm) = (0.0f64, 0.0f64);
    for (&x, &y) in got.data().iter().zip(want.data()) {
        err += (x as f64 - y as f64).powi(2);
        norm += (y as f64).powi(2);
    }
    let (err, norm) = (err.sqrt(), norm.sqrt());
    let floor = ATOL * n as f64 * (b as f64).sqrt() * (got.numel() as f64).sqrt();
    prop_assert!(
        err <= RTOL * norm + floor,
        "{}: ||fused - composite|| = {:e}, ||composite|| = {:e}",
        what,
        err,
        norm
    );
    Ok(())
}

fn policy() -> impl Strategy<Value = Policy> {
    prop::sample::select(vec![Policy::None, Policy::Soft, Policy::Hard])
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fused_matches_composite(
        b in 1usize..=2,
        n in prop_oneof![prop::sample::select(vec![1usize, 2, 5, 31, 33]), 1usize..=36],
        h in 1usize..=5,
        d in prop_oneof![prop::sample::select(vec![1usize, 3, 8]), 1usize..=12],
        policy in policy(),
        seed in any::<u64>(),
        scale_draw in 0.5f32..1.5,
    ) {
        let xs = inputs(b, n, h, d, policy, seed);
        let scale = scale_draw / (d as f32).sqrt();
        let w = Tensor::uniform(&[b, n, h * d], -1.0, 1.0, &mut Rng::new(seed ^ 1));
        let fused = run(Graph::transform_attention, &xs, h, scale, &w);
        let composite = run(Graph::transform_attention_composite, &xs, h, scale, &w);
        let names = ["out", "dq", "dk", "dv", "dpre", "dpre_bias", "dpost", "dpost_bias", "dkeep"];
        for ((name, f), c) in names.iter().zip(&fused).zip(&composite) {
            close(name, f, c, n, b)?;
        }
    }
}

/// Identity mixes with zero biases give the plain fused attention op, values and gradients.
#[test]
fn identity_mix_is_plain_attention() {
    let (b, n, h, d) = (2, 37, 3, 4);
    let mut rng = Rng::new(3);
    let xs: Vec<Tensor> = (0..3)
        .map(|_| Tensor::randn(&[b, n, h * d], 0.0, 1.0, &mut rng))
        .collect();
    let w = Tensor::randn(&[b, n, h * d], 0.0, 1.0, &mut rng);
    let grads = |transform: bool| -> Vec<Tensor> {
        let g = Graph::new();
        let v: Vec<Var> = xs.iter().map(|t| g.variable(t.clone())).collect();
        let out = if transform {
            let mix = HeadMix {
                pre: g.constant(eye(h)),
                pre_bias: g.constant(Tensor::zeros(&[h])),
                post: g.constant(eye(h)),
                post_bias: g.constant(Tensor::zeros(&[h])),
            };
            g.transform_attention(v[0], v[1], v[2], h, 0.5, mix, None)
        } else {
            g.attention(v[0], v[1], v[2], h, 0.5, None)
        }
        .unwrap();
        g.backward_from(out, w.clone()).unwrap();
        let mut res = vec![g.value(out).unwrap()];
        res.extend(v.iter().map(|&x| g.grad(x).unwrap().unwrap()));
        res
    };
    for (got, want) in grads(true).iter().zip(&grads(false)) {
        assert!(got.max_abs_diff(want).unwrap() < 1e-6);
    }
}

#[test]
fn bad_shapes_are_shape_errors() {
    let g = Graph::new();
    let mut rng = Rng::new(4);
    let mut var = |shape: &[usize]| g.variable(Tensor::randn(shape, 0.0, 1.0, &mut rng));
    let (q, k, v) = (var(&[2, 3, 6]), var(&[2, 3, 6]), var(&[2, 3, 6]));
    let short = var(&[2, 2, 6]);
    let mix = HeadMix {
        pre: var(&[2, 2]),
        pre_bias: var(&[2]),
        post: var(&[2, 2]),
        post_bias: var(&[2]),
    };
    let bad_mix = HeadMix {
        post: var(&[2, 3]),
        ..mix
    };
    let bad_bias = HeadMix {
        pre_bias: var(&[3]),
        ..mix
    };
    let bad_keep = var(&[2, 4]);
    let keep = var(&[2, 3]);
    for build in [
        Graph::transform_attention as Build,
        Graph::transform_attention_composite,
    ] {
        assert!(build(&g, q, k, v, 2, 0.5, mix, Some(keep)).is_ok());
        for result in [
            build(&g, q, short, v, 2, 0.5, mix, None),
            build(&g, q, k, v, 4, 0.5, mix, None),
            build(&g, q, k, v, 0, 0.5, mix, None),
            build(&g, q, k, v, 2, 0.5, bad_mix, None),
            build(&g, q, k, v, 2, 0.5, bad_bias, None),
            build(&g, q, k, v, 2, 0.5, mix, Some(bad_keep)),
        ] {
            assert!(matches!(result, Err(Error::Shape { .. })), "{result:?}");
        }
    }
}

/// A batch of zero-token samples runs forward and backward: an empty output and empty
/// gradients, not an error from the state the forward saves for the backward.
#[test]
fn zero_tokens_run_forward_and_backward() {
    let xs = inputs(2, 0, 2, 3, Policy::None, 5);
    let w = Tensor::zeros(&[2, 0, 6]);
    let res = run(Graph::transform_attention, &xs, 2, 0.5, &w);
    assert_eq!(res[0].shape(), &[2, 0, 6]);
    for (grad, x) in res[1..4].iter().zip(&xs) {
        assert_eq!(grad.shape(), x.shape());
    }
}
