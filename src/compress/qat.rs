//! Quantization-aware training (Q8BERT) and post-training quantization into the int8 engine
//! (DESIGN.md, "QAT (Q8BERT)" and "Int8 inference").
//!
//! Every [`Linear`] of a model gets a [`LinearQuant`] state ([`prepare_qat`]); its forward then
//! fake-quantizes the weight per output row (fresh max each step) and the input per tensor
//! with `symmetric_scale(range)`, where `range` is an exponential moving average of `max|x|`
//! over training steps ([`QatMode::Static`]) or the maximum over calibration batches
//! ([`QatMode::Ptq`], [`calibrate`]); or per row at run time ([`QatMode::Dynamic`]). Both sides
//! use the kernels' quantizers and the engine's [`symmetric_scale`], so the prepared model's
//! forward equals the [`Int8Model`]'s forward up to float rounding.
//!
//! ```no_run
//! use lithe::compress::qat::{self, QatConfig};
//! use lithe::nn::{Vit, VitConfig};
//! use lithe::train::{self, TrainOptions};
//! # fn main() -> lithe::Result<()> {
//! let config = VitConfig {
//!     image_size: 8, patch_size: 4, num_channels: 1, hidden_size: 32, num_hidden_layers: 2,
//!     num_attention_heads: 4, intermediate_size: 64, num_labels: 10, layer_norm_eps: 1e-6,
//!     hidden_dropout_prob: 0.0, distillation_token: false,
//!     attention_head_size: None,
//! };
//! let (train_set, test_set) = train::digits_split(0)?;
//! let vit = Vit::new(&config, &mut lithe::Rng::new(0))?;
//! train::train_vit(&vit, &train_set, &test_set, &TrainOptions::default(), &mut |_| {})?;
//! // Fine-tune with fake quantization at a tenth of the learning rate, then lower.
//! let opts = TrainOptions { epochs: 2, lr: 1e-4, ..TrainOptions::default() };
//! qat::finetune_vit(&vit, &train_set, &test_set, &QatConfig::default(), &opts, &mut |_| {})?;
//! let engine = qat::convert(&vit)?; // an int8::Int8Model, input scales from the observers
//! # Ok(()) }
//! ```

use crate::error::{Error, Result};
use crate::int8::{ActQuant, Int8Model, QuantPlan, ToInt8, symmetric_scale};
use crate::nn::{AttentionMask, Bert, InputQuant, Linear, LinearQuant, Module, Vit};
use crate::train::{Event, History, ImageSet, TextSet, TrainOptions, train_bert, train_vit};
use crate::{Graph, data::Tokenizer};
use std::collections::HashMap;

/// How activations are quantized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QatMode {
    /// Quantization-aware training with a static per-tensor input scale from an EMA of
    /// `max|x|` updated on every training step ([`QatConfig::ema_decay`]).
    Static,
    /// Post-training quantization: no training; the static input scale comes from the maximum
    /// of `max|x|` over the batches run through [`calibrate`].
    Ptq,
    /// Inputs quantized per row at run time (the engine's [`ActQuant::Dynamic`]); only the
    /// weights' ranges are fixed. Needs no observation.
    Dynamic,
}

impl std::str::FromStr for QatMode {
    type Err = Error;

    /// `static` (or `qat`), `ptq`, `dynamic`: the names a command line takes.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "static" | "qat" => Ok(QatMode::Static),
            "ptq" => Ok(QatMode::Ptq),
            "dynamic" => Ok(QatMode::Dynamic),
            _ => Err(Error::invalid(
                "QatMode",
                format!("`{s}` is not one of static, ptq, dynamic"),
            )),
        }
    }
}

/// Settings of [`prepare_qat`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QatConfig {
    /// Weight of the old range in the EMA of [`QatMode::Static`], in `[0, 1)`.
    pub ema_decay: f32,
    /// How activations are quantized.
    pub mode: QatMode,
}

impl Default for QatConfig {
    /// Q8BERT's settings: static scales, EMA decay 0.9999.
    fn default() -> Self {
        QatConfig {
            ema_decay: 0.9999,
            mode: QatMode::Static,
        }
    }
}

impl QatConfig {
    /// Post-training quantization (calibrated static scales).
    pub fn ptq() -> Self {
        QatConfig {
            mode: QatMode::Ptq,
            ..Self::default()
        }
    }

    /// Dynamic per-row activation scales.
    pub fn dynamic() -> Self {
        QatConfig {
            mode: QatMode::Dynamic,
            ..Self::default()
        }
    }

    fn input_quant(&self) -> Result<InputQuant> {
        match self.mode {
            QatMode::Static if (0.0..1.0).contains(&self.ema_decay) => Ok(InputQuant::Ema {
                decay: self.ema_decay,
            }),
            QatMode::Static => Err(Error::invalid(
                "qat::prepare_qat",
                format!("ema_decay = {} is not in [0, 1)", self.ema_decay),
            )),
            QatMode::Ptq => Ok(InputQuant::Max),
            QatMode::Dynamic => Ok(InputQuant::Dynamic),
        }
    }
}

