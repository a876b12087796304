//! Smaller BERT classifiers from a trained one: its first blocks ([`first_layers`], the
//! fine-tuned baseline and the KD student's start), soft-label KD ([`train_bert_kd`]) and
//! BERT-of-Theseus module replacement ([`train_theseus`]).

use super::text::{Batch, check_text};
use super::{Event, History, TrainOptions, evaluate_bert, fit, train_bert};
use crate::autograd::{CrossEntropyOptions, Graph};
use crate::compress::distill::{KdConfig, kd_loss};
use crate::compress::theseus::{ReplaceSchedule, Theseus, bert_with_blocks};
use crate::data::Tokenizer;
use crate::error::{Error, Result};
use crate::nn::copy::copy_block;
use crate::nn::{Bert, Module};
use crate::optim::is_bias_or_norm;
use crate::tensor::Rng;

use super::TextSet;

/// A deep copy of `bert` keeping its embeddings, pooler, classifier and first `k` blocks
/// (`num_hidden_layers = k`); every parameter is the copy's own and trainable.
/// [`Error::InvalidArgument`] unless `1 <= k <= depth`.
pub fn first_layers(bert: &Bert, k: usize) -> Result<Bert> {
    let depth = bert.blocks().len();
    if k == 0 || k > depth {
        return Err(Error::invalid(
            "first_layers",
            format!("k = {k} blocks of a {depth}-block model"),
        ));
    }
    let blocks = bert.blocks()[..k]
        .iter()
        .map(copy_block)
        .collect::<Result<Vec<_>>>()?;
    bert_with_blocks(bert, blocks)
}

/// Trains `student` on `train` with [`kd_loss`]: `(1 - alpha) CE(labels) + alpha
/// soft_kd(student, teacher, T)`, the teacher's logits computed per batch on an inference graph
/// (so no gradient reaches it); evaluates the student on `test` after each epoch.
///
/// Errors: as [`KdConfig::validate`]; [`Error::InvalidArgument`] unless the two models have the
/// same classes and `tok` and the labels fit both.
pub fn train_bert_kd(
    student: &Bert,
    teacher: &Bert,
    tok: &Tokenizer,
    (train, test): (&TextSet, &TextSet),
    opts: &TrainOptions,
    kd: &KdConfig,
    progress: &mut dyn FnMut(Event),
) -> Result<History> {
    const OP: &str = "train_bert_kd";
    kd.validate()?;
    if student.config.num_labels != teacher.config.num_labels {
        return Err(Error::invalid(
            OP,
            format!(
                "the student has {} classes, the teacher {}",
                student.config.num_labels, teacher.config.num_labels
            ),
        ));
    }
    for bert in [student, teacher] {
        check_text(OP, bert, tok, &[("train", train), ("test", test)])?;
    }
    let ce = CrossEntropyOptions {
        label_smoothing: opts.label_smoothing,
        ..CrossEntropyOptions::default()
    };
    fit(
        &student.named_params(),
        &is_bias_or_norm,
        train.len(),
        opts,
        progress,
        &mut |g, rows| {
            let batch = Batch::new(tok, train, rows)?;
            let t = Graph::inference();
            let teacher_logits = t.value(batch.logits(teacher, &t)?)?; // [B, C]
            let logits = batch.logits(student, g)?; // [B, C]
            kd_loss(
                g,
                logits,
                g.constant(teacher_logits),
                &batch.labels,
                kd,
                &ce,
            )
        },
        &mut || evaluate_bert(student, tok, test),
    )
}

/// What [`train_theseus`] produced.
#[derive(Clone, Debug)]
pub struct TheseusRun {
    /// Module replacement (phase 1): the loss of the mixed model, the successor's accuracy.
    pub replacement: History,
    /// The successor fine-tuned alone (phase 2); empty when it was skipped.
    pub fine_tune: History,
    /// The compact model ([`Theseus::successor`]) after both phases.
    pub successor: Bert,
}

/// BERT-of-Theseus training. Phase 1 trains only the successor blocks (the predecessor is
/// frozen) for `opts.epochs`: each step `t` draws one Bernoulli(`schedule.rate_at(t)`)
/// decision per module from an [`Rng`] seeded by `opts.seed` and minimises the cross-entropy
/// of the mixed model ([`Theseus::forward_logits`]); after each epoch the successor (every
/// module replaced) is evaluated on `test`. Phase 2 fine-tunes the extracted successor
/// ([`Theseus::successor`]) alone with [`train_bert`] under `fine_tune` (its own learning rate
/// and epochs; skipped when `None`). A step that replaces no module gives the successor zero gradients.
///
/// Errors: as [`ReplaceSchedule::validate`], [`train_bert`], and if `tok` or the labels do not
/// fit the predecessor.
#[allow(clippy::too_many_arguments)]
pub fn train_theseus(
    theseus: &Theseus,
    tok: &Tokenizer,
    train: &TextSet,
    test: &TextSet,
    opts: &TrainOptions,
    schedule: ReplaceSchedule,
    fine_tune: Option<&TrainOptions>,
    progress: &mut dyn FnMut(Event),
) -> Result<TheseusRun> {
    schedule.validate()?;
    let sets = [("train", train), ("test", test)];
    check_text("train_theseus", theseus.predecessor(), tok, &sets)?;
    let ce = CrossEntropyOptions {
        label_smoothing: opts.label_smoothing,
        ..CrossEntropyOptions::default()
    };
    // A stream of its own: the decisions must not depend on the batch order's draws.
    let mut rng = Rng::new(opts.seed ^ 0x7E5E_05B1_A5ED_0001);
    let mut step = 0usize;
    let view = theseus.successor_view();
    let replacement = fit(
        &theseus.successor_params(),
        &is_bias_or_norm,
        train.len(),
        opts,
        progress,
        &mut |g, rows| {
            let replace = theseus.sample_replacements(schedule.rate_at(step), &mut rng);
            step += 1;
            let batch = Batch::new(tok, train, rows)?;
            let logits = theseus.forward_logits(
                g,
                &batch.ids,
                batch.shape,
                Some(&batch.types),
                Some(&batch.mask),
                &replace,
            )?;
            let loss = g.cross_entropy(logits, &batch.labels, &ce)?;
            if replace.contains(&true) {
                return Ok(loss);
            }
            // No successor block ran, so none can learn from this batch; a zero-weighted term
            // keeps the successor in the graph and the step goes through with zero gradients
            // (Adam's moments still move the weights, as for any zero gradient).
            let anchor = g.param(&theseus.successor_blocks()[0].attn_norm.bias); // [H]
            g.add(loss, g.mul_scalar(g.sum(anchor, &[0], false)?, 0.0)?)
        },
        &mut || evaluate_bert(&view, tok, test),
    )?;
    let successor = theseus.successor()?;
    let fine_tune = match fine_tune {
        Some(phase2) => train_bert(&successor, tok, train, test, phase2, progress)?,
        None => History::default(),
    };
    Ok(TheseusRun {
        replacement,
        fine_tune,
        successor,
    })
}
