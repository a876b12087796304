//! Layers against hand-written references: Linear, attention (per-head loops, mask), head mask,
//! post-LN vs pre-LN blocks.

use lithe::nn::{
    AttentionMask, Block, BlockConfig, Init, Linear, Module, MultiHeadAttention, NormPlacement,
};
use lithe::{GeluKind, Graph, Rng, Tensor};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, &mut Rng::new(seed))
}

fn close(a: &Tensor, b: &Tensor, tol: f32) {
    assert_eq!(a.shape(), b.shape());
    let d = a.max_abs_diff(b).unwrap();
    assert!(d <= tol, "max |diff| = {d} > {tol}");
}

#[test]
fn linear_any_rank() {
    let mut rng = Rng::new(1);
    let lin = Linear::new(5, 3, true, Init::Normal(0.5), &mut rng);
    lin.bias
        .as_ref()
        .unwrap()
        .set_value(randn(&[3], 2))
        .unwrap();
    let (w, b) = (lin.weight.value(), lin.bias.as_ref().unwrap().value());
    for shape in [vec![4, 5], vec![2, 3, 5], vec![2, 1, 2, 5]] {
        let x = randn(&shape, 3);
        let g = Graph::inference();
        let y = g
            .value(lin.forward(&g, g.constant(x.clone())).unwrap())
            .unwrap();
        let mut out_shape = shape.clone();
        *out_shape.last_mut().unwrap() = 3;
        assert_eq!(y.shape(), &out_shape[..]);
        for (r, row) in x.data().chunks(5).enumerate() {
            for o in 0..3 {
                let want: f32 =
                    b.data()[o] + (0..5).map(|k| row[k] * w.data()[o * 5 + k]).sum::<f32>();
                assert!((y.data()[r * 3 + o] - want).abs() < 1e-5);
            }
        }
    }
    let bare = Linear::new(5, 3, false, Init::TruncNormal(0.02), &mut rng);
    assert_eq!(bare.named_params().len(), 1);
    assert!(
        Linear::from_params(
            lin.weight.clone(),
            Some(lithe::Param::new(Tensor::zeros(&[4])))
        )
        .is_err()
    );
}

#[test]
fn linear_inference_uses_the_current_weight_after_every_change() {
    // Inference graphs multiply by a packed copy of W^T: it must follow set_value, optimizer
    // updates and a swapped-in parameter, and agree with the training-graph forward.
    let mut rng = Rng::new(4);
    let mut lin = Linear::new(70, 40, true, Init::Normal(0.5), &mut rng);
    let x = randn(&[3, 7, 70], 5);
    let infer = |lin: &Linear| {
        let g = Graph::inference();
        g.value(lin.forward(&g, g.constant(x.clone())).unwrap())
            .unwrap()
    };
    let train = |lin: &Linear| {
        let g = Graph::new();
        g.value(lin.forward(&g, g.constant(x.clone())).unwrap())
            .unwrap()
    };
    let first = infer(&lin);
    close(&first, &train(&lin), 1e-5);
    close(&infer(&lin), &first, 0.0); // the cached packing gives the same bits

    lin.weight.set_value(randn(&[40, 70], 6)).unwrap();
    let after_set = infer(&lin);
    close(&after_set, &train(&lin), 1e-5);
    assert!(after_set.max_abs_diff(&first).unwrap() > 0.1);

    let mut opt = lithe::Sgd::new(vec![lin.weight.clone()], lithe::SgdConfig::default()).unwrap();
    let g = Graph::new();
    let y = lin.forward(&g, g.constant(x.clone())).unwrap();
    g.backward(g.sum_all(y).unwrap()).unwrap();
    lithe::Optimizer::step(&mut opt).unwrap();
    let after_step = infer(&lin);
    close(&after_step, &train(&lin), 1e-5);
    assert!(after_step.max_abs_diff(&after_set).unwrap() > 1e-3);

    lin.weight = lithe::Param::new(randn(&[40, 70], 7));
    close(&infer(&lin), &train(&lin), 1e-5);
}

