//! TinyBERT's layer losses: hidden-state MSE through the width projection, attention-score MSE,
//! the layer map and the weighted total.

use super::reference as r;
use super::{assert_close, check_loss, f64s, randn};
use lithe::compress::distill::{
    LayerOutputs, TinyBertConfig, WidthProjection, attention_mse, attention_scores, hidden_mse,
    tinybert_loss, uniform_layer_map,
};
use lithe::nn::{AttentionParts, Linear};
use lithe::{Graph, Param, Rng, Var};

#[test]
fn layer_map_spreads_evenly_and_ends_on_the_last_layer() {
    assert_eq!(uniform_layer_map(6, 6), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(uniform_layer_map(3, 6), vec![1, 3, 5]);
    assert_eq!(uniform_layer_map(4, 6), vec![1, 2, 4, 5]);
    assert_eq!(uniform_layer_map(1, 6), vec![5]);
    assert!(uniform_layer_map(2, 0).is_empty());
}

/// By hand: student (1, 2) through W = [[2, 0], [0, 1], [1, 1]] and bias (0, 0, 1) is
/// (2, 2, 4); teacher (2, 0, 4); MSE = (0 + 4 + 0) / 3.
#[test]
fn hidden_mse_by_hand() {
    let g = Graph::new();
    let w =
        Param::new(lithe::Tensor::from_vec(vec![2.0, 0.0, 0.0, 1.0, 1.0, 1.0], &[3, 2]).unwrap());
    let b = Param::new(lithe::Tensor::from_vec(vec![0.0, 0.0, 1.0], &[3]).unwrap());
    let proj = WidthProjection {
        linear: Some(Linear::from_params(w, Some(b)).unwrap()),
    };
    let s = g.variable(lithe::Tensor::from_vec(vec![1.0, 2.0], &[1, 1, 2]).unwrap());
    let t = g.constant(lithe::Tensor::from_vec(vec![2.0, 0.0, 4.0], &[1, 1, 3]).unwrap());
    let loss = hidden_mse(&g, &[s], &[t], &proj).unwrap();
    assert_close(
        "hidden by hand",
        g.value(loss).unwrap().item().unwrap() as f64,
        4.0 / 3.0,
    );
}

#[test]
fn hidden_mse_with_projection_matches_reference() {
    let proj = WidthProjection::new(4, 6, &mut Rng::new(3));
    let l = proj.linear.clone().unwrap();
    let (w, b) = (
        f64s(&l.weight.value()),
        f64s(&l.bias.as_ref().unwrap().value()),
    );
    check_loss(
        "hidden_mse 2 layers, 4 -> 6",
        &[
            randn(&[2, 3, 4], 1),
            randn(&[2, 3, 4], 2),
            randn(&[2, 3, 6], 3),
            randn(&[2, 3, 6], 4),
        ],
        move |g, v| hidden_mse(g, &v[..2], &v[2..], &proj),
        move |x| {
            let layer = |s: &[f64], t: &[f64]| r::mse(&r::linear(s, &w, &b, 4), t);
            (layer(&x[0], &x[2]) + layer(&x[1], &x[3])) / 2.0
        },
    );
    // Equal widths: no projection, plain MSE.
    let same = WidthProjection::new(5, 5, &mut Rng::new(0));
    assert!(same.linear.is_none());
    check_loss(
        "hidden_mse equal widths",
        &[randn(&[2, 2, 5], 5), randn(&[2, 2, 5], 6)],
        move |g, v| hidden_mse(g, &v[..1], &v[1..], &same),
        |x| r::mse(&x[0], &x[1]),
    );
}

#[test]
fn attention_scores_are_scaled_query_times_key() {
    let g = Graph::new();
    let (q, k) = (randn(&[1, 2, 3, 4], 1), randn(&[1, 2, 3, 4], 2));
    let unused = g.constant(randn(&[1, 3, 8], 3));
    let parts = AttentionParts {
        output: unused,
        query: g.constant(q.clone()),
        key: g.constant(k.clone()),
        value: g.constant(k.clone()),
        probs: unused,
        context: unused,
    };
    let s = g.value(attention_scores(&g, &parts).unwrap()).unwrap();
    assert_eq!(s.shape(), &[1, 2, 3, 3]);
    let (q, k) = (q.data(), k.data());
    for h in 0..2 {
        for i in 0..3 {
            for j in 0..3 {
                let want: f32 = (0..4)
                    .map(|d| q[(h * 3 + i) * 4 + d] * k[(h * 3 + j) * 4 + d])
                    .sum();
                let got = s.data()[(h * 3 + i) * 3 + j];
                assert!((got - want).abs() < 1e-5, "{got} vs {want}");
            }
        }
    }
}

#[test]
fn attention_mse_matches_reference() {
    check_loss(
        "attention_mse",
        &[randn(&[2, 2, 3, 3], 1), randn(&[2, 2, 3, 3], 2)],
        |g, v| attention_mse(g, &v[..1], &v[1..]),
        |x| r::mse(&x[0], &x[1]),
    );
}

/// Student and teacher: 2 blocks of width 4 (so no projection), crossed by the map [1, 0].
/// Inputs: student embedding, hidden x2, attention x2, logits; then the teacher's.
#[test]
fn tinybert_loss_is_the_weighted_sum_of_its_terms() {
    let shapes = |blocks: usize| {
        let mut s = vec![vec![2usize, 3, 4]];
        s.extend(std::iter::repeat_n(vec![2, 3, 4], blocks));
        s.extend(std::iter::repeat_n(vec![2, 2, 3, 3], blocks));
        s.push(vec![2, 5]);
        s
    };
    let mut inputs = Vec::new();
    for (i, shape) in shapes(2).iter().chain(shapes(2).iter()).enumerate() {
        inputs.push(randn(shape, 40 + i as u64));
    }
    let config = TinyBertConfig {
        embedding_weight: 0.5,
        hidden_weight: 2.0,
        attention_weight: 0.25,
        prediction_weight: 1.5,
        temperature: 2.0,
        layer_map: Some(vec![1, 0]),
    };
    let view = |v: &[Var], blocks: usize| LayerOutputs {
        embedding: v[0],
        hidden: v[1..1 + blocks].to_vec(),
        attention: v[1 + blocks..1 + 2 * blocks].to_vec(),
        logits: v[1 + 2 * blocks],
    };
    let c = config.clone();
    check_loss(
        "tinybert_loss",
        &inputs,
        move |g, v| {
            let (s, t) = (view(&v[..6], 2), view(&v[6..], 2));
            tinybert_loss(g, &s, &t, &WidthProjection { linear: None }, &c)
        },
        |x| {
            let (s, t) = (&x[..6], &x[6..]);
            let embedding = r::mse(&s[0], &t[0]);
            let hidden = (r::mse(&s[1], &t[2]) + r::mse(&s[2], &t[1])) / 2.0;
            let attention = (r::mse(&s[3], &t[4]) + r::mse(&s[4], &t[3])) / 2.0;
            let prediction = r::soft_kd(&s[5], &t[5], 5, 2.0);
            0.5 * embedding + 2.0 * hidden + 0.25 * attention + 1.5 * prediction
        },
    );
}

#[test]
fn tinybert_errors() {
    let g = Graph::new();
    let h = g.variable(randn(&[1, 2, 4], 1));
    let a = g.variable(randn(&[1, 1, 2, 2], 2));
    let z = g.variable(randn(&[1, 3], 3));
    let one = LayerOutputs {
        embedding: h,
        hidden: vec![h],
        attention: vec![a],
        logits: z,
    };
    let none = WidthProjection { linear: None };
    let ok = TinyBertConfig::default();
    assert!(tinybert_loss(&g, &one, &one, &none, &ok).is_ok());
    let bad_map = TinyBertConfig {
        layer_map: Some(vec![1]),
        ..ok.clone()
    };
    assert!(tinybert_loss(&g, &one, &one, &none, &bad_map).is_err());
    let negative = TinyBertConfig {
        hidden_weight: -1.0,
        ..ok.clone()
    };
    assert!(tinybert_loss(&g, &one, &one, &none, &negative).is_err());
    let zero = TinyBertConfig {
        embedding_weight: 0.0,
        hidden_weight: 0.0,
        attention_weight: 0.0,
        prediction_weight: 0.0,
        ..ok.clone()
    };
    assert!(tinybert_loss(&g, &one, &one, &none, &zero).is_err());
    let no_attention = LayerOutputs {
        attention: vec![],
        ..one.clone()
    };
    assert!(tinybert_loss(&g, &no_attention, &one, &none, &ok).is_err());
    // Widths that differ without a projection are a shape error.
    let wide = g.variable(randn(&[1, 2, 6], 4));
    assert!(hidden_mse(&g, &[h], &[wide], &none).is_err());
    assert!(hidden_mse(&g, &[], &[], &none).is_err());
    assert!(attention_mse(&g, &[a, a], &[a],).is_err());
}
