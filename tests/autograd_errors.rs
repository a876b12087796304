//! Bad input gets the documented error (or the documented NaN propagation), never a panic.

use lithe::{CrossEntropyOptions, Error, GeluKind, Graph, Param, Rng, Tensor};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, &mut Rng::new(seed))
}

#[test]
fn non_broadcastable_shapes_are_shape_errors() {
    let g = Graph::new();
    let a = g.variable(randn(&[2, 3], 1));
    let b = g.variable(randn(&[4], 2));
    for r in [g.add(a, b), g.sub(a, b), g.mul(a, b), g.div(a, b)] {
        assert!(matches!(r, Err(Error::Shape { .. })), "{r:?}");
    }
}

#[test]
fn matmul_shape_errors() {
    let g = Graph::new();
    let a = g.variable(randn(&[2, 3], 1));
    let b = g.variable(randn(&[4, 5], 2));
    assert!(matches!(
        g.matmul(a, b),
        Err(Error::Shape { op: "matmul", .. })
    ));
    let v = g.variable(randn(&[3], 3));
    assert!(
        matches!(g.matmul(v, b), Err(Error::Shape { .. })),
        "rank 1 is rejected"
    );
    let x = g.variable(randn(&[2, 2, 3], 4));
    let y = g.variable(randn(&[3, 3, 4], 5));
    assert!(
        matches!(g.matmul(x, y), Err(Error::Shape { .. })),
        "batch 2 vs 3"
    );
    // matmul_t checks against the transposed operand: [2, 3] @ [4, 3]^T is fine, [4, 5]^T not.
    let w = g.variable(randn(&[4, 3], 6));
    assert_eq!(g.shape(g.matmul_t(a, w).unwrap()).unwrap(), vec![2, 4]);
    assert!(matches!(g.matmul_t(a, b), Err(Error::Shape { .. })));
}

#[test]
fn empty_tensors() {
    let g = Graph::new();
    let e = g.variable(Tensor::zeros(&[2, 0]));
    assert!(matches!(g.softmax(e), Err(Error::Empty { .. })));
    assert!(matches!(g.log_softmax(e), Err(Error::Empty { .. })));
    assert!(matches!(g.mean_all(e), Err(Error::Empty { .. })));
    assert!(matches!(g.mean(e, &[1], false), Err(Error::Empty { .. })));
    assert!(matches!(g.mse(e, e), Err(Error::Empty { .. })));
    let w = g.variable(Tensor::zeros(&[0]));
    assert!(matches!(
        g.layernorm(e, w, w, 1e-5),
        Err(Error::Empty { .. })
    ));
    assert!(matches!(
        g.cross_entropy(e, &[0, 0], &CrossEntropyOptions::default()),
        Err(Error::Empty { .. })
    ));
    assert!(matches!(g.concat(&[], 0), Err(Error::Empty { .. })));
    // Documented non-errors: the sum of nothing is 0, and a matmul with K = 0 is all zeros.
    assert_eq!(g.value(g.sum_all(e).unwrap()).unwrap().item().unwrap(), 0.0);
    let a = g.variable(Tensor::zeros(&[3, 0]));
    let b = g.variable(Tensor::zeros(&[0, 2]));
    assert_eq!(
        g.value(g.matmul(a, b).unwrap()).unwrap(),
        Tensor::zeros(&[3, 2])
    );
}

