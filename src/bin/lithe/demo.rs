//! `lithe demo`: the whole pipeline on one dataset, one table row per stage.
//!
//! Stage `fp32`: a tiny ViT (patch 7 on 28x28, width 64, depth 4) trained with the library
//! trainer (`lithe::train`: AdamW, warm-up + cosine, clipping) on Fashion-MNIST when it is
//! installed, else on the 8x8 digits that ship inside the binary (patch 4, width 32, depth 2;
//! 80/20 split with a fixed seed); `--quick` always uses the digits. Row schema:
//! `{"stage","params","bytes","accuracy","latency_ms","throughput"}` with accuracy on the test
//! split, latency the median forward time of a batch of 64 on one thread, throughput images/s
//! at that batch.
//!
//! Stages `int8-ptq` and `int8-qat` lower the trained `fp32` model into the int8 engine: PTQ
//! calibrates static input scales on 8 training batches; QAT fine-tunes a copy of the model with
//! fake quantization (a tenth of the learning rate) and converts it. Their `bytes` is the size
//! of the saved int8 file and their latency that of the int8 forward.
//!
//! Stages `distill-kd`, `distill-deit` and `distill-sparse` distil the trained `fp32` model into
//! a student of half its depth (started from its embeddings, head and first blocks) for half its
//! epochs: soft KD at T = 4 mixed half and half with the labels; DeiT's distillation token on
//! the teacher's soft labels (the row averages both heads); and KD from the teacher's top-5
//! probabilities per training image, computed once before training (TinyViT's sparse logits).
//!
//! Stage `minivit` compresses the trained `fp32` model with MiniViT weight multiplexing: blocks
//! share their weights in pairs, each layer keeps its LayerNorms and its own head-mixing and
//! depthwise-convolution transforms, and the student is distilled from the `fp32` model
//! (predictions, attention relations, hidden-state relations).
//!
//! Stage `tokendrop` adds DynamicViT token predictors to a copy of the `fp32` model (keep ratio
//! 0.7 at three stages) and trains them, and the backbone at a tenth of their learning rate,
//! against the `fp32` model for a fifth of its epochs; the row times the gathered forward,
//! which runs its later blocks on the kept tokens only.
//!
//! Stage `prune-structured` removes half the heads and half the MLP neurons of every block of
//! the `fp32` model (FastFormers' first-order importance over 2048 training images), shrinks
//! the matrices, and re-distils the smaller model from the `fp32` one (KD, T = 4, alpha = 0.5)
//! for half its epochs. Stage `ofa-half` sorts a copy's heads and neurons by the same
//! importance, trains it as an elastic supernet (widths 1, 3/4, 1/2) for half the epochs at
//! half the learning rate, and cuts out its half-width sub-network.

use clap::Args;
use lithe::Rng;
use lithe::compress::distill::{DeitTarget, KdConfig};
use lithe::compress::elastic::{ElasticConfig, Subnet, extract_vit, reorder_by_importance};
use lithe::compress::prune::{PrunePlan, prune_vit};
use lithe::compress::qat::{self, QatConfig};
use lithe::compress::share::ShareConfig;
use lithe::compress::tokendrop::TokenDropConfig;
use lithe::int8::Int8Model;
use lithe::nn::{Module, Vit, VitConfig};
use lithe::train::{self, ImageDistill, ImageSet, MiniVitDistill, TokenDropTraining, TrainOptions};
use serde_json::{Map, Value, json};
use std::time::{Duration, Instant};

const STAGES: [&str; 10] = [
    "fp32",
    "int8-ptq",
    "int8-qat",
    "distill-kd",
    "distill-deit",
    "distill-sparse",
    "minivit",
    "tokendrop",
    "prune-structured",
    "ofa-half",
];

type Row = Map<String, Value>;
type DemoResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The trained fp32 model every later stage starts from.
struct Baseline {
    vit: Vit,
    config: VitConfig,
    train_set: ImageSet,
    test_set: ImageSet,
    /// Training's epochs and peak learning rate.
    epochs: usize,
    lr: f64,
}

