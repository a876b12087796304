//! Batched matmul: plain, broadcast batch dims, the shared 2-D operand (Linear) cases, and all
//! four transpose combinations.

use super::check::{check, randn};
use super::reference as r;

#[test]
fn matmul_2d() {
    check(
        "mm",
        &[randn(&[3, 4], 50), randn(&[4, 5], 51)],
        |g, v| g.matmul(v[0], v[1]),
        |x| r::matmul(&x[0], false, &x[1], false),
    );
}

#[test]
fn matmul_equal_batch() {
    check(
        "bmm",
        &[randn(&[2, 3, 4], 52), randn(&[2, 4, 2], 53)],
        |g, v| g.matmul(v[0], v[1]),
        |x| r::matmul(&x[0], false, &x[1], false),
    );
}

#[test]
fn matmul_broadcast_batch() {
    // [2, 1, 3, 4] x [3, 4, 2] -> [2, 3, 3, 2]: both batch dims broadcast.
    check(
        "bmm-bc",
        &[randn(&[2, 1, 3, 4], 54), randn(&[3, 4, 2], 55)],
        |g, v| g.matmul(v[0], v[1]),
        |x| r::matmul(&x[0], false, &x[1], false),
    );
}

#[test]
fn matmul_shared_right_operand() {
    // x[B, T, C] @ W[C, N]: the folded path, and its weight gradient summed over the batch.
    check(
        "linear-nt",
        &[randn(&[2, 3, 4], 56), randn(&[4, 5], 57)],
        |g, v| g.matmul(v[0], v[1]),
        |x| r::matmul(&x[0], false, &x[1], false),
    );
}

#[test]
fn matmul_t_linear() {
    // x[B, T, in] @ W[out, in]^T, as Linear.
    check(
        "linear",
        &[randn(&[2, 3, 4], 58), randn(&[5, 4], 59)],
        |g, v| g.matmul_t(v[0], v[1]),
        |x| r::matmul(&x[0], false, &x[1], true),
    );
}

#[test]
fn matmul_shared_left_operand() {
    // A 2-D left operand against a batch: dA sums over the batch on the general path.
    check(
        "shared-left",
        &[randn(&[3, 4], 60), randn(&[2, 4, 2], 61)],
        |g, v| g.matmul(v[0], v[1]),
        |x| r::matmul(&x[0], false, &x[1], false),
    );
}

#[test]
fn matmul_all_transpose_flags_batched() {
    // op(a) is [2, 3, 4], op(b) is [2, 4, 5] in every storage order.
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        let a = if ta {
            randn(&[2, 4, 3], 62)
        } else {
            randn(&[2, 3, 4], 62)
        };
        let b = if tb {
            randn(&[2, 5, 4], 63)
        } else {
            randn(&[2, 4, 5], 63)
        };
        check(
            &format!("matmul_ex({ta}, {tb})"),
            &[a, b],
            move |g, v| g.matmul_ex(v[0], ta, v[1], tb),
            move |x| r::matmul(&x[0], ta, &x[1], tb),
        );
    }
}

#[test]
fn matmul_transposed_shared_operands() {
    // Transposed operands with a shared 2-D side, both ways round.
    for (ta, tb) in [(true, false), (false, true), (true, true)] {
        let a = if ta {
            randn(&[2, 4, 3], 64)
        } else {
            randn(&[2, 3, 4], 64)
        };
        let b = if tb {
            randn(&[5, 4], 65)
        } else {
            randn(&[4, 5], 65)
        };
        check(
            &format!("matmul_ex-shared({ta}, {tb})"),
            &[a, b],
            move |g, v| g.matmul_ex(v[0], ta, v[1], tb),
            move |x| r::matmul(&x[0], ta, &x[1], tb),
        );
    }
}

#[test]
fn attention_scores_and_mix() {
    // softmax(Q K^T) V on [B, H, T, D]: matmul_t then matmul, through the batched paths.
    check(
        "attention",
        &[
            randn(&[1, 2, 3, 2], 66),
            randn(&[1, 2, 3, 2], 67),
            randn(&[1, 2, 3, 2], 68),
        ],
        |g, v| {
            let s = g.matmul_t(v[0], v[1])?;
            let p = g.softmax(s)?;
            g.matmul(p, v[2])
        },
        |x| {
            let s = r::matmul(&x[0], false, &x[1], true);
            r::matmul(&r::softmax(&s), false, &x[2], false)
        },
    );
}

#[test]
fn linear_with_and_without_bias() {
    // x[B, T, in] @ W[out, in]^T + b[out] in one op: dx, dW and db (summed over B and T).
    check(
        "linear-op",
        &[randn(&[2, 3, 4], 69), randn(&[5, 4], 70), randn(&[5], 71)],
        |g, v| g.linear(v[0], v[1], Some(v[2])),
        |x| r::binary(&r::matmul(&x[0], false, &x[1], true), &x[2], |p, q| p + q),
    );
    check(
        "linear-op-2d-no-bias",
        &[randn(&[3, 4], 72), randn(&[2, 4], 73)],
        |g, v| g.linear(v[0], v[1], None),
        |x| r::matmul(&x[0], false, &x[1], true),
    );
}

#[test]
fn linear_rejects_mismatched_shapes() {
    let g = lithe::Graph::new();
    let x = g.variable(randn(&[2, 3, 4], 74));
    for (w, b) in [
        (randn(&[5, 3], 75), None),                  // in differs
        (randn(&[5, 4], 75), Some(randn(&[4], 76))), // bias length differs
        (randn(&[5, 4, 1], 75), None),               // weight not 2-D
    ] {
        let (w, b) = (g.variable(w), b.map(|b| g.variable(b)));
        assert!(matches!(g.linear(x, w, b), Err(lithe::Error::Shape { .. })));
    }
    let v = g.variable(randn(&[4], 77)); // rank 1 input
    let w = g.variable(randn(&[5, 4], 78));
    assert!(matches!(
        g.linear(v, w, None),
        Err(lithe::Error::Shape { .. })
    ));
}
