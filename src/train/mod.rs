//! Training loops shared by the CLI (`lithe train`, `lithe eval`, `lithe demo`) and by tests.
//!
//! - [`train_vit`] / [`evaluate_vit`]: a [`Vit`](crate::nn::Vit) on an [`ImageSet`];
//! - [`train_vit_distill`]: a smaller ViT student from a ViT teacher by KD, DeiT's
//!   distillation token, stored sparse logits or TinyBERT's layer losses ([`ImageDistill`]);
//! - [`train_minivit`] / [`evaluate_minivit`]: a MiniViT student distilled from its ViT teacher;
//! - [`train_dynamic_vit`] / [`evaluate_dynamic_vit`]: DynamicViT's token predictors (and its
//!   backbone, at a smaller learning rate) trained against the full model;
//! - [`train_bert`] / [`evaluate_bert`]: a [`Bert`](crate::nn::Bert) classifier on a [`TextSet`];
//! - [`first_layers`], [`train_bert_kd`], [`train_theseus`]: a smaller BERT from a trained one
//!   (its first blocks fine-tuned, soft-label KD, BERT-of-Theseus module replacement);
//! - [`vit_importance`] / [`bert_importance`]: head and neuron importance for structured
//!   pruning; [`train_vit_pruned`]: training under gradual magnitude pruning;
//! - [`train_vit_ofa`] / [`train_bert_ofa`]: an elastic width/depth supernet (OFA, DynaBERT);
//! - [`TrainOptions`]: AdamW with no-decay groups (biases and norms), linear warm-up then cosine
//!   decay, global gradient-norm clipping, optional label smoothing, seeded batching;
//! - [`History`]: per-epoch train loss, test accuracy and wall time, with [`History::plot_svg`]
//!   for the training curve; [`save_run`] writes model, `config.json` and the curve together.
//!
//! Progress is reported through a callback of [`Event`]s so a CLI can draw bars and a test can
//! stay silent.
//!
//! Non-finite values: every loop stops with [`crate::Error::NonFinite`] at the
//! first step whose loss is NaN or infinite (a NaN in the data, a learning rate too high),
//! before that step's update, so the parameters keep their last finite values.

mod distill;
mod distill_text;
mod elastic;
mod images;
mod minivit;
mod plot;
mod prune;
mod text;
mod tokendrop;

pub use distill::{
    ImageDistill, sparse_teacher_logits, train_vit_distill, vit_student_from_teacher,
};
pub use distill_text::{TheseusRun, first_layers, train_bert_kd, train_theseus};
pub use elastic::{train_bert_ofa, train_vit_ofa};
pub use images::{ImageSet, digits_split, evaluate_vit, load_image_dir, train_vit};
pub use minivit::{MiniVitDistill, RelationLayers, evaluate_minivit, train_minivit};
pub use prune::{bert_importance, train_vit_pruned, vit_importance};
pub use text::{TextSet, evaluate_bert, train_bert};
pub use tokendrop::{TokenDropTraining, evaluate_dynamic_vit, train_dynamic_vit};

use crate::autograd::{Graph, Param, Var};
use crate::error::{Error, Result};
use crate::io::ConfigFile;
use crate::nn::Module;
use crate::optim::{
    AdamW, AdamWConfig, LrSchedule, Optimizer, ParamGroup, WarmupCosine, clip_grad_norm,
};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// Hyper-parameters of a training run.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// Passes over the training set.
    pub epochs: usize,
    /// Samples per step.
    pub batch_size: usize,
    /// Peak learning rate (reached after the warm-up).
    pub lr: f64,
    /// Floor of the cosine decay.
    pub min_lr: f64,
    /// Warm-up steps, as a fraction of all steps.
    pub warmup_fraction: f64,
    /// AdamW weight decay (biases and norms get none).
    pub weight_decay: f64,
    /// Global L2 gradient-norm clip; `None` or 0 turns it off.
    pub clip_norm: Option<f64>,
    /// Label smoothing of the cross-entropy, in `[0, 1]`.
    pub label_smoothing: f32,
    /// Seed of the batch order.
    pub seed: u64,
    /// Stop after this many steps in total (for quick checks); `None` runs every epoch fully.
    pub max_steps: Option<usize>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            epochs: 10,
            batch_size: 64,
            lr: 1e-3,
            min_lr: 1e-5,
            warmup_fraction: 0.05,
            weight_decay: 0.05,
            clip_norm: Some(1.0),
            label_smoothing: 0.0,
            seed: 0,
            max_steps: None,
        }
    }
}

