//! Logits, hidden states and embeddings against the f32 models; one static Linear exactly.

use super::*;

#[test]
fn vit_logits_match_f32_model() {
    for distillation in [false, true] {
        let vit = tiny_vit(distillation, 10);
        let int8 = vit.to_int8(&QuantPlan::dynamic()).unwrap();
        let batch = 32;
        let x = images(batch, 11);
        let g = Graph::inference();
        let expected = g
            .value(vit.forward_logits(&g, g.constant(x.clone())).unwrap())
            .unwrap();
        let mut ws = int8.workspace(batch, 0).unwrap();
        let got = int8
            .forward(
                &mut ws,
                Input::Images {
                    pixels: x.data(),
                    batch,
                },
            )
            .unwrap();
        let err = rel_err(got, expected.data());
        let agree = argmax_agreement(got, expected.data(), 6);
        assert!(
            err < 0.05,
            "distillation {distillation}: relative error {err}"
        );
        assert!(
            agree >= 0.9,
            "distillation {distillation}: argmax agreement {agree}"
        );
    }
}

#[test]
fn vit_hidden_matches_f32_features() {
    let vit = tiny_vit(false, 12);
    let int8 = Int8Model::from_vit(&vit, &QuantPlan::dynamic()).unwrap();
    let x = images(4, 13);
    let g = Graph::inference();
    let expected = g
        .value(vit.forward_features(&g, g.constant(x.clone())).unwrap())
        .unwrap();
    let mut ws = int8.workspace(4, 0).unwrap();
    let got = int8
        .hidden(
            &mut ws,
            Input::Images {
                pixels: x.data(),
                batch: 4,
            },
        )
        .unwrap();
    assert_eq!(got.len(), 4 * 5 * 32);
    let err = rel_err(got, expected.data());
    eprintln!("vit hidden: relative error {err}");
    assert!(err < 0.05, "relative error {err}");
}

#[test]
fn bert_logits_match_f32_model_with_padding() {
    let bert = tiny_bert(20);
    let int8 = bert.to_int8(&QuantPlan::dynamic()).unwrap();
    let (batch, seq) = (32, 12);
    let (ids, lengths) = tokens(batch, seq, 21);
    let expected = bert_f32_logits(&bert, &ids, [batch, seq], &lengths);
    let mut ws = int8.workspace(batch, 16).unwrap();
    let input = Input::Tokens {
        ids: &ids,
        batch,
        seq,
        lengths: Some(&lengths),
    };
    let got = int8.forward(&mut ws, input).unwrap();
    let err = rel_err(got, &expected);
    let agree = argmax_agreement(got, &expected, 5);
    eprintln!("bert: relative error {err}, agreement {agree}");
    assert!(err < 0.05, "relative error {err}");
    assert!(agree >= 0.9, "argmax agreement {agree}");
}

#[test]
fn padding_does_not_change_real_tokens() {
    // The same sentence alone and padded in a batch: identical logits, since padded keys are
    // left out and every quantization is per row (dynamic) or per element (static).
    let bert = tiny_bert(22);
    let int8 = bert.to_int8(&QuantPlan::dynamic()).unwrap();
    let (ids, _) = tokens(1, 7, 23);
    let mut ws = int8.workspace(2, 10).unwrap();
    let alone = int8
        .forward(
            &mut ws,
            Input::Tokens {
                ids: &ids,
                batch: 1,
                seq: 7,
                lengths: None,
            },
        )
        .unwrap()
        .to_vec();
    let mut padded = vec![3u32; 20];
    padded[10..17].copy_from_slice(&ids);
    let lengths = [10, 7];
    let input = Input::Tokens {
        ids: &padded,
        batch: 2,
        seq: 10,
        lengths: Some(&lengths),
    };
    let both = int8.forward(&mut ws, input).unwrap();
    let err = rel_err(&both[5..], &alone);
    assert!(err < 1e-5, "relative error {err}");
}

