//! Text classification: tokenized `label<TAB>text` sets and the BERT loop.

use super::{Event, History, TrainOptions, count_correct, fit};
use crate::autograd::{CrossEntropyOptions, Graph};
use crate::data::Tokenizer;
use crate::error::{Error, Result};
use crate::nn::{AttentionMask, Bert, Module};
use crate::optim::is_bias_or_norm;

/// Labelled texts, kept as text and tokenized per batch.
#[derive(Clone, Debug)]
pub struct TextSet {
    /// The texts.
    pub texts: Vec<String>,
    /// The class of each text.
    pub labels: Vec<usize>,
    /// Longest token sequence (special tokens included); longer texts are cut.
    pub max_len: usize,
}

impl TextSet {
    /// From `(label, text)` rows (as [`crate::data::read_tsv`] returns them).
    pub fn new(rows: Vec<(usize, String)>, max_len: usize) -> Self {
        let (labels, texts) = rows.into_iter().unzip();
        TextSet {
            texts,
            labels,
            max_len,
        }
    }

    /// Number of texts.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no texts.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes: the largest label plus one.
    pub fn num_classes(&self) -> usize {
        self.labels.iter().max().map_or(0, |m| m + 1)
    }
}

/// One tokenized batch: flat ids `[B, T]`, token types, padding mask and labels.
pub(crate) struct Batch {
    pub(crate) ids: Vec<usize>,
    pub(crate) shape: [usize; 2],
    pub(crate) types: Vec<usize>,
    pub(crate) mask: AttentionMask,
    pub(crate) labels: Vec<usize>,
}

impl Batch {
    /// The texts of `data` at `rows`, tokenized by `tok`.
    pub(crate) fn new(tok: &Tokenizer, data: &TextSet, rows: &[usize]) -> Result<Batch> {
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
    pub(crate) fn logits(&self, bert: &Bert, g: &Graph) -> Result<crate::Var> {
        bert.forward_logits(
            g,
            &self.ids,
            self.shape,
            Some(&self.types),
            Some(&self.mask),
        )
    }
}

/// [`Error::InvalidArgument`] unless `tok` fits `bert`'s vocabulary and the labels of each
/// named set fit its classes.
pub(crate) fn check_text(
    op: &'static str,
    bert: &Bert,
    tok: &Tokenizer,
    sets: &[(&str, &TextSet)],
) -> Result<()> {
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
    for (what, d) in sets {
        if d.num_classes() > c.num_labels {
            return Err(Error::invalid(
                op,
                format!(
                    "{what} labels go up to {}, the model has {} classes",
                    d.num_classes() - 1,
                    c.num_labels
                ),
            ));
        }
    }
    Ok(())
}

/// Test accuracy of `bert` on `data`, in batches of 64 on an inference graph.
pub fn evaluate_bert(bert: &Bert, tok: &Tokenizer, data: &TextSet) -> Result<f64> {
    if data.is_empty() {
        return Err(Error::invalid("evaluate_bert", "the test set is empty"));
    }
    let rows: Vec<usize> = (0..data.len()).collect();
    let mut correct = 0;
    for chunk in rows.chunks(64) {
        let g = Graph::inference();
        let batch = Batch::new(tok, data, chunk)?;
        let v = g.value(batch.logits(bert, &g)?)?;
        correct += count_correct(v.data(), bert.config.num_labels, &batch.labels);
    }
    Ok(correct as f64 / data.len() as f64)
}

/// Fine-tunes (or trains from scratch) `bert`'s classifier on `train`, evaluating on `test` after
/// each epoch. Errors if a label is not below the model's class count or the tokenizer's
/// vocabulary is larger than the model's.
pub fn train_bert(
    bert: &Bert,
    tok: &Tokenizer,
    train: &TextSet,
    test: &TextSet,
    opts: &TrainOptions,
    progress: &mut dyn FnMut(Event),
) -> Result<History> {
    check_text("train_bert", bert, tok, &[("train", train), ("test", test)])?;
    let ce = CrossEntropyOptions {
        label_smoothing: opts.label_smoothing,
        ..CrossEntropyOptions::default()
    };
    fit(
        &bert.named_params(),
        &is_bias_or_norm,
        train.len(),
        opts,
        progress,
        &mut |g, rows| {
            let batch = Batch::new(tok, train, rows)?;
            g.cross_entropy(batch.logits(bert, g)?, &batch.labels, &ce)
        },
        &mut || evaluate_bert(bert, tok, test),
    )
}
