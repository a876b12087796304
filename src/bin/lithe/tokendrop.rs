//! `lithe tokendrop`: DynamicViT on a trained ViT. Adds token predictors before the chosen
//! blocks, trains them (and, at a smaller learning rate, the backbone) against the full model,
//! then measures what the dropping buys: test accuracy of the full and the token-dropping model
//! and their throughput at a batch of 64 on one thread, in f32 (the autograd engine in
//! inference mode) and in int8 (both lowered with dynamic per-row activation scales), measured
//! in alternating rounds of one run. Saves the DynamicViT like `lithe train` does.

use crate::train::{CliResult, images_arg, progress_printer, round};
use clap::Args;
use lithe::compress::tokendrop::{DynamicVit, TokenDropConfig, TokenDropLoss};
use lithe::int8::{Input, Int8Model, QuantPlan};
use lithe::nn::{Module, Vit};
use lithe::train::{self, ImageSet, TokenDropTraining, TrainOptions};
use lithe::{Graph, Rng};
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct TokenDropArgs {
    /// The model: a folder written by `lithe train vit` (it is also the frozen teacher).
    #[arg(long)]
    model: PathBuf,
    /// Keep ratio rho: stage s keeps rho^(s+1) of the patch tokens.
    #[arg(long, default_value_t = 0.7)]
    keep: f32,
    /// Blocks a predictor runs before, comma-separated (default: depth/4, depth/2, 3 depth/4).
    #[arg(long, value_delimiter = ',')]
    stages: Option<Vec<usize>>,
    /// Weight of the keep-ratio loss.
    #[arg(long, default_value_t = 2.0)]
    ratio_weight: f32,
    /// Weight of the KL to the full model's predictions.
    #[arg(long, default_value_t = 0.5)]
    kd_weight: f32,
    /// Weight of the MSE to the full model's kept tokens.
    #[arg(long, default_value_t = 0.5)]
    token_weight: f32,
    /// Factor on the learning rate for the backbone (the predictors use --lr).
    #[arg(long, default_value_t = 0.01)]
    backbone_lr_scale: f64,
    /// Image data: an IDX folder or `digits` (default: Fashion-MNIST, else the shipped digits).
    #[arg(long)]
    data: Option<String>,
    /// Passes over the training set.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Samples per step.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Peak learning rate of the predictors.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Seed of the predictors' initialisation, the batch order and the Gumbel noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Compute threads for training (0 = all cores); throughput is measured on one thread.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Alternating timing rounds of the throughput comparison.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Folder for the DynamicViT's model.safetensors, config.json, history.json, training.svg.
    #[arg(long)]
    out: PathBuf,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// Loads the ViT of a `lithe train vit` folder.
fn load_vit(dir: &std::path::Path) -> CliResult<Vit> {
    match crate::int8::load_run(dir)? {
        crate::int8::Run::Vit(vit) => Ok(*vit),
        _ => Err(format!(
            "{} is not a ViT folder (lithe train vit); DynamicViT drops tokens of a ViT",
            dir.display()
        )
        .into()),
    }
}

/// A trained DynamicViT and its training record.
pub struct Dropped {
    pub model: DynamicVit,
    pub history: train::History,
}

/// Adds predictors to a copy of `teacher`'s backbone and trains them against `teacher`; shared
/// by `lithe tokendrop` and the demo's `tokendrop` stage.
pub fn drop_tokens(
    teacher: &Vit,
    backbone: Vit,
    token_drop: &TokenDropConfig,
    settings: &TokenDropTraining,
    data: (&ImageSet, &ImageSet),
    opts: &TrainOptions,
) -> CliResult<Dropped> {
    let model = DynamicVit::new(backbone, token_drop, &mut Rng::new(opts.seed ^ 0x70))?;
    let history = train::train_dynamic_vit(
        &model,
        teacher,
        data.0,
        data.1,
        opts,
        settings,
        &mut progress_printer("tokendrop"),
    )?;
    Ok(Dropped { model, history })
}

/// Median times of `full` and `dropped` and the median of their per-round ratio
/// (`full / dropped`), from `rounds` alternating rounds of about `budget` each, on one thread.
pub fn paired_times(
    rounds: usize,
    budget: Duration,
    mut full: impl FnMut(),
    mut dropped: impl FnMut(),
) -> (Duration, Duration, f64) {
    lithe::kernels::threads::set_num_threads(1);
    let (mut a, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        let ta = crate::bench::median_time(budget, &mut full);
        let tb = crate::bench::median_time(budget, &mut dropped);
        ratios.push(ta.as_secs_f64() / tb.as_secs_f64());
        a.push(ta);
        b.push(tb);
    }
    lithe::kernels::threads::set_num_threads(0);
    a.sort_unstable();
    b.sort_unstable();
    ratios.sort_by(f64::total_cmp);
    (a[a.len() / 2], b[b.len() / 2], ratios[ratios.len() / 2])
}

/// The first 64 test images (cycled), `[64, C, S, S]`.
pub fn batch64(data: &ImageSet) -> CliResult<lithe::Tensor> {
    let rows: Vec<usize> = (0..64).map(|i| i % data.len()).collect();
    Ok(data.batch(&rows)?.0)
}

/// What a row says about one model.
struct Side {
    keep: f32,
    tokens: Vec<usize>,
    params: usize,
}

/// One output row; `drop_pt` is against `reference` (the full model on the same engine), and the
/// speedup is the dropping model's (the full model's is 1).
#[allow(clippy::too_many_arguments)]
fn row(
    model: &str,
    engine: &str,
    side: &Side,
    accuracy: f64,
    reference: f64,
    time: Duration,
    speedup: Option<f64>,
    train_s: Option<f64>,
) -> Map<String, Value> {
    let mut r = Map::new();
    r.insert("model".into(), json!(model));
    r.insert("engine".into(), json!(engine));
    r.insert("keep".into(), json!(round(f64::from(side.keep), 4)));
    r.insert("tokens".into(), json!(side.tokens));
    r.insert("params".into(), json!(side.params));
    r.insert("accuracy".into(), json!(round(accuracy, 4)));
    r.insert(
        "drop_pt".into(),
        json!(round((reference - accuracy) * 100.0, 2)),
    );
    r.insert(
        "images_per_s".into(),
        json!(round(64.0 / time.as_secs_f64(), 1)),
    );
    r.insert("speedup".into(), json!(round(speedup.unwrap_or(1.0), 3)));
    r.insert("train_s".into(), json!(train_s));
    r
}

pub fn run(a: TokenDropArgs) -> CliResult<()> {
    lithe::kernels::threads::set_num_threads(a.threads);
    let teacher = load_vit(&a.model)?;
    let backbone = load_vit(&a.model)?;
    let (tr, te, name) = images_arg(a.data.as_deref())?;
    let depth = teacher.config.num_hidden_layers;
    let token_drop = TokenDropConfig {
        stages: a
            .stages
            .clone()
            .unwrap_or_else(|| TokenDropConfig::default_stages(depth)),
        keep_ratio: a.keep,
    };
    token_drop.validate(depth)?;
    let settings = TokenDropTraining {
        loss: TokenDropLoss {
            ratio_weight: a.ratio_weight,
            kd_weight: a.kd_weight,
            token_weight: a.token_weight,
            ..TokenDropLoss::default()
        },
        backbone_lr_scale: a.backbone_lr_scale,
        ..TokenDropTraining::default()
    };
    let full_accuracy = train::evaluate_vit(&teacher, &te)?;
    let patches = teacher.embeddings.num_patches();
    eprintln!(
        "lithe tokendrop: {} ({} params, {patches} patches, test accuracy {full_accuracy:.4}) on {name}; stages {:?}, keep {} -> tokens {:?}",
        a.model.display(),
        teacher.num_params(),
        token_drop.stages,
        a.keep,
        token_drop.keep_counts(patches),
    );
    let opts = TrainOptions {
        epochs: a.epochs,
        batch_size: a.batch,
        lr: a.lr,
        seed: a.seed,
        ..TrainOptions::default()
    };
    let start = Instant::now();
    let done = drop_tokens(
        &teacher,
        backbone,
        &token_drop,
        &settings,
        (&tr, &te),
        &opts,
    )?;
    let train_seconds = start.elapsed().as_secs_f64();
    train::save_run(&a.out, &done.model, &done.model.config, Some(&done.history))?;
    eprintln!("lithe tokendrop: saved to {}", a.out.display());

    // The test accuracies are known: the full model's from above, the dropping model's from its
    // last epoch's evaluation.
    let f32_accuracy = [full_accuracy, done.history.final_accuracy()];
    let rows = report(
        &teacher,
        &done.model,
        &te,
        f32_accuracy,
        a.rounds,
        Some(round(train_seconds, 1)),
    )?;
    crate::table::print_rows(&rows, a.json);
    Ok(())
}

/// The four rows comparing `teacher` (the full model) and `model` on the test split `te`: f32
/// (the autograd engine in inference mode; `f32_accuracy` = both models' test accuracy there)
/// and int8 (both lowered with dynamic per-row activation scales), accuracy and throughput at a batch of 64 on one thread from `rounds` alternating timing rounds.
pub fn report(
    teacher: &Vit,
    model: &DynamicVit,
    te: &ImageSet,
    f32_accuracy: [f64; 2],
    rounds: usize,
    train_s: Option<f64>,
) -> CliResult<Vec<Map<String, Value>>> {
    let [full_accuracy, accuracy] = f32_accuracy;
    let patches = teacher.embeddings.num_patches();
    let x = batch64(te)?;
    let budget = Duration::from_millis(300);
    let f32_times = paired_times(
        rounds,
        budget,
        || {
            let g = Graph::inference();
            teacher
                .forward_logits(&g, g.constant(x.clone()))
                .expect("forward");
        },
        || {
            let g = Graph::inference();
            model
                .forward_logits(&g, g.constant(x.clone()))
                .expect("forward");
        },
    );
    // int8: both models with dynamic per-row activation scales (no calibration to favour one).
    let plan = QuantPlan::dynamic();
    let (full8, drop8) = (
        Int8Model::from_vit(teacher, &plan)?,
        Int8Model::from_dynamic_vit(model, &plan)?,
    );
    let (acc_full8, acc_drop8) = (
        crate::int8::accuracy_images(&full8, te)?,
        crate::int8::accuracy_images(&drop8, te)?,
    );
    let (mut ws_full, mut ws_drop) = (full8.workspace(64, 0)?, drop8.workspace(64, 0)?);
    let input = Input::Images {
        pixels: x.data(),
        batch: 64,
    };
    let int8_times = paired_times(
        rounds,
        budget,
        || {
            full8.forward(&mut ws_full, input).expect("forward");
        },
        || {
            drop8.forward(&mut ws_drop, input).expect("forward");
        },
    );
    let dropping = Side {
        keep: model.config.token_drop.keep_ratio,
        tokens: model.keep_counts(),
        params: model.num_params(),
    };
    let full = Side {
        keep: 1.0,
        tokens: vec![patches],
        params: teacher.num_params(),
    };
    Ok(vec![
        row(
            "full",
            "f32",
            &full,
            full_accuracy,
            full_accuracy,
            f32_times.0,
            None,
            None,
        ),
        row(
            "tokendrop",
            "f32",
            &dropping,
            accuracy,
            full_accuracy,
            f32_times.1,
            Some(f32_times.2),
            train_s,
        ),
        row(
            "full",
            "int8",
            &full,
            acc_full8,
            acc_full8,
            int8_times.0,
            None,
            None,
        ),
        row(
            "tokendrop",
            "int8",
            &dropping,
            acc_drop8,
            acc_full8,
            int8_times.1,
            Some(int8_times.2),
            train_s,
        ),
    ])
}

#[derive(Args)]
pub struct TokenDropBenchArgs {
    /// A DynamicViT folder written by `lithe tokendrop`.
    #[arg(long)]
    model: PathBuf,
    /// The full model it was made from (a `lithe train vit` folder).
    #[arg(long)]
    full: PathBuf,
    /// Image data: an IDX folder or `digits` (default: Fashion-MNIST, else the shipped digits).
    #[arg(long)]
    data: Option<String>,
    /// Alternating timing rounds.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// `lithe bench tokendrop`: the rows of `lithe tokendrop` for a saved DynamicViT, without
/// training.
pub fn bench(a: TokenDropBenchArgs) -> CliResult<()> {
    let model = match crate::int8::load_run(&a.model)? {
        crate::int8::Run::DynamicVit(m) => *m,
        _ => {
            return Err(format!(
                "{} is not a DynamicViT folder (lithe tokendrop)",
                a.model.display()
            )
            .into());
        }
    };
    let full = load_vit(&a.full)?;
    let (_, te, _) = images_arg(a.data.as_deref())?;
    let f32_accuracy = [
        train::evaluate_vit(&full, &te)?,
        train::evaluate_dynamic_vit(&model, &te)?,
    ];
    let rows = report(&full, &model, &te, f32_accuracy, a.rounds, None)?;
    crate::table::print_rows(&rows, a.json);
    Ok(())
}
