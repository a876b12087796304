//! DynamicViT token dropping: the config's arithmetic, the predictor's policy-weighted mean, the
//! loss against a hand computation, and the three equalities the method rests on:
//!
//! - keep ratio 1 (an all-ones policy): the gathered forward is the plain ViT exactly, the masked
//!   one up to the policy softmax's eps;
//! - the gathered forward equals the masked forward under the top-k policy on the class logits
//!   and every kept token (exact when eps = 0; here within 1e-4 relative, see
//!   `DynamicVit`'s docs for the bound);
//! - save and load give the same model.

use lithe::compress::tokendrop::{
    DynamicVit, KeepRule, MaskedOutput, TeacherTargets, TokenDropConfig, TokenDropLoss,
    token_drop_loss,
};
use lithe::nn::{Module, Vit, VitConfig};
use lithe::{Graph, Rng, Tensor};

fn vit_config(distillation_token: bool) -> VitConfig {
    VitConfig {
        image_size: 8,
        patch_size: 2,
        num_channels: 1,
        hidden_size: 16,
        num_hidden_layers: 4,
        num_attention_heads: 2,
        intermediate_size: 32,
        num_labels: 3,
        layer_norm_eps: 1e-6,
        hidden_dropout_prob: 0.0,
        distillation_token,
        attention_head_size: None,
    }
}

/// Every parameter redrawn from N(0, 0.3^2), so scores and logits are far from ties.
fn scramble(m: &impl Module, seed: u64) {
    let mut rng = Rng::new(seed);
    for (_, p) in m.named_params() {
        let shape = p.shape();
        let n: usize = shape.iter().product();
        let data = (0..n).map(|_| (rng.normal() * 0.3) as f32).collect();
        p.set_value(Tensor::from_vec(data, &shape).unwrap())
            .unwrap();
    }
}

fn model(keep: f32, dist: bool, seed: u64) -> DynamicVit {
    let mut rng = Rng::new(seed);
    let c = vit_config(dist);
    let vit = Vit::new(&c, &mut rng).unwrap();
    let td = TokenDropConfig {
        stages: vec![1, 2, 3],
        keep_ratio: keep,
    };
    let m = DynamicVit::new(vit, &td, &mut rng).unwrap();
    scramble(&m, seed + 100);
    m
}