/// Attention computed head by head with plain loops.
fn attention_reference(
    att: &MultiHeadAttention,
    x: &Tensor, // [B, T, H]
    mask: Option<&AttentionMask>,
    head_mask: Option<&[f32]>,
) -> Tensor {
    let lin = |l: &Linear, x: &Tensor| {
        lithe::tensor::add(
            &lithe::tensor::matmul_t(x, &l.weight.value()).unwrap(),
            &l.bias.as_ref().unwrap().value(),
        )
        .unwrap()
    };
    let (q, k, v) = (lin(&att.query, x), lin(&att.key, x), lin(&att.value, x));
    let [b, t, h] = x.shape()[..] else { panic!() };
    let (nh, d) = (att.heads, h / att.heads);
    let mut ctx = vec![0f32; b * t * h];
    for bi in 0..b {
        for hd in 0..nh {
            for i in 0..t {
                let at =
                    |m: &Tensor, tok: usize, j: usize| m.data()[(bi * t + tok) * h + hd * d + j];
                let mut s: Vec<f32> = (0..t)
                    .map(|j| {
                        (0..d).map(|e| at(&q, i, e) * at(&k, j, e)).sum::<f32>() / (d as f32).sqrt()
                    })
                    .collect();
                if let Some(m) = mask {
                    for (j, sj) in s.iter_mut().enumerate() {
                        if !m.flags()[bi * t + j] {
                            *sj = f32::NEG_INFINITY;
                        }
                    }
                }
                let mx = s.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let z: f32 = s.iter().map(|v| (v - mx).exp()).sum();
                let scale = head_mask.map_or(1.0, |hm| hm[hd]);
                for e in 0..d {
                    ctx[(bi * t + i) * h + hd * d + e] = scale
                        * (0..t)
                            .map(|j| (s[j] - mx).exp() / z * at(&v, j, e))
                            .sum::<f32>();
                }
            }
        }
    }
    lin(&att.dense, &Tensor::from_vec(ctx, &[b, t, h]).unwrap())
}

#[test]
fn attention_matches_per_head_reference() {
    let mut rng = Rng::new(5);
    let att = MultiHeadAttention::new(12, 3, 0.0, "self", Init::Normal(0.3), &mut rng).unwrap();
    for l in [&att.query, &att.key, &att.value, &att.dense] {
        l.bias.as_ref().unwrap().set_value(randn(&[12], 6)).unwrap();
    }
    let x = randn(&[2, 5, 12], 7);
    let mask = AttentionMask::from_lengths(&[5, 2], 5).unwrap();
    let hm = [1.0, 0.0, 0.5];
    let g = Graph::inference();
    let bias = g.constant(mask.additive_bias());
    let head_mask = g.constant(Tensor::from_vec(hm.to_vec(), &[3]).unwrap());
    let xv = g.constant(x.clone());
    let y = g.value(att.forward(&g, xv, None, None).unwrap()).unwrap();
    close(&y, &attention_reference(&att, &x, None, None), 1e-5);
    let y = g
        .value(att.forward(&g, xv, Some(bias), Some(head_mask)).unwrap())
        .unwrap();
    close(
        &y,
        &attention_reference(&att, &x, Some(&mask), Some(&hm)),
        1e-5,
    );
    assert!(MultiHeadAttention::new(10, 3, 0.0, "self", Init::Normal(0.02), &mut rng).is_err());
}

#[test]
fn fused_attention_matches_the_composite_path_forward_and_backward() {
    // `forward` takes the fused op (no head mask, no dropout, a per-key mask); `forward_parts`
    // is the composite. Both must agree on the output and on every gradient.
    let mut rng = Rng::new(10);
    let att = MultiHeadAttention::new(12, 3, 0.0, "self", Init::Normal(0.3), &mut rng).unwrap();
    let x = randn(&[2, 5, 12], 11);
    let mask = AttentionMask::from_lengths(&[5, 3], 5).unwrap();
    let run = |fused: bool| {
        let g = Graph::new();
        let xv = g.variable(x.clone());
        let bias = g.constant(mask.additive_bias());
        let y = if fused {
            att.forward(&g, xv, Some(bias), None).unwrap()
        } else {
            att.forward_parts(&g, xv, Some(bias), None).unwrap().output
        };
        let w = g.constant(randn(&[2, 5, 12], 12));
        g.backward(g.sum_all(g.mul(y, w).unwrap()).unwrap())
            .unwrap();
        let mut grads = vec![g.value(y).unwrap(), g.grad(xv).unwrap().unwrap()];
        for (_, p) in att.named_params() {
            grads.push(p.grad().unwrap());
            p.zero_grad();
        }
        // The fused op records one node where the composite records a dozen.
        (grads, g.len())
    };
    let ((fused, fused_nodes), (composite, composite_nodes)) = (run(true), run(false));
    assert!(
        fused_nodes < composite_nodes,
        "{fused_nodes} vs {composite_nodes} nodes"
    );
    for (a, b) in fused.iter().zip(&composite) {
        close(a, b, 2e-5);
    }
}

