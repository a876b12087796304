//! Pruning and elastic width/depth (`lithe::compress::prune`, `lithe::compress::elastic`):
//! the shrunk model against the masked one, importance against measured loss increases,
//! magnitude masks and schedules, and sub-networks cut from a supernet.

mod elastic;
mod importance;
mod magnitude;
mod shrink;

use lithe::nn::{AttentionMask, Bert, BertConfig, Vit, VitConfig};
use lithe::train::{self, ImageSet};
use lithe::{Graph, Rng, Tensor};

fn vit_config(depth: usize) -> VitConfig {
    VitConfig {
        image_size: 8,
        patch_size: 4,
        num_channels: 1,
        hidden_size: 24,
        num_hidden_layers: depth,
        num_attention_heads: 4,
        intermediate_size: 40,
        num_labels: 10,
        ..VitConfig::default()
    }
}

/// A ViT with weights large enough that every head and neuron matters (N(0, 0.3^2) weights,
/// biases nonzero), so a wrong slice shows in the output.
fn vit(depth: usize, seed: u64) -> Vit {
    let vit = Vit::new(&vit_config(depth), &mut Rng::new(seed)).unwrap();
    randomize(&vit, seed);
    vit
}

fn randomize(m: &impl lithe::nn::Module, seed: u64) {
    let mut rng = Rng::new(seed ^ 0x5EED);
    for (name, p) in m.named_params() {
        let norm = name.contains("LayerNorm") || name.contains("layernorm");
        let mean = if norm && name.ends_with("weight") {
            1.0
        } else {
            0.0
        };
        let std = if norm { 0.1 } else { 0.3 };
        p.set_value(Tensor::randn(&p.shape(), mean, std, &mut rng))
            .unwrap();
    }
}

fn bert_config(depth: usize) -> BertConfig {
    BertConfig {
        vocab_size: 50,
        hidden_size: 24,
        num_hidden_layers: depth,
        num_attention_heads: 4,
        intermediate_size: 40,
        max_position_embeddings: 16,
        num_labels: 3,
        ..BertConfig::default()
    }
}

fn bert(depth: usize, seed: u64) -> Bert {
    let bert = Bert::new(&bert_config(depth), &mut Rng::new(seed)).unwrap();
    randomize(&bert, seed);
    bert
}

/// A 2-layer BERT whose layers share one block (ALBERT).
fn shared_bert() -> Bert {
    let config = BertConfig {
        num_hidden_groups: Some(1),
        ..bert_config(2)
    };
    Bert::new(&config, &mut Rng::new(0)).unwrap()
}

/// Two sentences of 7 tokens, the second padded after 4.
fn tokens() -> (Vec<usize>, [usize; 2], AttentionMask) {
    let ids = vec![1, 5, 9, 13, 17, 21, 25, 2, 7, 11, 3, 0, 0, 0];
    (
        ids,
        [2, 7],
        AttentionMask::from_lengths(&[7, 4], 7).unwrap(),
    )
}

/// The first `n` images of each digits split.
fn small_digits(n: usize) -> (ImageSet, ImageSet) {
    let (tr, te) = train::digits_split(5).unwrap();
    let head = |d: &ImageSet| {
        let rows: Vec<usize> = (0..n.min(d.len())).collect();
        let (x, y) = d.batch(&rows).unwrap();
        ImageSet {
            pixels: x.data().to_vec(),
            labels: y,
            channels: 1,
            side: 8,
        }
    };
    (head(&tr), head(&te))
}

fn images(n: usize) -> Tensor {
    let (tr, _) = small_digits(n);
    let rows: Vec<usize> = (0..n).collect();
    tr.batch(&rows).unwrap().0
}

fn vit_logits(vit: &Vit, x: &Tensor) -> Tensor {
    let g = Graph::inference();
    let l = vit.forward_logits(&g, g.constant(x.clone())).unwrap();
    g.value(l).unwrap()
}

/// Largest `|a - b| / max(|b|, 1)` over the elements; panics on a shape mismatch.
fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0, f32::max)
}
