//! Distillation losses (`lithe::compress::distill`): each loss against a plain f64 reference
//! written here, zero for a perfect student, gradients against central finite differences of
//! the reference, padding invariance, and the errors.
//!
//! Layout: `reference.rs` (f64 formulas), `kd.rs` (soft-label KD), `attention.rs` (Q/K/V
//! relations and `Qkv::from_attention_parts`), `hidden.rs` (hidden-state relations),
//! `mixed.rs` (KD with labels, DeiT), `sparse.rs` (stored top-k logits), `tinybert.rs` (layer
//! losses).

mod attention;
mod hidden;
mod kd;
mod mixed;
mod reference;
mod sparse;
mod tinybert;

use lithe::{Graph, Rng, Tensor, Var};

/// `|autograd - reference| <= ATOL + RTOL * |reference|` for values and gradients: the graph
/// runs in f32, the reference in f64.
const ATOL: f64 = 2e-4;
const RTOL: f64 = 2e-3;

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, &mut Rng::new(seed))
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.data().iter().map(|&v| v as f64).collect()
}

fn assert_close(name: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= ATOL + RTOL * want.abs(),
        "{name}: got {got}, reference {want}"
    );
}

/// Builds a scalar loss from `inputs` (all variables) and checks its value against
/// `reference`, then the gradient of every input against central finite differences of
/// `reference` (step `1e-6 * max(1, |x|)` in f64, far below the f32 error of the backward).
fn check_loss(
    name: &str,
    inputs: &[Tensor],
    build: impl Fn(&Graph, &[Var]) -> lithe::Result<Var>,
    reference: impl Fn(&[Vec<f64>]) -> f64,
) {
    let g = Graph::new();
    let vars: Vec<Var> = inputs.iter().map(|t| g.variable(t.clone())).collect();
    let loss = build(&g, &vars).unwrap_or_else(|e| panic!("{name}: forward failed: {e}"));
    let mut xs: Vec<Vec<f64>> = inputs.iter().map(f64s).collect();
    let value = g.value(loss).unwrap().item().unwrap() as f64;
    assert_close(&format!("{name}: loss"), value, reference(&xs));
    g.backward(loss).unwrap();
    for (k, var) in vars.iter().enumerate() {
        let grad = g.grad(*var).unwrap().unwrap_or_else(|| {
            panic!("{name}: input {k} got no gradient");
        });
        for i in 0..xs[k].len() {
            let x0 = xs[k][i];
            let h = 1e-6 * x0.abs().max(1.0);
            xs[k][i] = x0 + h;
            let up = reference(&xs);
            xs[k][i] = x0 - h;
            let down = reference(&xs);
            xs[k][i] = x0;
            let fd = (up - down) / (2.0 * h);
            assert_close(
                &format!("{name}: d input{k}[{i}]"),
                grad.data()[i] as f64,
                fd,
            );
        }
    }
}

/// The harness must be able to fail: a loss checked against a reference that ignores an input
/// disagrees on that input's gradient.
#[test]
#[should_panic(expected = "d input1")]
fn harness_rejects_a_wrong_gradient() {
    let (a, b) = (randn(&[3], 1), randn(&[3], 2));
    let b0 = f64s(&b);
    check_loss(
        "wrong",
        &[a, b],
        |g, v| g.sum_all(g.mul(v[0], v[1])?),
        move |x| x[0].iter().zip(&b0).map(|(p, q)| p * q).sum(),
    );
}
