//! Every autograd op's gradient against central finite differences of an f64 reference, on
//! small seeded random inputs, including broadcasting and non-trivial axes.
//!
//! Layout: `reference.rs` (f64 forwards), `check.rs` (the harness), one file per op group
//! (`ops_quant.rs` explains how the straight-through estimators are checked).

mod check;
mod ops_arith;
mod ops_attention;
mod ops_dwconv;
mod ops_layout;
mod ops_loss;
mod ops_matmul;
mod ops_nn;
mod ops_quant;
mod ops_transform_attention;
mod reference;

use check::{check, randn};
use lithe::Var;

/// The harness must be able to fail: an op checked against the wrong reference panics.
#[test]
#[should_panic(expected = "finite difference")]
fn harness_rejects_a_wrong_gradient() {
    // Forward of `a * b` agrees with the reference `a * b`, but the reference's "b" side is
    // replaced by a constant, so the gradient of b must disagree.
    let (a, b) = (randn(&[3], 1), randn(&[3], 2));
    let b_frozen = b.clone();
    check(
        "wrong",
        &[a, b],
        |g, v| g.mul(v[0], v[1]),
        move |x| {
            let bf = reference::R::from_t(&b_frozen);
            reference::binary(&x[0], &bf, |p, q| p * q)
        },
    );
}

/// The harness also checks forward values.
#[test]
#[should_panic(expected = "forward")]
fn harness_rejects_a_wrong_forward() {
    check(
        "wrong-forward",
        &[randn(&[4], 3)],
        |g, v: &[Var]| g.exp(v[0]),
        |x| x[0].map(f64::tanh),
    );
}
