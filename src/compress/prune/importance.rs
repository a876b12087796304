//! First-order importance of attention heads and MLP neurons (FastFormers, after Michel et al.,
//! "Are Sixteen Heads Really Better than One?"):
//!
//! - head `h` of layer `l`: `|dL/dm_lh|` for a mask `m` multiplying the head's context, summed
//!   over batches, then L2-normalised within each layer;
//! - neuron `j`: `|sum_k W[j,k] dL/dW[j,k] + b_j dL/db_j|` over the `fc1` row that makes it,
//!   summed over batches: the first-order change of the loss when the neuron's
//!   pre-activation is scaled to 0.
//!
//! Both are Taylor estimates of how much the loss rises when the unit is removed; the tests
//! compare the head ranking with the measured rise.

use crate::autograd::{Graph, Var};
use crate::error::{Error, Result};
use crate::nn::{Encoder, Module};
use crate::tensor::Tensor;

/// Importance scores of every head and neuron, `heads[l][h]` and `neurons[l][j]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Importance {
    /// `[L][nh]`, L2-normalised within each layer.
    pub heads: Vec<Vec<f32>>,
    /// `[L][I]`.
    pub neurons: Vec<Vec<f32>>,
}

/// Builds batch `batch`'s loss on a graph with one head mask per layer (see [`importance`]).
pub type MaskedLoss<'a> = dyn FnMut(&Graph, usize, &[Var]) -> Result<Var> + 'a;

/// Accumulates [`Importance`] over `batches` batches. `loss_of(graph, batch, head_masks)` builds
/// batch `batch`'s loss on `graph` with `head_masks` (one `[nh]` per layer) passed to the
/// model's traced forward (e.g. [`crate::nn::Vit::forward_traced`]). `model` is the whole model
/// whose encoder is `encoder`: its gradients are cleared after every batch. Dropout is off.
///
/// [`Error::InvalidArgument`] for zero batches or an encoder whose layers share weights.
pub fn importance(
    model: &impl Module,
    encoder: &Encoder,
    batches: usize,
    loss_of: &mut MaskedLoss<'_>,
) -> Result<Importance> {
    if batches == 0 {
        return Err(Error::invalid("importance", "no batches"));
    }
    if encoder.groups() != (0..encoder.layers.len()).collect::<Vec<_>>() {
        return Err(Error::invalid(
            "importance",
            "layers that share weights have no per-layer importance",
        ));
    }
    let params = model.named_params();
    let mut heads: Vec<Vec<f32>> = encoder
        .layers
        .iter()
        .map(|b| vec![0.0; b.attention.heads])
        .collect();
    let mut neurons: Vec<Vec<f32>> = encoder
        .layers
        .iter()
        .map(|b| vec![0.0; b.mlp.fc1.out_features()])
        .collect();
    for p in params.iter().map(|(_, p)| p) {
        p.zero_grad();
    }
    for batch in 0..batches {
        let g = Graph::new();
        g.set_training(false);
        let masks: Vec<Var> = heads
            .iter()
            .map(|h| g.variable(Tensor::ones(&[h.len()])))
            .collect();
        let loss = loss_of(&g, batch, &masks)?;
        g.backward(loss)?;
        for (scores, &m) in heads.iter_mut().zip(&masks) {
            let grad = g.grad(m)?.unwrap_or_else(|| Tensor::zeros(&[scores.len()]));
            for (s, dg) in scores.iter_mut().zip(grad.data()) {
                *s += dg.abs();
            }
        }
        drop(g);
        for (scores, block) in neurons.iter_mut().zip(&encoder.layers) {
            add_neuron_scores(scores, &block.mlp.fc1)?;
        }
        for p in params.iter().map(|(_, p)| p) {
            p.zero_grad();
        }
    }
    for scores in &mut heads {
        let norm = scores.iter().map(|s| s * s).sum::<f32>().sqrt();
        for s in scores.iter_mut() {
            *s /= norm + 1e-20;
        }
    }
    Ok(Importance { heads, neurons })
}

/// Adds `|sum_k W[j,k] dW[j,k] + b_j db_j|` of `fc1`'s current gradients to `scores[j]`.
fn add_neuron_scores(scores: &mut [f32], fc1: &crate::nn::Linear) -> Result<()> {
    let (w, dw) = (fc1.weight.value(), fc1.weight.grad());
    let Some(dw) = dw else { return Ok(()) };
    let inputs = w.shape()[1];
    let bias = fc1
        .bias
        .as_ref()
        .and_then(|b| b.grad().map(|db| (b.value(), db)));
    for (j, s) in scores.iter_mut().enumerate() {
        let row = j * inputs..(j + 1) * inputs;
        let mut t: f64 = w.data()[row.clone()]
            .iter()
            .zip(&dw.data()[row])
            .map(|(a, b)| f64::from(a * b))
            .sum();
        if let Some((b, db)) = &bias {
            t += f64::from(b.data()[j] * db.data()[j]);
        }
        *s += t.abs() as f32;
    }
    Ok(())
}