/// Gives every [`Linear`] of `model` a fresh quantization state (replacing any earlier one):
/// from now on its forward fake-quantizes as the int8 engine will compute. Nothing has been
/// observed yet: a static layer needs a training step ([`QatMode::Static`]) or [`calibrate`]
/// before an inference forward. [`Error::InvalidArgument`] for an EMA decay outside `[0, 1)`.
pub fn prepare_qat<M: Module + ?Sized>(model: &M, config: &QatConfig) -> Result<()> {
    let input = config.input_quant()?;
    model.visit_linears(&mut |_, lin| lin.set_quant(Some(LinearQuant::new(input))));
    Ok(())
}

/// Removes the quantization state of every [`Linear`]: the model computes in f32 again (its
/// weights keep whatever training did to them).
pub fn strip_qat<M: Module + ?Sized>(model: &M) {
    model.visit_linears(&mut |_, lin| lin.set_quant(None));
}

/// Whether every [`Linear`] of `model` carries quantization state (and there is at least one).
pub fn is_prepared<M: Module + ?Sized>(model: &M) -> bool {
    let (mut all, mut any) = (true, false);
    model.visit_linears(&mut |_, lin| {
        any = true;
        all &= lin.quant().is_some();
    });
    all && any
}

/// Every Linear's name and state; [`Error::InvalidArgument`] if one was never prepared.
fn states<M: Module + ?Sized>(model: &M, op: &'static str) -> Result<Vec<(String, LinearQuant)>> {
    let mut out = Vec::new();
    let mut missing = None;
    model.visit_linears(&mut |name, lin| match lin.quant() {
        Some(q) => out.push((name.to_string(), q)),
        None => missing = missing.take().or(Some(name.to_string())),
    });
    if let Some(name) = missing {
        return Err(Error::invalid(
            op,
            format!("Linear `{name}` has no quantization state: call prepare_qat first"),
        ));
    }
    Ok(out)
}

/// Calibrates the static input ranges of a prepared model: clears them, runs `run` (which
/// should run the model's forward over some representative batches, on any graph) with every
/// layer observing the maximum of `max|x|` and computing in f32, then ends calibration.
/// Dynamic layers are left alone.
///
/// Errors: the model is not prepared; `run`'s own error (calibration is ended either way); a
/// static layer saw no data during `run`.
pub fn calibrate<M, R>(model: &M, run: impl FnOnce() -> Result<R>) -> Result<R>
where
    M: Module + ?Sized,
{
    states(model, "qat::calibrate")?;
    let set = |on: bool| {
        model.visit_linears(&mut |_, lin| {
            if let Some(mut q) = lin.quant()
                && q.input != InputQuant::Dynamic
            {
                if on {
                    q.range = None;
                }
                q.calibrating = on;
                lin.set_quant(Some(q));
            }
        })
    };
    set(true);
    let out = run();
    set(false);
    let out = out?;
    check_observed(model, "qat::calibrate")?;
    Ok(out)
}

/// [`calibrate`] on images: `vit`'s forward over `data` in batches of `batch_size` (at most
/// `max_batches` of them), on inference graphs.
pub fn calibrate_vit(
    vit: &Vit,
    data: &ImageSet,
    batch_size: usize,
    max_batches: Option<usize>,
) -> Result<()> {
    if data.is_empty() || batch_size == 0 {
        return Err(Error::invalid(
            "qat::calibrate_vit",
            "need a non-empty calibration set and batch_size > 0",
        ));
    }
    let rows: Vec<usize> = (0..data.len()).collect();
    let batches = max_batches.unwrap_or(usize::MAX);
    calibrate(vit, || {
        for chunk in rows.chunks(batch_size).take(batches) {
            let (x, _) = data.batch(chunk)?;
            let g = Graph::inference();
            vit.forward_logits(&g, g.constant(x))?;
        }
        Ok(())
    })
}

/// [`calibrate`] on texts: `bert`'s forward over `data` tokenized by `tok` (as the trainer
/// does), in batches of `batch_size` (at most `max_batches` of them), on inference graphs.
pub fn calibrate_bert(
    bert: &Bert,
    tok: &Tokenizer,
    data: &TextSet,
    batch_size: usize,
    max_batches: Option<usize>,
) -> Result<()> {
    if data.is_empty() || batch_size == 0 {
        return Err(Error::invalid(
            "qat::calibrate_bert",
            "need a non-empty calibration set and batch_size > 0",
        ));
    }
    let rows: Vec<usize> = (0..data.len()).collect();
    let batches = max_batches.unwrap_or(usize::MAX);
    calibrate(bert, || {
        for chunk in rows.chunks(batch_size).take(batches) {
            let texts: Vec<&str> = chunk.iter().map(|&r| data.texts[r].as_str()).collect();
            let enc = tok.encode_batch(&texts, data.max_len)?;
            let mask = AttentionMask::from_lengths(&enc.lengths(), enc.seq)?;
            let types: Vec<usize> = enc.token_type_ids.iter().map(|&t| t as usize).collect();
            let g = Graph::inference();
            let shape = [enc.batch, enc.seq];
            bert.forward_logits(&g, &enc.ids_usize(), shape, Some(&types), Some(&mask))?;
        }
        Ok(())
    })
}

