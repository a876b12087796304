//! `lithe demo`: the whole pipeline on one dataset, one table row per stage.
//!
//! Stage `fp32`: a tiny ViT (patch 7 on 28x28, width 64, depth 4) trained with the library
//! trainer (`lithe::train`: AdamW, warm-up + cosine, clipping) on Fashion-MNIST when it is
//! installed, else on the 8x8 digits that ship inside the binary (patch 4, width 32, depth 2;
//! 80/20 split with a fixed seed); `--quick` always uses the digits. Row schema:
//! `{"stage","params","bytes","accuracy","latency_ms","throughput"}` with accuracy on the test
//! split, latency the median forward time of a batch of 64 on one thread, throughput images/s
//! at that batch.

use crate::bench::median_time;
use clap::Args;
use lithe::nn::{Module, Vit, VitConfig};
use lithe::train::{self, TrainOptions};
use lithe::{Graph, Rng};
use serde_json::{Map, json};
use std::time::{Duration, Instant};

const STAGES: [&str; 1] = ["fp32"];

#[derive(Args)]
pub struct DemoArgs {
    /// The shipped 8x8 digits only (finishes in seconds).
    #[arg(long)]
    quick: bool,
    /// Comma-separated stages to run (available: fp32).
    #[arg(long, default_value = "fp32")]
    stages: String,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

fn stage_fp32(quick: bool) -> Result<Map<String, serde_json::Value>, Box<dyn std::error::Error>> {
    let (train_set, test_set, name) = if quick {
        let (tr, te) = train::digits_split(42)?;
        (tr, te, "digits8x8".to_string())
    } else {
        crate::train::image_data(None)?
    };
    let digits = train_set.side == 8;
    let (patch, width, depth, epochs, lr) = if digits {
        (4, 32, 2, 30, 3e-3)
    } else {
        (7, 64, 4, 5, 2e-3)
    };
    let config = VitConfig {
        image_size: train_set.side,
        patch_size: patch,
        num_channels: train_set.channels,
        hidden_size: width,
        num_hidden_layers: depth,
        num_attention_heads: 4,
        intermediate_size: 2 * width,
        num_labels: 10,
        layer_norm_eps: 1e-6,
        hidden_dropout_prob: 0.0,
        distillation_token: false,
    };
    let vit = Vit::new(&config, &mut Rng::new(7))?;
    eprintln!(
        "demo fp32: ViT on {name} ({} train / {} test), patch {patch}, width {width}, depth {depth}",
        train_set.len(),
        test_set.len()
    );
    let opts = TrainOptions {
        epochs,
        batch_size: 64,
        lr,
        seed: 8,
        ..TrainOptions::default()
    };
    let start = Instant::now();
    let history = train::train_vit(
        &vit,
        &train_set,
        &test_set,
        &opts,
        &mut crate::train::progress_printer("demo fp32"),
    )?;
    eprintln!(
        "demo fp32: trained in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let accuracy = history.final_accuracy();

    lithe::kernels::threads::set_num_threads(1);
    let rows: Vec<usize> = (0..64).map(|i| i % test_set.len()).collect();
    let (x64, _) = test_set.batch(&rows)?;
    let latency = median_time(Duration::from_millis(500), || {
        let g = Graph::inference();
        vit.forward_logits(&g, g.constant(x64.clone()))
            .expect("forward of a valid batch");
    });
    lithe::kernels::threads::set_num_threads(0);
    let params = vit.num_params();
    let ms = latency.as_secs_f64() * 1e3;
    let mut row = Map::new();
    row.insert("stage".into(), json!("fp32"));
    row.insert("params".into(), json!(params));
    row.insert("bytes".into(), json!(params * 4));
    row.insert("accuracy".into(), json!((accuracy * 1e4).round() / 1e4));
    row.insert("latency_ms".into(), json!((ms * 1e3).round() / 1e3));
    row.insert(
        "throughput".into(),
        json!((64.0 / latency.as_secs_f64()).round()),
    );
    Ok(row)
}

pub fn run(args: DemoArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut rows = Vec::new();
    for stage in args.stages.split(',').map(str::trim) {
        match stage {
            "fp32" => rows.push(stage_fp32(args.quick)?),
            other => {
                return Err(
                    format!("unknown stage {other:?}; available: {}", STAGES.join(", ")).into(),
                );
            }
        }
    }
    crate::table::print_rows(&rows, args.json);
    Ok(())
}
