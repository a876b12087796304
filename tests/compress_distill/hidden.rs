//! Hidden-state relations: `MSE(n(H_s) n(H_s)^T, n(H_t) n(H_t)^T)` with row-normalized `H`.

use super::reference as r;
use super::{check_loss, randn};
use lithe::compress::distill::hidden_relation_loss;
use lithe::nn::AttentionMask;
use lithe::{Error, Graph, Tensor};

const B: usize = 2;
const T: usize = 5;

fn check_hidden(name: &str, layers: usize, (ws, wt): (usize, usize), lengths: Option<&[usize]>) {
    let mut inputs: Vec<Tensor> = (0..layers as u64)
        .map(|i| randn(&[B, T, ws], 20 + i))
        .collect();
    inputs.extend((0..layers as u64).map(|i| randn(&[B, T, wt], 40 + i)));
    let mask = lengths.map(|l| AttentionMask::from_lengths(l, T).unwrap());
    let valid = r::flags(lengths, B, T);
    check_loss(
        name,
        &inputs,
        |g, v| hidden_relation_loss(g, &v[..layers], &v[layers..], mask.as_ref()),
        |x| {
            let xs: Vec<&[f64]> = x.iter().map(|v| &v[..]).collect();
            r::hidden_relation(&xs[..layers], &xs[layers..], (B, T), (ws, wt), &valid)
        },
    );
}

#[test]
fn matches_reference() {
    check_hidden("hidden 8 vs 12", 1, (8, 12), None);
    check_hidden("hidden 12 vs 8, two layers", 2, (12, 8), None);
}

#[test]
fn masked_matches_reference() {
    check_hidden("hidden masked", 2, (8, 12), Some(&[5, 3]));
    check_hidden("hidden masked, one token", 1, (12, 12), Some(&[1, 4]));
}

#[test]
fn perfect_student_and_padding() {
    let lengths = [4, 2];
    let mask = AttentionMask::from_lengths(&lengths, T).unwrap();
    let h = randn(&[B, T, 12], 60);
    let run = |s: &Tensor, t: &Tensor, mask: Option<&AttentionMask>| {
        let g = Graph::new();
        let (sv, tv) = (g.variable(s.clone()), g.constant(t.clone()));
        let loss = hidden_relation_loss(&g, &[sv], &[tv], mask).unwrap();
        g.backward(loss).unwrap();
        assert!(g.grad(tv).unwrap().is_none());
        (
            g.value(loss).unwrap().item().unwrap(),
            g.grad(sv).unwrap().unwrap(),
        )
    };
    let (loss, grad) = run(&h, &h, Some(&mask));
    assert!(loss.abs() <= 1e-6, "loss {loss}");
    assert!(grad.data().iter().all(|v| v.abs() <= 1e-6));
    // Padded tokens change neither the loss nor the gradient, and get none themselves.
    let t = randn(&[B, T, 8], 61);
    let pad = |x: &Tensor, seed| {
        let w = x.shape()[2];
        let noise = randn(x.shape(), seed);
        let data = (0..x.numel())
            .map(|i| {
                if i / w % T < lengths[i / (T * w)] {
                    x.data()[i]
                } else {
                    noise.data()[i]
                }
            })
            .collect();
        Tensor::from_vec(data, x.shape()).unwrap()
    };
    let (l1, g1) = run(&h, &t, Some(&mask));
    let (l2, g2) = run(&pad(&h, 62), &pad(&t, 63), Some(&mask));
    assert!((l1 - l2).abs() <= 1e-6, "{l1} vs {l2}");
    for (i, (&a, &b)) in g1.data().iter().zip(g2.data()).enumerate() {
        assert!((a - b).abs() <= 1e-6);
        if i / 12 % T >= lengths[i / (T * 12)] {
            assert_eq!(a, 0.0);
        }
    }
    let (u1, _) = run(&h, &t, None);
    let (u2, _) = run(&pad(&h, 62), &pad(&t, 63), None);
    assert!((u1 - u2).abs() > 1e-3, "without a mask padding must matter");
}

#[test]
fn errors() {
    let g = Graph::new();
    let h = |b: usize, t: usize, w: usize| g.constant(Tensor::zeros(&[b, t, w]));
    let (s, t) = (h(B, T, 8), h(B, T, 12));
    assert!(hidden_relation_loss(&g, &[s], &[t], None).is_ok());
    let shape_err = |s, t, m: Option<&AttentionMask>| {
        matches!(
            hidden_relation_loss(&g, &[s], &[t], m),
            Err(Error::Shape { .. })
        )
    };
    assert!(shape_err(s, h(B, T + 1, 12), None));
    assert!(shape_err(s, h(B + 1, T, 12), None));
    assert!(shape_err(s, g.constant(Tensor::zeros(&[B * T, 12])), None));
    assert!(shape_err(s, h(B, T, 0), None));
    let wrong = AttentionMask::from_lengths(&[5], T).unwrap();
    assert!(shape_err(s, t, Some(&wrong)));
    assert!(matches!(
        hidden_relation_loss(&g, &[s, s], &[t], None),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        hidden_relation_loss(&g, &[], &[], None),
        Err(Error::Empty { .. })
    ));
    let empty = AttentionMask::from_lengths(&[0, 0], T).unwrap();
    assert!(matches!(
        hidden_relation_loss(&g, &[s], &[t], Some(&empty)),
        Err(Error::Empty { .. })
    ));
}
