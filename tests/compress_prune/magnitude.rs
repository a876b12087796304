//! Unstructured magnitude pruning: exact sparsity per layer and over all layers, the cubic
//! schedule, and training that keeps pruned weights at zero.

use super::*;
use lithe::compress::prune::{CubicSchedule, GradualPruning, MagnitudePruner, PruneScope};
use lithe::nn::Module;
use lithe::train::TrainOptions;

fn zeros(t: &Tensor) -> usize {
    t.data().iter().filter(|x| **x == 0.0).count()
}

#[test]
fn per_layer_pruning_removes_the_smallest_fraction_of_every_matrix() {
    let vit = vit(2, 1);
    let before: Vec<Tensor> = {
        let p = MagnitudePruner::encoder_weights(&vit, PruneScope::PerLayer).unwrap();
        p.targets().iter().map(|(_, w)| w.value()).collect()
    };
    let mut pruner = MagnitudePruner::encoder_weights(&vit, PruneScope::PerLayer).unwrap();
    assert_eq!(
        pruner.targets().len(),
        2 * 6,
        "Q, K, V, O, fc1, fc2 per layer"
    );
    pruner.prune_to(0.7).unwrap();
    for ((name, w), old) in pruner.targets().iter().zip(&before) {
        let v = w.value();
        let want = (v.numel() as f64 * 0.7).round() as usize;
        assert_eq!(zeros(&v), want, "{name}");
        // Every removed weight was no larger than every kept one.
        let (mut cut_max, mut kept_min) = (0f32, f32::INFINITY);
        for (new, o) in v.data().iter().zip(old.data()) {
            if *new == 0.0 {
                cut_max = cut_max.max(o.abs());
            } else {
                kept_min = kept_min.min(o.abs());
                assert_eq!(new, o, "kept weights keep their values");
            }
        }
        assert!(
            cut_max <= kept_min,
            "{name}: cut {cut_max} > kept {kept_min}"
        );
    }
    assert!((pruner.sparsity() - 0.7).abs() < 1e-3);
}

#[test]
fn global_pruning_uses_one_threshold_over_all_layers() {
    let vit = vit(2, 2);
    // Make layer 0's fc1 much smaller than the rest: global pruning should take most of it.
    let fc1 = &vit.blocks()[0].mlp.fc1.weight;
    fc1.set_value(fc1.value().scale(0.01)).unwrap();
    let mut pruner = MagnitudePruner::encoder_weights(&vit, PruneScope::Global).unwrap();
    let all: Vec<f32> = pruner
        .targets()
        .iter()
        .flat_map(|(_, w)| w.value().data().iter().map(|x| x.abs()).collect::<Vec<_>>())
        .collect();
    pruner.prune_to(0.3).unwrap();
    let total: usize = all.len();
    assert!((pruner.sparsity() - 0.3).abs() <= 1.0 / total as f64 + 1e-9);
    let by_layer = pruner.layer_sparsity();
    let fc1_sparsity = by_layer
        .iter()
        .find(|(n, _)| n == "encoder.layer.0.intermediate.dense.weight")
        .unwrap()
        .1;
    assert!(fc1_sparsity > 0.99, "the small layer keeps {fc1_sparsity}");
    assert!(by_layer.iter().any(|(_, s)| *s < 0.3), "{by_layer:?}");
}

#[test]
fn cubic_schedule_rises_fast_then_levels_off() {
    let s = CubicSchedule {
        initial: 0.0,
        target: 0.8,
        start: 10,
        end: 110,
        every: 10,
    };
    s.validate().unwrap();
    assert_eq!(s.sparsity_at(0), 0.0);
    assert_eq!(s.sparsity_at(10), 0.0);
    // s_f + (s_i - s_f)(1 - 50/100)^3 = 0.8 - 0.8 / 8 = 0.7
    assert!((s.sparsity_at(60) - 0.7).abs() < 1e-6);
    assert_eq!(s.sparsity_at(110), 0.8);
    assert_eq!(s.sparsity_at(500), 0.8);
    let steps: Vec<usize> = (0..200).filter(|&t| s.prunes_at(t)).collect();
    assert_eq!(steps, (10..=110).step_by(10).collect::<Vec<_>>());
    for bad in [
        CubicSchedule { target: 1.0, ..s },
        CubicSchedule { initial: 0.9, ..s },
        CubicSchedule { every: 0, ..s },
        CubicSchedule { end: 5, ..s },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}

/// Training under the schedule ends at the target sparsity with the pruned weights exactly 0
/// after every step, and still learns.
#[test]
fn training_keeps_pruned_weights_at_zero() {
    let vit = Vit::new(&vit_config(1), &mut Rng::new(3)).unwrap();
    let (tr, te) = small_digits(256);
    let opts = TrainOptions {
        epochs: 20,
        batch_size: 32,
        lr: 3e-3,
        ..TrainOptions::default()
    };
    let mut pruning = GradualPruning {
        pruner: MagnitudePruner::encoder_weights(&vit, PruneScope::PerLayer).unwrap(),
        schedule: CubicSchedule {
            initial: 0.0,
            target: 0.6,
            start: 0,
            end: 80,
            every: 8,
        },
    };
    let h = train::train_vit_pruned(&vit, &tr, &te, &opts, &mut pruning, &mut |_| {}).unwrap();
    assert!((pruning.pruner.sparsity() - 0.6).abs() < 1e-3);
    for (name, s) in pruning.pruner.layer_sparsity() {
        assert!((s - 0.6).abs() < 1e-2, "{name}: {s}");
    }
    assert!(h.final_accuracy() > 0.5, "{}", h.final_accuracy());
    // The mask is the set of zeros: one more masked step leaves them zero.
    let zero_before: Vec<usize> = pruning
        .pruner
        .targets()
        .iter()
        .map(|(_, w)| zeros(&w.value()))
        .collect();
    pruning.pruner.apply();
    let zero_after: Vec<usize> = pruning
        .pruner
        .targets()
        .iter()
        .map(|(_, w)| zeros(&w.value()))
        .collect();
    assert_eq!(zero_before, zero_after);
    // The dense model stores its zeros: the parameter count is unchanged.
    assert_eq!(
        vit.num_params(),
        Vit::new(&vit_config(1), &mut Rng::new(0))
            .unwrap()
            .num_params()
    );
}

#[test]
fn masked_gradients_are_zero() {
    let vit = vit(1, 4);
    let mut pruner = MagnitudePruner::encoder_weights(&vit, PruneScope::PerLayer).unwrap();
    pruner.prune_to(0.5).unwrap();
    let x = images(4);
    let g = Graph::new();
    let l = vit.forward_logits(&g, g.constant(x)).unwrap();
    let loss = g.mean_all(l).unwrap();
    g.backward(loss).unwrap();
    pruner.mask_grads().unwrap();
    for (name, w) in pruner.targets() {
        let (v, grad) = (w.value(), w.grad().unwrap());
        for (x, dx) in v.data().iter().zip(grad.data()) {
            if *x == 0.0 {
                assert_eq!(*dx, 0.0, "{name}");
            }
        }
        assert!(
            grad.data().iter().any(|d| *d != 0.0),
            "{name}: all gradients cleared"
        );
    }
    assert!(pruner.prune_to(1.0).is_err());
    assert!(MagnitudePruner::new(Vec::new(), PruneScope::Global).is_err());
}
