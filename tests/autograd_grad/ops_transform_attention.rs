//! The fused transform-attention op against central finite differences of an f64 reference
//! written from the definitions (head split, mixes, softmax or policy softmax, merge).

use super::check::{check, randn, uniform};
use super::reference::{self as r, R};
use lithe::HeadMix;

const EPS: f64 = 1e-6;

/// `x[B, N, H*d]` -> `[B, H, N, d]`.
fn split_heads(x: &R, heads: usize) -> R {
    let (b, n, w) = (x.shape[0], x.shape[1], x.shape[2]);
    r::permute(
        &R::new(&[b, n, heads, w / heads], x.data.clone()),
        &[0, 2, 1, 3],
    )
}

/// Inputs: q, k, v, pre, pre_bias, post, post_bias (, keep).
fn reference(x: &[R], heads: usize, scale: f64) -> R {
    let (q, k, v) = (
        split_heads(&x[0], heads),
        split_heads(&x[1], heads),
        split_heads(&x[2], heads),
    );
    let (b, n, h) = (q.shape[0], q.shape[2], heads);
    let s = r::matmul(&q, false, &k, true).map(|e| e * scale); // [B, H, N, N]
    let (pre, pre_bias, post, post_bias) = (&x[3], &x[4], &x[5], &x[6]);
    let keep = x.get(7);
    let gate = |bi: usize, i: usize, j: usize| match keep {
        Some(d) if i != j => d.get(&[bi, j]),
        _ => 1.0,
    };
    let mixed = R::from_fn(&[b, h, n, n], |ix| {
        pre_bias.get(&[ix[1]])
            + (0..h)
                .map(|g| pre.get(&[ix[1], g]) * s.get(&[ix[0], g, ix[2], ix[3]]))
                .sum::<f64>()
    });
    let probs = match keep {
        None => r::softmax(&mixed),
        Some(_) => R::from_fn(&[b, h, n, n], |ix| {
            let row: Vec<f64> = (0..n)
                .map(|j| mixed.get(&[ix[0], ix[1], ix[2], j]))
                .collect();
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = (0..n)
                .map(|j| (row[j] - m).exp() * gate(ix[0], ix[2], j))
                .collect();
            (e[ix[3]] + EPS / n as f64) / (e.iter().sum::<f64>() + EPS)
        }),
    };
    let out_maps = R::from_fn(&[b, h, n, n], |ix| {
        post_bias.get(&[ix[1]]) * gate(ix[0], ix[2], ix[3])
            + (0..h)
                .map(|g| post.get(&[ix[1], g]) * probs.get(&[ix[0], g, ix[2], ix[3]]))
                .sum::<f64>()
    });
    let o = r::permute(&r::matmul(&out_maps, false, &v, false), &[0, 2, 1, 3]);
    R::new(&x[0].shape, o.data)
}

fn mix_inputs(h: usize, seed: u64) -> Vec<lithe::Tensor> {
    vec![
        randn(&[h, h], seed),
        randn(&[h], seed + 1),
        randn(&[h, h], seed + 2),
        randn(&[h], seed + 3),
    ]
}

#[test]
fn transform_attention_without_policy() {
    for (heads, n, d) in [(1, 3, 2), (3, 4, 1), (2, 5, 3)] {
        let mut inputs = vec![
            randn(&[2, n, heads * d], 90),
            randn(&[2, n, heads * d], 91),
            randn(&[2, n, heads * d], 92),
        ];
        inputs.extend(mix_inputs(heads, 93));
        check(
            &format!("transform_attention-{heads}x{n}x{d}"),
            &inputs,
            move |g, v| {
                let mix = HeadMix {
                    pre: v[3],
                    pre_bias: v[4],
                    post: v[5],
                    post_bias: v[6],
                };
                g.transform_attention(v[0], v[1], v[2], heads, 0.6, mix, None)
            },
            move |x| reference(x, heads, 0.6),
        );
    }
}

#[test]
fn transform_attention_with_policy() {
    // The policy stays inside (0, 1) so the finite differences do not leave its domain.
    for (heads, n, d) in [(2, 4, 2), (3, 3, 1)] {
        let mut inputs = vec![
            randn(&[2, n, heads * d], 94),
            randn(&[2, n, heads * d], 95),
            randn(&[2, n, heads * d], 96),
        ];
        inputs.extend(mix_inputs(heads, 97));
        inputs.push(uniform(&[2, n], 0.1, 0.9, 98));
        check(
            &format!("transform_attention-policy-{heads}x{n}x{d}"),
            &inputs,
            move |g, v| {
                let mix = HeadMix {
                    pre: v[3],
                    pre_bias: v[4],
                    post: v[5],
                    post_bias: v[6],
                };
                g.transform_attention(v[0], v[1], v[2], heads, 0.6, mix, Some(v[7]))
            },
            move |x| reference(x, heads, 0.6),
        );
    }
}
