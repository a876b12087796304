//! `lithe prune`: structured pruning of a trained ViT or BERT (FastFormers: heads and MLP
//! neurons ranked by first-order importance, then cut out of the weight matrices), optionally
//! re-distilled from the original; or, with `--sparsity`, gradual unstructured magnitude
//! pruning while fine-tuning (ViT).
//!
//! Rows `{"model","params","heads","ffn","accuracy","int8_accuracy","f32_ms","int8_ms",
//! "f32_speedup","int8_speedup"}`: the original first, then the pruned model (and, with
//! `--redistill`, the pruned model after re-distillation). Latencies are medians of a batch of
//! 64 on one thread, measured in this run, so the speedups compare like with like.

use crate::subject::{self, Data, DataArgs, Model, ms};
use crate::train::{CliResult, CommonArgs, progress_printer, round};
use clap::Args;
use lithe::compress::distill::KdConfig;
use lithe::compress::elastic::Subnet;
use lithe::compress::prune::{
    CubicSchedule, GradualPruning, MagnitudePruner, PrunePlan, PruneScope, prune_bert, prune_vit,
};
use lithe::nn::Module;
use lithe::train::{self, ImageDistill, training_steps};
use serde_json::{Map, Value, json};
use std::path::PathBuf;

/// `lithe prune`: make a trained model smaller and faster.
#[derive(Args)]
pub struct PruneArgs {
    /// Folder written by `lithe train` (config.json says vit or bert).
    #[arg(long)]
    pub model: PathBuf,
    /// Fraction of each layer's attention heads to remove.
    #[arg(long, default_value_t = 0.5)]
    pub heads: f32,
    /// Fraction of each layer's MLP neurons to remove.
    #[arg(long, default_value_t = 0.5)]
    pub ffn: f32,
    /// Re-distil the pruned model from the original (KD for --epochs).
    #[arg(long)]
    pub redistill: bool,
    /// Training samples the importance is accumulated over.
    #[arg(long, default_value_t = 2048)]
    pub importance_samples: usize,
    /// KD temperature of the re-distillation.
    #[arg(long, default_value_t = 4.0)]
    pub temperature: f32,
    /// KD share alpha of the re-distillation: (1 - alpha) CE(labels) + alpha KD.
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f32,
    /// Unstructured magnitude pruning to this sparsity instead (ViT): fine-tunes for --epochs
    /// while the sparsity rises along a cubic schedule over the first two thirds of the steps.
    #[arg(long)]
    pub sparsity: Option<f32>,
    /// With --sparsity: one magnitude threshold over all layers instead of one per layer.
    #[arg(long)]
    pub global: bool,
    #[command(flatten)]
    pub input: DataArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// One model's row: shape, accuracy in f32 and int8, latencies (and speedups against `base`).
pub fn measure(
    name: &str,
    model: &Model,
    data: &Data,
    base: Option<&Map<String, Value>>,
) -> CliResult<Map<String, Value>> {
    let (_, heads, ffn) = model.shape();
    let engine = model.int8(data)?;
    let f32_ms = ms(model.f32_latency(data)?);
    let int8_ms = ms(model.int8_latency(&engine, data)?);
    let mut r = Map::new();
    r.insert("model".into(), json!(name));
    r.insert("params".into(), json!(model.num_params()));
    r.insert("heads".into(), json!(heads));
    r.insert("ffn".into(), json!(ffn));
    r.insert("accuracy".into(), json!(round(model.accuracy(data)?, 4)));
    let int8_acc = Model::int8_accuracy(&engine, data)?;
    r.insert("int8_accuracy".into(), json!(round(int8_acc, 4)));
    r.insert("f32_ms".into(), json!(f32_ms));
    r.insert("int8_ms".into(), json!(int8_ms));
    let speedup = |key: &str, mine: f64| {
        base.and_then(|b| b[key].as_f64())
            .map_or(json!(1.0), |theirs| json!(round(theirs / mine, 3)))
    };
    r.insert("f32_speedup".into(), speedup("f32_ms", f32_ms));
    r.insert("int8_speedup".into(), speedup("int8_ms", int8_ms));
    Ok(r)
}

pub fn run(a: PruneArgs) -> CliResult<()> {
    lithe::kernels::threads::set_num_threads(a.common.threads);
    let (model, data) = subject::load(&a.model, &a.input)?;
    if let Some(s) = a.sparsity {
        return run_magnitude(&a, model, &data, s);
    }
    for (flag, f) in [("--heads", a.heads), ("--ffn", a.ffn)] {
        if !(0.0..1.0).contains(&f) {
            return Err(format!("{flag} {f}: the fraction removed must be in [0, 1)").into());
        }
    }
    let (_, nh, inner) = model.shape();
    let (keep_heads, keep_neurons) = (
        Subnet::count(1.0 - a.heads, nh),
        Subnet::count(1.0 - a.ffn, inner),
    );
    eprintln!(
        "lithe prune: {} ({} params): keeping {keep_heads} of {nh} heads and {keep_neurons} of \
         {inner} neurons per layer",
        a.model.display(),
        model.num_params()
    );
    let original = measure("original", &model, &data, None)?;
    let bs = a.common.batch;
    let importance = match (&model, &data) {
        (Model::Vit(m), Data::Images { train, .. }) => {
            train::vit_importance(m, train, bs, a.importance_samples)?
        }
        (Model::Bert(m), Data::Text { tok, train, .. }) => {
            train::bert_importance(m, tok, train, bs, a.importance_samples)?
        }
        _ => unreachable!("subject::load pairs models with their data"),
    };
    let plan = PrunePlan::top(
        &importance.heads,
        &importance.neurons,
        keep_heads,
        keep_neurons,
    )?;
    let pruned = match &model {
        Model::Vit(m) => Model::Vit(Box::new(prune_vit(m, &plan)?)),
        Model::Bert(m) => Model::Bert(Box::new(prune_bert(m, &plan)?)),
    };
    let mut rows = vec![original.clone()];
    let mut history = None;
    if a.redistill {
        let mut before = Map::new();
        before.insert("model".into(), json!("pruned, before re-distillation"));
        before.insert("params".into(), json!(pruned.num_params()));
        before.insert("accuracy".into(), json!(round(pruned.accuracy(&data)?, 4)));
        rows.push(before);
        let kd = KdConfig {
            temperature: a.temperature,
            alpha: a.alpha,
        };
        kd.validate()?;
        history = Some(match (&pruned, &model, &data) {
            (Model::Vit(s), Model::Vit(t), Data::Images { train, test }) => {
                train::train_vit_distill(
                    s,
                    Some(t),
                    &ImageDistill::Kd(kd),
                    train,
                    test,
                    &a.common.options(1e-3),
                    &mut progress_printer("redistill"),
                )?
            }
            (Model::Bert(s), Model::Bert(t), Data::Text { tok, train, test }) => {
                train::train_bert_kd(
                    s,
                    t,
                    tok,
                    (train, test),
                    &a.common.options(5e-5),
                    &kd,
                    &mut progress_printer("redistill"),
                )?
            }
            _ => unreachable!("a pruned model keeps its kind"),
        });
    }
    let name = if a.redistill {
        "pruned + re-distilled"
    } else {
        "pruned"
    };
    rows.push(measure(name, &pruned, &data, Some(&original))?);
    pruned.save(&a.common.out, &data, history.as_ref())?;
    eprintln!("lithe prune: saved to {}", a.common.out.display());
    crate::table::print_rows(&rows, a.common.json);
    Ok(())
}

/// `--sparsity`: fine-tunes a ViT under gradual magnitude pruning; rows with the sparsity.
fn run_magnitude(a: &PruneArgs, model: Model, data: &Data, sparsity: f32) -> CliResult<()> {
    let (Model::Vit(vit), Data::Images { train, test }) = (&model, data) else {
        return Err("--sparsity fine-tunes ViT models on images".into());
    };
    let opts = a.common.options(5e-4);
    let steps = training_steps(train.len(), &opts)?;
    let end = (steps * 2 / 3).max(1);
    let scope = if a.global {
        PruneScope::Global
    } else {
        PruneScope::PerLayer
    };
    let mut pruning = GradualPruning {
        pruner: MagnitudePruner::encoder_weights(vit.as_ref(), scope)?,
        schedule: CubicSchedule {
            initial: 0.0,
            target: sparsity,
            start: 0,
            end,
            every: (end / 20).max(1),
        },
    };
    pruning.schedule.validate()?;
    let accuracy = train::evaluate_vit(vit, test)?;
    let history = train::train_vit_pruned(
        vit,
        train,
        test,
        &opts,
        &mut pruning,
        &mut progress_printer("prune"),
    )?;
    model.save(&a.common.out, data, Some(&history))?;
    let row = |name: &str, acc: f64, s: f64| {
        let mut r = Map::new();
        r.insert("model".into(), json!(name));
        r.insert("params".into(), json!(vit.num_params()));
        r.insert("sparsity".into(), json!(round(s, 4)));
        r.insert("accuracy".into(), json!(round(acc, 4)));
        r
    };
    let rows = vec![
        row("original", accuracy, 0.0),
        row(
            match scope {
                PruneScope::PerLayer => "magnitude, per layer",
                PruneScope::Global => "magnitude, global",
            },
            history.final_accuracy(),
            pruning.pruner.sparsity(),
        ),
    ];
    crate::table::print_rows(&rows, a.common.json);
    Ok(())
}