#[test]
fn head_mask_gradient_is_per_head() {
    let mut rng = Rng::new(8);
    let att = MultiHeadAttention::new(8, 4, 0.0, "self", Init::Normal(0.3), &mut rng).unwrap();
    let g = Graph::new();
    let hm = g.variable(Tensor::ones(&[4]));
    let y = att
        .forward(&g, g.constant(randn(&[2, 3, 8], 9)), None, Some(hm))
        .unwrap();
    let loss = g.sum_all(g.mul(y, y).unwrap()).unwrap();
    g.backward(loss).unwrap();
    let d = g.grad(hm).unwrap().unwrap();
    assert_eq!(d.shape(), [4]);
    assert!(d.data().iter().all(|v| v.abs() > 0.0), "{:?}", d.data());
}

fn block_config(norm: NormPlacement) -> BlockConfig {
    BlockConfig {
        hidden: 8,
        heads: 2,
        inner: 16,
        act: GeluKind::Tanh,
        hidden_dropout: 0.0,
        attention_dropout: 0.0,
        eps: 1e-5,
        norm,
        head_dim: None,
    }
}

#[test]
fn post_ln_and_pre_ln_blocks_follow_their_formulas() {
    let post = Block::new(
        &block_config(NormPlacement::Post),
        Init::Normal(0.3),
        &mut Rng::new(10),
    )
    .unwrap();
    // Non-trivial LayerNorm parameters, so where they sit matters.
    for (i, ln) in [&post.attn_norm, &post.mlp_norm].into_iter().enumerate() {
        ln.weight
            .set_value(randn(&[8], 20 + i as u64).map(|v| 1.0 + 0.3 * v))
            .unwrap();
        ln.bias.set_value(randn(&[8], 30 + i as u64)).unwrap();
    }
    // The same parameters (shared handles) arranged pre-LN.
    let mut pre = post.clone();
    pre.norm = NormPlacement::Pre;
    let g = Graph::inference();
    let x = g.constant(randn(&[2, 4, 8], 11));
    let val = |v| g.value(v).unwrap();
    // Post-LN: x1 = LN1(x + Attn(x)); y = LN2(x1 + Mlp(x1)).
    let a = post.attention.forward(&g, x, None, None).unwrap();
    let x1 = post.attn_norm.forward(&g, g.add(x, a).unwrap()).unwrap();
    let m = post.mlp.forward(&g, x1).unwrap();
    let want_post = post.mlp_norm.forward(&g, g.add(x1, m).unwrap()).unwrap();
    close(
        &val(post.forward(&g, x, None, None).unwrap()),
        &val(want_post),
        0.0,
    );
    // Pre-LN: x1 = x + Attn(LN1(x)); y = x1 + Mlp(LN2(x1)).
    let a = pre
        .attention
        .forward(&g, pre.attn_norm.forward(&g, x).unwrap(), None, None)
        .unwrap();
    let x1 = g.add(x, a).unwrap();
    let m = pre
        .mlp
        .forward(&g, pre.mlp_norm.forward(&g, x1).unwrap())
        .unwrap();
    let want_pre = g.add(x1, m).unwrap();
    close(
        &val(pre.forward(&g, x, None, None).unwrap()),
        &val(want_pre),
        0.0,
    );
    assert!(val(want_pre).max_abs_diff(&val(want_post)).unwrap() > 1e-2);
    // Post-LN output rows are normalised by mlp_norm: (y - bias) / weight has mean ~0, var ~1.
    let y = val(want_post);
    let (w, b) = (post.mlp_norm.weight.value(), post.mlp_norm.bias.value());
    for row in y.data().chunks(8) {
        let z: Vec<f32> = row
            .iter()
            .zip(w.data().iter().zip(b.data()))
            .map(|(v, (w, b))| (v - b) / w)
            .collect();
        let mean = z.iter().sum::<f32>() / 8.0;
        let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 8.0;
        assert!(
            mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
            "mean {mean} var {var}"
        );
    }
    // Names: BERT's for post-LN, ViT's for pre-LN.
    let names = |b: &Block| {
        b.named_params()
            .into_iter()
            .map(|(n, _)| n)
            .collect::<Vec<_>>()
    };
    assert!(names(&post).contains(&"attention.output.LayerNorm.weight".to_string()));
    assert!(names(&post).contains(&"attention.self.query.weight".to_string()));
    let pre_vit = Block::new(
        &block_config(NormPlacement::Pre),
        Init::Normal(0.3),
        &mut Rng::new(10),
    )
    .unwrap();
    assert_eq!(
        names(&pre_vit)[..4],
        [
            "layernorm_before.weight",
            "layernorm_before.bias",
            "attention.attention.query.weight",
            "attention.attention.query.bias"
        ]
    );
}
