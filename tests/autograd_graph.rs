//! Tape behaviour: parameters carry gradients across graphs, zero_grad, frozen parameters,
//! no-grad mode, leaf gradients, and the end-to-end sanity check (a 2-layer MLP trained by SGD).

use lithe::{CrossEntropyOptions, GeluKind, Graph, Param, Rng, Tensor};

fn randn(shape: &[usize], std: f32, rng: &mut Rng) -> Tensor {
    Tensor::randn(shape, 0.0, std, rng)
}

#[test]
fn graph_is_send_and_param_is_send_sync() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<Graph>();
    send_sync::<Param>();
    send_sync::<Tensor>();
}

#[test]
fn param_grads_accumulate_across_graphs_until_zero_grad() {
    let p = Param::new(Tensor::from_vec(vec![1.0, -2.0, 3.0], &[3]).unwrap());
    let step = || {
        let g = Graph::new();
        let w = g.param(&p);
        let loss = g.sum_all(g.mul(w, w).unwrap()).unwrap(); // d/dw = 2w
        g.backward(loss).unwrap();
    };
    step();
    assert_eq!(p.grad().unwrap().data(), &[2.0, -4.0, 6.0]);
    step();
    assert_eq!(p.grad().unwrap().data(), &[4.0, -8.0, 12.0]);
    p.zero_grad();
    assert!(p.grad().is_none());
    step();
    assert_eq!(p.grad().unwrap().data(), &[2.0, -4.0, 6.0]);
}

#[test]
fn a_param_used_twice_gets_both_contributions() {
    let p = Param::new(Tensor::from_vec(vec![3.0], &[1]).unwrap());
    let g = Graph::new();
    let (a, b) = (g.param(&p), g.param(&p));
    let loss = g.sum_all(g.mul(a, b).unwrap()).unwrap(); // w^2 -> 2w
    g.backward(loss).unwrap();
    assert_eq!(p.grad().unwrap().data(), &[6.0]);
}

#[test]
fn frozen_params_get_no_grad() {
    let p = Param::new(Tensor::ones(&[2]));
    let q = Param::new(Tensor::ones(&[2]));
    q.set_requires_grad(false);
    let g = Graph::new();
    let loss = g.sum_all(g.mul(g.param(&p), g.param(&q)).unwrap()).unwrap();
    g.backward(loss).unwrap();
    assert!(p.grad().is_some());
    assert!(q.grad().is_none());
}

#[test]
fn no_grad_records_nothing() {
    let p = Param::new(Tensor::ones(&[2, 2]));
    let g = Graph::inference();
    assert!(!g.grad_enabled() && !g.is_training());
    let y = g.matmul(g.param(&p), g.param(&p)).unwrap();
    assert!(!g.requires_grad(y).unwrap());
    let loss = g.sum_all(y).unwrap();
    assert!(matches!(g.backward(loss), Err(lithe::Error::Graph(_))));
    assert!(p.grad().is_none());
    // Scoped no-grad on a training graph restores the flag afterwards.
    let g = Graph::new();
    let w = g.param(&p);
    let frozen = g.no_grad(|| g.mul_scalar(w, 2.0).unwrap());
    assert!(g.grad_enabled());
    assert!(!g.requires_grad(frozen).unwrap());
    assert!(g.requires_grad(g.mul_scalar(w, 2.0).unwrap()).unwrap());
}

#[test]
fn param_value_on_a_tape_is_not_changed_by_a_later_update() {
    let p = Param::new(Tensor::ones(&[2]));
    let g = Graph::new();
    let w = g.param(&p);
    p.update(|v, _| v.data_mut()[0] = 5.0);
    assert_eq!(g.value(w).unwrap().data(), &[1.0, 1.0]);
    assert_eq!(p.value().data(), &[5.0, 1.0]);
}

#[test]
fn intermediate_grads_are_freed_leaf_grads_kept() {
    let g = Graph::new();
    let x = g.variable(Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap());
    let y = g.mul_scalar(x, 3.0).unwrap();
    let loss = g.sum_all(y).unwrap();
    g.backward(loss).unwrap();
    assert_eq!(g.grad(x).unwrap().unwrap().data(), &[3.0, 3.0]);
    assert!(g.grad(y).unwrap().is_none());
}

/// A 2-layer MLP (Linear -> GELU -> Linear) on a tiny synthetic 3-class problem, trained by
/// plain SGD with updates written by hand: the loss must fall below 15% of its start.
#[test]
fn mlp_sgd_reduces_loss() {
    let mut rng = Rng::new(42);
    let (n, d_in, hidden, classes) = (64, 4, 16, 3);
    // Labels from a fixed random linear teacher: argmax(x @ T).
    let x = randn(&[n, d_in], 1.0, &mut rng);
    let teacher = randn(&[d_in, classes], 1.0, &mut rng);
    let scores = lithe::tensor::matmul(&x, &teacher).unwrap();
    let labels: Vec<usize> = scores
        .data()
        .chunks(classes)
        .map(|r| (0..classes).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap())
        .collect();

    let w1 = Param::new(randn(&[hidden, d_in], 0.5, &mut rng)); // [out, in]
    let b1 = Param::new(Tensor::zeros(&[hidden]));
    let w2 = Param::new(randn(&[classes, hidden], 0.25, &mut rng));
    let b2 = Param::new(Tensor::zeros(&[classes]));
    let params = [&w1, &b1, &w2, &b2];
    let lr = 0.5;
    let mut losses = Vec::new();
    for step in 0..60 {
        let g = Graph::with_seed(step);
        let xv = g.constant(x.clone());
        let h = g
            .add(g.matmul_t(xv, g.param(&w1)).unwrap(), g.param(&b1))
            .unwrap();
        let h = g.gelu(h, GeluKind::Erf).unwrap();
        let logits = g
            .add(g.matmul_t(h, g.param(&w2)).unwrap(), g.param(&b2))
            .unwrap();
        let loss = g
            .cross_entropy(logits, &labels, &CrossEntropyOptions::default())
            .unwrap();
        losses.push(g.value(loss).unwrap().item().unwrap());
        g.backward(loss).unwrap();
        for p in params {
            p.update(|v, grad| v.axpy_assign(-lr, grad.unwrap()).unwrap());
            p.zero_grad();
        }
    }
    let (first, last) = (losses[0], *losses.last().unwrap());
    assert!(first > 0.9, "starts near ln 3: {first}");
    assert!(last < 0.15 * first, "loss {first} -> {last}: {losses:?}");
}
