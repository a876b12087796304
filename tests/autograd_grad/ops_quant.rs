//! fake_quant (per tensor) and fake_quant_per_row: the straight-through estimator.
//!
//! Rounding has a zero derivative almost everywhere, so a finite difference of the quantized
//! forward says nothing about the STE. The honest checks are: (1) with a scale so small that
//! rounding moves a value by at most `s / 2` (far below the harness tolerance), the op IS its
//! surrogate `clamp(x, -127 s, 127 s)` (or the identity, per row), and its gradient must match
//! the surrogate's finite differences, clamped elements included; (2) on ordinary scales the
//! backward must equal the masked pass-through `dout * [|x / s| <= 127]` exactly.

use super::check::{check, randn, uniform};
use lithe::Graph;

const TINY: f32 = 1e-5; // the grid: 127 * TINY = 1.27e-3 is the clamp limit

#[test]
fn fake_quant_matches_its_clamp_surrogate() {
    // Uniform in [-2e-3, 2e-3): about a third of the values fall outside ±1.27e-3.
    let x = uniform(&[4, 9], -2e-3, 2e-3, 150);
    let lim = 127.0 * TINY as f64;
    let clamped = x.data().iter().filter(|v| v.abs() > 1.27e-3).count();
    assert!(clamped > 3 && clamped < 30, "{clamped} clamped values");
    check(
        "fake_quant",
        &[x],
        |g, v| g.fake_quant(v[0], TINY),
        move |x| x[0].map(|v| v.clamp(-lim, lim)),
    );
}

#[test]
fn fake_quant_per_row_matches_the_identity_surrogate() {
    // Rows with max about 3e-3: steps of about 2.4e-5, rounding error under 1.2e-5.
    let x = randn(&[3, 2, 7], 151).map(|v| 1e-3 * v);
    check(
        "fake_quant_per_row",
        &[x],
        |g, v| g.fake_quant_per_row(v[0]),
        |x| x[0].clone(),
    );
}

#[test]
fn fake_quant_backward_is_the_masked_pass_through_exactly() {
    let scale = 0.01; // clamp limit 1.27: randn puts about a fifth of the values outside
    let xv = randn(&[5, 8], 152);
    let g = Graph::new();
    let x = g.variable(xv.clone());
    let y = g.fake_quant(x, scale).unwrap();
    let dout = randn(&[5, 8], 153);
    g.backward_from(y, dout.clone()).unwrap();
    let dx = g.grad(x).unwrap().unwrap();
    let (mut passed, mut blocked) = (0, 0);
    for ((&x, &d), &got) in xv.data().iter().zip(dout.data()).zip(dx.data()) {
        if x.abs() > 127.0 * scale * 1.0001 {
            assert_eq!(got, 0.0, "clamped x = {x} got gradient {got}");
            blocked += 1;
        } else if x.abs() < 127.0 * scale * 0.9999 {
            assert_eq!(got, d, "x = {x} inside the range: gradient {got}, dout {d}");
            passed += 1;
        }
    }
    assert!(
        blocked > 0 && passed > 0,
        "{blocked} clamped, {passed} passed"
    );
    // The forward is the quantization grid: every output is an integer multiple of the scale.
    let yv = g.value(y).unwrap();
    assert!(yv.data().iter().all(|v| {
        let q = v / scale;
        (q - q.round()).abs() < 1e-3 && q.abs() <= 127.0
    }));
}

#[test]
fn fake_quant_per_row_backward_passes_everything() {
    let xv = randn(&[6, 5], 154);
    let g = Graph::new();
    let x = g.variable(xv);
    let y = g.fake_quant_per_row(x).unwrap();
    let dout = randn(&[6, 5], 155);
    g.backward_from(y, dout.clone()).unwrap();
    assert_eq!(g.grad(x).unwrap().unwrap().data(), dout.data());
}

#[test]
fn fake_quant_rejects_a_bad_scale() {
    let g = Graph::new();
    let x = g.variable(randn(&[3], 156));
    for s in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        assert!(g.fake_quant(x, s).is_err(), "scale {s} accepted");
    }
}
