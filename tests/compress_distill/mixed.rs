//! KD mixed with the labels (`kd_loss`) and DeiT's two-head loss (`deit_loss`).

use super::reference as r;
use super::{assert_close, check_loss, randn};
use lithe::autograd::CrossEntropyOptions;
use lithe::compress::distill::{DeitTarget, KdConfig, argmax_rows, deit_loss, kd_loss};
use lithe::{Graph, Tensor};

const CE: CrossEntropyOptions = CrossEntropyOptions {
    label_smoothing: 0.0,
    ignore_index: None,
};

/// One row by hand: student logits (0, 0) give q = (1/2, 1/2); teacher logits (ln 3, 0) at T = 1
/// give p = (3/4, 1/4); label 0.
/// CE = ln 2; KL(p || q) = 3/4 ln(3/2) + 1/4 ln(1/2); alpha = 1/4:
/// loss = 3/4 ln 2 + 1/4 (3/4 ln 1.5 - 1/4 ln 2) = 0.5525634...
#[test]
fn kd_loss_by_hand() {
    let g = Graph::new();
    let s = g.variable(Tensor::from_vec(vec![0.0, 0.0], &[1, 2]).unwrap());
    let t = g.constant(Tensor::from_vec(vec![3f32.ln(), 0.0], &[1, 2]).unwrap());
    let config = KdConfig {
        temperature: 1.0,
        alpha: 0.25,
    };
    let loss = kd_loss(&g, s, t, &[0], &config, &CE).unwrap();
    let want = 0.75 * 2f64.ln() + 0.25 * (0.75 * 1.5f64.ln() - 0.25 * 2f64.ln());
    assert_close(
        "kd_loss by hand",
        g.value(loss).unwrap().item().unwrap() as f64,
        want,
    );
    assert!((want - 0.552_563_4).abs() < 1e-7);
}

#[test]
fn kd_loss_matches_reference_and_finite_differences() {
    let labels = [2usize, 0, 4];
    for (temperature, alpha) in [(1.0f32, 0.5f32), (4.0, 0.9), (3.0, 1.0)] {
        check_loss(
            &format!("kd_loss T={temperature} alpha={alpha}"),
            &[randn(&[3, 5], 20), randn(&[3, 5], 21).scale(2.0)],
            |g, v| {
                let config = KdConfig { temperature, alpha };
                kd_loss(g, v[0], v[1], &labels, &config, &CE)
            },
            |x| {
                let (t, a) = (temperature as f64, alpha as f64);
                let hard = r::cross_entropy(&x[0], &labels, 5);
                (1.0 - a) * hard + a * r::soft_kd(&x[0], &x[1], 5, t)
            },
        );
    }
}

/// alpha = 0 is the label cross-entropy alone; the teacher is not on the loss's tape.
#[test]
fn kd_loss_with_alpha_zero_is_cross_entropy() {
    let g = Graph::new();
    let (s, t) = (g.variable(randn(&[2, 3], 1)), g.variable(randn(&[2, 3], 2)));
    let config = KdConfig {
        temperature: 2.0,
        alpha: 0.0,
    };
    let loss = kd_loss(&g, s, t, &[2, 0], &config, &CE).unwrap();
    let want = r::cross_entropy(&super::f64s(&g.value(s).unwrap()), &[2, 0], 3);
    assert_close(
        "alpha 0",
        g.value(loss).unwrap().item().unwrap() as f64,
        want,
    );
    g.backward(loss).unwrap();
    assert!(g.grad(t).unwrap().is_none());
}

#[test]
fn kd_config_is_validated() {
    let g = Graph::new();
    let s = g.variable(randn(&[2, 3], 1));
    for (temperature, alpha) in [(0.0, 0.5), (f32::NAN, 0.5), (1.0, -0.1), (1.0, 1.5)] {
        let config = KdConfig { temperature, alpha };
        assert!(
            kd_loss(&g, s, s, &[0, 1], &config, &CE).is_err(),
            "{config:?}"
        );
    }
}

/// Hard DeiT by hand: class logits (0, 0), label 1: CE = ln 2. Distillation logits (ln 3, 0),
/// teacher argmax 0: CE = -ln(3/4). loss = (ln 2 - ln 0.75) / 2.
#[test]
fn deit_hard_by_hand() {
    let g = Graph::new();
    let cls = g.variable(Tensor::from_vec(vec![0.0, 0.0], &[1, 2]).unwrap());
    let dist = g.variable(Tensor::from_vec(vec![3f32.ln(), 0.0], &[1, 2]).unwrap());
    let teacher = g.constant(Tensor::from_vec(vec![5.0, -1.0], &[1, 2]).unwrap());
    let loss = deit_loss(&g, cls, dist, teacher, &[1], &DeitTarget::Hard, &CE).unwrap();
    let want = (2f64.ln() - 0.75f64.ln()) / 2.0;
    assert_close(
        "deit hard by hand",
        g.value(loss).unwrap().item().unwrap() as f64,
        want,
    );
}

#[test]
fn deit_matches_reference_and_finite_differences() {
    let labels = [1usize, 3];
    let teacher = randn(&[2, 4], 32).scale(2.0);
    let t64: Vec<f64> = teacher.data().iter().map(|&v| v as f64).collect();
    let teacher_labels = argmax_rows(teacher.data(), 4);
    for target in [
        DeitTarget::Soft {
            temperature: 3.0,
            alpha: 0.5,
        },
        DeitTarget::Hard,
    ] {
        let tc = teacher.clone();
        let t64 = t64.clone();
        let tl = teacher_labels.clone();
        check_loss(
            &format!("deit {target:?}"),
            &[randn(&[2, 4], 30), randn(&[2, 4], 31)],
            move |g, v| deit_loss(g, v[0], v[1], g.constant(tc.clone()), &labels, &target, &CE),
            move |x| {
                let hard = r::cross_entropy(&x[0], &labels, 4);
                match target {
                    DeitTarget::Soft { temperature, alpha } => {
                        let a = alpha as f64;
                        (1.0 - a) * hard + a * r::soft_kd(&x[1], &t64, 4, temperature as f64)
                    }
                    DeitTarget::Hard => 0.5 * hard + 0.5 * r::cross_entropy(&x[1], &tl, 4),
                }
            },
        );
    }
}

#[test]
fn deit_errors() {
    let g = Graph::new();
    let a = g.variable(randn(&[2, 4], 1));
    let b = g.variable(randn(&[2, 3], 2));
    let c = g.variable(randn(&[2, 4, 1], 3));
    assert!(deit_loss(&g, a, b, a, &[0, 1], &DeitTarget::Hard, &CE).is_err());
    assert!(deit_loss(&g, a, a, b, &[0, 1], &DeitTarget::Hard, &CE).is_err());
    assert!(deit_loss(&g, c, c, c, &[0, 1], &DeitTarget::Hard, &CE).is_err());
    let bad = DeitTarget::Soft {
        temperature: -1.0,
        alpha: 0.5,
    };
    assert!(deit_loss(&g, a, a, a, &[0, 1], &bad, &CE).is_err());
    assert_eq!(argmax_rows(&[0.0, 2.0, 2.0, 1.0, -1.0, 0.5], 3), vec![1, 0]);
}
