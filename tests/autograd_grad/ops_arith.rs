//! add, sub, mul, div (with broadcasting), scalar ops, unary maths, reductions.

use super::check::{check, randn, uniform};
use super::reference::{self as r, R};
use lithe::Tensor;

#[test]
fn add_same_shape() {
    check(
        "add",
        &[randn(&[2, 3], 1), randn(&[2, 3], 2)],
        |g, v| g.add(v[0], v[1]),
        |x| r::binary(&x[0], &x[1], |a, b| a + b),
    );
}

#[test]
fn add_broadcast_trailing_and_leading() {
    // [2, 3, 4] + [3, 1]: b broadcast over the leading axis and the last axis.
    check(
        "add-bc",
        &[randn(&[2, 3, 4], 3), randn(&[3, 1], 4)],
        |g, v| g.add(v[0], v[1]),
        |x| r::binary(&x[0], &x[1], |a, b| a + b),
    );
}

#[test]
fn add_broadcast_both_sides() {
    // [2, 1, 4] + [3, 1] -> [2, 3, 4]: both operands are broadcast.
    check(
        "add-bc2",
        &[randn(&[2, 1, 4], 5), randn(&[3, 1], 6)],
        |g, v| g.add(v[0], v[1]),
        |x| r::binary(&x[0], &x[1], |a, b| a + b),
    );
}

#[test]
fn add_bias_vector() {
    // The Linear bias case: [2, 3, 4] + [4].
    check(
        "add-bias",
        &[randn(&[2, 3, 4], 7), randn(&[4], 8)],
        |g, v| g.add(v[0], v[1]),
        |x| r::binary(&x[0], &x[1], |a, b| a + b),
    );
}

#[test]
fn sub_broadcast() {
    check(
        "sub",
        &[randn(&[4, 1], 9), randn(&[2, 1, 3], 10)],
        |g, v| g.sub(v[0], v[1]),
        |x| r::binary(&x[0], &x[1], |a, b| a - b),
    );
}

#[test]
fn mul_broadcast() {
    check(
        "mul",
        &[randn(&[2, 3, 4], 11), randn(&[1, 4], 12)],
        |g, v| g.mul(v[0], v[1]),
        |x| r::binary(&x[0], &x[1], |a, b| a * b),
    );
}

#[test]
fn mul_by_rank0_scalar() {
    check(
        "mul-scalar-tensor",
        &[randn(&[3, 2], 13), randn(&[], 14)],
        |g, v| g.mul(v[0], v[1]),
        |x| r::binary(&x[0], &x[1], |a, b| a * b),
    );
}

#[test]
fn div_broadcast() {
    // Denominators in [0.5, 2) keep the function smooth.
    let b = uniform(&[3, 1], 0.5, 2.0, 15);
    check(
        "div",
        &[randn(&[2, 3, 4], 16), b],
        |g, v| g.div(v[0], v[1]),
        |x| r::binary(&x[0], &x[1], |a, b| a / b),
    );
}

#[test]
fn repeated_input_accumulates() {
    // x * x + x: three uses of one input, gradient 2x + 1.
    check(
        "x*x+x",
        &[randn(&[5], 17)],
        |g, v| {
            let sq = g.mul(v[0], v[0])?;
            g.add(sq, v[0])
        },
        |x| x[0].map(|a| a * a + a),
    );
}

#[test]
fn scalar_ops_and_neg() {
    check(
        "scalar",
        &[randn(&[2, 3], 18)],
        |g, v| {
            let y = g.mul_scalar(v[0], 2.5)?;
            let y = g.add_scalar(y, -1.0)?;
            g.neg(y)
        },
        |x| x[0].map(|a| -(2.5 * a - 1.0)),
    );
}

#[test]
fn relu() {
    // Keep inputs away from the kink at 0.
    let x = randn(&[3, 4], 19).map(|v| if v.abs() < 0.1 { v + 0.3 } else { v });
    check(
        "relu",
        &[x],
        |g, v| g.relu(v[0]),
        |x| x[0].map(|a| a.max(0.0)),
    );
}

#[test]
fn tanh() {
    check(
        "tanh",
        &[randn(&[3, 4], 20)],
        |g, v| g.tanh(v[0]),
        |x| x[0].map(f64::tanh),
    );
}

#[test]
fn exp() {
    check(
        "exp",
        &[randn(&[3, 4], 21)],
        |g, v| g.exp(v[0]),
        |x| x[0].map(f64::exp),
    );
}

#[test]
fn log() {
    check(
        "log",
        &[uniform(&[3, 4], 0.2, 3.0, 22)],
        |g, v| g.log(v[0]),
        |x| x[0].map(f64::ln),
    );
}

#[test]
fn sqrt() {
    check(
        "sqrt",
        &[uniform(&[3, 4], 0.2, 3.0, 23)],
        |g, v| g.sqrt(v[0]),
        |x| x[0].map(f64::sqrt),
    );
}

#[test]
fn sum_two_axes_keepdim() {
    check(
        "sum-keepdim",
        &[randn(&[2, 3, 4], 24)],
        |g, v| g.sum(v[0], &[0, 2], true),
        |x| r::sum(&x[0], &[0, 2], true),
    );
}

#[test]
fn sum_middle_axis_dropped() {
    check(
        "sum",
        &[randn(&[2, 3, 4], 25)],
        |g, v| g.sum(v[0], &[1], false),
        |x| r::sum(&x[0], &[1], false),
    );
}

#[test]
fn mean_axes() {
    check(
        "mean",
        &[randn(&[2, 3, 4], 26)],
        |g, v| g.mean(v[0], &[2, 0], false),
        |x| r::sum(&x[0], &[0, 2], false).map(|s| s / 8.0),
    );
}

#[test]
fn sum_all_and_mean_all() {
    check(
        "sum_all",
        &[randn(&[3, 2], 27)],
        |g, v| g.sum_all(v[0]),
        |x| R::scalar(x[0].data.iter().sum()),
    );
    check(
        "mean_all",
        &[randn(&[3, 2], 28)],
        |g, v| g.mean_all(v[0]),
        |x| R::scalar(x[0].data.iter().sum::<f64>() / 6.0),
    );
}

#[test]
fn rank0_through_sum_all() {
    // A rank-0 input: sum over no axes is the identity.
    let x = Tensor::scalar(1.5);
    check("sum-rank0", &[x], |g, v| g.sum_all(v[0]), |x| x[0].clone());
}
