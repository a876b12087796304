//! The gradient check: autograd (f32) against central finite differences of the f64 reference.
//!
//! For a graph `out = op(inputs)` and a fixed random `w` shaped like `out`, the scalar
//! `L = sum(out * w)` has `dL/dx = backward_from(out, w)`. Its finite difference is taken on the
//! f64 reference of the op with step `h = 1e-6 * max(1, |x|)`, so FD error (~1e-9) is far below
//! the f32 error of the backward (~1e-6 relative), and a wrong gradient (off by O(1)) fails.

use super::reference::R;
use lithe::{Graph, Rng, Tensor, Var};

/// Tolerances: `|autograd - fd| <= ATOL + RTOL * |fd|`, and the same for the forward value.
pub const ATOL: f64 = 2e-4;
pub const RTOL: f64 = 2e-3;

/// Random normal input with `seed`.
pub fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, &mut Rng::new(seed))
}

/// Random input in `[lo, hi)`.
pub fn uniform(shape: &[usize], lo: f32, hi: f32, seed: u64) -> Tensor {
    Tensor::uniform(shape, lo, hi, &mut Rng::new(seed))
}

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= ATOL + RTOL * want.abs()
}

/// Checks the forward of `build` against `reference` and the gradient of every input against
/// finite differences of `reference`. Panics with the first disagreement.
pub fn check(
    name: &str,
    inputs: &[Tensor],
    build: impl Fn(&Graph, &[Var]) -> lithe::Result<Var>,
    reference: impl Fn(&[R]) -> R,
) {
    let g = Graph::with_seed(11);
    let vars: Vec<Var> = inputs.iter().map(|t| g.variable(t.clone())).collect();
    let out = build(&g, &vars).unwrap_or_else(|e| panic!("{name}: forward failed: {e}"));
    let out_v = g.value(out).unwrap();
    let x64: Vec<R> = inputs.iter().map(R::from_t).collect();
    let ref_out = reference(&x64);
    assert_eq!(out_v.shape(), &ref_out.shape[..], "{name}: forward shape");
    for (i, (&got, &want)) in out_v.data().iter().zip(&ref_out.data).enumerate() {
        assert!(
            close(got as f64, want),
            "{name}: forward[{i}] = {got}, reference {want}"
        );
    }
    let w = randn(out_v.shape(), 99);
    let w64 = R::from_t(&w);
    g.backward_from(out, w.clone())
        .unwrap_or_else(|e| panic!("{name}: backward failed: {e}"));
    let loss = |xs: &[R]| -> f64 {
        let o = reference(xs);
        o.data.iter().zip(&w64.data).map(|(a, b)| a * b).sum()
    };
    for (k, var) in vars.iter().enumerate() {
        let grad = g
            .grad(*var)
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: input {k} got no gradient"));
        assert_eq!(
            grad.shape(),
            inputs[k].shape(),
            "{name}: grad shape of input {k}"
        );
        let mut xs = x64.clone();
        for i in 0..xs[k].data.len() {
            let x0 = xs[k].data[i];
            let h = 1e-6 * x0.abs().max(1.0);
            xs[k].data[i] = x0 + h;
            let up = loss(&xs);
            xs[k].data[i] = x0 - h;
            let down = loss(&xs);
            xs[k].data[i] = x0;
            let fd = (up - down) / (2.0 * h);
            let got = grad.data()[i] as f64;
            assert!(
                close(got, fd),
                "{name}: d input{k}[{i}] (shape {:?}) = {got}, finite difference {fd}",
                inputs[k].shape()
            );
        }
    }
}
