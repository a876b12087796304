//! Quantization-aware training and post-training quantization (`lithe::compress::qat`): the
//! fake-quantized Linear against its formula, the observers' update rules, calibration, the
//! plans, and the contract that a QAT model's forward equals the int8 engine's.
//!
//! Layout: `linear.rs` (one Linear: formula, observers), `calibrate.rs` (PTQ, plans, errors),
//! `train.rs` (QAT steps on Vit and Bert, then the int8 engine).

mod calibrate;
mod linear;
mod train;

use lithe::Tensor;
use lithe::nn::{BertConfig, VitConfig};

fn vit_config() -> VitConfig {
    VitConfig {
        image_size: 8,
        patch_size: 4,
        num_channels: 1,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 32,
        num_labels: 4,
        ..VitConfig::default()
    }
}

fn bert_config() -> BertConfig {
    BertConfig {
        vocab_size: 23,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 24,
        max_position_embeddings: 16,
        num_labels: 3,
        ..BertConfig::default()
    }
}

fn max_diff(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(&a, &b)| (a as f64 - b).abs())
        .fold(0.0, f64::max)
}

/// The acceptance check: `engine` logits within 1e-3 of the QAT model's, and the f32 model's
/// (the same weights, QAT state removed) much further away, so the comparison can tell.
fn check_engine(what: &str, engine: &[f32], qat_logits: &Tensor, f32_logits: &Tensor) {
    let wide = |t: &Tensor| t.data().iter().map(|&v| v as f64).collect::<Vec<_>>();
    let d = max_diff(engine, &wide(qat_logits));
    let d32 = max_diff(engine, &wide(f32_logits));
    eprintln!("{what}: max |int8 - QAT| logit difference {d:e}, |int8 - f32| {d32:e}");
    assert!(d <= 1e-3, "{what}: QAT and int8 logits differ by {d}");
    assert!(
        d32 > 10.0 * d,
        "{what}: f32 is as close as QAT: {d32} vs {d}"
    );
}