fn check_observed<M: Module + ?Sized>(model: &M, op: &'static str) -> Result<()> {
    for (name, q) in states(model, op)? {
        if q.input != InputQuant::Dynamic && q.range.is_none() {
            return Err(Error::invalid(
                op,
                format!(
                    "Linear `{name}` never observed an input: train with QAT or calibrate first"
                ),
            ));
        }
    }
    Ok(())
}

/// The engine's activation plan from the observers: [`ActQuant::Static`] with
/// `symmetric_scale(range)` for static layers, [`ActQuant::Dynamic`] for dynamic ones; every
/// Linear named as [`Module::visit_linears`] names it.
///
/// Errors: the model is not prepared, or a static layer has observed nothing.
pub fn quant_plan<M: Module + ?Sized>(model: &M) -> Result<QuantPlan> {
    check_observed(model, "qat::quant_plan")?;
    let mut acts = HashMap::new();
    for (name, q) in states(model, "qat::quant_plan")? {
        let act = match (q.input, q.range) {
            (InputQuant::Dynamic, _) => ActQuant::Dynamic,
            (_, Some(r)) => ActQuant::Static(symmetric_scale(r)),
            (_, None) => unreachable!("checked above"),
        };
        acts.insert(name, act);
    }
    Ok(QuantPlan {
        default_mode: ActQuant::Dynamic,
        acts,
    })
}

/// Lowers a prepared (and trained or calibrated) model into the int8 engine with the plan of
/// [`quant_plan`]. The model keeps its quantization state.
pub fn convert<M: Module + ToInt8 + ?Sized>(model: &M) -> Result<Int8Model> {
    model.to_int8(&quant_plan(model)?)
}

/// Quantization-aware fine-tuning of `vit`: [`train_vit`] after [`prepare_qat`] (a model
/// already prepared with the same settings keeps its observed ranges, so training can resume).
/// Usually from a trained f32 model with a learning rate about a tenth of the original.
/// [`QatMode::Ptq`] is rejected: it does not train.
pub fn finetune_vit(
    vit: &Vit,
    train: &ImageSet,
    test: &ImageSet,
    config: &QatConfig,
    opts: &TrainOptions,
    progress: &mut dyn FnMut(Event),
) -> Result<History> {
    prepare_for_training(vit, config, "qat::finetune_vit")?;
    train_vit(vit, train, test, opts, progress)
}

/// [`finetune_vit`] for a [`Bert`] classifier ([`train_bert`]).
pub fn finetune_bert(
    bert: &Bert,
    tok: &Tokenizer,
    train: &TextSet,
    test: &TextSet,
    config: &QatConfig,
    opts: &TrainOptions,
    progress: &mut dyn FnMut(Event),
) -> Result<History> {
    prepare_for_training(bert, config, "qat::finetune_bert")?;
    train_bert(bert, tok, train, test, opts, progress)
}

fn prepare_for_training<M: Module>(model: &M, config: &QatConfig, op: &'static str) -> Result<()> {
    if config.mode == QatMode::Ptq {
        return Err(Error::invalid(
            op,
            "PTQ does not train: use calibrate and convert",
        ));
    }
    let input = config.input_quant()?;
    let mut same = is_prepared(model);
    model.visit_linears(&mut |_, lin| same &= lin.quant().is_some_and(|q| q.input == input));
    if !same {
        prepare_qat(model, config)?;
    }
    Ok(())
}

/// Post-training quantization of `vit` in one call: ranges calibrated on up to `max_batches`
/// batches of `batch_size` images of `calib`, converted, and the model left as it was (any
/// earlier quantization state is removed).
pub fn ptq_vit(
    vit: &Vit,
    calib: &ImageSet,
    batch_size: usize,
    max_batches: Option<usize>,
) -> Result<Int8Model> {
    prepare_qat(vit, &QatConfig::ptq())?;
    let engine = calibrate_vit(vit, calib, batch_size, max_batches).and_then(|()| convert(vit));
    strip_qat(vit);
    engine
}

/// [`ptq_vit`] for a [`Bert`] classifier, calibrated on texts ([`calibrate_bert`]).
pub fn ptq_bert(
    bert: &Bert,
    tok: &Tokenizer,
    calib: &TextSet,
    batch_size: usize,
    max_batches: Option<usize>,
) -> Result<Int8Model> {
    prepare_qat(bert, &QatConfig::ptq())?;
    let engine =
        calibrate_bert(bert, tok, calib, batch_size, max_batches).and_then(|()| convert(bert));
    strip_qat(bert);
    engine
}

/// The names of the Linears of `model` with their quantization state (`None`: not prepared).
pub fn linear_states<M: Module + ?Sized>(model: &M) -> Vec<(String, Option<LinearQuant>)> {
    let mut out = Vec::new();
    model.visit_linears(&mut |name: &str, lin: &Linear| out.push((name.to_string(), lin.quant())));
    out
}
