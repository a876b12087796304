//! Smaller BERT classifiers from a trained one: its first blocks ([`first_layers`], the
//! fine-tuned baseline and the KD student's start), soft-label KD ([`train_bert_kd`]) and
//! BERT-of-Theseus module replacement ([`train_theseus`]).

use super::{Event, History, TrainOptions, evaluate_bert, fit, train_bert};
use crate::autograd::{CrossEntropyOptions, Graph, Var};
use crate::compress::distill::soft_kd;
use crate::compress::theseus::{ReplaceSchedule, Theseus, bert_with_blocks};
use crate::data::{Batcher, Tokenizer};
use crate::error::{Error, Result};
use crate::nn::copy::copy_block;
use crate::nn::{AttentionMask, Bert, Module};
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

/// The steps [`super::fit`] runs for `n_train` samples under `opts` (every epoch, capped by
/// `opts.max_steps`): what [`ReplaceSchedule::reaching_one`] needs to reach 1 at the end.
pub fn training_steps(n_train: usize, opts: &TrainOptions) -> Result<usize> {
    let per_epoch = Batcher::new(n_train, opts.batch_size, opts.seed)?.batches_per_epoch();
    let all = per_epoch * opts.epochs;
    Ok(opts.max_steps.map_or(all, |m| m.min(all)))
}

/// One tokenized batch: flat ids `[B, T]`, token types, padding mask and labels.
struct Batch {
    ids: Vec<usize>,
    shape: [usize; 2],
    types: Vec<usize>,
    mask: AttentionMask,
    labels: Vec<usize>,
}

impl Batch {
    fn new(tok: &Tokenizer, data: &TextSet, rows: &[usize]) -> Result<Batch> {
        let texts: Vec<&str> = rows.iter().map(|&r| data.texts[r].as_str()).collect();
        let enc = tok.encode_batch(&texts, data.max_len)?;
        Ok(Batch {
            ids: enc.ids_usize(),
            shape: [enc.batch, enc.seq],
            types: enc.token_type_ids.iter().map(|&t| t as usize).collect(),
            mask: AttentionMask::from_lengths(&enc.lengths(), enc.seq)?,
            labels: rows.iter().map(|&r| data.labels[r]).collect(),
        })
    }

    /// `bert`'s logits `[B, C]` of this batch on `g`.
    fn logits(&self, bert: &Bert, g: &Graph) -> Result<Var> {
        bert.forward_logits(
            g,
            &self.ids,
            self.shape,
            Some(&self.types),
            Some(&self.mask),
        )
    }
}

/// Errors unless `tok` fits `bert`'s vocabulary and the labels of `sets` fit its classes.
fn check_text(op: &'static str, bert: &Bert, tok: &Tokenizer, sets: &[&TextSet]) -> Result<()> {
    let c = &bert.config;
    if tok.vocab_size() > c.vocab_size {
        return Err(Error::invalid(
            op,
            format!(
                "the tokenizer has {} tokens, the model's vocabulary {}",
                tok.vocab_size(),
                c.vocab_size
            ),
        ));
    }
    for d in sets {
        if d.num_classes() > c.num_labels {
            return Err(Error::invalid(
                op,
                format!(
                    "labels go up to {}, the model has {} classes",
                    d.num_classes() - 1,
                    c.num_labels
                ),
            ));
        }
    }
    Ok(())
}

/// Trains `student` on `train` with `(1 - alpha) CE(labels) + alpha soft_kd(student, teacher,
/// T)` ([`soft_kd`]), the teacher's logits computed per batch on an inference graph (so no
/// gradient reaches it); evaluates the student on `test` after each epoch.
///
/// Errors: [`Error::InvalidArgument`] unless `alpha` is in `[0, 1]` and `temperature` finite
/// and positive, the two models have the same classes, and `tok` and the labels fit both.
#[allow(clippy::too_many_arguments)]
pub fn train_bert_kd(
    student: &Bert,
    teacher: &Bert,
    tok: &Tokenizer,
    train: &TextSet,
    test: &TextSet,
    opts: &TrainOptions,
    temperature: f32,
    alpha: f32,
    progress: &mut dyn FnMut(Event),
) -> Result<History> {
    const OP: &str = "train_bert_kd";
    if !(0.0..=1.0).contains(&alpha) {
        return Err(Error::invalid(
            OP,
            format!("alpha = {alpha} must be in [0, 1]"),
        ));
    }
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(Error::invalid(
            OP,
            format!("temperature = {temperature} must be finite and positive"),
        ));
    }
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
        check_text(OP, bert, tok, &[train, test])?;
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
            let hard = g.cross_entropy(logits, &batch.labels, &ce)?;
            let soft = soft_kd(g, logits, g.constant(teacher_logits), temperature)?;
            g.add(g.mul_scalar(hard, 1.0 - alpha)?, g.mul_scalar(soft, alpha)?)
        },
        &mut || evaluate_bert(student, tok, test),
    )
}

/// What [`train_theseus`] produced.
#[derive(Clone, Debug)]
pub struct TheseusRun {
    /// Module replacement (phase 1): the loss of the mixed model, the successor's accuracy.
    pub replacement: History,
    /// The successor fine-tuned alone (phase 2); empty for zero successor epochs.
    pub fine_tune: History,
    /// The compact model ([`Theseus::successor`]) after both phases.
    pub successor: Bert,
}

/// BERT-of-Theseus training. Phase 1 trains only the successor blocks (the predecessor is
/// frozen) for `opts.epochs`: each step `t` draws one Bernoulli(`schedule.rate_at(t)`)
/// decision per module from an [`Rng`] seeded by `opts.seed` and minimises the cross-entropy
/// of the mixed model ([`Theseus::forward_logits`]); after each epoch the successor (every
/// module replaced) is evaluated on `test`. Phase 2 fine-tunes the extracted successor
/// ([`Theseus::successor`]) alone with [`train_bert`] for `successor_epochs` (same options
/// otherwise; none when 0). A step that replaces no module gives the successor zero gradients.
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
    successor_epochs: usize,
    progress: &mut dyn FnMut(Event),
) -> Result<TheseusRun> {
    schedule.validate()?;
    check_text("train_theseus", theseus.predecessor(), tok, &[train, test])?;
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
    let fine_tune = if successor_epochs == 0 {
        History::default()
    } else {
        let phase2 = TrainOptions {
            epochs: successor_epochs,
            ..opts.clone()
        };
        train_bert(&successor, tok, train, test, &phase2, progress)?
    };
    Ok(TheseusRun {
        replacement,
        fine_tune,
        successor,
    })
}