/// One epoch's numbers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpochStats {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's samples.
    pub train_loss: f64,
    /// Accuracy on the test split after the epoch, in `[0, 1]`.
    pub test_accuracy: f64,
    /// Wall time of the epoch's training steps, seconds (evaluation excluded).
    pub train_seconds: f64,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
}

/// The record of a run: one [`EpochStats`] per epoch.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct History {
    /// Epochs in order.
    pub epochs: Vec<EpochStats>,
}

impl History {
    /// Test accuracy after the last epoch (0 when no epoch ran).
    pub fn final_accuracy(&self) -> f64 {
        self.epochs.last().map_or(0.0, |e| e.test_accuracy)
    }

    /// Total training time, seconds.
    pub fn train_seconds(&self) -> f64 {
        self.epochs.iter().map(|e| e.train_seconds).sum()
    }
}

/// What a training loop reports as it goes.
#[derive(Clone, Debug)]
pub enum Event<'a> {
    /// An epoch starts with `steps` steps.
    EpochStart {
        /// 1-based epoch number.
        epoch: usize,
        /// Steps in this epoch.
        steps: usize,
    },
    /// One step finished with this mean batch loss.
    Step {
        /// The batch loss.
        loss: f64,
    },
    /// An epoch finished (and was evaluated).
    EpochEnd(&'a EpochStats),
}

/// The generic loop: `loss_of(graph, rows)` builds the loss of a batch on a training graph,
/// `evaluate()` gives the test accuracy after each epoch; parameters whose name `no_decay`
/// accepts get no weight decay.
pub(crate) fn fit(
    named: &[(String, Param)],
    no_decay: &dyn Fn(&str) -> bool,
    n_train: usize,
    opts: &TrainOptions,
    progress: &mut dyn FnMut(Event),
    loss_of: &mut dyn FnMut(&Graph, &[usize]) -> Result<Var>,
    evaluate: &mut dyn FnMut() -> Result<f64>,
) -> Result<History> {
    let mut no_hook = |_: StepPhase, _: usize| Ok(());
    let data = (n_train, opts);
    fit_with_hook(
        named,
        no_decay,
        data,
        progress,
        loss_of,
        evaluate,
        &mut no_hook,
    )
}

/// The steps `fit` runs for `n_train` samples under `opts` (every epoch, capped by
/// `opts.max_steps`): what [`crate::compress::theseus::ReplaceSchedule::reaching_one`] needs to reach 1 at the end.
pub fn training_steps(n_train: usize, opts: &TrainOptions) -> Result<usize> {
    let per_epoch =
        crate::data::Batcher::new(n_train, opts.batch_size, opts.seed)?.batches_per_epoch();
    let all = per_epoch * opts.epochs;
    Ok(opts.max_steps.map_or(all, |m| m.min(all)))
}

/// Where in a step [`fit_with_hook`] calls its hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StepPhase {
    /// After the backward (and gradient clipping), before the optimizer step.
    BeforeUpdate,
    /// After the optimizer step.
    AfterUpdate,
}

/// [`fit`] with `hook(phase, step)` called around every optimizer step (pruning masks).
pub(crate) fn fit_with_hook(
    named: &[(String, Param)],
    no_decay: &dyn Fn(&str) -> bool,
    (n_train, opts): (usize, &TrainOptions),
    progress: &mut dyn FnMut(Event),
    loss_of: &mut dyn FnMut(&Graph, &[usize]) -> Result<Var>,
    evaluate: &mut dyn FnMut() -> Result<f64>,
    hook: &mut dyn FnMut(StepPhase, usize) -> Result<()>,
) -> Result<History> {
    let groups = ParamGroup::split_decay(named, |n, _| no_decay(n));
    fit_impl(
        groups.to_vec(),
        (n_train, opts),
        progress,
        loss_of,
        evaluate,
        hook,
    )
}

/// [`fit`] over explicit parameter groups (each with its own weight decay and learning-rate
/// factor).
pub(crate) fn fit_groups(
    groups: Vec<ParamGroup>,
    n_train: usize,
    opts: &TrainOptions,
    progress: &mut dyn FnMut(Event),
    loss_of: &mut dyn FnMut(&Graph, &[usize]) -> Result<Var>,
    evaluate: &mut dyn FnMut() -> Result<f64>,
) -> Result<History> {
    let mut no_hook = |_: StepPhase, _: usize| Ok(());
    fit_impl(
        groups,
        (n_train, opts),
        progress,
        loss_of,
        evaluate,
        &mut no_hook,
    )
}