fn images(b: usize, seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    let data = (0..b * 64).map(|_| rng.next_f32()).collect();
    Tensor::from_vec(data, &[b, 1, 8, 8]).unwrap()
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

#[test]
fn config_counts_ratios_and_errors() {
    assert_eq!(TokenDropConfig::default_stages(12), vec![3, 6, 9]);
    assert_eq!(TokenDropConfig::default_stages(6), vec![2, 3, 5]);
    assert_eq!(TokenDropConfig::default_stages(4), vec![1, 2, 3]);
    assert!(TokenDropConfig::default_stages(1).is_empty());
    let c = TokenDropConfig::new(6, 0.7);
    // ceil(0.7 * 49) = 35, ceil(0.49 * 49) = 25 (24.01), ceil(0.343 * 49) = 17 (16.807).
    assert_eq!(c.keep_counts(49), vec![35, 25, 17]);
    // 0.7 * 50 = 35 exactly in decimal: no spurious extra token from float rounding.
    assert_eq!(c.keep_counts(50), vec![35, 25, 18]);
    assert_eq!(
        TokenDropConfig::new(6, 1.0).keep_counts(49),
        vec![49, 49, 49]
    );
    assert_eq!(TokenDropConfig::new(6, 0.01).keep_counts(49), vec![1, 1, 1]);
    let r = c.stage_ratios();
    assert!((r[2] - 0.343).abs() < 1e-6);
    for bad in [
        TokenDropConfig {
            stages: vec![],
            keep_ratio: 0.7,
        },
        TokenDropConfig {
            stages: vec![2, 2],
            keep_ratio: 0.7,
        },
        TokenDropConfig {
            stages: vec![6],
            keep_ratio: 0.7,
        },
        TokenDropConfig {
            stages: vec![2],
            keep_ratio: 0.0,
        },
        TokenDropConfig {
            stages: vec![2],
            keep_ratio: 1.5,
        },
        TokenDropConfig {
            stages: vec![2],
            keep_ratio: f32::NAN,
        },
    ] {
        assert!(bad.validate(6).is_err(), "{bad:?} accepted");
        let vit = Vit::new(
            &VitConfig {
                num_hidden_layers: 6,
                ..vit_config(false)
            },
            &mut Rng::new(0),
        );
        assert!(DynamicVit::new(vit.unwrap(), &bad, &mut Rng::new(0)).is_err());
    }
}

#[test]
fn keep_ratio_one_is_the_plain_vit() {
    for dist in [false, true] {
        let m = model(1.0, dist, 3);
        let x = images(3, 4);
        let g = Graph::inference();
        let plain = g
            .value(m.vit.forward_logits(&g, g.constant(x.clone())).unwrap())
            .unwrap();
        let gathered = m.forward_gather(&g, g.constant(x.clone())).unwrap();
        assert_eq!(g.value(gathered.logits).unwrap().data(), plain.data());
        assert!(
            gathered
                .kept
                .iter()
                .all(|s| s.iter().all(|k| k.len() == 16))
        );
        let masked = m.forward_masked(&g, g.constant(x), KeepRule::TopK).unwrap();
        for d in &masked.decisions {
            assert!(g.value(*d).unwrap().data().iter().all(|&v| v == 1.0));
        }
        let err = rel_err(g.value(masked.logits).unwrap().data(), plain.data());
        assert!(err < 1e-5, "masked all-ones policy vs plain ViT: {err:e}");
    }
}

#[test]
fn gathered_forward_equals_masked_top_k() {
    for (seed, dist) in [(1, false), (2, false), (5, true)] {
        let m = model(0.7, dist, seed);
        let p = m.prefix();
        let counts = m.keep_counts();
        assert_eq!(counts, vec![12, 8, 6]); // ceil(11.2), ceil(7.84), ceil(5.488)
        let b = 4;
        let x = images(b, seed + 10);
        let g = Graph::inference();
        let masked = m
            .forward_masked(&g, g.constant(x.clone()), KeepRule::TopK)
            .unwrap();
        let gathered = m.forward_gather(&g, g.constant(x)).unwrap();
        // The same tokens are kept at every stage.
        for (s, d) in masked.decisions.iter().enumerate() {
            let d = g.value(*d).unwrap();
            for bi in 0..b {
                let want: Vec<usize> = (0..16).filter(|&j| d.data()[bi * 16 + j] == 1.0).collect();
                assert_eq!(gathered.kept[s][bi], want, "stage {s} sample {bi}");
                assert_eq!(want.len(), counts[s]);
            }
        }
        let (lm, lg) = (
            g.value(masked.logits).unwrap(),
            g.value(gathered.logits).unwrap(),
        );
        let err = rel_err(lg.data(), lm.data());
        assert!(err < 1e-4, "logits: {err:e}");
        // Prefix and kept tokens' features.
        let (fm, fg) = (
            g.value(masked.features).unwrap(),
            g.value(gathered.features).unwrap(),
        );
        let (t, c, k) = (p + 16, 16, counts[2]);
        for bi in 0..b {
            let mut rows = (0..p).collect::<Vec<_>>();
            rows.extend(gathered.kept[2][bi].iter().map(|&j| p + j));
            for (r, &src) in rows.iter().enumerate() {
                let a = &fg.data()[(bi * (p + k) + r) * c..][..c];
                let e = &fm.data()[(bi * t + src) * c..][..c];
                let err = rel_err(a, e);
                assert!(err < 1e-4, "sample {bi} token {src}: {err:e}");
            }
        }
    }
}

#[test]
fn gumbel_training_forward_keeps_prefix_and_decides_hard() {
    let m = model(0.7, false, 7);
    let g = Graph::with_seed(11);
    let out = m
        .forward_masked(&g, g.constant(images(8, 12)), KeepRule::Gumbel { tau: 1.0 })
        .unwrap();
    let mut prev = vec![1.0f32; 8 * 16];
    for d in &out.decisions {
        let d = g.value(*d).unwrap();
        assert_eq!(d.shape(), &[8, 16]);
        for (v, p) in d.data().iter().zip(&prev) {
            assert!(*v == 0.0 || *v == 1.0, "decision {v} is not hard");
            assert!(v <= p, "a dropped token came back");
        }
        prev = d.data().to_vec();
    }
    // The decisions are differentiable: the loss reaches every predictor.
    let loss = g.sum_all(out.logits).unwrap();
    let ratio = g.mean_all(*out.decisions.last().unwrap()).unwrap();
    g.backward(g.add(loss, ratio).unwrap()).unwrap();
    for (i, p) in m.predictors.iter().enumerate() {
        let grad = p.score.weight.grad().expect("predictor gradient");
        assert!(
            grad.data().iter().any(|&v| v != 0.0),
            "predictor {i} got no gradient"
        );
    }
}

#[test]
fn predictor_global_mean_ignores_dropped_tokens() {
    let m = model(0.7, false, 9);
    let pred = &m.predictors[0];
    let mut rng = Rng::new(1);
    let mut x: Vec<f32> = (0..2 * 5 * 16).map(|_| rng.normal() as f32).collect();
    let policy = Tensor::from_vec(vec![1., 0., 1., 1., 0., 1., 1., 1., 1., 1.], &[2, 5]).unwrap();
    let run = |x: &[f32]| {
        let g = Graph::inference();
        let xv = g.constant(Tensor::from_vec(x.to_vec(), &[2, 5, 16]).unwrap());
        let out = pred.forward(&g, xv, g.constant(policy.clone())).unwrap();
        g.value(out).unwrap()
    };
    let before = run(&x);
    // Log-probabilities: each row's two probabilities sum to 1.
    for r in before.data().chunks_exact(2) {
        assert!(((r[0].exp() + r[1].exp()) - 1.0).abs() < 1e-5);
    }
    // Change token 1 of sample 0 (dropped): the other tokens' scores do not move. (The change
    // is not a constant shift, which the LayerNorm would remove.)
    for (i, v) in x[16..32].iter_mut().enumerate() {
        *v += i as f32 * 0.5;
    }
    let after = run(&x);
    assert_ne!(
        before.data()[2..4],
        after.data()[2..4],
        "the changed token's own score"
    );
    for j in [0, 2, 3, 4] {
        assert_eq!(
            before.data()[j * 2..j * 2 + 2],
            after.data()[j * 2..j * 2 + 2]
        );
    }
    // Change token 0 (kept): the global mean, so every token's score, moves.
    for (i, v) in x[..16].iter_mut().enumerate() {
        *v -= i as f32 * 0.5;
    }
    let moved = run(&x);
    assert_ne!(after.data()[4..6], moved.data()[4..6]);
    // Shape errors.
    let g = Graph::inference();
    let bad = g.constant(Tensor::zeros(&[2, 5, 8]));
    assert!(pred.forward(&g, bad, g.constant(policy.clone())).is_err());
}

#[test]
fn loss_matches_a_hand_computation() {
    // B = 2, P = 1, N = 2, C = 2, classes = 2, two stages aiming at 0.5 and 0.25.
    let g = Graph::new();
    let logits = g.variable(Tensor::from_vec(vec![1.0, -1.0, 0.5, 0.0], &[2, 2]).unwrap());
    let features = g.variable(
        Tensor::from_vec(
            vec![
                9., 9., 1., 2., 3., 4., /* sample 1 */ 9., 9., 0., 1., -1., 2.,
            ],
            &[2, 3, 2],
        )
        .unwrap(),
    );
    let d1 = g.constant(Tensor::from_vec(vec![1., 1., 1., 0.], &[2, 2]).unwrap());
    let d2 = g.constant(Tensor::from_vec(vec![1., 0., 0., 0.], &[2, 2]).unwrap());
    let out = MaskedOutput {
        logits,
        features,
        decisions: vec![d1, d2],
    };
    let teacher_logits = Tensor::from_vec(vec![0.0, 0.0, 2.0, 0.0], &[2, 2]).unwrap();
    let teacher_features = Tensor::from_vec(
        vec![
            0., 0., 0., 2., 0., 0., /* sample 1 */ 0., 0., 5., 5., 5., 5.,
        ],
        &[2, 3, 2],
    )
    .unwrap();
    let w = TokenDropLoss {
        ratio_weight: 2.0,
        kd_weight: 0.5,
        token_weight: 0.5,
        label_smoothing: 0.0,
    };
    let labels = [0, 1];
    let loss = token_drop_loss(
        &g,
        &out,
        &labels,
        1,
        &[0.5, 0.25],
        TeacherTargets {
            logits: teacher_logits,
            features: teacher_features,
        },
        &w,
    )
    .unwrap();
    // Cross-entropy: mean of -log softmax at the labels.
    let lse = |a: f64, b: f64| (a.exp() + b.exp()).ln();
    let ce = ((lse(1.0, -1.0) - 1.0) + (lse(0.5, 0.0) - 0.0)) / 2.0;
    // Ratio: stage 1 keeps 1 and 0.5 (targets 0.5), stage 2 keeps 0.5 and 0 (target 0.25).
    let ratio = ((0.25 + 0.0) / 2.0 + (0.0625 + 0.0625) / 2.0) / 2.0;
    // KL(teacher || student) per row, mean over rows.
    let kl_row = |s: [f64; 2], t: [f64; 2]| {
        let (ls, lt) = (lse(s[0], s[1]), lse(t[0], t[1]));
        (0..2)
            .map(|c| (t[c] - lt).exp() * ((t[c] - lt) - (s[c] - ls)))
            .sum::<f64>()
    };
    let kl = (kl_row([1.0, -1.0], [0.0, 0.0]) + kl_row([0.5, 0.0], [2.0, 0.0])) / 2.0;
    // Tokens: only sample 0 token 0 is kept at the end: |(1,2) - (0,2)|^2 / (C * 1) = 0.5.
    let tokens = 0.5;
    let want = ce + 2.0 * ratio + 0.5 * kl + 0.5 * tokens;
    let got = g.value(loss).unwrap().item().unwrap() as f64;
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    // Shape errors: a ratio per stage, teacher features of the student's shape.
    let t = Tensor::zeros(&[2, 2]);
    assert!(
        token_drop_loss(
            &g,
            &out,
            &labels,
            1,
            &[0.5],
            TeacherTargets {
                logits: t.clone(),
                features: Tensor::zeros(&[2, 3, 2]),
            },
            &w
        )
        .is_err()
    );
    assert!(
        token_drop_loss(
            &g,
            &out,
            &labels,
            1,
            &[0.5, 0.2],
            TeacherTargets {
                logits: t,
                features: Tensor::zeros(&[2, 2, 2]),
            },
            &w
        )
        .is_err()
    );
}

#[test]
fn save_and_load_round_trip() {
    let m = model(0.5, true, 21);
    let dir = std::env::temp_dir().join(format!("lithe-tokendrop-{}", std::process::id()));
    m.save(&dir).unwrap();
    let back = DynamicVit::load(&dir).unwrap();
    assert_eq!(back.config, m.config);
    let names: Vec<String> = m.named_params().into_iter().map(|(n, _)| n).collect();
    assert!(
        names
            .iter()
            .any(|n| n == "score_predictor.2.out_conv.4.weight")
    );
    let x = images(2, 3);
    let g = Graph::inference();
    let a = g
        .value(m.forward_logits(&g, g.constant(x.clone())).unwrap())
        .unwrap();
    let b = g
        .value(back.forward_logits(&g, g.constant(x)).unwrap())
        .unwrap();
    assert_eq!(a.data(), b.data());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn keep_margin_orders_tokens_as_the_log_probability() {
    let m = model(0.7, false, 13);
    let pred = &m.predictors[1];
    let mut rng = Rng::new(2);
    let x: Vec<f32> = (0..3 * 9 * 16).map(|_| rng.normal() as f32).collect();
    let g = Graph::inference();
    let xv = g.constant(Tensor::from_vec(x, &[3, 9, 16]).unwrap());
    let lp = g
        .value(
            pred.forward(&g, xv, g.constant(Tensor::ones(&[3, 9])))
                .unwrap(),
        )
        .unwrap();
    let margin = g.value(pred.keep_margin(&g, xv).unwrap()).unwrap();
    assert_eq!(margin.shape(), &[3, 9]);
    for (r, m) in lp.data().chunks_exact(2).zip(margin.data()) {
        // log p_keep - log p_drop = logit_keep - logit_drop.
        assert!(
            (r[0] - r[1] - m).abs() < 1e-4 * (1.0 + m.abs()),
            "{r:?} vs {m}"
        );
    }
    let g = Graph::inference();
    assert!(
        pred.keep_margin(&g, g.constant(Tensor::zeros(&[3, 9, 8])))
            .is_err()
    );
}
