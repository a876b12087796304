//! Training-step timer of a tiny ViT: forward + backward + AdamW step at a fixed batch, the
//! measurement `scripts/peers-vit-step` compares with the same model in PyTorch
//! (`scripts/vit_step_torch.py`).
//!
//! Model (the one `lithe train vit` trains by default and the PyTorch script rebuilds):
//! 28x28x1 images, patch 4 (49 patches + class token), width 64, depth 4, 4 heads, MLP 256,
//! pre-LN, GELU (erf), 10 classes; cross-entropy on the class-token logits.
//!
//!     cargo run --release --example vit_step -- [--batch 64] [--threads 1] [--steps 20] [--json]
//!
//! Prints the median of `--steps` timed steps (after 3 warm-up steps): a line of text, or with
//! `--json` one object `{"side":"lithe","batch","threads","median_ms","fwd_ms","params"}`.

use lithe::nn::{Module, Vit, VitConfig};
use lithe::optim::{AdamW, AdamWConfig, Optimizer};
use lithe::{CrossEntropyOptions, Graph, Rng, Tensor};
use std::time::Instant;

struct Args {
    batch: usize,
    threads: usize,
    steps: usize,
    json: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        batch: 64,
        threads: 1,
        steps: 20,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a positive integer"))
        };
        match flag.as_str() {
            "--batch" => args.batch = value("--batch")?,
            "--threads" => args.threads = value("--threads")?,
            "--steps" => args.steps = value("--steps")?,
            "--json" => args.json = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.batch == 0 || args.steps == 0 {
        return Err("--batch and --steps must be at least 1".into());
    }
    Ok(args)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let c = VitConfig {
        image_size: 28,
        patch_size: 4,
        num_channels: 1,
        hidden_size: 64,
        num_hidden_layers: 4,
        num_attention_heads: 4,
        intermediate_size: 256,
        num_labels: 10,
        ..VitConfig::default()
    };
    lithe::kernels::threads::set_num_threads(args.threads);
    let vit = Vit::new(&c, &mut Rng::new(9))?;
    let x = Tensor::randn(&[args.batch, 1, 28, 28], 0.0, 1.0, &mut Rng::new(10));
    let y: Vec<usize> = (0..args.batch).map(|i| i % 10).collect();
    let params: Vec<_> = vit.named_params().into_iter().map(|(_, p)| p).collect();
    let mut opt = AdamW::new(
        params,
        AdamWConfig {
            lr: 1e-3,
            ..AdamWConfig::default()
        },
    )?;

    let (mut step_ms, mut fwd_ms) = (Vec::new(), Vec::new());
    for i in 0..args.steps + 3 {
        let t0 = Instant::now();
        let g = Graph::new();
        let logits = vit.forward_logits(&g, g.constant(x.clone()))?;
        let loss = g.cross_entropy(logits, &y, &CrossEntropyOptions::default())?;
        let t1 = Instant::now();
        g.backward(loss)?;
        drop(g);
        opt.step()?;
        opt.zero_grad();
        let t2 = Instant::now();
        if i >= 3 {
            fwd_ms.push((t1 - t0).as_secs_f64() * 1e3);
            step_ms.push((t2 - t0).as_secs_f64() * 1e3);
        }
    }
    let (step, fwd) = (median(step_ms), median(fwd_ms));
    if args.json {
        println!(
            "{{\"side\":\"lithe\",\"batch\":{},\"threads\":{},\"median_ms\":{step:.3},\"fwd_ms\":{fwd:.3},\"params\":{}}}",
            args.batch,
            args.threads,
            vit.num_params()
        );
    } else {
        println!(
            "ViT 28x28/p4 w64 d4 h4, batch {}, {} thread(s): fwd+bwd+AdamW {step:.2} ms (forward {fwd:.2} ms), {} params",
            args.batch,
            args.threads,
            vit.num_params()
        );
    }
    Ok(())
}