/// The loop behind [`fit`], [`fit_groups`] and [`fit_with_hook`].
fn fit_impl(
    groups: Vec<ParamGroup>,
    (n_train, opts): (usize, &TrainOptions),
    progress: &mut dyn FnMut(Event),
    loss_of: &mut dyn FnMut(&Graph, &[usize]) -> Result<Var>,
    evaluate: &mut dyn FnMut() -> Result<f64>,
    hook: &mut dyn FnMut(StepPhase, usize) -> Result<()>,
) -> Result<History> {
    if n_train == 0 {
        return Err(Error::invalid("train", "the training set is empty"));
    }
    if opts.epochs == 0 {
        return Err(Error::invalid("train", "epochs must be > 0"));
    }
    let params: Vec<Param> = groups.iter().flat_map(|g| g.params.clone()).collect();
    let mut opt = AdamW::with_groups(
        groups,
        AdamWConfig {
            lr: opts.lr,
            weight_decay: opts.weight_decay,
            ..AdamWConfig::default()
        },
    )?;
    let mut batcher = crate::data::Batcher::new(n_train, opts.batch_size, opts.seed)?;
    let per_epoch = batcher.batches_per_epoch();
    let total = training_steps(n_train, opts)?;
    let warmup = ((total as f64 * opts.warmup_fraction).round() as usize).min(total);
    let schedule = WarmupCosine::new(opts.lr, opts.min_lr.min(opts.lr), warmup, total.max(1))?;
    let mut history = History::default();
    let mut step = 0;
    for epoch in 1..=opts.epochs {
        if step >= total {
            break;
        }
        let steps = per_epoch.min(total - step);
        progress(Event::EpochStart { epoch, steps });
        let start = Instant::now();
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        for rows in batcher.next_epoch().take(steps) {
            opt.zero_grad();
            // A fresh stream per step: dropout masks and sampled noise must differ between steps.
            let g = Graph::with_seed(opts.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step as u64);
            let loss = loss_of(&g, rows)?;
            let value = g.value(loss)?.item()? as f64;
            if !value.is_finite() {
                return Err(Error::NonFinite {
                    op: "train",
                    msg: format!("loss became {value} at step {step}; lower --lr"),
                });
            }
            g.backward(loss)?;
            drop(g);
            if let Some(c) = opts.clip_norm.filter(|c| *c > 0.0) {
                clip_grad_norm(&params, c)?;
            }
            hook(StepPhase::BeforeUpdate, step)?;
            opt.set_lr(schedule.lr_at(step))?;
            opt.step()?;
            hook(StepPhase::AfterUpdate, step)?;
            step += 1;
            loss_sum += value * rows.len() as f64;
            seen += rows.len();
            progress(Event::Step { loss: value });
        }
        let train_seconds = start.elapsed().as_secs_f64();
        opt.zero_grad();
        let stats = EpochStats {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            test_accuracy: evaluate()?,
            train_seconds,
            lr: opt.lr(),
        };
        progress(Event::EpochEnd(&stats));
        history.epochs.push(stats);
    }
    Ok(history)
}

/// Argmax of each row of `logits[n, classes]` compared with `labels`: the number correct.
pub(crate) fn count_correct(logits: &[f32], classes: usize, labels: &[usize]) -> usize {
    logits
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(row, t)| {
            (0..classes)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .is_some_and(|p| p == **t)
        })
        .count()
}

/// Saves a trained model into `dir` (created if needed): `model.safetensors`
/// ([`crate::io::save_module`]), `config.json` ([`crate::io::save_config`]), and, when
/// `history` is given, `history.json` and the training curve `training.svg`.
pub fn save_run<M: Module, C: ConfigFile>(
    dir: &Path,
    model: &M,
    config: &C,
    history: Option<&History>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| crate::io::file_error(dir, e))?;
    crate::io::save_module(model, dir.join("model.safetensors"))?;
    crate::io::save_config(config, dir.join("config.json"))?;
    if let Some(h) = history {
        let text = serde_json::to_string_pretty(h)
            .map_err(|e| Error::invalid("train::save_run", e.to_string()))?;
        let path = dir.join("history.json");
        std::fs::write(&path, text + "\n").map_err(|e| crate::io::file_error(&path, e))?;
        h.plot_svg(&dir.join("training.svg"))?;
    }
    Ok(())
}
