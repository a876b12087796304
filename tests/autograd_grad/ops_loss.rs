//! cross_entropy (plain, label smoothing, ignore_index, rank-3 logits), mse, kl_div.

use super::check::{check, randn};
use super::reference as r;
use lithe::{CrossEntropyOptions, Graph, Tensor};

#[test]
fn cross_entropy_plain() {
    let t = [2, 0, 3, 3];
    check(
        "ce",
        &[randn(&[4, 5], 90)],
        |g, v| g.cross_entropy(v[0], &t, &CrossEntropyOptions::default()),
        |x| r::cross_entropy(&x[0], &t, 0.0, None),
    );
}

#[test]
fn cross_entropy_label_smoothing() {
    let t = [1, 4, 0];
    let opts = CrossEntropyOptions {
        label_smoothing: 0.1,
        ignore_index: None,
    };
    check(
        "ce-smooth",
        &[randn(&[3, 5], 91)],
        |g, v| g.cross_entropy(v[0], &t, &opts),
        |x| r::cross_entropy(&x[0], &t, 0.1, None),
    );
}

#[test]
fn cross_entropy_ignore_index_and_smoothing_rank3() {
    // Logits [B=2, T=3, C=4]; targets per token, -100-style ignore as index 99.
    let t = [1, 99, 3, 0, 99, 2];
    let opts = CrossEntropyOptions {
        label_smoothing: 0.2,
        ignore_index: Some(99),
    };
    check(
        "ce-ignore",
        &[randn(&[2, 3, 4], 92)],
        |g, v| g.cross_entropy(v[0], &t, &opts),
        |x| r::cross_entropy(&x[0], &t, 0.2, Some(99)),
    );
}

#[test]
fn cross_entropy_ignored_rows_get_zero_grad() {
    let g = Graph::new();
    let l = g.variable(randn(&[3, 4], 93));
    let opts = CrossEntropyOptions {
        label_smoothing: 0.0,
        ignore_index: Some(0),
    };
    let loss = g.cross_entropy(l, &[2, 0, 1], &opts).unwrap();
    g.backward(loss).unwrap();
    let d = g.grad(l).unwrap().unwrap();
    assert!(d.data()[4..8].iter().all(|&v| v == 0.0));
    // Each valid row's gradient sums to 0 (softmax minus a distribution).
    for row in [0, 2] {
        let s: f32 = d.data()[row * 4..row * 4 + 4].iter().sum();
        assert!(s.abs() < 1e-6, "row {row} sums to {s}");
    }
}

#[test]
fn mse_both_inputs() {
    check(
        "mse",
        &[randn(&[2, 3], 94), randn(&[2, 3], 95)],
        |g, v| g.mse(v[0], v[1]),
        |x| r::mse(&x[0], &x[1]),
    );
}

#[test]
fn kl_div_batchmean_both_inputs() {
    // log_input = log_softmax of random logits, target = softmax of others (strictly positive).
    let lq = lithe::tensor::log_softmax(&randn(&[3, 4], 96)).unwrap();
    let p = lithe::tensor::softmax(&randn(&[3, 4], 97)).unwrap();
    check(
        "kl_div",
        &[lq, p],
        |g, v| g.kl_div(v[0], v[1]),
        |x| r::kl_div(&x[0], &x[1]),
    );
}

#[test]
fn kl_div_matches_torch_values_with_zero_targets() {
    // torch.nn.functional.kl_div(log_q, p, reduction="batchmean") for
    // log_q = ln([[.25, .75], [.5, .5]]), p = [[0, 1], [.5, .5]]:
    // row 0: 1 * (ln 1 - ln .75) = 0.287682; row 1: 0; batchmean = 0.143841.
    let g = Graph::new();
    let lq = g.variable(
        Tensor::from_vec(
            vec![0.25f32.ln(), 0.75f32.ln(), 0.5f32.ln(), 0.5f32.ln()],
            &[2, 2],
        )
        .unwrap(),
    );
    let p = g.variable(Tensor::from_vec(vec![0.0, 1.0, 0.5, 0.5], &[2, 2]).unwrap());
    let loss = g.kl_div(lq, p).unwrap();
    let v = g.value(loss).unwrap().item().unwrap();
    assert!((v - 0.143_841).abs() < 1e-5, "{v}");
    g.backward(loss).unwrap();
    // dtarget is 0 where p == 0 (documented), and finite everywhere.
    let dp = g.grad(p).unwrap().unwrap();
    assert_eq!(dp.data()[0], 0.0);
    assert!(dp.data().iter().all(|v| v.is_finite()));
    // dlog_input = -p / batch.
    let dl = g.grad(lq).unwrap().unwrap();
    assert_eq!(dl.data(), &[0.0, -0.5, -0.25, -0.25]);
}