#[test]
fn index_and_axis_ranges() {
    let g = Graph::new();
    let x = g.variable(randn(&[3, 4], 1));
    assert!(matches!(
        g.index_select(x, 1, &[0, 4]),
        Err(Error::Index {
            index: 4,
            size: 4,
            ..
        })
    ));
    assert!(matches!(
        g.embedding(x, &[3]),
        Err(Error::Index {
            index: 3,
            size: 3,
            ..
        })
    ));
    assert!(matches!(
        g.slice(x, 1, 1, 5),
        Err(Error::Index { index: 5, .. })
    ));
    assert!(matches!(
        g.slice(x, 1, 3, 2),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        g.sum(x, &[2], false),
        Err(Error::Axis {
            axis: 2,
            rank: 2,
            ..
        })
    ));
    assert!(matches!(
        g.sum(x, &[0, 0], false),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(g.transpose(x, 0, 2), Err(Error::Axis { .. })));
    assert!(matches!(
        g.permute(x, &[0, 0]),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        g.permute(x, &[1]),
        Err(Error::InvalidArgument { .. })
    ));
    let src = g.variable(randn(&[2, 4], 2));
    assert!(matches!(
        g.scatter_add(x, 0, &[0, 3], src),
        Err(Error::Index { .. })
    ));
    assert!(matches!(
        g.scatter_add(x, 0, &[0], src),
        Err(Error::Shape { .. })
    ));
    let table3d = g.variable(randn(&[2, 2, 2], 3));
    assert!(matches!(
        g.embedding(table3d, &[0]),
        Err(Error::Shape { .. })
    ));
}

#[test]
fn reshape_concat_layernorm_shapes() {
    let g = Graph::new();
    let x = g.variable(randn(&[3, 4], 1));
    assert!(matches!(g.reshape(x, &[5, 2]), Err(Error::Shape { .. })));
    let y = g.variable(randn(&[2, 5], 2));
    assert!(matches!(g.concat(&[x, y], 0), Err(Error::Shape { .. })));
    let w = g.variable(randn(&[3], 3));
    let b = g.variable(randn(&[4], 4));
    assert!(matches!(
        g.layernorm(x, w, b, 1e-5),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        g.layernorm(x, b, b, -1.0),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(g.mse(x, y), Err(Error::Shape { .. })));
    assert!(matches!(g.kl_div(x, y), Err(Error::Shape { .. })));
    assert!(matches!(
        Tensor::from_vec(vec![1.0; 5], &[2, 3]),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        Tensor::from_vec(vec![], &[usize::MAX, 2]),
        Err(Error::Shape { .. })
    ));
    let s = g.scalar(1.0);
    assert!(matches!(g.softmax(s), Err(Error::Shape { .. })));
    assert!(matches!(g.kl_div(s, s), Err(Error::Shape { .. })));
}

#[test]
fn cross_entropy_bad_targets() {
    let g = Graph::new();
    let l = g.variable(randn(&[3, 4], 1));
    let d = CrossEntropyOptions::default();
    assert!(matches!(
        g.cross_entropy(l, &[0, 1], &d),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        g.cross_entropy(l, &[0, 4, 1], &d),
        Err(Error::Index {
            index: 4,
            size: 4,
            ..
        })
    ));
    let ign = CrossEntropyOptions {
        label_smoothing: 0.0,
        ignore_index: Some(7),
    };
    assert!(
        g.cross_entropy(l, &[0, 7, 1], &ign).is_ok(),
        "the ignore index may be >= C"
    );
    assert!(matches!(
        g.cross_entropy(l, &[7, 7, 7], &ign),
        Err(Error::Empty { .. })
    ));
    for eps in [-0.1, 1.5, f32::NAN] {
        let o = CrossEntropyOptions {
            label_smoothing: eps,
            ignore_index: None,
        };
        assert!(matches!(
            g.cross_entropy(l, &[0, 1, 2], &o),
            Err(Error::InvalidArgument { .. })
        ));
    }
}

#[test]
fn dropout_probability_range() {
    let g = Graph::new();
    let x = g.variable(randn(&[4], 1));
    for p in [-0.1, 1.0, f32::NAN] {
        assert!(
            matches!(g.dropout(x, p), Err(Error::InvalidArgument { .. })),
            "p = {p}"
        );
    }
    assert_eq!(g.dropout(x, 0.0).unwrap(), x);
}

#[test]
fn nan_propagates_through_forward_ops() {
    // Documented: element-wise ops, matmul, reductions and row kernels propagate NaN (IEEE).
    let g = Graph::new();
    let mut t = randn(&[2, 3], 1);
    t.data_mut()[1] = f32::NAN; // row 0, column 1
    let x = g.variable(t);
    let sm = g.value(g.softmax(x).unwrap()).unwrap();
    assert!(
        sm.data()[..3].iter().all(|v| v.is_nan()),
        "row 0 is all NaN"
    );
    assert!(
        sm.data()[3..].iter().all(|v| v.is_finite()),
        "row 1 is untouched"
    );
    let w = g.constant(randn(&[3, 2], 2));
    let y = g.value(g.matmul(x, w).unwrap()).unwrap();
    assert!(y.data()[0].is_nan() && y.data()[1].is_nan() && y.data()[2].is_finite());
    let s = g.value(g.sum(x, &[1], false).unwrap()).unwrap();
    assert!(s.data()[0].is_nan() && s.data()[1].is_finite());
    assert!(g.value(g.relu(x).unwrap()).unwrap().data()[1].is_nan());
    let gl = g.value(g.gelu(x, GeluKind::Erf).unwrap()).unwrap();
    assert!(gl.data()[1].is_nan());
    let ce = g
        .cross_entropy(x, &[0, 0], &CrossEntropyOptions::default())
        .unwrap();
    assert!(g.value(ce).unwrap().item().unwrap().is_nan());
    assert!(matches!(
        g.value(x).unwrap().check_finite("input"),
        Err(Error::NonFinite { op: "input", .. })
    ));
}

#[test]
fn backward_refuses_a_nan_loss_and_leaves_params_alone() {
    let p = Param::new(Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap());
    let g = Graph::new();
    let w = g.param(&p);
    let zero = g.constant(Tensor::zeros(&[2]));
    let loss = g.sum_all(g.div(w, zero).unwrap()).unwrap(); // inf
    assert!(matches!(
        g.backward(loss),
        Err(Error::NonFinite { op: "backward", .. })
    ));
    assert!(p.grad().is_none());
    let nan = g.constant(Tensor::from_vec(vec![f32::NAN, 0.0], &[2]).unwrap());
    let loss = g.mse(w, nan).unwrap();
    assert!(matches!(g.backward(loss), Err(Error::NonFinite { .. })));
}

#[test]
fn backward_misuse() {
    let g = Graph::new();
    let x = g.variable(randn(&[3], 1));
    assert!(
        matches!(g.backward(x), Err(Error::Shape { .. })),
        "non-scalar loss"
    );
    let c = g.constant(randn(&[3], 2));
    let loss = g.sum_all(c).unwrap();
    assert!(
        matches!(g.backward(loss), Err(Error::Graph(_))),
        "nothing requires grad"
    );
    assert!(matches!(
        g.backward_from(x, Tensor::ones(&[4])),
        Err(Error::Shape { .. })
    ));
    // A Var from another graph.
    let other = Graph::new();
    let y = other.variable(randn(&[3], 3));
    assert!(matches!(g.add(x, y), Err(Error::Graph(_))));
    assert!(matches!(g.value(y), Err(Error::Graph(_))));
}

#[test]
fn param_set_value_checks_shape() {
    let p = Param::new(Tensor::zeros(&[2, 3]));
    assert!(matches!(
        p.set_value(Tensor::zeros(&[3, 2])),
        Err(Error::Shape { .. })
    ));
    assert!(p.set_value(Tensor::ones(&[2, 3])).is_ok());
}

#[test]
fn errors_display_their_context() {
    let g = Graph::new();
    let x = g.variable(randn(&[3, 4], 1));
    let e = g.index_select(x, 0, &[9]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "index_select: index 9 out of range for a dimension of size 3"
    );
    let k: Error = lithe::kernels::KernelError::ShapeMismatch("x".into()).into();
    assert!(matches!(k, Error::Kernel(_)));
}
