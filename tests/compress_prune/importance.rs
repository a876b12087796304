//! FastFormers importance: the neuron score is the derivative it claims to be, and the head
//! ranking agrees with the loss increase measured by removing each head.

use super::*;
use lithe::autograd::CrossEntropyOptions;
use lithe::compress::prune::importance;
use lithe::train::TrainOptions;

/// Mean label cross-entropy of `vit` on `data` with `head_masks` (one `[nh]` per layer).
fn loss_with_masks(vit: &Vit, data: &ImageSet, head_masks: Option<&[Tensor]>) -> f64 {
    let rows: Vec<usize> = (0..data.len()).collect();
    let (x, y) = data.batch(&rows).unwrap();
    let g = Graph::inference();
    let masks: Option<Vec<_>> =
        head_masks.map(|m| m.iter().map(|t| g.constant(t.clone())).collect());
    let (_, traces) = vit
        .forward_traced(&g, g.constant(x), masks.as_deref())
        .unwrap();
    let logits = vit
        .logits_from_hidden(&g, traces.last().unwrap().output)
        .unwrap();
    let l = g
        .cross_entropy(logits, &y, &CrossEntropyOptions::default())
        .unwrap();
    f64::from(g.value(l).unwrap().item().unwrap())
}

/// Spearman's rank correlation (no ties expected).
fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let ranks = |v: &[f64]| {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        for (rank, &i) in idx.iter().enumerate() {
            r[i] = rank as f64;
        }
        r
    };
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let d2: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - y) * (x - y)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

/// A 2-layer, 6-head ViT trained briefly on the digits; the importance of each of its 12 heads
/// over 256 images is compared with the loss increase when that head alone is removed (brute
/// force, same images). The correlation is printed; the ranking must agree clearly.
#[test]
fn head_ranking_agrees_with_brute_force_removal() {
    let config = VitConfig {
        num_attention_heads: 6,
        ..vit_config(2)
    };
    let vit = Vit::new(&config, &mut Rng::new(7)).unwrap();
    let (tr, te) = small_digits(256);
    let opts = TrainOptions {
        epochs: 30,
        batch_size: 32,
        lr: 3e-3,
        ..TrainOptions::default()
    };
    train::train_vit(&vit, &tr, &te, &opts, &mut |_| {}).unwrap();
    let imp = train::vit_importance(&vit, &tr, 64, 256).unwrap();
    let base = loss_with_masks(&vit, &tr, None);
    let (mut scores, mut increases) = (Vec::new(), Vec::new());
    for l in 0..2 {
        for h in 0..6 {
            let masks: Vec<Tensor> = (0..2)
                .map(|k| {
                    let mut m = Tensor::ones(&[6]);
                    if k == l {
                        m.data_mut()[h] = 0.0;
                    }
                    m
                })
                .collect();
            increases.push(loss_with_masks(&vit, &tr, Some(&masks)) - base);
            scores.push(f64::from(imp.heads[l][h]));
        }
        let norm: f32 = imp.heads[l].iter().map(|s| s * s).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-5,
            "layer {l} not L2-normalised: {norm}"
        );
    }
    let rho = spearman(&scores, &increases);
    println!("head importance vs brute-force loss increase: Spearman {rho:.3} over 12 heads");
    println!("scores {scores:.4?}\nincreases {increases:.4?}");
    assert!(rho >= 0.6, "Spearman {rho}");
}

/// Over one batch, a neuron's score is `|d L / d s|` for a scale `s` of its `fc1` row and bias
/// (the first-order loss change of switching it off): checked by central differences.
#[test]
fn neuron_score_is_the_derivative_of_scaling_the_neuron() {
    let vit = vit(2, 11);
    let (tr, _) = small_digits(32);
    let imp = train::vit_importance(&vit, &tr, 32, 32).unwrap();
    let loss = || loss_with_masks(&vit, &tr, None);
    let eps = 1e-2f32;
    for (l, j) in [(0usize, 0usize), (0, 17), (1, 5), (1, 39)] {
        let fc1 = &vit.blocks()[l].mlp.fc1;
        let (w0, b0) = (fc1.weight.value(), fc1.bias.as_ref().unwrap().value());
        let scaled = |s: f32| {
            let (mut w, mut b) = (w0.clone(), b0.clone());
            w.data_mut()[j * 24..(j + 1) * 24]
                .iter_mut()
                .for_each(|x| *x *= s);
            b.data_mut()[j] *= s;
            fc1.weight.set_value(w).unwrap();
            fc1.bias.as_ref().unwrap().set_value(b).unwrap();
            loss()
        };
        let fd = ((scaled(1.0 + eps) - scaled(1.0 - eps)) / (2.0 * f64::from(eps))).abs();
        scaled(1.0);
        let score = f64::from(imp.neurons[l][j]);
        assert!(
            (score - fd).abs() <= 2e-2 * fd.max(1e-3),
            "layer {l} neuron {j}: score {score} vs finite difference {fd}"
        );
    }
    // Scores are accumulated over batches: two batches of 16 give the sum of their scores.
    let halves = |rows: std::ops::Range<usize>| {
        let r: Vec<usize> = rows.collect();
        let (x, y) = tr.batch(&r).unwrap();
        ImageSet {
            pixels: x.data().to_vec(),
            labels: y,
            channels: 1,
            side: 8,
        }
    };
    let a = train::vit_importance(&vit, &halves(0..16), 16, 16).unwrap();
    let b = train::vit_importance(&vit, &halves(16..32), 16, 16).unwrap();
    let both = train::vit_importance(&vit, &tr, 16, 32).unwrap();
    for j in 0..40 {
        let sum = a.neurons[1][j] + b.neurons[1][j];
        assert!((both.neurons[1][j] - sum).abs() <= 1e-4 * sum.max(1.0));
    }
}

#[test]
fn importance_needs_data_and_unshared_layers() {
    let vit = vit(1, 0);
    let (tr, _) = small_digits(8);
    assert!(train::vit_importance(&vit, &tr, 0, 8).is_err());
    assert!(train::vit_importance(&vit, &tr, 8, 0).is_err());
    let shared = shared_bert();
    let err = importance(&shared, &shared.encoder, 1, &mut |g, _, _| {
        Ok(g.constant(Tensor::zeros(&[1])))
    })
    .unwrap_err();
    assert!(err.to_string().contains("share"), "{err}");
}