#[derive(Args)]
pub struct DemoArgs {
    /// The shipped 8x8 digits only (finishes in seconds).
    #[arg(long)]
    quick: bool,
    /// Comma-separated stages to run (default: all of them).
    #[arg(
        long,
        default_value = "fp32,int8-ptq,int8-qat,distill-kd,distill-deit,distill-sparse,minivit,tokendrop,prune-structured,ofa-half"
    )]
    stages: String,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// Trains the fp32 baseline; it and its row.
fn stage_fp32(quick: bool) -> DemoResult<(Baseline, Row)> {
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
        ..VitConfig::default()
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

    let latency = crate::subject::image_latency(&test_set, |g, x| vit.forward_logits(g, x))?;
    let params = vit.num_params();
    let row = stage_row("fp32", params, params as u64 * 4, accuracy, latency);
    let base = Baseline {
        vit,
        config,
        train_set,
        test_set,
        epochs,
        lr,
    };
    Ok((base, row))
}

/// One row of the documented schema.
fn stage_row(stage: &str, params: usize, bytes: u64, accuracy: f64, latency: Duration) -> Row {
    let ms = latency.as_secs_f64() * 1e3;
    let mut row = Map::new();
    row.insert("stage".into(), json!(stage));
    row.insert("params".into(), json!(params));
    row.insert("bytes".into(), json!(bytes));
    row.insert("accuracy".into(), json!((accuracy * 1e4).round() / 1e4));
    row.insert("latency_ms".into(), json!((ms * 1e3).round() / 1e3));
    row.insert(
        "throughput".into(),
        json!((64.0 / latency.as_secs_f64()).round()),
    );
    row
}

