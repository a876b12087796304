//! The fused attention op against the composite form in f64: per head
//! `softmax(scale * Q K^T + key_bias) V`, heads side by side in `[B, T, H]`.

use super::check::{check, randn};
use super::reference::{self as r, R};
use lithe::{Graph, Tensor};

/// `[B, T, H] -> [B, nh, T, d]`.
fn split_heads(x: &R, heads: usize) -> R {
    let (b, t, h) = (x.shape[0], x.shape[1], x.shape[2]);
    r::permute(
        &R::new(&[b, t, heads, h / heads], x.data.clone()),
        &[0, 2, 1, 3],
    )
}

fn reference(x: &[R], heads: usize, scale: f64, bias: Option<&R>) -> R {
    let (q, k, v) = (
        split_heads(&x[0], heads),
        split_heads(&x[1], heads),
        split_heads(&x[2], heads),
    );
    let mut s = r::matmul(&q, false, &k, true).map(|e| e * scale);
    if let Some(bias) = bias {
        s = r::binary(&s, bias, |a, m| a + m); // [B, nh, T, T] + [B, 1, 1, T]
    }
    let o = r::permute(&r::matmul(&r::softmax(&s), false, &v, false), &[0, 2, 1, 3]);
    let shape = x[0].shape.clone();
    R::new(&shape, o.data)
}

#[test]
fn attention_without_bias() {
    let inputs = [
        randn(&[2, 3, 4], 80),
        randn(&[2, 3, 4], 81),
        randn(&[2, 3, 4], 82),
    ];
    check(
        "attention",
        &inputs,
        |g, v| g.attention(v[0], v[1], v[2], 2, 0.7, None),
        |x| reference(x, 2, 0.7, None),
    );
}

#[test]
fn attention_with_key_padding_bias() {
    // Sample 0 hides its last key, sample 1 none; one head of width 3 and three of width 1.
    let bias = Tensor::from_vec(
        vec![0.0, 0.0, 0.0, -30.0, 0.0, 0.0, 0.0, 0.0],
        &[2, 1, 1, 4],
    )
    .unwrap();
    let bias64 = R::from_t(&bias);
    for heads in [1, 3] {
        let inputs = [
            randn(&[2, 4, 3], 83),
            randn(&[2, 4, 3], 84),
            randn(&[2, 4, 3], 85),
        ];
        let (b, b64) = (bias.clone(), bias64.clone());
        check(
            &format!("attention-masked-{heads}"),
            &inputs,
            move |g, v| {
                let m = g.constant(b.clone());
                g.attention(v[0], v[1], v[2], heads, 0.5, Some(m))
            },
            move |x| reference(x, heads, 0.5, Some(&b64)),
        );
    }
}

#[test]
fn attention_rejects_bad_inputs() {
    let g = Graph::new();
    let q = g.variable(randn(&[2, 3, 4], 86));
    let k = g.variable(randn(&[2, 3, 4], 87));
    let short = g.variable(randn(&[2, 2, 4], 88));
    assert!(g.attention(q, k, short, 2, 1.0, None).is_err()); // v shape differs
    assert!(g.attention(q, k, k, 3, 1.0, None).is_err()); // 3 heads do not divide 4
    assert!(g.attention(q, k, k, 0, 1.0, None).is_err());
    let wrong_bias = g.constant(Tensor::zeros(&[2, 1, 1, 5]));
    assert!(g.attention(q, k, k, 2, 1.0, Some(wrong_bias)).is_err());
    let learned_bias = g.variable(Tensor::zeros(&[2, 1, 1, 3]));
    assert!(matches!(
        g.attention(q, k, k, 2, 1.0, Some(learned_bias)),
        Err(lithe::Error::InvalidArgument { .. })
    ));
}

#[test]
fn attention_is_identical_for_any_thread_count() {
    // Samples are split across threads; each sample's arithmetic is the same either way.
    let inputs = [
        randn(&[3, 5, 8], 89),
        randn(&[3, 5, 8], 90),
        randn(&[3, 5, 8], 91),
    ];
    let run = |threads: usize| {
        lithe::kernels::threads::set_num_threads(threads);
        let g = Graph::new();
        let v: Vec<_> = inputs.iter().map(|t| g.variable(t.clone())).collect();
        let y = g.attention(v[0], v[1], v[2], 2, 0.3, None).unwrap();
        g.backward_from(y, randn(&[3, 5, 8], 92)).unwrap();
        let mut out = vec![g.value(y).unwrap()];
        out.extend(v.iter().map(|&x| g.grad(x).unwrap().unwrap()));
        out
    };
    let (one, two) = (run(1), run(2));
    lithe::kernels::threads::set_num_threads(0);
    assert_eq!(one, two);
}