#[test]
fn bert_embed_matches_f32_mean_pool() {
    let bert = tiny_bert(24);
    let int8 = bert.to_int8(&QuantPlan::dynamic()).unwrap();
    let (batch, seq) = (6, 10);
    let (ids, lengths) = tokens(batch, seq, 25);
    let g = Graph::inference();
    let ids_usize: Vec<usize> = ids.iter().map(|&i| i as usize).collect();
    let mask = AttentionMask::from_lengths(&lengths, seq).unwrap();
    let hidden = bert
        .forward_hidden(&g, &ids_usize, [batch, seq], None, Some(&mask))
        .unwrap();
    let pooled = l2_normalize(&g, mean_pool(&g, hidden, Some(&mask)).unwrap()).unwrap();
    let expected = g.value(pooled).unwrap();
    let expected_hidden = g.value(hidden).unwrap();
    let mut ws = int8.workspace(batch, seq).unwrap();
    let input = Input::Tokens {
        ids: &ids,
        batch,
        seq,
        lengths: Some(&lengths),
    };
    let got_hidden = int8.hidden(&mut ws, input).unwrap().to_vec();
    let err = rel_err(&got_hidden, expected_hidden.data());
    eprintln!("bert hidden: relative error {err}");
    assert!(err < 0.05, "hidden relative error {err}");
    let got = int8.embed(&mut ws, input, Pooling::Mean).unwrap();
    for (b, (x, y)) in got
        .chunks_exact(32)
        .zip(expected.data().chunks_exact(32))
        .enumerate()
    {
        let cos: f32 = x.iter().zip(y).map(|(a, b)| a * b).sum();
        let norm: f32 = x.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "sample {b}: norm {norm}");
        eprintln!("bert embed sample {b}: cosine {cos}");
        assert!(cos > 0.99, "sample {b}: cosine {cos}");
    }
    // CLS pooling is the normalized first token.
    let cls = int8.embed(&mut ws, input, Pooling::Cls).unwrap().to_vec();
    let first = &got_hidden[..32];
    let n = first.iter().map(|v| v * v).sum::<f32>().sqrt();
    for (a, b) in cls[..32].iter().zip(first) {
        assert!((a - b / n).abs() < 1e-6);
    }
}

// ---------------------------------------------------------------------------------------------
// Exactness of one Linear

#[test]
fn static_linear_equals_f64_reference() {
    let (k, n, m) = (37, 19, 5);
    let mut rng = Rng::new(30);
    let lin = Linear::new(k, n, true, lithe::nn::Init::Normal(0.3), &mut rng);
    lin.bias
        .as_ref()
        .unwrap()
        .set_value(Tensor::randn(&[n], 0.0, 0.5, &mut rng))
        .unwrap();
    let x = Tensor::randn(&[m, k], 0.0, 1.0, &mut rng);
    // A scale that clips the largest inputs, so the clamp is exercised too.
    let s = 2.0 / 127.0;
    let int8 = Int8Linear::from_linear(&lin, ActQuant::Static(s)).unwrap();
    assert_eq!((int8.in_features(), int8.out_features()), (k, n));
    assert_eq!(int8.act(), ActQuant::Static(s));
    let got = int8.forward(x.data(), m).unwrap();
    // Reference: the documented quantization rules, then the product in f64.
    let quant = |v: f32, scale: f32| (v / scale).clamp(-127.0, 127.0).round_ties_even();
    let w = lin.weight.value();
    let b = lin.bias.as_ref().unwrap().value();
    for i in 0..m {
        for j in 0..n {
            let row = &w.data()[j * k..(j + 1) * k];
            let max = row.iter().fold(0f32, |a, v| a.max(v.abs()));
            let s_w = max / 127.0;
            let dot: f64 = (0..k)
                .map(|p| {
                    let qx = f64::from(quant(x.data()[i * k + p], s)) * f64::from(s);
                    let qw = f64::from(quant(row[p], s_w)) * f64::from(s_w);
                    qx * qw
                })
                .sum();
            let expected = dot + f64::from(b.data()[j]);
            let g = f64::from(got[i * n + j]);
            let scale = dot.abs() + f64::from(b.data()[j]).abs();
            assert!(
                (g - expected).abs() <= 1e-5 * scale.max(1e-3),
                "[{i}, {j}]: {g} vs {expected}"
            );
        }
    }
}

#[test]
fn static_plan_runs_and_stays_close() {
    // Static scales from the largest magnitude a Linear could see (here: a generous 8 / 127)
    // on every layer; mixed with dynamic on Q so Q, K and V are not fused in this model.
    let bert = tiny_bert(32);
    let mut plan = QuantPlan {
        default_mode: ActQuant::Static(8.0 / 127.0),
        acts: Default::default(),
    };
    plan.acts.insert(
        "encoder.layer.0.attention.self.query".into(),
        ActQuant::Dynamic,
    );
    let int8 = bert.to_int8(&plan).unwrap();
    let (batch, seq) = (16, 8);
    let (ids, lengths) = tokens(batch, seq, 33);
    let expected = bert_f32_logits(&bert, &ids, [batch, seq], &lengths);
    let mut ws = int8.workspace(batch, seq).unwrap();
    let input = Input::Tokens {
        ids: &ids,
        batch,
        seq,
        lengths: Some(&lengths),
    };
    let got = int8.forward(&mut ws, input).unwrap();
    let err = rel_err(got, &expected);
    eprintln!("bert static plan: relative error {err}");
    assert!(err < 0.1, "relative error {err}");
}

// ---------------------------------------------------------------------------------------------
// No allocation
