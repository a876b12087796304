//! Timing probe: forward, forward + backward, and inference forward of a tiny ViT (28x28,
//! patch 4, width 64, depth 4, heads 4, MLP 256) at batch 64 on one thread; medians of 12.
//! `cargo run --release --example vit_step`

use lithe::nn::{Module, Vit, VitConfig};
use lithe::{CrossEntropyOptions, Graph, Rng, Tensor};
use std::time::Instant;

fn main() {
    let c = VitConfig {
        image_size: 28,
        patch_size: 4,
        num_channels: 1,
        hidden_size: 64,
        num_hidden_layers: 4,
        num_attention_heads: 4,
        intermediate_size: 256,
        num_labels: 10,
        layer_norm_eps: 1e-6,
        hidden_dropout_prob: 0.0,
        distillation_token: false,
    };

    lithe::kernels::threads::set_num_threads(1);
    let vit = Vit::new(&c, &mut Rng::new(9)).unwrap();
    let x = Tensor::randn(&[64, 1, 28, 28], 0.0, 1.0, &mut Rng::new(10));
    let y: Vec<usize> = (0..64).map(|i| i % 10).collect();
    let mut fwd = Vec::new();
    let mut total = Vec::new();
    for _ in 0..12 {
        let t0 = Instant::now();
        let g = Graph::new();
        let loss = g
            .cross_entropy(
                vit.forward_logits(&g, g.constant(x.clone())).unwrap(),
                &y,
                &CrossEntropyOptions::default(),
            )
            .unwrap();
        let t1 = Instant::now();
        g.backward(loss).unwrap();
        drop(g);
        let t2 = Instant::now();
        fwd.push((t1 - t0).as_secs_f64() * 1e3);
        total.push((t2 - t0).as_secs_f64() * 1e3);
        for (_, p) in vit.named_params() {
            p.zero_grad();
        }
    }
    let inf = (0..12)
        .map(|_| {
            let t0 = Instant::now();
            let g = Graph::inference();
            vit.forward_logits(&g, g.constant(x.clone())).unwrap();
            t0.elapsed().as_secs_f64() * 1e3
        })
        .collect::<Vec<_>>();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut fwd, mut total, mut inf) = (fwd, total, inf);
    eprintln!(
        "ViT 28x28/p4 w64 d4 h4, batch 64, 1 thread: fwd (taped) {:.2} ms, fwd+bwd {:.2} ms, inference fwd {:.2} ms, {} params",
        median(&mut fwd),
        median(&mut total),
        median(&mut inf),
        vit.num_params()
    );
    lithe::kernels::threads::set_num_threads(0);
}
