//! Soft-label KD: `T^2 / N * sum_rows KL(softmax(t / T) || softmax(s / T))`.

use super::reference as r;
use super::{check_loss, randn};
use lithe::Graph;
use lithe::compress::distill::soft_kd;

#[test]
fn soft_kd_matches_reference_and_finite_differences() {
    for (shape, temperature) in [
        (&[4usize, 7][..], 1.0f32),
        (&[2, 3, 5][..], 2.5),
        (&[3, 4][..], 0.5),
    ] {
        let classes = *shape.last().unwrap();
        check_loss(
            &format!("soft_kd {shape:?} T={temperature}"),
            &[randn(shape, 10), randn(shape, 11).scale(2.0)],
            |g, v| soft_kd(g, v[0], v[1], temperature),
            |x| r::soft_kd(&x[0], &x[1], classes, temperature as f64),
        );
    }
}

#[test]
fn soft_kd_is_zero_for_a_perfect_student() {
    let g = Graph::new();
    let logits = randn(&[3, 6], 12).scale(3.0);
    let s = g.variable(logits.clone());
    let t = g.constant(logits);
    let loss = soft_kd(&g, s, t, 4.0).unwrap();
    assert!(g.value(loss).unwrap().item().unwrap().abs() <= 1e-6);
    g.backward(loss).unwrap();
    let grad = g.grad(s).unwrap().unwrap();
    assert!(grad.data().iter().all(|v| v.abs() <= 1e-6), "{grad:?}");
}

#[test]
fn soft_kd_teacher_constant_gets_no_gradient() {
    let g = Graph::new();
    let s = g.variable(randn(&[2, 4], 13));
    let t = g.constant(randn(&[2, 4], 14));
    let loss = soft_kd(&g, s, t, 2.0).unwrap();
    g.backward(loss).unwrap();
    assert!(g.grad(t).unwrap().is_none());
    // dstudent = T / N * (q - p)
    let (sv, tv) = (
        super::f64s(&g.value(s).unwrap()),
        super::f64s(&g.value(t).unwrap()),
    );
    let grad = g.grad(s).unwrap().unwrap();
    for row in 0..2 {
        let soft = |x: &[f64]| {
            let e: Vec<f64> = x.iter().map(|v| (v / 2.0).exp()).collect();
            let z: f64 = e.iter().sum();
            e.into_iter().map(move |v| v / z)
        };
        let at = row * 4..row * 4 + 4;
        let (q, p) = (soft(&sv[at.clone()]), soft(&tv[at.clone()]));
        for ((qc, pc), &got) in q.zip(p).zip(&grad.data()[at]) {
            super::assert_close("dstudent", got as f64, 2.0 / 2.0 * (qc - pc));
        }
    }
}

#[test]
fn soft_kd_errors() {
    let g = Graph::new();
    let a = g.variable(randn(&[2, 4], 15));
    let b = g.constant(randn(&[2, 4], 16));
    for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        assert!(matches!(
            soft_kd(&g, a, b, bad),
            Err(lithe::Error::InvalidArgument { .. })
        ));
    }
    let c = g.constant(randn(&[2, 5], 17));
    assert!(matches!(
        soft_kd(&g, a, c, 1.0),
        Err(lithe::Error::Shape { .. })
    ));
    let s = g.scalar(1.0);
    assert!(matches!(
        soft_kd(&g, s, s, 1.0),
        Err(lithe::Error::Shape { .. })
    ));
    let e = g.constant(lithe::Tensor::zeros(&[0, 4]));
    assert!(matches!(
        soft_kd(&g, e, e, 1.0),
        Err(lithe::Error::Empty { .. })
    ));
}
