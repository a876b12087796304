//! `lithe minivit`: compress a trained ViT into a MiniViT student (weight multiplexing: blocks
//! share weights in groups, each layer keeps its LayerNorms and small transforms), trained with
//! weight distillation from the teacher. Prints the teacher's and the student's parameters and
//! accuracy; saves the student like `lithe train` does.

use crate::train::{CliResult, images_arg, progress_printer, round};
use clap::Args;
use lithe::compress::share::{MiniVit, ShareConfig};
use lithe::nn::{Module, Vit};
use lithe::train::{self, History, ImageSet, MiniVitDistill, RelationLayers, TrainOptions};
use serde_json::{Map, Value, json};
use std::path::PathBuf;

#[derive(Args)]
pub struct MiniVitArgs {
    /// The teacher: a folder written by `lithe train vit`.
    #[arg(long)]
    teacher: PathBuf,
    /// Consecutive layers per weight-sharing group (0 = all layers share one set of weights).
    #[arg(long, default_value_t = 2)]
    share: usize,
    /// Plain weight sharing: no per-layer head-mixing or depthwise-convolution transforms.
    #[arg(long)]
    no_transforms: bool,
    /// Train on the labels only (no distillation from the teacher).
    #[arg(long)]
    no_distill: bool,
    /// Side of the depthwise convolution's kernel (odd).
    #[arg(long, default_value_t = 3)]
    kernel: usize,
    /// Temperature of the prediction distillation.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Share of the prediction distillation against the label cross-entropy.
    #[arg(long, default_value_t = 0.5)]
    kd_weight: f32,
    /// Weight of the self-attention relation loss.
    #[arg(long, default_value_t = 1.0)]
    attention_weight: f32,
    /// Weight of the hidden-state relation loss.
    #[arg(long, default_value_t = 1.0)]
    hidden_weight: f32,
    /// Relation heads (default: the teacher's attention heads).
    #[arg(long)]
    relation_heads: Option<usize>,
    /// Distil the relations of every layer instead of the last one only.
    #[arg(long)]
    all_layers: bool,
    /// Image data: an IDX folder or `digits` (default: Fashion-MNIST, else the shipped digits).
    #[arg(long)]
    data: Option<String>,
    /// Passes over the training set.
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Samples per step.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Seed of the batch order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Compute threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Folder for the student's model.safetensors, config.json, history.json, training.svg.
    #[arg(long)]
    out: PathBuf,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// A trained MiniViT student and its training record.
pub struct Compressed {
    pub student: MiniVit,
    pub history: History,
}

/// Builds the MiniViT student of `teacher` and trains it; shared by `lithe minivit` and the
/// demo's `minivit` stage.
pub fn compress(
    teacher: &Vit,
    share: &ShareConfig,
    distill: Option<&MiniVitDistill>,
    data: (&ImageSet, &ImageSet),
    opts: &TrainOptions,
) -> CliResult<Compressed> {
    let student = MiniVit::from_vit(teacher, share)?;
    let history = train::train_minivit(
        &student,
        distill.map(|d| (teacher, d)),
        data.0,
        data.1,
        opts,
        &mut progress_printer("minivit"),
    )?;
    Ok(Compressed { student, history })
}

pub fn run(a: MiniVitArgs) -> CliResult<()> {
    lithe::kernels::threads::set_num_threads(a.threads);
    let teacher = match crate::int8::load_run(&a.teacher)? {
        crate::int8::Run::Vit(vit) => vit,
        _ => {
            return Err(format!(
                "{} is not a ViT folder (lithe train vit); MiniViT compresses a ViT",
                a.teacher.display()
            )
            .into());
        }
    };
    let (tr, te, name) = images_arg(a.data.as_deref())?;
    let depth = teacher.config.num_hidden_layers;
    let share = ShareConfig {
        share: if a.share == 0 { depth } else { a.share },
        transforms: !a.no_transforms,
        kernel: a.kernel,
    };
    let distill = MiniVitDistill {
        temperature: a.temperature,
        kd_weight: a.kd_weight,
        attention_weight: a.attention_weight,
        hidden_weight: a.hidden_weight,
        relation_heads: a
            .relation_heads
            .unwrap_or(teacher.config.num_attention_heads),
        relation_layers: if a.all_layers {
            RelationLayers::All
        } else {
            RelationLayers::Last
        },
    };
    let teacher_accuracy = train::evaluate_vit(&teacher, &te)?;
    eprintln!(
        "lithe minivit: teacher {} ({} params, depth {depth}, test accuracy {teacher_accuracy:.4}) on {name}",
        a.teacher.display(),
        teacher.num_params(),
    );
    let opts = TrainOptions {
        epochs: a.epochs,
        batch_size: a.batch,
        lr: a.lr,
        seed: a.seed,
        ..TrainOptions::default()
    };
    let distill = (!a.no_distill).then_some(&distill);
    let done = compress(&teacher, &share, distill, (&tr, &te), &opts)?;
    train::save_run(
        &a.out,
        &done.student,
        done.student.config(),
        Some(&done.history),
    )?;
    eprintln!("lithe minivit: saved to {}", a.out.display());

    let teacher_params = teacher.num_params();
    let student_params = done.student.num_params();
    let accuracy = done.history.final_accuracy();
    let row = |model: &str, params: usize, acc: f64| {
        let mut r = Map::new();
        r.insert("model".into(), json!(model));
        r.insert(
            "share".into(),
            json!(if model == "teacher" { 1 } else { share.share }),
        );
        r.insert(
            "transforms".into(),
            json!(model != "teacher" && share.transforms),
        );
        r.insert(
            "distill".into(),
            json!(model != "teacher" && distill.is_some()),
        );
        r.insert("params".into(), json!(params));
        r.insert(
            "param_ratio".into(),
            json!(round(teacher_params as f64 / params as f64, 3)),
        );
        r.insert("accuracy".into(), json!(round(acc, 4)));
        r.insert(
            "drop_pt".into(),
            json!(round((teacher_accuracy - acc) * 100.0, 2)),
        );
        r
    };
    let rows: Vec<Map<String, Value>> = vec![
        row("teacher", teacher_params, teacher_accuracy),
        row("minivit", student_params, accuracy),
    ];
    crate::table::print_rows(&rows, a.json);
    Ok(())
}
