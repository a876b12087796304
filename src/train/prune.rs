//! Pruning on data: head and neuron importance of a trained model over a dataset, and training
//! under gradual magnitude pruning ([`crate::compress::prune`] has the methods).

use super::images::{check_images, fit_labels};
use super::text::{Batch, check_text};
use super::{Event, History, ImageSet, StepPhase, TextSet, TrainOptions};
use crate::autograd::CrossEntropyOptions;
use crate::compress::prune::{GradualPruning, Importance, importance};
use crate::data::Tokenizer;
use crate::error::{Error, Result};
use crate::nn::{Bert, Vit};

/// Rows `0..n` of a set in batches of `batch_size`, at most `max_samples` rows in all.
fn batches_of(n: usize, batch_size: usize, max_samples: usize) -> Result<Vec<Vec<usize>>> {
    if batch_size == 0 || n == 0 || max_samples == 0 {
        return Err(Error::invalid(
            "importance",
            "the data, the batch size and the sample count must be > 0",
        ));
    }
    let rows: Vec<usize> = (0..n.min(max_samples)).collect();
    Ok(rows.chunks(batch_size).map(<[usize]>::to_vec).collect())
}

/// FastFormers importance of `vit`'s heads and neurons from the label cross-entropy on the
/// first `max_samples` images of `data`, in batches of `batch_size`.
pub fn vit_importance(
    vit: &Vit,
    data: &ImageSet,
    batch_size: usize,
    max_samples: usize,
) -> Result<Importance> {
    check_images("vit_importance", &vit.config, data, data)?;
    let batches = batches_of(data.len(), batch_size, max_samples)?;
    let ce = CrossEntropyOptions::default();
    importance(vit, &vit.encoder, batches.len(), &mut |g, b, masks| {
        let (x, y) = data.batch(&batches[b])?;
        let (_, traces) = vit.forward_traced(g, g.constant(x), Some(masks))?;
        let last = traces.last().map_or_else(
            || Err(Error::invalid("vit_importance", "the model has no blocks")),
            |t| Ok(t.output),
        )?;
        let logits = vit.logits_from_hidden(g, last)?;
        g.cross_entropy(logits, &y, &ce)
    })
}

/// FastFormers importance of `bert`'s heads and neurons from the label cross-entropy on the
/// first `max_samples` sentences of `data`, in batches of `batch_size`.
pub fn bert_importance(
    bert: &Bert,
    tok: &Tokenizer,
    data: &TextSet,
    batch_size: usize,
    max_samples: usize,
) -> Result<Importance> {
    check_text("bert_importance", bert, tok, &[("data", data)])?;
    let batches = batches_of(data.len(), batch_size, max_samples)?;
    let ce = CrossEntropyOptions::default();
    importance(bert, &bert.encoder, batches.len(), &mut |g, b, masks| {
        let batch = Batch::new(tok, data, &batches[b])?;
        let (_, traces) = bert.forward_traced(
            g,
            &batch.ids,
            batch.shape,
            Some(&batch.types),
            Some(&batch.mask),
            Some(masks),
        )?;
        let last = traces.last().map_or_else(
            || Err(Error::invalid("bert_importance", "the model has no blocks")),
            |t| Ok(t.output),
        )?;
        g.cross_entropy(bert.classify(g, last)?, &batch.labels, &ce)
    })
}

/// Trains `vit` on the labels while `pruning` zeroes its smallest weights along its schedule
/// (steps count from 0 over the whole run): the pruned gradients are cleared before every
/// optimizer step and the pruned weights reset to 0 after it. Evaluates on `test` after each
/// epoch.
pub fn train_vit_pruned(
    vit: &Vit,
    train: &ImageSet,
    test: &ImageSet,
    opts: &TrainOptions,
    pruning: &mut GradualPruning,
    progress: &mut dyn FnMut(Event),
) -> Result<History> {
    check_images("train_vit_pruned", &vit.config, train, test)?;
    pruning.schedule.validate()?;
    fit_labels(
        vit,
        (train, test),
        opts,
        progress,
        &mut |phase, step| match phase {
            StepPhase::BeforeUpdate => pruning.before_step(step),
            StepPhase::AfterUpdate => {
                pruning.after_step();
                Ok(())
            }
        },
    )
}
