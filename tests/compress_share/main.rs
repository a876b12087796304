//! MiniViT weight multiplexing (`lithe::compress::share`): a freshly shared model equals the
//! plain model whose layers are their group's first layer, a shared weight's gradient is the sum
//! over its uses, every parameter is listed once, the transforms act where the paper puts them,
//! training reduces the loss, and a saved model loads back to the same logits.
//!
//! Layout: `encoder.rs` (equivalence, gradients, transforms, parameter listing), `vit.rs`
//! (parameter counts, training, save/load, errors).

mod encoder;
mod vit;

use lithe::compress::share::{MiniVit, ShareConfig};
use lithe::nn::{Module, Vit, VitConfig};
use lithe::{Graph, Rng, Tensor};

/// A small ViT shape: 12 x 12 images in 4 x 4 patches (a 3 x 3 grid), width 16, 2 heads.
fn vit_config(depth: usize, distillation_token: bool) -> VitConfig {
    VitConfig {
        image_size: 12,
        patch_size: 4,
        num_channels: 1,
        hidden_size: 16,
        num_hidden_layers: depth,
        num_attention_heads: 2,
        intermediate_size: 32,
        num_labels: 3,
        layer_norm_eps: 1e-6,
        hidden_dropout_prob: 0.0,
        distillation_token,
        attention_head_size: None,
    }
}

/// A teacher whose LayerNorms are random too (fresh ones are all 1 / 0, which would hide a
/// layer using another layer's norms), and whose query and key weights are large enough for
/// peaked attention (at the initial scale every softmax row is nearly uniform, which would hide
/// a head mix).
fn teacher(depth: usize, distillation_token: bool, seed: u64) -> Vit {
    let vit = Vit::new(&vit_config(depth, distillation_token), &mut Rng::new(seed)).unwrap();
    randomize(&vit, |name| name.contains("layernorm"), 0.3, seed + 1);
    let query_key = |name: &str| name.ends_with("query.weight") || name.ends_with("key.weight");
    randomize(&vit, query_key, 0.5, seed + 2);
    vit
}

/// Adds `N(0, std^2)` noise to every parameter whose name passes `pick`.
fn randomize(model: &dyn Module, pick: impl Fn(&str) -> bool, std: f32, seed: u64) {
    let mut rng = Rng::new(seed);
    for (name, p) in model.named_params() {
        if pick(&name) {
            let v = p.value();
            let noise = Tensor::randn(v.shape(), 0.0, std, &mut rng);
            let sum: Vec<f32> = v
                .data()
                .iter()
                .zip(noise.data())
                .map(|(a, b)| a + b)
                .collect();
            p.set_value(Tensor::from_vec(sum, v.shape()).unwrap())
                .unwrap();
        }
    }
}

fn images(batch: usize, seed: u64) -> Tensor {
    Tensor::randn(&[batch, 1, 12, 12], 0.0, 1.0, &mut Rng::new(seed))
}

fn share(share: usize, transforms: bool) -> ShareConfig {
    ShareConfig {
        share,
        transforms,
        kernel: 3,
    }
}

fn vit_logits(vit: &Vit, x: &Tensor) -> Tensor {
    let g = Graph::new();
    let logits = vit.forward_logits(&g, g.constant(x.clone())).unwrap();
    g.value(logits).unwrap()
}

fn mini_logits(mini: &MiniVit, x: &Tensor) -> Tensor {
    let g = Graph::new();
    let logits = mini.forward_logits(&g, g.constant(x.clone())).unwrap();
    g.value(logits).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