/// The row of an int8 model: saved to a scratch folder for its size, evaluated, timed.
fn int8_row(stage: &str, base: &Baseline, engine: &Int8Model) -> DemoResult<Row> {
    let dir = std::env::temp_dir().join(format!("lithe-demo-{}-{stage}", std::process::id()));
    let bytes = crate::int8::save(engine, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let accuracy = crate::int8::accuracy_images(engine, &base.test_set)?;
    let latency = crate::int8::latency_images(engine, &base.test_set)?;
    eprintln!("demo {stage}: int8 test accuracy {accuracy:.4}");
    Ok(stage_row(
        stage,
        base.vit.num_params(),
        bytes?,
        accuracy,
        latency,
    ))
}

/// Post-training quantization: static input scales calibrated on 8 training batches of 64.
fn stage_int8_ptq(base: &Baseline) -> DemoResult<Row> {
    let engine = qat::ptq_vit(&base.vit, &base.train_set, 64, Some(8))?;
    int8_row("int8-ptq", base, &engine)
}

/// A copy of the baseline that shares no parameter with it.
fn copy_vit(base: &Baseline) -> DemoResult<Vit> {
    let vit = Vit::new(&base.config, &mut Rng::new(0))?;
    let weights: Vec<(String, lithe::Tensor)> = base
        .vit
        .named_params()
        .into_iter()
        .map(|(name, p)| (name, p.value()))
        .collect();
    lithe::io::load_named_into_module(&vit, &weights, true)?;
    Ok(vit)
}

/// Quantization-aware fine-tuning of a copy of the baseline (a tenth of its epochs, at least 2,
/// and of its learning rate), then conversion.
fn stage_int8_qat(base: &Baseline) -> DemoResult<Row> {
    let vit = copy_vit(base)?;
    let opts = TrainOptions {
        epochs: (base.epochs / 10).max(2),
        batch_size: 64,
        lr: base.lr / 10.0,
        seed: 9,
        ..TrainOptions::default()
    };
    let start = Instant::now();
    qat::finetune_vit(
        &vit,
        &base.train_set,
        &base.test_set,
        &QatConfig::default(),
        &opts,
        &mut crate::train::progress_printer("demo int8-qat"),
    )?;
    eprintln!(
        "demo int8-qat: fine-tuned in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    int8_row("int8-qat", base, &qat::convert(&vit)?)
}

/// A student of half the baseline's depth distilled from it by `method` (`kd`, `deit` or
/// `sparse`) for half its epochs; `bytes` is that of its f32 parameters.
fn stage_distill(base: &Baseline, method: &str) -> DemoResult<Row> {
    let stage = format!("distill-{method}");
    let config = VitConfig {
        num_hidden_layers: (base.config.num_hidden_layers / 2).max(1),
        distillation_token: method == "deit",
        ..base.config.clone()
    };
    let (student, _) = train::vit_student_from_teacher(&base.vit, &config, &mut Rng::new(12))?;
    let (temperature, alpha) = (4.0, 0.5);
    let store;
    let how = match method {
        "kd" => ImageDistill::Kd(KdConfig { temperature, alpha }),
        "deit" => ImageDistill::Deit(DeitTarget::Soft { temperature, alpha }),
        _ => {
            store = train::sparse_teacher_logits(&base.vit, &base.train_set, 5, temperature)?;
            ImageDistill::Sparse {
                store: &store,
                alpha,
            }
        }
    };
    let opts = TrainOptions {
        epochs: (base.epochs / 2).max(1),
        batch_size: 64,
        lr: base.lr,
        seed: 12,
        ..TrainOptions::default()
    };
    let start = Instant::now();
    let history = train::train_vit_distill(
        &student,
        Some(&base.vit),
        &how,
        &base.train_set,
        &base.test_set,
        &opts,
        &mut crate::train::progress_printer("demo distill"),
    )?;
    eprintln!(
        "demo {stage}: depth {} student distilled in {:.1} s",
        config.num_hidden_layers,
        start.elapsed().as_secs_f64()
    );
    let latency =
        crate::subject::image_latency(&base.test_set, |g, x| student.forward_logits(g, x))?;
    let params = student.num_params();
    Ok(stage_row(
        &stage,
        params,
        params as u64 * 4,
        history.final_accuracy(),
        latency,
    ))
}

/// MiniViT: the baseline's blocks share weights in pairs (each layer keeping its LayerNorms,
/// head-mixing transforms and depthwise convolution), distilled from the baseline for half its
/// epochs at half its learning rate. Its `bytes` is that of its f32 parameters.
fn stage_minivit(base: &Baseline) -> DemoResult<Row> {
    let share = ShareConfig {
        share: 2,
        transforms: true,
        kernel: 3,
    };
    let distill = MiniVitDistill {
        relation_heads: base.config.num_attention_heads,
        ..MiniVitDistill::default()
    };
    let opts = TrainOptions {
        epochs: (base.epochs / 2).max(1),
        batch_size: 64,
        lr: base.lr / 2.0,
        seed: 10,
        ..TrainOptions::default()
    };
    let start = Instant::now();
    let done = crate::minivit::compress(
        &base.vit,
        &share,
        Some(&distill),
        (&base.train_set, &base.test_set),
        &opts,
    )?;
    eprintln!(
        "demo minivit: distilled in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let student = done.student;
    let latency =
        crate::subject::image_latency(&base.test_set, |g, x| student.forward_logits(g, x))?;
    let params = student.num_params();
    Ok(stage_row(
        "minivit",
        params,
        params as u64 * 4,
        done.history.final_accuracy(),
        latency,
    ))
}

/// DynamicViT on a copy of the baseline: keep ratio 0.7 at the default stages, trained against
/// the baseline for a fifth of its epochs (at least 1) at half its learning rate, the backbone at
/// a tenth of that. Its `bytes` is that of its f32 parameters (the predictors included).
fn stage_tokendrop(base: &Baseline) -> DemoResult<Row> {
    let depth = base.config.num_hidden_layers;
    let token_drop = TokenDropConfig::new(depth, 0.7);
    let settings = TokenDropTraining {
        backbone_lr_scale: 0.1,
        ..TokenDropTraining::default()
    };
    let opts = TrainOptions {
        epochs: (base.epochs / 5).max(1),
        batch_size: 64,
        lr: base.lr / 2.0,
        seed: 11,
        ..TrainOptions::default()
    };
    let start = Instant::now();
    let done = crate::tokendrop::drop_tokens(
        &base.vit,
        copy_vit(base)?,
        &token_drop,
        &settings,
        (&base.train_set, &base.test_set),
        &opts,
    )?;
    eprintln!(
        "demo tokendrop: trained in {:.1} s; patch tokens kept per stage {:?}",
        start.elapsed().as_secs_f64(),
        done.model.keep_counts()
    );
    let model = done.model;
    let latency = crate::subject::image_latency(&base.test_set, |g, x| model.forward_logits(g, x))?;
    let params = model.num_params();
    Ok(stage_row(
        "tokendrop",
        params,
        params as u64 * 4,
        done.history.final_accuracy(),
        latency,
    ))
}

/// Half the heads and MLP neurons of every block removed by importance, the matrices shrunk,
/// then re-distilled from the baseline for half its epochs.
fn stage_prune(base: &Baseline) -> DemoResult<Row> {
    let imp = train::vit_importance(&base.vit, &base.train_set, 64, 2048)?;
    let b = &base.vit.blocks()[0];
    let plan = PrunePlan::top(
        &imp.heads,
        &imp.neurons,
        Subnet::count(0.5, b.attention.heads),
        Subnet::count(0.5, b.mlp.fc1.out_features()),
    )?;
    let pruned = prune_vit(&base.vit, &plan)?;
    let history = train::train_vit_distill(
        &pruned,
        Some(&base.vit),
        &ImageDistill::Kd(KdConfig {
            temperature: 4.0,
            alpha: 0.5,
        }),
        &base.train_set,
        &base.test_set,
        &half_run(base, base.lr),
        &mut crate::train::progress_printer("demo prune"),
    )?;
    let latency =
        crate::subject::image_latency(&base.test_set, |g, x| pruned.forward_logits(g, x))?;
    let params = pruned.num_params();
    Ok(stage_row(
        "prune-structured",
        params,
        params as u64 * 4,
        history.final_accuracy(),
        latency,
    ))
}

/// A copy of the baseline trained as an elastic supernet; the row is its half-width
/// sub-network, cut out.
fn stage_ofa_half(base: &Baseline) -> DemoResult<Row> {
    let mut supernet = copy_vit(base)?;
    let imp = train::vit_importance(&supernet, &base.train_set, 64, 2048)?;
    reorder_by_importance(&mut supernet.encoder, &imp)?;
    train::train_vit_ofa(
        &supernet,
        &base.train_set,
        &base.test_set,
        &half_run(base, base.lr / 2.0),
        &ElasticConfig {
            depths: vec![1.0],
            ..ElasticConfig::default()
        },
        &mut crate::train::progress_printer("demo ofa"),
    )?;
    let half = extract_vit(
        &supernet,
        Subnet {
            width: 0.5,
            depth: 1.0,
        },
    )?;
    let accuracy = train::evaluate_vit(&half, &base.test_set)?;
    let latency = crate::subject::image_latency(&base.test_set, |g, x| half.forward_logits(g, x))?;
    let params = half.num_params();
    Ok(stage_row(
        "ofa-half",
        params,
        params as u64 * 4,
        accuracy,
        latency,
    ))
}

/// Half the baseline's epochs at learning rate `lr`.
fn half_run(base: &Baseline, lr: f64) -> TrainOptions {
    TrainOptions {
        epochs: (base.epochs / 2).max(1),
        batch_size: 64,
        lr,
        seed: 12,
        ..TrainOptions::default()
    }
}

pub fn run(args: DemoArgs) -> DemoResult<()> {
    let stages: Vec<&str> = args.stages.split(',').map(str::trim).collect();
    if let Some(other) = stages.iter().find(|s| !STAGES.contains(s)) {
        return Err(format!("unknown stage {other:?}; available: {}", STAGES.join(", ")).into());
    }
    // Every stage starts from the trained baseline.
    let (base, fp32_row) = stage_fp32(args.quick)?;
    let mut rows = Vec::new();
    for stage in stages {
        rows.push(match stage {
            "fp32" => fp32_row.clone(),
            "int8-ptq" => stage_int8_ptq(&base)?,
            "int8-qat" => stage_int8_qat(&base)?,
            "distill-kd" => stage_distill(&base, "kd")?,
            "distill-deit" => stage_distill(&base, "deit")?,
            "distill-sparse" => stage_distill(&base, "sparse")?,
            "minivit" => stage_minivit(&base)?,
            "tokendrop" => stage_tokendrop(&base)?,
            "prune-structured" => stage_prune(&base)?,
            "ofa-half" => stage_ofa_half(&base)?,
            _ => unreachable!("checked above"),
        });
    }
    crate::table::print_rows(&rows, args.json);
    Ok(())
}
