//! The fused transform-attention op against its composite form and the plain attention op.

use lithe::{Graph, HeadMix, Rng, Tensor, Var};

fn eye(h: usize) -> Tensor {
    let mut t = Tensor::zeros(&[h, h]);
    for i in 0..h {
        t.data_mut()[i * h + i] = 1.0;
    }
    t
}

fn identity_mix(g: &Graph, h: usize) -> HeadMix {
    HeadMix {
        pre: g.variable(eye(h)),
        pre_bias: g.variable(Tensor::zeros(&[h])),
        post: g.variable(eye(h)),
        post_bias: g.variable(Tensor::zeros(&[h])),
    }
}

#[test]
fn identity_mix_is_plain_attention() {
    let mut rng = Rng::new(3);
    let (b, n, h, d) = (2, 5, 3, 4);
    let g = Graph::new();
    let x: Vec<Var> = (0..3)
        .map(|_| g.variable(Tensor::randn(&[b, n, h * d], 0.0, 1.0, &mut rng)))
        .collect();
    let mix = identity_mix(&g, h);
    let want = g
        .value(g.attention(x[0], x[1], x[2], h, 0.5, None).unwrap())
        .unwrap();
    for out in [
        g.transform_attention(x[0], x[1], x[2], h, 0.5, mix, None)
            .unwrap(),
        g.transform_attention_composite(x[0], x[1], x[2], h, 0.5, mix, None)
            .unwrap(),
    ] {
        assert!(g.value(out).unwrap().max_abs_diff(&want).unwrap() < 1e-6);
    }
    // A keep policy of all ones is no policy (up to eps).
    let keep = g.constant(Tensor::ones(&[b, n]));
    let out = g
        .transform_attention_composite(x[0], x[1], x[2], h, 0.5, mix, Some(keep))
        .unwrap();
    assert!(g.value(out).unwrap().max_abs_diff(&want).unwrap() < 1e-5);
}
