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

/// Logits `[rows, C]` of the texts at `rows` on graph `g`, and their labels.
fn logits_of(
    bert: &Bert,
    tok: &Tokenizer,
    data: &TextSet,
    g: &Graph,
    rows: &[usize],
) -> Result<(crate::Var, Vec<usize>)> {
    let texts: Vec<&str> = rows.iter().map(|&r| data.texts[r].as_str()).collect();
    let enc = tok.encode_batch(&texts, data.max_len)?;
    let mask = AttentionMask::from_lengths(&enc.lengths(), enc.seq)?;
    let types: Vec<usize> = enc.token_type_ids.iter().map(|&t| t as usize).collect();
    let logits = bert.forward_logits(
        g,
        &enc.ids_usize(),
        [enc.batch, enc.seq],
        Some(&types),
        Some(&mask),
    )?;
    Ok((logits, rows.iter().map(|&r| data.labels[r]).collect()))
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
        let (logits, y) = logits_of(bert, tok, data, &g, chunk)?;
        let v = g.value(logits)?;
        correct += count_correct(v.data(), bert.config.num_labels, &y);
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
    let c = &bert.config;
    if tok.vocab_size() > c.vocab_size {
        return Err(Error::invalid(
            "train_bert",
            format!(
                "the tokenizer has {} tokens, the model's vocabulary {}",
                tok.vocab_size(),
                c.vocab_size
            ),
        ));
    }
    for (what, d) in [("train", train), ("test", test)] {
        if d.num_classes() > c.num_labels {
            return Err(Error::invalid(
                "train_bert",
                format!(
                    "{what} labels go up to {}, the model has {} classes",
                    d.num_classes() - 1,
                    c.num_labels
                ),
            ));
        }
    }
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
            let (logits, y) = logits_of(bert, tok, train, g, rows)?;
            g.cross_entropy(logits, &y, &ce)
        },
        &mut || evaluate_bert(bert, tok, test),
    )
}
